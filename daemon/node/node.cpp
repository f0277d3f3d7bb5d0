#include "node/node.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <mutex>
#include <utility>

#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "actor/actor_system.hpp"
#include "node/crash.hpp"
#include "node/dead_letter_log.hpp"
#include "node/generation.hpp"
#include "node/log.hpp"
#include "plugin/plugin_host.hpp"

namespace troupe::node {

namespace {

// Tells systemd (when it is listening) how things stand.
void notify(const std::string& state) {
  if (std::getenv("NOTIFY_SOCKET") != nullptr) sd_notify(0, state.c_str());
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string now_iso8601() {
  char buf[32];
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Past node.drain_timeout and this grace, a stop that has not finished
// (a handler that never returns) ends the process.
constexpr unsigned give_up_grace_s = 2;

}  // namespace

bool read_config(const std::string& path, config& out) {
  std::vector<config_error> errors;
  if (load_config(path, node_schema(), out, errors)) return true;
  for (const auto& e : errors) log(level::error, e.to_string());
  return false;
}

void configure_log(const config& c) {
  const log_settings& l = c.get(log_section());
  log_options o;
  o.min = l.level;
  o.json = l.format == "json";
  o.syslog_prefix = stderr_is_journal();
  configure_log(o);
}

// Actor failures in the log: the first of a kind at once, then at most
// one line a second per kind, saying how many went unlogged meanwhile.
class node_core::failure_log {
 public:
  void report(const context& c, const std::string& reason) {
    const auto now = std::chrono::steady_clock::now();
    const props& p = c.props();
    std::uint64_t unlogged;
    {
      std::lock_guard lock(mu_);
      entry& e = by_kind_[p.kind];
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

 private:
  struct entry {
    std::chrono::steady_clock::time_point last{};
    std::uint64_t unlogged = 0;
  };
  std::mutex mu_;
  std::map<std::string, entry> by_kind_;  // one per kind: bounded by the plugins
};

node_core::node_core(config cfg)
    : cfg_(std::move(cfg)), ctx_(loop_, state_), failures_(std::make_unique<failure_log>()),
      dead_letters_(std::make_unique<dead_letter_log>()),
      started_at_(now_iso8601()) {
  ctx_.config_ = &cfg_;
  ctx_.health = [this] { return unhealthy(); };
  ctx_.decorate_kind = [this](const std::string& kind, props& p) { decorate(kind, p); };
  for (const module_def& m : modules()) modules_.push_back(m.make());
}

node_core::~node_core() = default;

int node_core::run() {
  if (const int status = start(); status != 0) return status;
  loop_.run();
  // The loop ran until every handle was closed; the system is stopped.
  if (stopper_.joinable()) stopper_.join();
  // Listeners close once no actor runs: their last answers were 503s.
  for (std::size_t i = modules_.size(); i-- > 0;) modules_[i]->close();
  sys_.reset();
  modules_.clear();
  // Whatever is still open was forgotten by its owner: say what it was.
  if (const std::string left = loop_.close(); !left.empty()) {
    log(level::error, "the event loop could not close, " + left + " left open");
    return ex_software;
  }
  log(level::info, "stopped");
  return 0;
}

int node_core::start() {
  const node_settings& n = cfg_.get(node_section());
  // First of all: a SIGHUP or SIGTERM that comes while the node starts (a
  // slow plugin, a reload from systemd) waits for the loop, rather than
  // ending the process by its default action.
  start_signals();
  // Before anything is bound: a second node on this folder stops here.
  if (std::string error; !state_.open(n.state_dir, error)) {
    log(level::error, error);
    stop_early();
    return 1;
  }
  log(level::info, state_.path().empty()
                       ? "no state directory: node.state_dir is not set"
                       : "state directory " + state_.path() + " (locked while the node runs)");
  {
    std::string error;
    const auto wall = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
    if (!next_generation(state_.path(), static_cast<std::uint64_t>(wall), ctx_.generation_, error)) {
      log(level::error, error);
      stop_early();
      return 1;
    }
  }
  system_config sc;
  sc.address = n.name;
  sc.generation = ctx_.generation_;
  for (const auto& m : modules_)
    if (!m->prepare(ctx_, sc)) {
      stop_early();
      return 1;
    }
  const dispatcher_settings& ds = cfg_.get(dispatcher_section());
  sc.dispatcher.threads = ds.threads;
  if (ds.busy_poll_us > 0) {
    const std::chrono::microseconds window(ds.busy_poll_us);
    sc.dispatcher.spin = std::max(sc.dispatcher.spin, window);
    loop_.busy_poll(window);
  }
  sc.dispatcher.on_thread_start = crash_stack_for_this_thread;
  sc.loop = &loop_;
  sc.on_failure = [f = failures_.get()](const context& c, const std::string& reason) { f->report(c, reason); };
  sc.on_dead_letter = [d = dead_letters_.get()](dead_letter_reason why, const process* target,
                                                 std::string_view missing, const envelope& e) {
    d->report(why, target, missing, e);
  };
  memory_ = find_memory_limit();
  sc.max_queued_bytes = queue_budget(cfg_);
  sys_ = std::make_unique<actor_system>(sc);
  ctx_.system_ = sys_.get();
  log(level::info, "node '" + n.name + "' of cluster '" + n.cluster + "' starting with " +
                       std::to_string(sys_->dispatcher().threads()) + " workers");
  uv_loop_configure(loop_.uv(), UV_METRICS_IDLE_TIME);
  stall_seconds_.store(n.stall_timeout_seconds, std::memory_order_relaxed);
  loop_beat_ns_.store(now_ns(), std::memory_order_relaxed);
  for (; started_ < modules_.size(); ++started_)
    if (const int status = modules_[started_]->start(ctx_); status != 0) {
      stop_early();
      return status;
    }
  dead_letters_->name_types_with(ctx_.find<plugin::host>());
  // A kind the config sets but no plugin has (a typo, a plugin not loaded)
  // would otherwise be silently ignored.
  for (const std::string& k : cfg_.kinds())
    if (k != config::all_kinds && !sys_->kinds().find(k))
      log(level::warning, "kinds." + k + ": no loaded plugin has a kind '" + k +
                              "', so its settings apply to nothing (troupectl kinds lists the kinds)");
  publish_node_info();
  start_timers();
  ctx_.phase_.store(node_context::phase::ready, std::memory_order_release);
  notify("READY=1\nSTATUS=" + status());
  log(level::info, "ready: " + status());
  return 0;
}

// A start that fails: what started stops, in reverse order, before the
// loop runs (a listener must close while its owner still exists).
void node_core::stop_early() {
  ctx_.phase_.store(node_context::phase::stopping, std::memory_order_release);
  close_own_handles();  // before the loop turns below: no signal is handled now
  for (std::size_t i = modules_.size(); i-- > 0;) modules_[i]->stop_taking_work();
  for (std::size_t i = modules_.size(); i-- > 0;) modules_[i]->loop_closing();
  if (sys_) sys_->shutdown(std::chrono::seconds(cfg_.get(node_section()).drain_timeout_seconds));
  for (std::size_t i = modules_.size(); i-- > 0;) modules_[i]->close();
  uv_run(loop_.uv(), UV_RUN_NOWAIT);
  sys_.reset();
  modules_.clear();
  uv_run(loop_.uv(), UV_RUN_NOWAIT);
}

std::string node_core::status() const {
  std::string s;
  for (const auto& m : modules_)
    if (std::string part = m->status(); !part.empty()) s += part + ", ";
  return s + std::to_string(sys_->actor_count()) + " actors";
}

// node.max_queued_bytes in bytes, said in the log.
std::uint64_t node_core::queue_budget(const config& c) {
  std::string said;
  const std::uint64_t bytes = resolve_queue_budget(c.get(node_section()).max_queued_bytes, memory_, said);
  log(bytes == 0 ? level::warning : level::info, "memory: " + said);
  return bytes;
}

void node_core::decorate(const std::string& kind, props& p) {
  for (const auto& m : modules_) m->decorate_kind(kind, p);
}

void node_core::publish_node_info() {
  const node_settings& n = cfg_.get(node_section());
  auto or_null = [](const std::string& s) { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); };
  nlohmann::json j = {{"name", n.name},
       {"cluster", n.cluster},
       {"version", TROUPE_VERSION},
       {"pid", static_cast<long>(::getpid())},
       {"config", cfg_.path},
       {"listen", or_null(n.listen)},
       {"advertise", or_null(n.advertise)},
       {"seeds", cfg_.get(seeds_section()).seeds},
       {"state_dir", or_null(state_.path())},
       {"generation", ctx_.generation()},
       {"log_level", to_string(cfg_.get(log_section()).level)},
       {"started_at", started_at_}};
  for (const auto& m : modules_) m->describe(j);
  std::lock_guard lock(ctx_.mu_);
  ctx_.node_info_ = std::move(j);
}

void node_core::start_signals() {
  uv_signal_init(loop_.uv(), &sigint_);
  uv_signal_init(loop_.uv(), &sigterm_);
  uv_signal_init(loop_.uv(), &sighup_);
  sigint_.data = sigterm_.data = sighup_.data = this;
  auto on_stop = [](uv_signal_t* h, int signum) {
    static_cast<node_core*>(h->data)->begin_stop(signum == SIGINT ? "SIGINT" : "SIGTERM");
  };
  uv_signal_start(&sigint_, on_stop, SIGINT);
  uv_signal_start(&sigterm_, on_stop, SIGTERM);
  uv_signal_start(&sighup_, [](uv_signal_t* h, int) { static_cast<node_core*>(h->data)->reload(); }, SIGHUP);
  uv_async_init(loop_.uv(), &stopped_, [](uv_async_t* h) { static_cast<node_core*>(h->data)->close_handles(); });
  stopped_.data = this;
  handles_open_ = true;
}

void node_core::start_timers() {
  // Progress, checked on the loop twice a second: the loop beats, and the
  // workers are looked at (stalled when every one of them has been inside
  // one handler for node.stall_timeout).
  loop_beat_ns_.store(now_ns(), std::memory_order_relaxed);
  uv_timer_init(loop_.uv(), &health_);
  health_.data = this;
  uv_timer_start(&health_, [](uv_timer_t* h) { static_cast<node_core*>(h->data)->check_health(); }, 500, 500);
  health_on_ = true;

  // The watchdog is fed from the loop thread, so that a stuck loop stops
  // feeding it and systemd notices; stalled workers stop it too.
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    uv_timer_init(loop_.uv(), &watchdog_);
    watchdog_.data = this;
    const std::uint64_t every_ms = std::max<std::uint64_t>(1, usec / 2000);
    uv_timer_start(&watchdog_, [](uv_timer_t* h) {
      if (!static_cast<node_core*>(h->data)->workers_stalled_.load(std::memory_order_relaxed))
        notify("WATCHDOG=1");
    }, every_ms, every_ms);
    watchdog_on_ = true;
    log(level::info, "watchdog: pinging every " + std::to_string(every_ms) + " ms");
  }
}

void node_core::close_handles() {
  for (std::size_t i = modules_.size(); i-- > 0;) modules_[i]->loop_closing();
  close_own_handles();
  loop_.stop();
}

void node_core::close_own_handles() {
  if (handles_open_) {
    for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&sigint_), reinterpret_cast<uv_handle_t*>(&sigterm_),
                           reinterpret_cast<uv_handle_t*>(&sighup_), reinterpret_cast<uv_handle_t*>(&stopped_)})
      uv_close(h, nullptr);
    if (health_on_) uv_close(reinterpret_cast<uv_handle_t*>(&health_), nullptr);
    if (watchdog_on_) uv_close(reinterpret_cast<uv_handle_t*>(&watchdog_), nullptr);
    if (give_up_on_) uv_close(reinterpret_cast<uv_handle_t*>(&give_up_), nullptr);
    handles_open_ = false;
  }
}

// SIGHUP: re-read the file; apply what can change live, name what cannot.
void node_core::reload() {
  if (ctx_.stopping()) return;
  notify("RELOADING=1\nSTATUS=reloading " + cfg_.path);
  log(level::info, "reloading " + cfg_.path);
  config next;
  if (!read_config(cfg_.path, next)) {
    log(level::error, "reload rejected: the running configuration stays");
  } else {
    configure_log(next);
    const log_settings& l = next.get(log_section());
    log(level::debug, std::string("log: level ") + to_string(l.level) + ", format " + l.format);
    for (const std::string& key : next.keep_running(cfg_, node_schema()))
      log(level::warning, "reload: " + key + " changes only at restart");
    const node_settings& before = cfg_.get(node_section());
    const node_settings& after = next.get(node_section());
    if (after.max_queued_bytes != before.max_queued_bytes) sys_->set_queue_budget(queue_budget(next));
    stall_seconds_.store(after.stall_timeout_seconds, std::memory_order_relaxed);
    for (const auto& m : modules_) m->reload(next);
    cfg_ = std::move(next);
    publish_node_info();
    log(level::info, "reloaded: " + status());
  }
  notify("READY=1\nSTATUS=" + status());
}

void node_core::begin_stop(const char* name) {
  if (ctx_.stopping()) {
    log(level::error, std::string("second ") + name + ": exiting now");
    std::fflush(stderr);
    ::_exit(1);
  }
  ctx_.phase_.store(node_context::phase::stopping, std::memory_order_release);
  notify("STOPPING=1\nSTATUS=stopping");
  // What this node is responsible for goes to others first, while
  // everything still runs; then the actors stop.
  auto pending = std::make_shared<std::atomic<std::size_t>>(modules_.size() + 1);
  const std::string signal = name;
  auto one_done = [this, pending, signal] {
    if (pending->fetch_sub(1, std::memory_order_acq_rel) == 1)
      loop_.post([this, signal] { stop_actors(signal); });
  };
  for (const auto& m : modules_) m->hand_over(one_done);
  one_done();
}

void node_core::stop_actors(const std::string& name) {
  // Peers and clients first: nothing more comes in while actors stop.
  for (std::size_t i = modules_.size(); i-- > 0;) modules_[i]->stop_taking_work();
  log(level::info, "received " + name + ": stopping every actor");
  // Actors stop on their workers while the loop goes on serving timers and
  // signals (a second one forces the exit). A handler that never returns
  // would hold the stop forever: past the drain timeout and a grace
  // period, the node gives up and exits.
  const unsigned drain = cfg_.get(node_section()).drain_timeout_seconds;
  uv_timer_init(loop_.uv(), &give_up_);
  give_up_.data = this;
  give_up_on_ = true;
  uv_timer_start(&give_up_, [](uv_timer_t* t) { static_cast<node_core*>(t->data)->give_up(); },
                 (drain + give_up_grace_s) * 1000ull, 0);
  stopper_ = std::thread([this, drain] {
    const bool clean = sys_->shutdown(std::chrono::seconds(drain));
    for (const auto& m : modules_) m->actors_stopped();
    log(clean ? level::info : level::warning,
        clean ? "all actors stopped" : "some actors had to be stopped by force");
    uv_async_send(&stopped_);
  });
}

void node_core::give_up() {
  std::string left;
  std::size_t n_left = 0;
  sys_->registry().for_each([&](process& p) {
    if (++n_left > 5) return;
    auto* c = dynamic_cast<context*>(&p);
    left += (left.empty() ? "" : ", ") + p.id();
    if (c != nullptr && !c->props().kind.empty()) left += " (" + c->props().kind + ")";
  });
  if (n_left > 0)
    log(level::error, std::to_string(n_left) + " actors have not stopped: " + left + (n_left > 5 ? ", ..." : ""));
  const unsigned drain = cfg_.get(node_section()).drain_timeout_seconds;
  log(level::error, "actors still busy " + std::to_string(drain + give_up_grace_s) +
                        " s after the stop began (node.drain_timeout is " + std::to_string(drain) +
                        " s): a handler does not return; exiting now");
  std::fflush(stderr);
  ::_exit(1);
}

void node_core::check_health() {
  loop_beat_ns_.store(now_ns(), std::memory_order_relaxed);
  overload_.check(*sys_, std::chrono::steady_clock::now());
  const unsigned threads = sys_->dispatcher().threads();
  const unsigned seconds = stall_seconds_.load(std::memory_order_relaxed);
  const bool stalled = sys_->dispatcher().stalled_workers(std::chrono::seconds(seconds)) >= threads;
  if (stalled != workers_stalled_.exchange(stalled, std::memory_order_relaxed))
    log(stalled ? level::error : level::info,
        stalled ? "stalled: all " + std::to_string(threads) + " workers have been inside one handler "
                      "each for " + std::to_string(seconds) +
                      " s or more; nothing else runs. /healthz answers 503 and the watchdog is "
                      "no longer fed"
                : "no longer stalled: the workers make progress again");
}

// Why the node is not healthy, or empty: for /healthz, from any thread.
std::string node_core::unhealthy() const {
  const std::int64_t quiet = now_ns() - loop_beat_ns_.load(std::memory_order_relaxed);
  const unsigned seconds = stall_seconds_.load(std::memory_order_relaxed);
  const std::int64_t limit = std::int64_t{seconds} * 1'000'000'000;
  if (quiet > limit) return "the event loop has not run for " + std::to_string(quiet / 1'000'000'000) + " s";
  if (workers_stalled_.load(std::memory_order_relaxed))
    return "every worker has been inside one handler for " + std::to_string(seconds) + " s or more";
  return {};
}

}  // namespace troupe::node
