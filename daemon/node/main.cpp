// troupe-node: the daemon. Runs an actor system on the libuv loop of the main
// thread, loads the plugins its config names, and follows systemd's
// protocol: READY=1 once started, RELOADING=1 / READY=1 around a SIGHUP
// reload, STOPPING=1 on SIGTERM or SIGINT, WATCHDOG=1 from the loop thread.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <csignal>
#include <string>
#include <utility>
#include <mutex>
#include <map>
#include <thread>
#include <vector>

#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <uv.h>

#include "actor/actor_system.hpp"
#include "demo_generated.h"
#include "node/admin.hpp"
#include "node/config.hpp"
#include "node/crash.hpp"
#include "node/log.hpp"
#include "node/metrics.hpp"
#include "node/overload.hpp"
#include "node/state_dir.hpp"
#include "plugin/plugin_host.hpp"
#include "remote/transport.hpp"
#include "troupe/abi.h"

namespace {

using troupe::node::level;
using troupe::node::log;

constexpr int ex_config = 78;
constexpr int ex_usage = 64;
constexpr int ex_software = 70;

constexpr const char* usage_text =
    "Usage: troupe-node --config FILE\n"
    "  or:  troupe-node --check-config FILE\n"
    "  or:  troupe-node --version | --help\n";

void usage() { std::fputs(usage_text, stderr); }

void help() {
  std::printf(
      "troupe-node runs actors from plugins on one node of a Troupe cluster.\n\n%s\n"
      "Options:\n"
      "  --config FILE        run with the configuration in FILE (YAML), in the foreground;\n"
      "                       under systemd it reports READY=1 once its plugins are loaded\n"
      "  --check-config FILE  only validate FILE: exit 0, or 78 with every problem as\n"
      "                       FILE:LINE: message\n"
      "  --version            print the version\n"
      "  --help               print this help\n\n"
      "Signals: SIGHUP re-reads the configuration (log settings and newly listed plugins\n"
      "apply at once); SIGTERM or SIGINT stops every actor and exits 0; a second one exits\n"
      "at once.\n\n"
      "Files: /etc/troupe/node.yaml (the packaged configuration), /usr/lib/troupe/plugins\n"
      "and /usr/local/lib/troupe/plugins (plugins), /var/lib/troupe (state).\n",
      usage_text);
}

// Tells systemd (when it is listening) how things stand.
void notify(const std::string& state) {
  if (std::getenv("NOTIFY_SOCKET") != nullptr) sd_notify(0, state.c_str());
}

void configure_log(const troupe::node::config& cfg) {
  troupe::node::log_options o;
  troupe::node::parse_level(cfg.log_level, o.min);
  o.json = cfg.log_format == "json";
  o.syslog_prefix = troupe::node::stderr_is_journal();
  troupe::node::configure_log(o);
}

bool read_config(const std::string& path, troupe::node::config& cfg) {
  std::vector<troupe::node::config_error> errors;
  if (troupe::node::load_config(path, cfg, errors)) return true;
  for (const auto& e : errors) log(level::error, e.to_string());
  return false;
}

// A ring of actors passing tokens around: visible, steady work (demo: true).
struct ring_member final : troupe::actor {
  std::shared_ptr<troupe::pid> next;
  std::atomic<std::uint64_t>* passes;
  void receive(troupe::context& ctx) override {
    if (auto* t = ctx.message<troupe::demo::Token>()) {
      passes->fetch_add(1, std::memory_order_relaxed);
      std::int64_t hops = t->hops() + 1;
      ctx.send<troupe::demo::Token>(*next, [hops](flatbuffers::FlatBufferBuilder& b) {
        return troupe::demo::CreateToken(b, hops);
      });
    }
  }
};

struct demo {
  std::atomic<std::uint64_t> passes{0};
  std::vector<std::shared_ptr<troupe::pid>> links;

  void start(troupe::actor_system& sys, troupe::node::kind_histograms& histograms) {
    constexpr int ring_size = 1000;
    std::vector<troupe::pid> members;
    for (int i = 0; i < ring_size; ++i) {
      auto link = std::make_shared<troupe::pid>();
      links.push_back(link);
      troupe::props p = troupe::props::from([link, this] {
        auto m = std::make_unique<ring_member>();
        m->next = link;
        m->passes = &passes;
        return std::unique_ptr<troupe::actor>(std::move(m));
      });
      p.kind = "demo.ring";
      histograms.instrument(p.kind, p);
      members.push_back(sys.root().spawn(troupe::share(std::move(p))));
    }
    for (int i = 0; i < ring_size; ++i) *links[i] = members[(i + 1) % ring_size];
    for (int t = 0; t < 4; ++t)
      sys.root().send(members[t * ring_size / 4],
                      troupe::make_message<troupe::demo::Token>([](flatbuffers::FlatBufferBuilder& b) {
                        return troupe::demo::CreateToken(b, 0);
                      }));
    log(level::info, "demo: a ring of " + std::to_string(ring_size) + " actors passing 4 tokens");
  }
  // Breaks the ring's reference cycle once no actor runs.
  void stop() {
    for (auto& l : links) *l = troupe::pid();
  }
};

std::string now_iso8601() {
  char buf[32];
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

class node {
 public:
  node(std::string path, troupe::node::config cfg) : path_(std::move(path)), cfg_(std::move(cfg)) {}

  int run() {
    // Before anything is bound: a second node on this folder stops here.
    if (std::string error; !state_.open(cfg_.state_dir, error)) {
      log(level::error, error);
      return 1;
    }
    log(level::info, state_.path().empty()
                         ? "no state directory: node.state_dir is not set"
                         : "state directory " + state_.path() + " (locked while the node runs)");
    troupe::system_config sc;
    sc.address = cfg_.name;
    if (!cfg_.listen.empty()) {
      // Bound first: the address peers dial is the first half of every PID.
      transport_ = std::make_unique<troupe::remote::transport>(loop_, remote_options(cfg_));
      std::string error;
      if (!transport_->bind(error)) {
        log(level::error, "remote: " + error);
        close_transport_early();
        return 1;
      }
      sc.address = transport_->address();
      if (cfg_.insecure_plaintext)
        log(level::warning,
            "remote: TLS IS OFF (remote.insecure_plaintext): node-to-node traffic is neither "
            "authenticated nor encrypted, and anyone who reaches " + cfg_.listen +
                " can act as a member of cluster '" + cfg_.cluster + "'");
      else
        log(level::info, std::string("remote: TLS 1.3, members authenticated by ") +
                             (cfg_.tls_cert_file.empty() ? "the cluster secret" : "certificates from " + cfg_.tls_ca_file));
    }
    sc.dispatcher.threads = cfg_.threads;
    sc.dispatcher.on_thread_start = troupe::node::crash_stack_for_this_thread;
    sc.loop = &loop_;
    sc.on_failure = [this](const troupe::context& c, const std::string& reason) {
      failures_.report(c, reason);
    };
    memory_ = troupe::node::find_memory_limit();
    sc.max_queued_bytes = queue_budget(cfg_);
    sys_ = std::make_unique<troupe::actor_system>(sc);
    log(level::info, "node '" + cfg_.name + "' of cluster '" + cfg_.cluster + "' starting with " +
                         std::to_string(sys_->dispatcher().threads()) + " workers");
    plugins_ = std::make_shared<troupe::plugin::host>(
        *sys_, [](troupe::log_level l, std::string_view line) { log(l, line); });
    histograms_ = std::make_unique<troupe::node::kind_histograms>(cfg_.histogram_kinds);
    plugins_->set_kind_decorator([h = histograms_.get(), default_mailbox = cfg_.plugin_mailbox,
                                  kinds = cfg_.kind_mailboxes](const std::string& kind, troupe::props& p) {
      h->instrument(kind, p);
      const auto it = kinds.find(kind);
      p.mailbox = mailbox_options(it != kinds.end() ? it->second : default_mailbox);
    });
    if (!load_plugins(cfg_, true)) {
      log(level::error, "stopping: a required plugin did not load");
      sys_->shutdown(std::chrono::seconds(cfg_.drain_timeout_seconds));
      sys_.reset();
      close_transport_early();
      return ex_config;
    }
    if (transport_) {
      transport_->set_spawn_handler([this](const std::string& kind, const std::string& name) {
        return spawn_for_peer(kind, name);
      });
      transport_->start(*sys_);
      log(level::info, "remote: listening on " + cfg_.listen.substr(0, cfg_.listen.rfind(':') + 1) +
                           std::to_string(transport_->port()) + ", PIDs as " + transport_->address() +
                           "/ID");
    }
    contact_seeds({}, cfg_.seeds);
    uv_loop_configure(loop_.uv(), UV_METRICS_IDLE_TIME);
    try {
      troupe::node::http_limits limits;
      limits.max_connections = cfg_.admin_max_connections;
      limits.max_connections_per_address = cfg_.admin_max_connections_per_address;
      limits.idle_timeout_s = cfg_.admin_idle_timeout_seconds;
      admin_ = std::make_unique<troupe::node::admin>(cfg_.admin_listen, cfg_.admin_token, limits,
                                                     *sys_, plugins_);
      metrics_ = std::make_unique<troupe::node::metrics>(
          cfg_.metrics_listen, limits, *sys_, plugins_, loop_, histograms_.get(), &admin_->stats(),
          transport_ ? &transport_->counters() : nullptr);
    } catch (const std::exception& e) {
      log(level::error, e.what());
      admin_.reset();
      if (transport_) transport_->shutdown();
      sys_->shutdown(std::chrono::seconds(cfg_.drain_timeout_seconds));
      sys_.reset();
      close_transport_early();
      return 1;
    }
    if (transport_) admin_->set_remote(remote_hooks());
    cfg_stall_seconds_.store(cfg_.stall_timeout_seconds, std::memory_order_relaxed);
    loop_beat_ns_.store(now_ns(), std::memory_order_relaxed);
    admin_->set_health([this] { return unhealthy(); });
    admin_->set_node_info(node_info(), members());
    log(level::info, "admin API on " + url(cfg_.admin_listen, admin_->port()) +
                         (cfg_.admin_token.empty() ? "" : " (bearer token required)"));
    log(level::info, "metrics on " + url(cfg_.metrics_listen, metrics_->port()) + "/metrics");
    if (cfg_.demo) demo_.start(*sys_, *histograms_);

    start_handles();
    admin_->set_state(troupe::node::admin::state::ready);
    notify("READY=1\nSTATUS=" + status());
    log(level::info, "ready: " + status());
    loop_.run();
    // The loop ran until every handle was closed; the system is stopped.
    if (stopper_.joinable()) stopper_.join();
    // Listeners close once no actor runs: their last answers were 503s.
    // Metrics first: a scrape reads the admin API's counters.
    metrics_.reset();
    admin_.reset();
    sys_.reset();
    transport_.reset();
    // Whatever is still open was forgotten by its owner: say what it was.
    if (const std::string left = loop_.close(); !left.empty()) {
      log(level::error, "the event loop could not close, " + left + " left open");
      return ex_software;
    }
    log(level::info, "stopped");
    return 0;
  }

 private:
  static troupe::mailbox_options mailbox_options(const troupe::node::config::mailbox& m) {
    troupe::mailbox_options o;
    if (m.capacity == 0) return o;  // unbounded
    o.capacity = m.capacity;
    o.kind = m.overflow == "block"         ? troupe::mailbox_kind::bounded_block
             : m.overflow == "drop_oldest" ? troupe::mailbox_kind::bounded_drop_oldest
                                           : troupe::mailbox_kind::bounded_drop_newest;
    return o;
  }

  // node.max_queued_bytes in bytes, said in the log.
  std::uint64_t queue_budget(const troupe::node::config& c) {
    troupe::node::queue_budget_setting s;
    std::string said;
    troupe::node::parse_queue_budget(c.max_queued_bytes, s, said);  // checked with the config
    const std::uint64_t bytes = troupe::node::resolve_queue_budget(s, memory_, said);
    log(bytes == 0 ? level::warning : level::info, "memory: " + said);
    return bytes;
  }

  static troupe::remote::options remote_options(const troupe::node::config& c) {
    troupe::remote::options o;
    o.self.cluster = c.cluster;
    o.self.node = c.name;
    o.self.address = c.advertise;  // empty: the listen address as bound
    o.creds.secrets = c.secrets;
    o.creds.cert_file = c.tls_cert_file;
    o.creds.key_file = c.tls_key_file;
    o.creds.ca_file = c.tls_ca_file;
    o.insecure_plaintext = c.insecure_plaintext;
    o.max_connections = c.max_connections;
    o.max_pending = c.max_pending_connections;
    o.max_pending_per_address = c.max_pending_per_address;
    o.self.max_frame = c.max_frame_bytes;
    o.listen = c.listen;
    o.send_queue = c.send_queue;
    o.heartbeat_interval = std::chrono::milliseconds(c.heartbeat_interval_ms);
    o.heartbeat_timeout = std::chrono::milliseconds(c.heartbeat_timeout_ms);
    o.handshake_timeout = std::chrono::milliseconds(c.handshake_timeout_ms);
    o.unreachable_timeout = std::chrono::milliseconds(c.unreachable_timeout_ms);
    o.spawnable = c.remote_spawn;
    o.log = [](troupe::log_level l, const std::string& line) { log(l, line); };
    return o;
  }

  // On a start that fails before the loop runs: the listener must close
  // while its transport still exists.
  void close_transport_early() {
    if (!transport_) return;
    transport_->shutdown();
    uv_run(loop_.uv(), UV_RUN_NOWAIT);
    transport_.reset();
  }

  // A peer asks this node to spawn `kind` (remote.spawn allowed it).
  troupe::remote::spawn_reply spawn_for_peer(const std::string& kind, const std::string& name) {
    if (stopping_) return {TROUPE_ERR_STATE, troupe::pid(), "the node is stopping"};
    troupe::spawn_result r = sys_->root().spawn_kind(kind, name);
    if (r) return {0, r.pid, ""};
    return {troupe::plugin::abi_status(r.error), troupe::pid(), troupe::node::spawn_refusal(r.error, kind, name)};
  }

  troupe::node::admin::remote_hooks remote_hooks() {
    troupe::node::admin::remote_hooks h;
    h.peers = [t = transport_.get()] {
      nlohmann::json list = nlohmann::json::array();
      for (const troupe::remote::peer_info& p : t->peers())
        list.push_back({{"address", p.address},
                        {"node", p.node.empty() ? nlohmann::json(nullptr) : nlohmann::json(p.node)},
                        {"state", p.state},
                        {"direction", p.inbound ? "inbound" : "outbound"},
                        {"messages_sent", p.messages_sent},
                        {"messages_received", p.messages_received},
                        {"bytes_sent", p.bytes_sent},
                        {"bytes_received", p.bytes_received},
                        {"queued", p.queued},
                        {"last_error", p.last_error.empty() ? nlohmann::json(nullptr)
                                                            : nlohmann::json(p.last_error)}});
      return nlohmann::json{{"peers", list}};
    };
    h.spawn = [t = transport_.get()](const std::string& address, const std::string& kind,
                                     const std::string& name,
                                     std::function<void(int, std::string)> done) {
      t->spawn(address, kind, name, std::chrono::seconds(5),
               [done = std::move(done)](troupe::remote::spawn_reply r) {
                 done(r.status, r.status == 0 ? r.who.to_string() : r.error);
               });
    };
    return h;
  }

  std::string status() const {
    return std::to_string(plugins_->plugins().size()) + " plugins, " +
           std::to_string(plugins_->kinds().size()) + " kinds, " +
           std::to_string(sys_->actor_count()) + " actors";
  }

  static std::string url(const std::string& listen, int port) {
    return "http://" + listen.substr(0, listen.rfind(':')) + ":" + std::to_string(port);
  }

  nlohmann::json node_info() const {
    return {{"name", cfg_.name},
            {"cluster", cfg_.cluster},
            {"version", TROUPE_VERSION},
            {"pid", static_cast<long>(::getpid())},
            {"config", path_},
            {"listen", cfg_.listen.empty() ? nlohmann::json(nullptr) : nlohmann::json(cfg_.listen)},
            {"advertise",
             cfg_.advertise.empty() ? nlohmann::json(nullptr) : nlohmann::json(cfg_.advertise)},
            {"admin", url(cfg_.admin_listen, admin_->port())},
            {"metrics", url(cfg_.metrics_listen, metrics_ ? metrics_->port() : 0) + "/metrics"},
            {"seeds", cfg_.seeds},
            {"state_dir", state_.path().empty() ? nlohmann::json(nullptr) : nlohmann::json(state_.path())},
            {"log_level", cfg_.log_level},
            {"started_at", started_at_}};
  }

  // Keeps connections to the seeds in `now` that `before` did not list.
  // (A seed a reload drops is not disconnected: traffic may use it.)
  void contact_seeds(const std::vector<std::string>& before, const std::vector<std::string>& now) {
    std::vector<std::string> fresh;
    for (const std::string& s : now)
      if (std::find(before.begin(), before.end(), s) == before.end()) fresh.push_back(s);
    if (fresh.empty()) return;
    if (!transport_) {
      log(level::warning, "seeds are listed but node.listen is not set: no other node is contacted");
      return;
    }
    std::string list;
    for (const std::string& s : fresh) {
      transport_->contact(s);
      list += (list.empty() ? "" : ", ") + s;
    }
    log(level::info, "remote: contacting seeds " + list + " (troupectl peers shows how it went)");
  }

  // Only this node until the cluster layer tells of others.
  nlohmann::json members() const {
    const std::string& address = !cfg_.advertise.empty() ? cfg_.advertise : cfg_.listen;
    return nlohmann::json::array(
        {{{"name", cfg_.name},
          {"address", address.empty() ? nlohmann::json(nullptr) : nlohmann::json(address)},
          {"status", "up"},
          {"self", true}}});
  }

  // NAME.so in the first of `dirs` that has it (else in the first, so that
  // the loader's error names a real place).
  static std::filesystem::path find_plugin(const std::vector<std::string>& dirs,
                                           const std::string& name) {
    for (const std::string& dir : dirs) {
      std::error_code ec;
      std::filesystem::path p = std::filesystem::path(dir) / (name + ".so");
      if (std::filesystem::exists(p, ec)) return p;
    }
    return std::filesystem::path(dirs.empty() ? std::string() : dirs.front()) / (name + ".so");
  }

  // Loads the plugins `c` lists that are not loaded yet. False if a
  // required one fails (only fatal at start).
  bool load_plugins(const troupe::node::config& c, bool starting) {
    bool ok = true;
    for (const std::string& name : c.plugins) {
      if (std::find(loaded_.begin(), loaded_.end(), name) != loaded_.end()) continue;
      auto r = plugins_->load(find_plugin(c.plugin_dirs, name));
      const bool required = std::find(c.required_plugins.begin(), c.required_plugins.end(),
                                      name) != c.required_plugins.end();
      if (r.ok) {
        loaded_.push_back(name);
      } else if (required) {
        log(level::error, "required plugin '" + name + "' did not load");
        if (starting) ok = false;
      }
    }
    return ok;
  }

  void start_handles() {
    uv_signal_init(loop_.uv(), &sigint_);
    uv_signal_init(loop_.uv(), &sigterm_);
    uv_signal_init(loop_.uv(), &sighup_);
    sigint_.data = sigterm_.data = sighup_.data = this;
    uv_signal_start(&sigint_, &node::on_stop_signal, SIGINT);
    uv_signal_start(&sigterm_, &node::on_stop_signal, SIGTERM);
    uv_signal_start(&sighup_, [](uv_signal_t* h, int) { static_cast<node*>(h->data)->reload(); },
                    SIGHUP);
    uv_async_init(loop_.uv(), &stopped_, [](uv_async_t* h) {
      static_cast<node*>(h->data)->close_handles();
    });
    stopped_.data = this;
    handles_open_ = true;

    // Progress, checked on the loop twice a second: the loop beats, and the
    // workers are looked at (stalled when every one of them has been inside
    // one handler for node.stall_timeout).
    loop_beat_ns_.store(now_ns(), std::memory_order_relaxed);
    uv_timer_init(loop_.uv(), &health_);
    health_.data = this;
    uv_timer_start(&health_, [](uv_timer_t* h) { static_cast<node*>(h->data)->check_health(); }, 500,
                   500);
    health_on_ = true;

    // The watchdog is fed from the loop thread, so that a stuck loop stops
    // feeding it and systemd notices; stalled workers stop it too.
    std::uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
      uv_timer_init(loop_.uv(), &watchdog_);
      watchdog_.data = this;
      const std::uint64_t every_ms = std::max<std::uint64_t>(1, usec / 2000);
      uv_timer_start(&watchdog_, [](uv_timer_t* h) {
        if (!static_cast<node*>(h->data)->workers_stalled_.load(std::memory_order_relaxed))
          notify("WATCHDOG=1");
      }, every_ms, every_ms);
      watchdog_on_ = true;
      log(level::info, "watchdog: pinging every " + std::to_string(every_ms) + " ms");
    }
    if (cfg_.demo) {
      uv_timer_init(loop_.uv(), &report_);
      report_.data = this;
      uv_timer_start(&report_, [](uv_timer_t* h) { static_cast<node*>(h->data)->report(); }, 2000,
                     2000);
      report_on_ = true;
    }
  }

  void report() {
    auto now = std::chrono::steady_clock::now();
    std::uint64_t n = demo_.passes.load(std::memory_order_relaxed);
    double secs = std::chrono::duration<double>(now - last_t_).count();
    char buf[256];
    std::snprintf(buf, sizeof buf, "%zu actors, %.2f M messages/s, %llu dead letters, %zu timers",
                  sys_->actor_count(), static_cast<double>(n - last_) / secs / 1e6,
                  static_cast<unsigned long long>(sys_->stats().dead_letters_total()),
                  sys_->loop().pending_timers());
    log(level::info, buf);
    last_ = n;
    last_t_ = now;
  }

  // SIGHUP: re-read the file; apply what can change live, name what cannot.
  void reload() {
    if (stopping_) return;
    notify("RELOADING=1\nSTATUS=reloading " + path_);
    log(level::info, "reloading " + path_);
    troupe::node::config next;
    if (!read_config(path_, next)) {
      log(level::error, "reload rejected: the running configuration stays");
    } else {
      configure_log(next);
      log(level::debug, "log: level " + next.log_level + ", format " + next.log_format);
      load_plugins(next, false);
      std::vector<std::string> restart;
      if (next.name != cfg_.name) restart.push_back("node.name");
      if (next.cluster != cfg_.cluster) restart.push_back("node.cluster");
      if (next.threads != cfg_.threads) restart.push_back("dispatcher.threads");
      if (next.demo != cfg_.demo) restart.push_back("demo");
      if (next.state_dir != cfg_.state_dir) restart.push_back("node.state_dir");
      if (next.plugin_dirs != cfg_.plugin_dirs)
        log(level::info, "reload: newly listed plugins are looked for in the new plugins.dir; "
                         "those loaded already stay as they are");
      for (const auto& p : loaded_)
        if (std::find(next.plugins.begin(), next.plugins.end(), p) == next.plugins.end())
          restart.push_back("plugins.load (" + p + " stays loaded)");
      if (next.listen != cfg_.listen) restart.push_back("node.listen");
      if (next.advertise != cfg_.advertise) restart.push_back("node.advertise");
      if (next.secrets != cfg_.secrets && transport_) {
        transport_->set_secrets(next.secrets);
        log(level::info, "reload: handshakes from now on offer the first of " +
                             std::to_string(next.secrets.size()) +
                             " cluster secrets and accept any of them");
      }
      if (next.insecure_plaintext != cfg_.insecure_plaintext || next.tls_cert_file != cfg_.tls_cert_file ||
          next.tls_key_file != cfg_.tls_key_file || next.tls_ca_file != cfg_.tls_ca_file ||
          next.max_connections != cfg_.max_connections ||
          next.max_pending_connections != cfg_.max_pending_connections ||
          next.max_pending_per_address != cfg_.max_pending_per_address)
        restart.push_back("remote");
      if (next.max_frame_bytes != cfg_.max_frame_bytes || next.send_queue != cfg_.send_queue ||
          next.heartbeat_interval_ms != cfg_.heartbeat_interval_ms ||
          next.heartbeat_timeout_ms != cfg_.heartbeat_timeout_ms ||
          next.handshake_timeout_ms != cfg_.handshake_timeout_ms ||
          next.unreachable_timeout_ms != cfg_.unreachable_timeout_ms ||
          next.remote_spawn != cfg_.remote_spawn)
        restart.push_back("remote");
      if (next.admin_listen != cfg_.admin_listen) restart.push_back("admin.listen");
      if (next.metrics_listen != cfg_.metrics_listen) restart.push_back("metrics.listen");
      if (next.histogram_kinds != cfg_.histogram_kinds) restart.push_back("metrics.histograms");
      if (next.plugin_mailbox != cfg_.plugin_mailbox || next.kind_mailboxes != cfg_.kind_mailboxes)
        restart.push_back("plugins.mailbox and kinds");
      if (next.max_queued_bytes != cfg_.max_queued_bytes) sys_->set_queue_budget(queue_budget(next));
      for (const auto& key : restart) log(level::warning, "reload: " + key + " changes only at restart");
      contact_seeds(cfg_.seeds, next.seeds);
      if (next.admin_token != cfg_.admin_token) {
        admin_->set_token(next.admin_token);
        log(level::info, next.admin_token.empty() ? "reload: the admin API needs no token now"
                                                  : "reload: the admin API takes the new token");
      }
      // Keep what did not apply, so that a later reload compares against it.
      next.name = cfg_.name;
      next.cluster = cfg_.cluster;
      next.threads = cfg_.threads;
      next.demo = cfg_.demo;
      next.state_dir = cfg_.state_dir;
      next.listen = cfg_.listen;
      next.advertise = cfg_.advertise;
      if (!transport_) next.secrets = cfg_.secrets;
      next.insecure_plaintext = cfg_.insecure_plaintext;
      next.tls_cert_file = cfg_.tls_cert_file;
      next.tls_key_file = cfg_.tls_key_file;
      next.tls_ca_file = cfg_.tls_ca_file;
      next.max_connections = cfg_.max_connections;
      next.max_pending_connections = cfg_.max_pending_connections;
      next.max_pending_per_address = cfg_.max_pending_per_address;
      next.max_frame_bytes = cfg_.max_frame_bytes;
      next.send_queue = cfg_.send_queue;
      next.heartbeat_interval_ms = cfg_.heartbeat_interval_ms;
      next.heartbeat_timeout_ms = cfg_.heartbeat_timeout_ms;
      next.handshake_timeout_ms = cfg_.handshake_timeout_ms;
      next.unreachable_timeout_ms = cfg_.unreachable_timeout_ms;
      next.remote_spawn = cfg_.remote_spawn;
      next.admin_listen = cfg_.admin_listen;
      next.metrics_listen = cfg_.metrics_listen;
      next.histogram_kinds = cfg_.histogram_kinds;
      next.plugin_mailbox = cfg_.plugin_mailbox;
      next.kind_mailboxes = cfg_.kind_mailboxes;
      cfg_ = std::move(next);
      cfg_stall_seconds_.store(cfg_.stall_timeout_seconds, std::memory_order_relaxed);
      admin_->set_node_info(node_info(), members());
      log(level::info, "reloaded: " + status());
    }
    notify("READY=1\nSTATUS=" + status());
  }

  static void on_stop_signal(uv_signal_t* h, int signum) {
    auto* n = static_cast<node*>(h->data);
    const char* name = signum == SIGINT ? "SIGINT" : "SIGTERM";
    if (n->stopping_) {
      log(level::error, std::string("second ") + name + ": exiting now");
      std::fflush(stderr);
      ::_exit(1);
    }
    n->stopping_ = true;
    n->admin_->set_state(troupe::node::admin::state::stopping);
    // Peers first: nothing more comes in or goes out while actors stop.
    if (n->transport_) n->transport_->shutdown();
    notify("STOPPING=1\nSTATUS=stopping");
    log(level::info, std::string("received ") + name + ": stopping every actor");
    // Actors stop on their workers while the loop goes on serving timers
    // and signals (a second one forces the exit).
    // A handler that never returns would hold the stop forever: past the
    // drain timeout and a grace period, the node gives up and exits.
    uv_timer_init(n->loop_.uv(), &n->give_up_);
    n->give_up_.data = n;
    n->give_up_on_ = true;
    uv_timer_start(&n->give_up_, [](uv_timer_t* t) {
      auto* self = static_cast<node*>(t->data);
      std::string left;
      std::size_t n_left = 0;
      self->sys_->registry().for_each([&](troupe::process& p) {
        if (++n_left > 5) return;
        auto* c = dynamic_cast<troupe::context*>(&p);
        left += (left.empty() ? "" : ", ") + p.id();
        if (c != nullptr && !c->props().kind.empty()) left += " (" + c->props().kind + ")";
      });
      if (n_left > 0)
        log(level::error, std::to_string(n_left) + " actors have not stopped: " + left +
                              (n_left > 5 ? ", ..." : ""));
      log(level::error, "actors still busy " + std::to_string(self->cfg_.drain_timeout_seconds + give_up_grace_s) +
                            " s after the stop began (node.drain_timeout is " +
                            std::to_string(self->cfg_.drain_timeout_seconds) +
                            " s): a handler does not return; exiting now");
      std::fflush(stderr);
      ::_exit(1);
    }, (n->cfg_.drain_timeout_seconds + give_up_grace_s) * 1000ull, 0);
    n->stopper_ = std::thread([n] {
      bool clean = n->sys_->shutdown(std::chrono::seconds(n->cfg_.drain_timeout_seconds));
      n->demo_.stop();  // no worker runs now: the ring's links can go
      log(clean ? level::info : level::warning,
          clean ? "all actors stopped" : "some actors had to be stopped by force");
      uv_async_send(&n->stopped_);
    });
  }

  static std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  void check_health() {
    loop_beat_ns_.store(now_ns(), std::memory_order_relaxed);
    overload_.check(*sys_, std::chrono::steady_clock::now());
    const unsigned threads = sys_->dispatcher().threads();
    const bool stalled =
        sys_->dispatcher().stalled_workers(std::chrono::seconds(cfg_.stall_timeout_seconds)) >= threads;
    if (stalled != workers_stalled_.exchange(stalled, std::memory_order_relaxed))
      log(stalled ? level::error : level::info,
          stalled ? "stalled: all " + std::to_string(threads) + " workers have been inside one handler "
                        "each for " + std::to_string(cfg_.stall_timeout_seconds) +
                        " s or more; nothing else runs. /healthz answers 503 and the watchdog is "
                        "no longer fed"
                  : "no longer stalled: the workers make progress again");
  }

  // Why the node is not healthy, or empty: for /healthz, from any thread.
  std::string unhealthy() const {
    const std::int64_t quiet = now_ns() - loop_beat_ns_.load(std::memory_order_relaxed);
    const unsigned seconds = cfg_stall_seconds_.load(std::memory_order_relaxed);
    const std::int64_t limit = std::int64_t{seconds} * 1'000'000'000;
    if (quiet > limit)
      return "the event loop has not run for " + std::to_string(quiet / 1'000'000'000) + " s";
    if (workers_stalled_.load(std::memory_order_relaxed))
      return "every worker has been inside one handler for " + std::to_string(seconds) +
             " s or more";
    return {};
  }

  void close_handles() {
    if (handles_open_) {
      for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&sigint_),
                             reinterpret_cast<uv_handle_t*>(&sigterm_),
                             reinterpret_cast<uv_handle_t*>(&sighup_),
                             reinterpret_cast<uv_handle_t*>(&stopped_)})
        uv_close(h, nullptr);
      if (watchdog_on_) uv_close(reinterpret_cast<uv_handle_t*>(&watchdog_), nullptr);
      if (health_on_) uv_close(reinterpret_cast<uv_handle_t*>(&health_), nullptr);
      if (report_on_) uv_close(reinterpret_cast<uv_handle_t*>(&report_), nullptr);
      if (give_up_on_) uv_close(reinterpret_cast<uv_handle_t*>(&give_up_), nullptr);
      handles_open_ = false;
    }
    loop_.stop();
  }

  std::string path_;
  troupe::node::config cfg_;
  troupe::node::state_dir state_;
  troupe::event_loop loop_;
  std::unique_ptr<troupe::remote::transport> transport_;
  // Actor failures in the log: the first of a kind at once, then at most
  // one line a second per kind, saying how many went unlogged meanwhile.
  struct failure_log {
    std::mutex mu;
    struct entry {
      std::chrono::steady_clock::time_point last{};
      std::uint64_t unlogged = 0;
    };
    std::map<std::string, entry> by_kind;  // one per kind: bounded by the plugins

    void report(const troupe::context& c, const std::string& reason) {
      const auto now = std::chrono::steady_clock::now();
      const troupe::props& p = c.props();
      std::uint64_t unlogged;
      {
        std::lock_guard lock(mu);
        entry& e = by_kind[p.kind];
        if (e.last != std::chrono::steady_clock::time_point{} && now - e.last < std::chrono::seconds(1)) {
          ++e.unlogged;
          return;
        }
        e.last = now;
        unlogged = std::exchange(e.unlogged, 0);
      }
      log(level::warning,
          "actor " + c.id() + " (kind " + (p.kind.empty() ? "(none)" : p.kind) +
              (p.plugin.empty() ? "" : ", plugin " + p.plugin) + ") failed: " + reason +
              "; its supervisor restarts or stops it" +
              (unlogged > 0 ? " (" + std::to_string(unlogged) +
                                  " more failures of this kind in the last second went unlogged)"
                            : ""));
    }
  };
  failure_log failures_;  // before sys_: its actors report here until it is gone
  troupe::node::memory_limit memory_;
  troupe::node::overload_log overload_;
  troupe::node::housekeeper housekeeper_;
  std::unique_ptr<troupe::actor_system> sys_;
  std::shared_ptr<troupe::plugin::host> plugins_;
  std::unique_ptr<troupe::node::kind_histograms> histograms_;
  std::unique_ptr<troupe::node::admin> admin_;
  std::unique_ptr<troupe::node::metrics> metrics_;
  std::vector<std::string> loaded_;
  std::string started_at_ = now_iso8601();
  demo demo_;
  std::uint64_t last_ = 0;
  std::chrono::steady_clock::time_point last_t_ = std::chrono::steady_clock::now();
  uv_signal_t sigint_{}, sigterm_{}, sighup_{};
  uv_async_t stopped_{};
  static constexpr unsigned give_up_grace_s = 2;
  uv_timer_t watchdog_{}, report_{}, give_up_{}, health_{};
  bool handles_open_ = false, watchdog_on_ = false, report_on_ = false, give_up_on_ = false,
       health_on_ = false;
  std::atomic<std::int64_t> loop_beat_ns_{0};
  std::atomic<bool> workers_stalled_{false};
  std::atomic<unsigned> cfg_stall_seconds_{10};  // cfg_.stall_timeout, for other threads
  bool stopping_ = false;
  std::thread stopper_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--version") == 0) {
      std::printf("troupe-node %s\n", TROUPE_VERSION);
      return 0;
    }
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      help();
      return 0;
    }
    if ((std::strcmp(argv[i], "--config") == 0 || std::strcmp(argv[i], "--check-config") == 0) &&
        i + 1 < argc) {
      check_only = std::strcmp(argv[i], "--check-config") == 0;
      config_path = argv[++i];
    } else {
      usage();
      return ex_usage;
    }
  }
  if (config_path.empty()) {
    usage();
    return ex_usage;
  }
  // Until the configuration is read: the defaults, so that its errors
  // reach the journal as errors.
  configure_log(troupe::node::config{});
  troupe::node::config cfg;
  if (!read_config(config_path, cfg)) return ex_config;
  if (check_only) {
    std::printf("%s: configuration is valid\n", config_path.c_str());
    return 0;
  }
  configure_log(cfg);
  troupe::node::install_crash_report();
  // A client or peer that hangs up must not end the node.
  std::signal(SIGPIPE, SIG_IGN);
  // Connections are bounded by the config, not by a soft limit of 1,024
  // descriptors: take what the hard limit allows.
  if (rlimit files{}; ::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  node n(config_path, std::move(cfg));
  return n.run();
}
