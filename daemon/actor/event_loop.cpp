#include "actor/event_loop.hpp"
#include "actor/clock.hpp"
#include "actor/message.hpp"

#include <algorithm>
#include <cassert>
#include <limits>
#include <thread>

#include <poll.h>
#include <sched.h>

namespace troupe {

namespace {

struct post_node : mpsc_node {
  std::function<void()> fn;
};


constexpr std::int64_t never = std::numeric_limits<std::int64_t>::max();
constexpr std::size_t inbound_batch = 1024;  // a power of two

}  // namespace

namespace {
// The repeating timer whose callback the loop thread is running, so that a
// cancel from inside that callback does not wait for itself.
thread_local const timer_record* firing_now = nullptr;
}  // namespace

timer_handle& timer_handle::operator=(timer_handle&& o) noexcept {
  if (this != &o) {
    if (r_) r_->release();
    r_ = std::exchange(o.r_, nullptr);
  }
  return *this;
}

timer_handle::~timer_handle() {
  if (r_) r_->release();
}

timer_handle timer_handle::share() const noexcept {
  if (r_) r_->refs.fetch_add(1, std::memory_order_relaxed);
  return timer_handle(r_);
}

bool timer_handle::pending() const noexcept {
  if (!r_) return false;
  const std::uint8_t s = r_->state.load(std::memory_order_acquire);
  return s == timer_armed || s == timer_firing;
}

bool timer_handle::cancel() noexcept {
  if (!r_) return false;
  for (;;) {
    std::uint8_t s = r_->state.load(std::memory_order_acquire);
    if (s == timer_armed) {
      if (r_->state.compare_exchange_weak(s, timer_cancelled, std::memory_order_acq_rel)) {
        r_->fn.reset();
        return true;
      }
    } else if (s == timer_firing) {
      if (firing_now == r_) {
        // From inside its own callback: the loop drops the callback after it returns.
        if (r_->state.compare_exchange_weak(s, timer_cancelled, std::memory_order_acq_rel))
          return true;
      } else {
        // The loop runs it now; once that firing is over it cannot fire again.
        std::this_thread::yield();
      }
    } else {
      return false;
    }
  }
}

event_loop::event_loop() : next_wakeup_ns_(never) {
  int rc = uv_loop_init(&loop_);
  assert(rc == 0);
  rc = uv_async_init(&loop_, &async_, &event_loop::on_async);
  assert(rc == 0);
  rc = uv_timer_init(&loop_, &timer_);
  assert(rc == 0);
  (void)rc;
  async_.data = this;
  timer_.data = this;
}

event_loop::~event_loop() {
  stop();
  if (!closed_) {
    // Never run: close the handles here.
    close_all();
    uv_run(&loop_, UV_RUN_DEFAULT);
  }
  if (!close_tried_) {
    const std::string left = close();
    assert(left.empty() && "a libuv handle was left open");
    (void)left;
  }
  // Whatever was posted or armed after the loop stopped is dropped.
  while (mpsc_node* n = posts_.pop()) delete static_cast<post_node*>(n);
  while (mpsc_node* n = timers_in_.pop()) static_cast<timer_record*>(n)->drop();
  for (heap_entry& h : heap_) h.r->drop();
}

std::string event_loop::close() {
  close_tried_ = true;
  if (uv_loop_close(&loop_) == 0) return {};
  std::vector<std::string> kinds;
  uv_walk(&loop_, [](uv_handle_t* h, void* arg) {
    static_cast<std::vector<std::string>*>(arg)->push_back(uv_handle_type_name(uv_handle_get_type(h)));
  }, &kinds);
  std::string out = std::to_string(kinds.size()) + (kinds.size() == 1 ? " handle: " : " handles: ");
  for (std::size_t i = 0; i < kinds.size(); ++i) out += (i == 0 ? "" : ", ") + kinds[i];
  return out;
}

void event_loop::start_thread() {
  thread_ = std::thread([this] { run(); });
}

void event_loop::run() {
  loop_thread_id_.store(std::this_thread::get_id(), std::memory_order_release);
  // Work posted before the loop ran must not wait for a doorbell.
  uv_async_send(&async_);
  if (busy_poll_ns_ > 0) run_polling();
  else uv_run(&loop_, UV_RUN_DEFAULT);
  closed_ = true;
}

void event_loop::run_polling() {
  // libuv's epoll descriptor is readable when any of the loop's sockets or
  // doorbells is: polling it without a timeout looks at all of them in one
  // system call, and leaves the events to the uv_run that handles them.
  pollfd ready{uv_backend_fd(&loop_), POLLIN, 0};
  for (;;) {
    if (uv_run(&loop_, UV_RUN_NOWAIT) == 0) return;
    // Not past the loop's next timer, which uv_run(ONCE) would sleep for.
    std::int64_t window = busy_poll_ns_;
    if (const int timeout_ms = uv_backend_timeout(&loop_); timeout_ms >= 0)
      window = std::min<std::int64_t>(window, std::int64_t{timeout_ms} * 1'000'000);
    const std::int64_t from = steady_ns(), until = from + window;
    bool seen = false;
    std::int64_t now = from;
    for (unsigned i = 1; !seen && now < until; ++i) {
      seen = ::poll(&ready, 1, 0) > 0;
      if (seen) break;
      if (i % 16 == 0) {
        // libuv hands epoll the sockets that callbacks began to watch
        // (a read started, a write waiting for room) only when it polls:
        // let it, now and then, rather than miss them for the window.
        if (uv_run(&loop_, UV_RUN_NOWAIT) == 0) return;
      } else {
        // A worker this loop just gave work to may be waiting for this core.
        sched_yield();
      }
      now = steady_ns();
    }
    polled_ns_.fetch_add(now - from, std::memory_order_relaxed);
    if (seen) continue;
    // libuv times its sleep from the loop's clock, which the polling left behind.
    uv_update_time(&loop_);
    if (uv_run(&loop_, UV_RUN_ONCE) == 0) return;
  }
}

void event_loop::stop() {
  if (!stop_requested_.exchange(true)) uv_async_send(&async_);
  if (thread_.joinable() && std::this_thread::get_id() != thread_.get_id()) thread_.join();
}

bool event_loop::on_loop_thread() const noexcept {
  return loop_thread_id_.load(std::memory_order_acquire) == std::this_thread::get_id();
}

std::size_t event_loop::pending_timers() const noexcept {
  return live_timers_.load(std::memory_order_relaxed);
}

void event_loop::post(std::function<void()> fn) {
  auto* n = new post_node;
  n->fn = std::move(fn);
  posts_.push(n);
  uv_async_send(&async_);  // coalesces while a wake-up is pending
}

timer_handle event_loop::enqueue(timer_record* r, std::chrono::nanoseconds delay,
                                 std::chrono::nanoseconds interval) {
  const std::int64_t deadline = steady_ns() + std::max<std::int64_t>(0, delay.count());
  r->deadline = deadline;
  r->interval = interval.count();
  // Every 1024th timer rings even when it is not due early: timers due
  // after the loop's next wake-up would otherwise wait in the inbound queue
  // until then, cancelled or not, however many pile up.
  const bool batch_full =
      (live_timers_.fetch_add(1, std::memory_order_relaxed) & (inbound_batch - 1)) ==
      inbound_batch - 1;
  // Once pushed, the record is the loop's: it may fire and move its
  // deadline before the comparison below, which reads the local copy.
  timers_in_.push(r);  // seq_cst: ordered before the load below
  if (batch_full || deadline < next_wakeup_ns_.load(std::memory_order_seq_cst))
    uv_async_send(&async_);
  return timer_handle(r);
}

void event_loop::on_async(uv_async_t* h) {
  auto* self = static_cast<event_loop*>(h->data);
  self->drain_posts();
  if (self->stop_requested_.load()) {
    self->close_all();
    return;
  }
  self->rearm();
}

void event_loop::on_timer(uv_timer_t* h) {
  auto* self = static_cast<event_loop*>(h->data);
  self->fire_due();
  self->rearm();
}

void event_loop::drain_posts() {
  while (mpsc_node* n = posts_.pop()) {
    auto* p = static_cast<post_node*>(n);
    p->fn();
    delete p;
  }
  while (mpsc_node* n = bells_.pop()) {
    auto* d = static_cast<doorbell*>(n);
    d->rung.store(false, std::memory_order_release);
    d->fn(d->arg);
  }
}

namespace {
constexpr auto later = [](const auto& a, const auto& b) noexcept { return a.deadline > b.deadline; };
}  // namespace

void event_loop::schedule(timer_record* r) {
  heap_.push_back(heap_entry{r->deadline, r});
  std::push_heap(heap_.begin(), heap_.end(), later);
}

void event_loop::drain_timers() {
  while (mpsc_node* n = timers_in_.pop()) {
    auto* r = static_cast<timer_record*>(n);
    ++drained_;
    if (r->state.load(std::memory_order_acquire) != timer_armed) {
      // Cancelled before the loop saw it: the common fate of request timeouts.
      live_timers_.fetch_sub(1, std::memory_order_relaxed);
      r->drop();
      continue;
    }
    schedule(r);
  }
}

namespace {
// While timers keep being armed and cancelled, the loop looks at them this
// often even with nothing due, so that arming does not have to wake it.
constexpr std::int64_t housekeeping_ns = 10'000'000;
// Cancelled timers are swept from the heap when it holds at least this many
// timers, at least this often; and once it has, from then on at that pace
// until it is empty, so that a sweep leaving fewer (some cancelled later)
// does not leave them until their deadline.
constexpr std::size_t sweep_min = 1024;
constexpr std::int64_t sweep_period_ns = 1'000'000'000;
constexpr std::int64_t sweep_slack_ns = 5'000'000;
}  // namespace

// Cancelled timers wait in the heap until they reach its top. When they
// could pile up (the heap doubled, or a second went by), drop them all in
// one pass, so that memory follows the live timers and not the cancelled ones.
void event_loop::sweep() {
  const std::int64_t now = steady_ns();
  if (heap_.size() >= sweep_min) sweep_small_ = true;
  if (heap_.empty()) sweep_small_ = false;
  if (heap_.size() < sweep_min && !sweep_small_) return;
  // libuv keeps loop time in whole milliseconds and may wake us a little
  // before the period is over: allow for it, or the sweep keeps slipping.
  if (heap_.size() < 2 * swept_size_ && now - last_sweep_ns_ < sweep_period_ns - sweep_slack_ns)
    return;
  auto live = std::remove_if(heap_.begin(), heap_.end(), [this](const heap_entry& h) {
    if (h.r->state.load(std::memory_order_acquire) == timer_armed) return false;
    live_timers_.fetch_sub(1, std::memory_order_relaxed);
    h.r->drop();
    return true;
  });
  heap_.erase(live, heap_.end());
  std::make_heap(heap_.begin(), heap_.end(), later);
  if (heap_.capacity() > 4 * heap_.size() + 1024) heap_.shrink_to_fit();
  swept_size_ = heap_.size();
  last_sweep_ns_ = now;
}


void event_loop::rearm() {
  std::int64_t earliest = never;
  bool took_in = false;
  for (;;) {
    drain_timers();
    sweep();
    while (!heap_.empty() &&
           heap_.front().r->state.load(std::memory_order_acquire) != timer_armed) {
      std::pop_heap(heap_.begin(), heap_.end(), later);
      heap_.back().r->drop();
      heap_.pop_back();
      live_timers_.fetch_sub(1, std::memory_order_relaxed);
    }
    earliest = heap_.empty() ? never : heap_.front().deadline;
    // Sticky across rounds: a round that drains nothing must not forget
    // the housekeeping an earlier round asked for.
    took_in = took_in || drained_ != 0;
    if (took_in) earliest = std::min(earliest, steady_ns() + housekeeping_ns);
    // Many timers waiting: look once a second for cancelled ones to sweep.
    if (heap_.size() >= sweep_min || (sweep_small_ && !heap_.empty())) earliest = std::min(earliest, steady_ns() + sweep_period_ns);
    drained_ = 0;
    next_wakeup_ns_.store(earliest, std::memory_order_seq_cst);
    // A timer armed before the store above but not yet drained would be
    // missed by its producer's check; look once more.
    if (!timers_in_.maybe_nonempty()) break;
  }
  if (earliest == never) {
    uv_timer_stop(&timer_);
    return;
  }
  std::int64_t wait_ns = std::max<std::int64_t>(0, earliest - steady_ns());
  // libuv timers count whole milliseconds: round up so we never wake early.
  std::uint64_t wait_ms = static_cast<std::uint64_t>((wait_ns + 999'999) / 1'000'000);
  uv_update_time(&loop_);
  uv_timer_start(&timer_, &event_loop::on_timer, wait_ms, 0);
}

void event_loop::fire_due() {
  const std::int64_t now = steady_ns();
  while (!heap_.empty() && heap_.front().deadline <= now) {
    std::pop_heap(heap_.begin(), heap_.end(), later);
    timer_record* r = heap_.back().r;
    heap_.pop_back();
    std::uint8_t expected = timer_armed;
    if (r->interval == 0) {
      live_timers_.fetch_sub(1, std::memory_order_relaxed);
      if (r->state.compare_exchange_strong(expected, timer_fired, std::memory_order_acq_rel)) {
        try {
          r->fn();
        } catch (...) {
          // Thrown into libuv, it would end the process: dropped, as for
          // repeating timers.
        }
        r->fn.reset();
      }
      r->release();
      continue;
    }
    if (!r->state.compare_exchange_strong(expected, timer_firing, std::memory_order_acq_rel)) {
      live_timers_.fetch_sub(1, std::memory_order_relaxed);
      r->release();
      continue;
    }
    firing_now = r;
    bool again = false;
    try {
      again = r->fn();
    } catch (...) {
      // A callback that throws is not run again.
    }
    firing_now = nullptr;
    expected = timer_firing;
    if (again &&
        r->state.compare_exchange_strong(expected, timer_armed, std::memory_order_acq_rel)) {
      r->deadline += r->interval;
      if (r->deadline <= now) r->deadline = now + r->interval;
      schedule(r);
      continue;
    }
    // Cancelled while it ran, or done: nobody else touches the callback now.
    expected = timer_firing;
    r->state.compare_exchange_strong(expected, timer_fired, std::memory_order_acq_rel);
    r->fn.reset();
    live_timers_.fetch_sub(1, std::memory_order_relaxed);
    r->release();
  }
}

void event_loop::close_all() {
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&async_))) return;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  // Other handles on this loop (added by the node) are closed by their owners
  // before stop(); closing them here would break their owners' invariants.
}

}  // namespace troupe
