#include "node/metrics.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <mutex>
#include <stdexcept>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include "actor/actor_system.hpp"
#include "actor/block_pool.hpp"
#include "actor/middleware.hpp"
#include "node/admin.hpp"
#include "node/overload.hpp"
#include "plugin/plugin_host.hpp"
#include "remote/transport.hpp"

namespace troupe::node {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily family(std::string name, std::string help, MetricType type) {
  return MetricFamily{std::move(name), std::move(help), type, {}};
}

void add(MetricFamily& f, double value, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  if (f.type == MetricType::Counter) m.counter.value = value;
  else m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

MetricFamily single(std::string name, std::string help, MetricType type, double value) {
  MetricFamily f = family(std::move(name), std::move(help), type);
  add(f, value);
  return f;
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

std::shared_ptr<middleware::latency_histogram> kind_histograms::for_kind(const std::string& kind) {
  if (!every_kind_ && std::find(kinds_.begin(), kinds_.end(), kind) == kinds_.end()) return nullptr;
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

class metrics::collector final : public prometheus::Collectable {
 public:
  collector(actor_system& sys, std::shared_ptr<plugin::host> plugins, event_loop& loop,
            const kind_histograms* histograms, const admin_stats* admin,
            const remote::stats* remote)
      : sys_(sys), plugins_(std::move(plugins)), loop_(loop), histograms_(histograms),
        admin_(admin),
        remote_(remote) {}

  std::vector<MetricFamily> Collect() const override {
    std::vector<MetricFamily> out;
    const system_stats& st = sys_.stats();
    MetricFamily build = family("troupe_build_info", "Version of this troupe-node", MetricType::Gauge);
    add(build, 1, {{"version", TROUPE_VERSION}});
    out.push_back(std::move(build));

    std::map<std::string, double> per_kind;
    sys_.registry().for_each([&](process& p) {
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
                         MetricType::Counter, static_cast<double>(sys_.dispatcher().processed())));
    MetricFamily dead = family("troupe_dead_letters_total", "Messages that could not be delivered",
                               MetricType::Counter);
    for (std::size_t r = 0; r < dead_letter_reason_count; ++r)
      add(dead, static_cast<double>(st.dead_letters[r].load()),
          {{"reason", to_string(static_cast<dead_letter_reason>(r))}});
    out.push_back(std::move(dead));
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
                         MetricType::Gauge, static_cast<double>(sys_.queue_budget())));
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
    out.push_back(single("troupe_plugins_loaded", "Plugins loaded", MetricType::Gauge,
                         static_cast<double>(plugins_->plugins().size())));
    out.push_back(single("troupe_plugin_load_failures_total", "Plugins refused at load",
                         MetricType::Counter,
                         static_cast<double>(plugins_->stats().refused.load())));
    out.push_back(single("troupe_plugin_invalid_messages_total",
                         "Messages to plugin actors rejected by schema verification",
                         MetricType::Counter,
                         static_cast<double>(plugins_->stats().invalid_messages.load())));
    out.push_back(single("troupe_event_loop_idle_seconds_total",
                         "Time the event loop spent waiting for work", MetricType::Counter,
                         static_cast<double>(uv_metrics_idle_time(loop_.uv())) / 1e9));
    out.push_back(single("troupe_timers", "Timers waiting on the event loop", MetricType::Gauge,
                         static_cast<double>(loop_.pending_timers())));
    if (histograms_ != nullptr) {
      MetricFamily f = family("troupe_message_processing_seconds",
                              "Time handlers took, for the kinds metrics.histograms names",
                              MetricType::Histogram);
      for (const auto& [kind, h] : histograms_->all()) {
        const middleware::latency_histogram::snapshot snap = h->read();
        ClientMetric m;
        m.label = {{"kind", kind}};
        m.histogram.sample_count = snap.count;
        m.histogram.sample_sum = static_cast<double>(snap.sum_ns) / 1e9;
        std::uint64_t cumulative = 0;
        for (std::size_t b = 0; b < snap.buckets.size(); ++b) {
          cumulative += snap.buckets[b];
          const auto& bounds = middleware::latency_histogram::bounds_ns;
          m.histogram.bucket.push_back(
              {cumulative, b < bounds.size() ? static_cast<double>(bounds[b]) / 1e9
                                             : std::numeric_limits<double>::infinity()});
        }
        f.metric.push_back(std::move(m));
      }
      if (!f.metric.empty()) out.push_back(std::move(f));
    }
    if (admin_ != nullptr) {
      MetricFamily f = family("troupe_admin_requests_total", "Admin API requests by status class",
                              MetricType::Counter);
      for (std::size_t c : {2, 4, 5})
        add(f, static_cast<double>(admin_->by_class[c].load(std::memory_order_relaxed)),
            {{"status", std::to_string(c) + "xx"}});
      out.push_back(std::move(f));
      if (const http_stats* h = admin_->connections) {
        out.push_back(single("troupe_admin_connections", "Open connections to the admin API",
                             MetricType::Gauge,
                             static_cast<double>(h->open.load(std::memory_order_relaxed))));
        MetricFamily refused = family("troupe_admin_connections_refused_total",
                                      "Admin API connections refused, by the limit they met",
                                      MetricType::Counter);
        add(refused, static_cast<double>(h->refused_limit.load(std::memory_order_relaxed)),
            {{"reason", "max_connections"}});
        add(refused, static_cast<double>(h->refused_per_address.load(std::memory_order_relaxed)),
            {{"reason", "max_connections_per_address"}});
        out.push_back(std::move(refused));
        out.push_back(single("troupe_admin_bodies_too_large_total",
                             "Admin API requests refused for a body over the limit",
                             MetricType::Counter,
                             static_cast<double>(h->too_large.load(std::memory_order_relaxed))));
      }
    }
    if (remote_ != nullptr) {
      const remote::stats& rs = *remote_;
      auto counter = [&](const char* name, const char* help, const std::atomic<std::uint64_t>& v) {
        out.push_back(single(name, help, MetricType::Counter,
                             static_cast<double>(v.load(std::memory_order_relaxed))));
      };
      counter("troupe_remote_messages_sent_total", "Messages written to other nodes",
              rs.messages_sent);
      counter("troupe_remote_messages_received_total", "Messages received from other nodes",
              rs.messages_received);
      counter("troupe_remote_sent_bytes_total", "Bytes written to other nodes", rs.bytes_sent);
      counter("troupe_remote_received_bytes_total", "Bytes read from other nodes",
              rs.bytes_received);
      counter("troupe_remote_resent_total",
              "Messages and control items sent to a peer again after its link came back, "
              "because it had not acknowledged them",
              rs.resent);
      counter("troupe_remote_duplicates_total",
              "Items a peer sent again that this node had already delivered (dropped)",
              rs.duplicates);
      counter("troupe_remote_protocol_errors_total",
              "Connections closed for frames that were oversized, malformed or out of place",
              rs.protocol_errors);
      counter("troupe_remote_read_pauses_total",
              "Times a link stopped reading because a target's mailbox, or the node's queued "
              "messages, were over their high-water mark (back-pressure)",
              rs.read_pauses);
      out.push_back(single("troupe_remote_reads_paused", "Links not read now (back-pressure)",
                           MetricType::Gauge,
                           static_cast<double>(rs.reads_paused.load(std::memory_order_relaxed))));
      out.push_back(single("troupe_remote_read_paused_seconds_total",
                           "Time links spent not read (back-pressure)", MetricType::Counter,
                           static_cast<double>(rs.paused_ns.load(std::memory_order_relaxed)) / 1e9));
      MetricFamily conns = family("troupe_remote_connections", "Node-to-node connections by state, and peers without one (backoff, down, idle)",
                                  MetricType::Gauge);
      for (std::size_t s = 0; s < remote::connection_state_count; ++s)
        add(conns, static_cast<double>(rs.connections[s].load(std::memory_order_relaxed)),
            {{"state", remote::to_string(static_cast<remote::connection_state>(s))}});
      // Peers without a connection, in the states troupectl peers shows.
      add(conns, static_cast<double>(rs.peers_waiting[0].load(std::memory_order_relaxed)),
          {{"state", "backoff"}});
      add(conns, static_cast<double>(rs.peers_waiting[1].load(std::memory_order_relaxed)),
          {{"state", "idle"}});
      add(conns, static_cast<double>(rs.peers_waiting[2].load(std::memory_order_relaxed)),
          {{"state", "down"}});
      out.push_back(std::move(conns));
      MetricFamily hs = family("troupe_remote_handshake_failures_total",
                               "Connections refused during the handshake, by reason",
                               MetricType::Counter);
      for (std::size_t r = 0; r < remote::close_reason_count; ++r) {
        const auto reason = static_cast<remote::close_reason>(r);
        if (!remote::is_handshake_failure(reason)) continue;
        add(hs, static_cast<double>(rs.handshake_failures[r].load(std::memory_order_relaxed)),
            {{"reason", remote::to_string(reason)}});
      }
      out.push_back(std::move(hs));
    }
    out.push_back(single("process_cpu_seconds_total", "User and system CPU time",
                         MetricType::Counter, cpu_seconds()));
    out.push_back(single("process_resident_memory_bytes", "Resident memory", MetricType::Gauge,
                         proc_.resident_bytes()));
    out.push_back(single("process_open_fds", "Open file descriptors", MetricType::Gauge,
                         proc_.open_fds()));
    return out;
  }

 private:
  actor_system& sys_;
  std::shared_ptr<plugin::host> plugins_;
  event_loop& loop_;
  const kind_histograms* histograms_;
  const admin_stats* admin_;
  const remote::stats* remote_;
  proc_self proc_;
};

metrics::metrics(const std::string& listen, const http_limits& limits, actor_system& sys,
                 std::shared_ptr<plugin::host> plugins, event_loop& loop,
                 const kind_histograms* histograms, const admin_stats* admin,
                 const remote::stats* remote)
    : collector_(std::make_shared<collector>(sys, std::move(plugins), loop, histograms, admin,
                                             remote)) {
  http_limits own = limits;
  own.threads = 1;
  own.max_body = 0;  // GET only
  server_ = std::make_unique<http_server>(
      "metrics", listen, own, [c = collector_](const std::shared_ptr<http_request>& r) {
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
          out.content_type = "text/plain; version=0.0.4; charset=utf-8";
          out.body = prometheus::TextSerializer().Serialize(c->Collect());
        }
        r->answer(std::move(out));
      });
}

metrics::~metrics() = default;

int metrics::port() const { return server_->port(); }

}  // namespace troupe::node
