#pragma once
// The libuv loop of a node: it owns timers (and, in the node, sockets and
// signals). Other threads reach it through post() and the timer calls, which
// go through lock-free queues; uv_async_send is only the doorbell.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <uv.h>

#include "actor/block_pool.hpp"
#include "actor/mpsc_queue.hpp"

namespace troupe {

using steady_clock = std::chrono::steady_clock;

// A timer's callback, stored in place when it fits (a PID and a message
// do), so that arming a timer is one pool block and no heap allocation.
class timer_fn {
 public:
  timer_fn() noexcept = default;
  timer_fn(const timer_fn&) = delete;
  timer_fn& operator=(const timer_fn&) = delete;
  ~timer_fn() { reset(); }

  template <class F>
  void set(F&& f) {
    using D = std::decay_t<F>;
    reset();
    if constexpr (sizeof(D) <= sizeof(buf_) && alignof(D) <= alignof(std::max_align_t) &&
                  std::is_nothrow_move_constructible_v<D>) {
      new (buf_) D(std::forward<F>(f));
      static constexpr ops o{[](void* p) { return call(*static_cast<D*>(p)); },
                             [](void* p) noexcept { static_cast<D*>(p)->~D(); }};
      ops_ = &o;
    } else {
      *reinterpret_cast<D**>(buf_) = new D(std::forward<F>(f));
      static constexpr ops o{[](void* p) { return call(**static_cast<D**>(p)); },
                             [](void* p) noexcept { delete *static_cast<D**>(p); }};
      ops_ = &o;
    }
  }
  // True: run again (repeating timers).
  bool operator()() { return ops_->invoke(buf_); }
  void reset() noexcept {
    if (const ops* o = std::exchange(ops_, nullptr)) o->destroy(buf_);
  }
  explicit operator bool() const noexcept { return ops_ != nullptr; }

 private:
  struct ops {
    bool (*invoke)(void*);
    void (*destroy)(void*) noexcept;
  };
  template <class D>
  static bool call(D& f) {
    if constexpr (std::is_void_v<decltype(f())>) {
      f();
      return false;
    } else {
      return static_cast<bool>(f());
    }
  }
  const ops* ops_ = nullptr;
  alignas(std::max_align_t) unsigned char buf_[16];
};

enum : std::uint8_t {
  timer_armed = 0,
  timer_cancelled = 1,
  timer_fired = 2,   // a one-shot timer, done
  timer_firing = 3,  // a repeating timer whose callback runs now
};

struct timer_record : mpsc_node, pooled {
  std::atomic<std::uint8_t> state{timer_armed};
  std::atomic<std::uint16_t> refs{2};  // the loop and each handle
  std::int64_t deadline = 0;  // written before it reaches the loop, then by the loop only
  std::int64_t interval = 0;  // 0: one-shot
  timer_fn fn;

  void release() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
  // Whoever moves the state away from armed owns the callback: the loop
  // when it fires or drops the timer, the canceller otherwise. The callback
  // is destroyed at once, since it may own whatever owns the handle (a
  // future holding its own timeout).
  void drop() noexcept {
    std::uint8_t expected = timer_armed;
    if (state.compare_exchange_strong(expected, timer_cancelled, std::memory_order_acq_rel))
      fn.reset();
    release();
  }
};

// A pending timer. Cancel from any thread: a cancelled timer never fires
// afterwards (cancelling a repeating timer while it fires on the loop waits
// for that firing to end). Dropping the handle does not cancel.
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
  // cancelled yet; a repeating timer is stopped from firing again).
  bool cancel() noexcept;
  // Neither cancelled nor done firing.
  bool pending() const noexcept;
  // A second handle on the same timer (its owner keeps one to cancel it).
  timer_handle share() const noexcept;
  explicit operator bool() const noexcept { return r_ != nullptr; }

 private:
  timer_record* r_ = nullptr;
};

// A reusable wake-up of one consumer on the loop: ring() from any thread
// makes the loop call fn(arg) once, however many rings come before that
// call starts. A ring during the call brings another call. The doorbell must
// outlive the loop's last call of it.
struct doorbell : mpsc_node {
  void (*fn)(void*) = nullptr;
  void* arg = nullptr;
  std::atomic<bool> rung{false};
};

class event_loop {
 public:
  event_loop();
  ~event_loop();
  event_loop(const event_loop&) = delete;
  event_loop& operator=(const event_loop&) = delete;

  // Before the loop runs: after its last work, the loop keeps polling its
  // sockets and doorbells for `window` before it sleeps in the kernel, so
  // that what comes within the window is seen without a wake-up (tens of
  // microseconds on a virtual machine) at the price of a core kept busy
  // while traffic flows. Zero (the default): it sleeps at once.
  void busy_poll(std::chrono::microseconds window) noexcept { busy_poll_ns_ = window.count() * 1000; }
  // Runs the loop on a thread of its own until stop().
  void start_thread();
  // Runs the loop on the calling thread until stop().
  void run();
  // Any thread: closes every handle and makes run() return; joins the loop
  // thread if there is one.
  void stop();
  // After run() returned: releases the loop (uv_loop_close). Empty when it
  // closed; otherwise what its owners left open ("1 handle: tcp"), and the
  // loop is left as it is. The destructor does it when nobody did.
  std::string close();

  uv_loop_t* uv() noexcept { return &loop_; }
  bool on_loop_thread() const noexcept;

  // Any thread: runs `fn` on the loop thread, in order of posting.
  void post(std::function<void()> fn);

  // Any thread: see doorbell. One exchange, plus a push and a wake-up for
  // the ring that finds the bell quiet.
  void ring(doorbell& d) noexcept {
    if (d.rung.exchange(true, std::memory_order_acq_rel)) return;
    bells_.push(&d);
    uv_async_send(&async_);
  }

  // Any thread: runs `fn` on the loop thread after `delay`. Arming costs one
  // queue push; the loop is woken only if this timer is due before the
  // earliest one it already waits for, so short request timeouts that are
  // cancelled early never wake it.
  template <class F>
  timer_handle arm(std::chrono::nanoseconds delay, F&& fn) {
    auto* r = new timer_record;
    r->fn.set([f = std::forward<F>(fn)]() mutable { f(); });
    return enqueue(r, delay, std::chrono::nanoseconds(0));
  }
  // Any thread: runs `fn` (returning bool) after `initial`, then every
  // `interval` for as long as it returns true and nobody cancels it. A loop
  // that falls behind skips the missed firings rather than bursting through.
  template <class F>
  timer_handle arm_repeating(std::chrono::nanoseconds initial, std::chrono::nanoseconds interval,
                             F&& fn) {
    auto* r = new timer_record;
    r->fn.set(std::forward<F>(fn));
    return enqueue(r, initial, std::max(interval, std::chrono::nanoseconds(1)));
  }

  // Time spent polling with busy_poll set, in nanoseconds (any thread).
  std::int64_t polled_ns() const noexcept { return polled_ns_.load(std::memory_order_relaxed); }

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
  void sweep();
  timer_handle enqueue(timer_record* r, std::chrono::nanoseconds delay,
                       std::chrono::nanoseconds interval);
  void schedule(timer_record* r);
  void run_polling();

  // Deadlines sit beside the pointers so that heap operations do not chase them.
  struct heap_entry {
    std::int64_t deadline;
    timer_record* r;
  };

  uv_loop_t loop_{};
  uv_async_t async_{};
  uv_timer_t timer_{};
  mpsc_queue posts_;
  mpsc_queue bells_;
  mpsc_queue timers_in_;
  std::atomic<std::int64_t> next_wakeup_ns_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<std::size_t> live_timers_{0};
  std::vector<heap_entry> heap_;  // loop thread only
  std::size_t drained_ = 0;        // loop thread only: timers taken in since the last re-arm
  std::size_t swept_size_ = 0;     // loop thread only: heap size after the last sweep
  bool sweep_small_ = false;       // loop thread only: sweeping below sweep_min too (see sweep)
  std::int64_t last_sweep_ns_ = 0;
  std::int64_t busy_poll_ns_ = 0;  // set before the loop runs
  std::atomic<std::int64_t> polled_ns_{0};
  std::thread thread_;
  std::atomic<std::thread::id> loop_thread_id_{};
  bool closed_ = false;      // run() returned
  bool close_tried_ = false;  // close() was called
};

}  // namespace troupe
