#include "modules/metrics/metrics_server.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <stdexcept>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include "actor/actor_system.hpp"
#include "actor/block_pool.hpp"
#include "actor/middleware.hpp"
#include "node/overload.hpp"

namespace troupe::node {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily family(std::string name, std::string help, MetricType type) {
  return metric_family(std::move(name), std::move(help), type);
}

void add(MetricFamily& f, double value, std::vector<ClientMetric::Label> labels = {}) {
  add_metric(f, value, std::move(labels));
}

MetricFamily single(std::string name, std::string help, MetricType type, double value) {
  return single_metric(std::move(name), std::move(help), type, value);
}

// What /proc says about this process, read through descriptors opened once:
// a scrape then opens no file (it still answers when the process is out of
// descriptors, and it never takes a descriptor number that a socket the loop
// closed a moment ago just freed).
class proc_self {
 public:
  proc_self()
      : fd_dir_(::open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC)),
        statm_(::open("/proc/self/statm", O_RDONLY | O_CLOEXEC)) {}
  ~proc_self() {
    if (fd_dir_ >= 0) ::close(fd_dir_);
    if (statm_ >= 0) ::close(statm_);
  }
  proc_self(const proc_self&) = delete;
  proc_self& operator=(const proc_self&) = delete;

  double resident_bytes() const {
    char text[128];
    const ssize_t n = statm_ >= 0 ? ::pread(statm_, text, sizeof text - 1, 0) : -1;
    if (n <= 0) return 0;
    text[n] = '\0';
    unsigned long pages_total = 0, pages_resident = 0;
    if (std::sscanf(text, "%lu %lu", &pages_total, &pages_resident) != 2) return 0;
    return static_cast<double>(pages_resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
  }

  // Entries of /proc/self/fd but "." and ".." (the two held here included:
  // they are open for as long as the node runs).
  double open_fds() const {
    if (fd_dir_ < 0) return 0;
    std::lock_guard<std::mutex> lock(mu_);  // the directory offset is shared
    if (::lseek(fd_dir_, 0, SEEK_SET) != 0) return 0;
    alignas(8) char buf[8192];
    double n = 0;
    for (;;) {
      const long got = ::syscall(SYS_getdents64, fd_dir_, buf, sizeof buf);
      if (got <= 0) break;
      for (long at = 0; at < got;) {
        const auto* e = reinterpret_cast<const linux_dirent64*>(buf + at);
        if (e->d_name[0] != '.') ++n;
        at += e->d_reclen;
      }
    }
    return n;
  }

 private:
  struct linux_dirent64 {
    std::uint64_t d_ino;
    std::int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
  };
  int fd_dir_;
  int statm_;
  mutable std::mutex mu_;
};

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

}  // namespace

kind_histograms::kind_histograms(std::vector<std::string> kinds) : kinds_(std::move(kinds)) {
  every_kind_ = std::find(kinds_.begin(), kinds_.end(), "all") != kinds_.end();
}

kind_histograms::kind_histograms(bool every, std::vector<std::string> on, std::vector<std::string> off)
    : kinds_(std::move(on)), except_(std::move(off)), every_kind_(every) {}

std::shared_ptr<middleware::latency_histogram> kind_histograms::for_kind(const std::string& kind) {
  const bool named = std::find(kinds_.begin(), kinds_.end(), kind) != kinds_.end();
  const bool excepted = std::find(except_.begin(), except_.end(), kind) != except_.end();
  if (!(named || (every_kind_ && !excepted))) return nullptr;
  std::lock_guard lock(mu_);
  auto& h = by_kind_[kind];
  if (!h) h = std::make_shared<middleware::latency_histogram>();
  return h;
}

void kind_histograms::instrument(const std::string& kind, props& p) {
  if (auto h = for_kind(kind)) p.receive_hooks.push_back(middleware::time_receive(std::move(h)));
}

std::map<std::string, std::shared_ptr<middleware::latency_histogram>> kind_histograms::all() const {
  std::lock_guard lock(mu_);
  return by_kind_;
}

metric_source runtime_metrics(actor_system& sys, event_loop& loop) {
  auto proc = std::make_shared<proc_self>();
  return [&sys, &loop, proc](std::vector<MetricFamily>& out) {
      const system_stats& st = sys.stats();
      MetricFamily build = family("troupe_build_info", "Version of this troupe-node", MetricType::Gauge);
      add(build, 1, {{"version", TROUPE_VERSION}});
      out.push_back(std::move(build));

      std::map<std::string, double> per_kind;
      sys.registry().for_each([&](process& p) {
        if (auto* c = dynamic_cast<context*>(&p)) {
          const std::string& k = c->props().kind;
          per_kind[k.empty() ? "actor" : k] += 1;
        }
      });
      MetricFamily actors = family("troupe_actors", "Live actors by kind", MetricType::Gauge);
      for (const auto& [kind, n] : per_kind) add(actors, n, {{"kind", kind}});
      out.push_back(std::move(actors));

      out.push_back(single("troupe_actor_spawns_total", "Actors spawned", MetricType::Counter,
                           static_cast<double>(st.spawned.load())));
      out.push_back(single("troupe_actor_stops_total", "Actors stopped", MetricType::Counter,
                           static_cast<double>(st.stopped.load())));
      out.push_back(single("troupe_actor_failures_total", "Actor failures", MetricType::Counter,
                           static_cast<double>(st.failures.load())));
      out.push_back(single("troupe_actor_restarts_total", "Actor restarts", MetricType::Counter,
                           static_cast<double>(st.restarts.load())));
      out.push_back(single("troupe_messages_processed_total", "User messages handled by actors",
                           MetricType::Counter, static_cast<double>(sys.dispatcher().processed())));
      MetricFamily dead = family("troupe_dead_letters_total", "Messages that could not be delivered",
                                 MetricType::Counter);
      for (std::size_t r = 0; r < dead_letter_reason_count; ++r)
        add(dead, static_cast<double>(st.dead_letters[r].load()),
            {{"reason", to_string(static_cast<dead_letter_reason>(r))}});
      out.push_back(std::move(dead));
      out.push_back(single("troupe_event_subscribers", "Subscribers of the EventStream: the node's own and actors'",
                           MetricType::Gauge, static_cast<double>(sys.events().subscriber_count())));
      out.push_back(single("troupe_mailbox_dropped_total", "Messages dropped by bounded mailboxes",
                           MetricType::Counter, static_cast<double>(st.mailbox_dropped.load())));
      out.push_back(single("troupe_queued_message_bytes",
                           "Memory held by messages waiting in mailboxes (counted per thread, "
                           "settled in 64 KiB steps)",
                           MetricType::Gauge,
                           static_cast<double>(std::max<std::int64_t>(0, queued_message_bytes()))));
      out.push_back(single("troupe_queued_message_budget_bytes",
                           "node.max_queued_bytes: past it, sends are refused (dead letters "
                           "over_budget); 0 is none",
                           MetricType::Gauge, static_cast<double>(sys.queue_budget())));
      const block_pool::pool_stats pool = block_pool::stats();
      MetricFamily pool_bytes = family("troupe_message_pool_bytes",
                                       "Memory of the message and actor pool: held from the system, "
                                       "and of that free",
                                       MetricType::Gauge);
      add(pool_bytes, static_cast<double>(pool.mapped_bytes), {{"state", "held"}});
      add(pool_bytes, static_cast<double>(pool.idle_bytes), {{"state", "free"}});
      out.push_back(std::move(pool_bytes));
      out.push_back(single("troupe_memory_returned_bytes_total",
                           "Free pool memory handed back to the system", MetricType::Counter,
                           static_cast<double>(housekeeper::pool_bytes_returned())));
      out.push_back(single("troupe_event_loop_idle_seconds_total",
                           "Time the event loop spent waiting for work", MetricType::Counter,
                           static_cast<double>(uv_metrics_idle_time(loop.uv())) / 1e9));
      out.push_back(single("troupe_event_loop_polling_seconds_total",
                           "Time the event loop spent polling for work instead of waiting "
                           "(dispatcher.busy_poll_us)",
                           MetricType::Counter, static_cast<double>(loop.polled_ns()) / 1e9));
      out.push_back(single("troupe_event_loop_turns_total",
                           "Actor turns the event loop thread ran itself, for a message it read "
                           "(the node's own actors, and kinds set on_event_loop)",
                           MetricType::Counter, static_cast<double>(sys.dispatcher().held_runs())));
      out.push_back(single("troupe_timers", "Timers waiting on the event loop", MetricType::Gauge,
                           static_cast<double>(loop.pending_timers())));
      out.push_back(single("process_cpu_seconds_total", "User and system CPU time",
                           MetricType::Counter, cpu_seconds()));
      out.push_back(single("process_resident_memory_bytes", "Resident memory", MetricType::Gauge,
                           proc->resident_bytes()));
      out.push_back(single("process_open_fds", "Open file descriptors", MetricType::Gauge,
                           proc->open_fds()));
  };
}

metric_source histogram_metrics(const kind_histograms& h) {
  return [&h](std::vector<MetricFamily>& out) {
    {
      MetricFamily f = family("troupe_message_processing_seconds",
                              "Time handlers took, for the kinds with kinds.<kind>.histogram",
                              MetricType::Histogram);
      for (const auto& [kind, hist] : h.all()) f.metric.push_back(seconds_histogram(*hist, {{"kind", kind}}));
      if (!f.metric.empty()) out.push_back(std::move(f));
    }
  };
}

metrics_server::metrics_server(const std::string& listen, const http_limits& limits, metric_source collect) {
  http_limits own = limits;
  own.threads = 1;
  own.max_body = 0;  // GET only
  server_ = std::make_unique<http_server>(
      "metrics", listen, own, [collect = std::move(collect)](const std::shared_ptr<http_request>& r) {
        http_response out;
        if (r->method() != "GET" && r->method() != "HEAD") {
          out.status = 405;
          out.content_type = "text/plain";
          out.body = "use GET\n";
          out.headers.emplace_back("Allow", "GET, HEAD");
        } else if (r->path() != "/metrics") {
          out.status = 404;
          out.content_type = "text/plain";
          out.body = "metrics are at /metrics\n";
        } else {
          std::vector<MetricFamily> families;
          collect(families);
          out.content_type = "text/plain; version=0.0.4; charset=utf-8";
          out.body = prometheus::TextSerializer().Serialize(families);
        }
        r->answer(std::move(out));
      });
}

metrics_server::~metrics_server() = default;

int metrics_server::port() const { return server_->port(); }

}  // namespace troupe::node
