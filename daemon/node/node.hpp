#pragma once
// The node itself: the event loop, the state directory, the actor system,
// signals, health and the systemd protocol, around the modules of
// module.hpp. main.cpp keeps the command line; this is the composition.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <uv.h>

#include "actor/event_loop.hpp"
#include "node/config.hpp"
#include "node/dead_letter_log.hpp"
#include "node/module.hpp"
#include "node/overload.hpp"
#include "node/state_dir.hpp"

namespace troupe {
class actor_system;
class context;
}  // namespace troupe

namespace troupe::node {

// Reads `path` against the node's schema; logs every problem.
bool read_config(const std::string& path, config& out);
// Applies the log section (at start and on reload).
void configure_log(const config& c);

class node_core {
 public:
  explicit node_core(config cfg);
  ~node_core();
  node_core(const node_core&) = delete;
  node_core& operator=(const node_core&) = delete;

  // Runs until SIGTERM or SIGINT; the process's exit status.
  int run();

 private:
  class failure_log;
  int start();
  void stop_early();
  std::string status() const;
  std::uint64_t queue_budget(const config& c);
  void start_signals();
  void start_timers();
  void close_handles();      // and stops the loop
  void close_own_handles();  // signals and timers only
  void reload();
  void begin_stop(const char* signal_name);
  void stop_actors(const std::string& signal_name);
  void give_up();
  void check_health();
  std::string unhealthy() const;
  void decorate(const std::string& kind, struct props& p);
  void publish_node_info();

  config cfg_;
  state_dir state_;
  event_loop loop_;
  node_context ctx_;
  std::unique_ptr<failure_log> failures_;  // before sys_: its actors report here until it is gone
  std::unique_ptr<dead_letter_log> dead_letters_;  // the same
  memory_limit memory_;
  overload_log overload_;
  housekeeper housekeeper_;
  std::vector<std::unique_ptr<module>> modules_;  // in start order; destroyed after sys_
  std::unique_ptr<actor_system> sys_;
  std::size_t started_ = 0;  // modules started, for an orderly stop of a failed start
  std::string started_at_;
  uv_signal_t sigint_{}, sigterm_{}, sighup_{};
  uv_async_t stopped_{};
  uv_timer_t watchdog_{}, give_up_{}, health_{};
  bool handles_open_ = false, watchdog_on_ = false, give_up_on_ = false, health_on_ = false;
  std::atomic<std::int64_t> loop_beat_ns_{0};
  std::atomic<bool> workers_stalled_{false};
  std::atomic<unsigned> stall_seconds_{10};  // node.stall_timeout, for other threads
  std::thread stopper_;
};

}  // namespace troupe::node
