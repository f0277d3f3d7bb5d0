#pragma once
// The libuv loop of a node: it owns timers (and, in the node, sockets and
// signals). Other threads reach it through post() and the timer calls, which
// go through lock-free queues; uv_async_send is only the doorbell.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include <uv.h>

#include "actor/mpsc_queue.hpp"

namespace troupe {

using steady_clock = std::chrono::steady_clock;

struct timer_record;

// A pending timer. Cancel from any thread: a cancelled timer never fires
// afterwards. Dropping the handle does not cancel.
class timer_handle {
 public:
  timer_handle() noexcept = default;
  explicit timer_handle(timer_record* r) noexcept : r_(r) {}
  timer_handle(const timer_handle&) = delete;
  timer_handle& operator=(const timer_handle&) = delete;
  timer_handle(timer_handle&& o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
  timer_handle& operator=(timer_handle&& o) noexcept;
  ~timer_handle();

  // True if this call stopped it from firing (it had neither fired nor been
  // cancelled yet).
  bool cancel() noexcept;
  explicit operator bool() const noexcept { return r_ != nullptr; }

 private:
  timer_record* r_ = nullptr;
};

class event_loop {
 public:
  event_loop();
  ~event_loop();
  event_loop(const event_loop&) = delete;
  event_loop& operator=(const event_loop&) = delete;

  // Runs the loop on a thread of its own until stop().
  void start_thread();
  // Runs the loop on the calling thread until stop().
  void run();
  // Any thread: closes every handle and makes run() return; joins the loop
  // thread if there is one.
  void stop();

  uv_loop_t* uv() noexcept { return &loop_; }
  bool on_loop_thread() const noexcept;

  // Any thread: runs `fn` on the loop thread, in order of posting.
  void post(std::function<void()> fn);

  // Any thread: runs `fn` on the loop thread after `delay`. Arming costs one
  // queue push; the loop is woken only if this timer is due before the
  // earliest one it already waits for, so short request timeouts that are
  // cancelled early never wake it.
  timer_handle arm(std::chrono::nanoseconds delay, std::function<void()> fn);

  // Timers waiting on the loop (approximate).
  std::size_t pending_timers() const noexcept;

 private:
  static void on_async(uv_async_t* h);
  static void on_timer(uv_timer_t* h);
  void drain_posts();
  void drain_timers();
  void rearm();
  void fire_due();
  void close_all();

  uv_loop_t loop_{};
  uv_async_t async_{};
  uv_timer_t timer_{};
  mpsc_queue posts_;
  mpsc_queue timers_in_;
  std::atomic<std::int64_t> next_wakeup_ns_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<std::size_t> live_timers_{0};
  std::vector<timer_record*> heap_;  // loop thread only
  std::size_t drained_ = 0;           // loop thread only: timers taken in since the last re-arm
  std::thread thread_;
  std::atomic<std::thread::id> loop_thread_id_{};
  bool closed_ = false;
};

}  // namespace troupe
