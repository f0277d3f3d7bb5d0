#include "actor/dispatcher.hpp"

#include <pthread.h>

#include <algorithm>
#include <array>
#include <utility>

#include "actor/clock.hpp"
#include "actor/cpu.hpp"
#include "actor/futex.hpp"

namespace troupe {
namespace {

constexpr std::uint32_t ring_size = 256;
// Consecutive run-next hand-offs a worker makes before it lets queued work
// go first; a ping-ponging pair would otherwise starve the rest.
constexpr std::uint32_t max_next_streak = 64;
// Every this many looks for work, the shared queue goes first.
constexpr std::uint32_t global_every = 61;
// ... unless a flooded mailbox waits next (hint::keep) and some worker has
// taken from the shared queue within this long: that queue is served.
constexpr std::int64_t global_wait_limit_ns = 5'000'000;
// A parked worker wakes this often to look for stalled workers.
constexpr std::chrono::milliseconds park_timeout{100};

using steady = std::chrono::steady_clock;

}  // namespace

struct alignas(false_sharing_range) dispatcher::worker {
  // Read by thieves; head is also advanced by them.
  std::atomic<std::uint32_t> head{0};
  std::atomic<std::uint32_t> tail{0};
  std::atomic<schedulable*> run_next{nullptr};
  std::atomic<std::uint64_t> runs{0};
  std::array<std::atomic<schedulable*>, ring_size> ring{};

  alignas(false_sharing_range) std::atomic<std::uint32_t> park_word{0};
  std::atomic<std::uint64_t> parks{0};
  std::atomic<std::uint64_t> processed{0};  // written by the owner only
  // Owner-only state (written by a waker only while the owner is parked).
  bool spinning = false;
  std::uint32_t streak = 0;
  std::uint32_t until_global = global_every;  // find_work calls until the shared queue goes first
  bool next_kept = false;                     // run_next holds a mailbox scheduled with hint::keep
  std::uint64_t seen_global_pops = 0;         // global_pops_ when last looked at
  std::int64_t seen_global_pops_at = 0;       // steady ns of that look, or of the change seen
  std::uint64_t rng = 0;
  // What this worker saw of each other worker, to notice a stalled one.
  std::vector<std::uint64_t> seen_runs;
  std::vector<steady::time_point> seen_since;

  dispatcher* owner = nullptr;
  unsigned index = 0;
  std::thread thread;

  std::uint32_t next_random() noexcept {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return static_cast<std::uint32_t>(rng);
  }
  // seq_cst: one side of the park/notify handshake (see notify_work).
  bool ring_nonempty() const noexcept {
    return tail.load(std::memory_order_seq_cst) != head.load(std::memory_order_seq_cst);
  }
  schedulable* pop_ring() noexcept {
    for (;;) {
      std::uint32_t h = head.load(std::memory_order_acquire);
      std::uint32_t t = tail.load(std::memory_order_relaxed);
      if (h == t) return nullptr;
      schedulable* s = ring[h % ring_size].load(std::memory_order_relaxed);
      if (head.compare_exchange_weak(h, h + 1, std::memory_order_acq_rel,
                                     std::memory_order_relaxed))
        return s;
    }
  }
};

namespace {
thread_local dispatcher::worker* tls_worker = nullptr;
// A holder's state (see dispatcher::hold): the dispatcher it holds for,
// and the mailbox held.
thread_local dispatcher* tls_hold_for = nullptr;
thread_local schedulable* tls_held = nullptr;
// The held turn this thread runs now (see run_held); all null/0 elsewhere.
struct held_turn {
  dispatcher* owner = nullptr;    // whose turn it is
  schedulable* mailbox = nullptr;  // the mailbox running
  std::int64_t deadline = 0;       // steady ns: the turn ends by then
  bool yielded = false;            // it used its budget and is still ours
};
thread_local held_turn tls_turn;
// How long a mailbox is not held after `strikes` slow held messages in a
// row: once is likely the thread losing its core; a handler that is slow
// every time soon stays with the workers.
std::int64_t held_off_ns(const dispatcher_options& o, std::uint32_t strikes) noexcept {
  return std::chrono::nanoseconds(o.held_off).count() << (3 * std::min<std::uint32_t>(strikes - 1, 4));
}

// Work deferred to the end of the current actor's turn (see after_run).
struct deferred_call {
  void (*fn)(void*);
  void* arg;
};
constexpr std::size_t max_deferred = 32;
thread_local deferred_call tls_deferred[max_deferred];
thread_local std::size_t tls_deferred_count = 0;

void run_deferred() noexcept {
  // A deferred call may defer another: run until none are left.
  for (std::size_t i = 0; i < tls_deferred_count; ++i) tls_deferred[i].fn(tls_deferred[i].arg);
  tls_deferred_count = 0;
}
}

dispatcher::dispatcher(dispatcher_options opts) : opts_(std::move(opts)) {
  unsigned n = opts_.threads != 0 ? opts_.threads : std::thread::hardware_concurrency();
  n = std::max(1u, n);
  max_spinning_ = std::max(1u, n / 2);
  idle_list_.reserve(n);
  workers_.reserve(n);
  for (unsigned i = 0; i < n; ++i) {
    auto w = std::make_unique<worker>();
    w->owner = this;
    w->index = i;
    w->rng = 0x9E3779B97F4A7C15ull * (i + 1);
    w->seen_runs.assign(n, 0);
    w->seen_since.assign(n, steady::now());
    workers_.push_back(std::move(w));
  }
  for (auto& w : workers_) {
    worker* wp = w.get();
    wp->thread = std::thread([this, wp] { worker_main(*wp); });
    std::string name = opts_.thread_name.substr(0, 11);
    name.push_back('-');
    name.append(std::to_string(wp->index));
    pthread_setname_np(wp->thread.native_handle(), name.c_str());
  }
}

dispatcher::~dispatcher() { stop(); }

void dispatcher::stop() {
  if (stopping_.exchange(true)) {
    for (auto& w : workers_)
      if (w->thread.joinable()) w->thread.join();
    return;
  }
  {
    std::lock_guard lock(idle_mu_);
    for (worker* w : idle_list_) {
      w->park_word.store(0, std::memory_order_release);
      futex::wake(w->park_word);
    }
    idle_list_.clear();
  }
  for (auto& w : workers_)
    if (w->thread.joinable()) w->thread.join();
}

std::uint64_t dispatcher::processed() const noexcept {
  std::uint64_t n = 0;
  for (const auto& w : workers_) n += w->processed.load(std::memory_order_relaxed);
  return n + held_processed_.load(std::memory_order_relaxed);
}

bool dispatcher::on_worker() const noexcept {
  return (tls_worker != nullptr && tls_worker->owner == this) || tls_turn.owner == this;
}

std::uint64_t dispatcher::runs() const noexcept {
  std::uint64_t n = 0;
  for (auto& w : workers_) n += (w->runs.load(std::memory_order_relaxed) + 1) / 2;
  return n;
}

unsigned dispatcher::stalled_workers(std::chrono::nanoseconds threshold) {
  std::lock_guard lock(monitor_mu_);
  const auto now = std::chrono::steady_clock::now();
  monitor_.resize(workers_.size(), {~std::uint64_t{0}, now});
  unsigned stalled = 0;
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    const std::uint64_t r = workers_[i]->runs.load(std::memory_order_relaxed);
    auto& [seen, since] = monitor_[i];
    if (r != seen) {
      seen = r;
      since = now;
    } else if (r % 2 == 1 && now - since >= threshold) {
      ++stalled;
    }
  }
  return stalled;
}

std::uint64_t dispatcher::parks() const noexcept {
  std::uint64_t n = 0;
  for (auto& w : workers_) n += w->parks.load(std::memory_order_relaxed);
  return n;
}

void dispatcher::schedule(schedulable* s, hint h) noexcept {
  worker* w = tls_worker;
  if (tls_hold_for == this && tls_held == nullptr && !s->plugin_code_) {
    tls_held = s;  // runs when the hold ends
    return;
  }
  if (s == tls_turn.mailbox) {
    tls_turn.yielded = true;  // run_held decides where it goes on
    return;
  }
  if (w != nullptr && w->owner == this && h != hint::yield) {
    w->next_kept = h == hint::keep;
    // Only this worker fills its slot; a thief only empties it (steal).
    // So an empty slot stays empty until the store below, which spares the
    // atomic exchange in the common case (ping-pong: every message).
    schedulable* previous = w->run_next.load(std::memory_order_relaxed);
    if (previous == nullptr) {
      w->run_next.store(s, std::memory_order_release);
      return;  // this worker runs it next: nobody to wake
    }
    previous = w->run_next.exchange(s, std::memory_order_acq_rel);
    if (previous == nullptr) return;  // this worker runs it next: nobody to wake
    push_local(*w, previous);
  } else {
    // From outside the pool, or an actor that used up its turn: the shared
    // queue, behind work that has been waiting there (a yielding actor kept
    // on the local ring would starve it).
    push_global(s);
  }
  notify_work();
}

bool dispatcher::next_here(const schedulable* s) const noexcept {
  const worker* w = tls_worker;
  return w != nullptr && w->owner == this && w->run_next.load(std::memory_order_relaxed) == s;
}

bool dispatcher::hand_off_next(schedulable* s) noexcept {
  worker* w = tls_worker;
  if (!next_here(s)) return false;
  // Only when a worker is free to take it at once: with all of them busy it
  // would wait in the shared queue behind everything there, longer than in
  // the slot.
  if (idle_.load(std::memory_order_relaxed) == 0 && spinning_.load(std::memory_order_relaxed) == 0) return false;
  // Only this worker fills the slot: it holds `s` still, or a thief emptied it.
  if (w->run_next.exchange(nullptr, std::memory_order_acquire) == nullptr) return false;
  // With the hand-off slot taken, this worker's ring, where the free worker
  // steals it from: in the shared queue it would wait behind everything
  // there (the sender's peers, each with its own flood).
  if (!put_handoff(s)) push_local(*w, s);
  notify_work();
  return true;
}

bool dispatcher::put_handoff(schedulable* s) noexcept {
  // Published with a seq_cst exchange, as notify_work needs. The slot holds
  // one mailbox: the caller finds another place for a second one.
  schedulable* expected = nullptr;
  return handoff_.compare_exchange_strong(expected, s, std::memory_order_seq_cst);
}

schedulable* dispatcher::take_handoff() noexcept {
  if (handoff_.load(std::memory_order_relaxed) == nullptr) return nullptr;
  return handoff_.exchange(nullptr, std::memory_order_acquire);
}

void dispatcher::push_local(worker& w, schedulable* s) noexcept {
  for (;;) {
    std::uint32_t h = w.head.load(std::memory_order_acquire);
    std::uint32_t t = w.tail.load(std::memory_order_relaxed);
    if (t - h < ring_size) {
      w.ring[t % ring_size].store(s, std::memory_order_relaxed);
      w.tail.store(t + 1, std::memory_order_seq_cst);
      return;
    }
    // Full: move the older half to the shared queue, where any worker finds it.
    std::array<schedulable*, ring_size / 2> batch;
    for (std::uint32_t i = 0; i < batch.size(); ++i)
      batch[i] = w.ring[(h + i) % ring_size].load(std::memory_order_relaxed);
    if (!w.head.compare_exchange_strong(h, h + static_cast<std::uint32_t>(batch.size()),
                                        std::memory_order_acq_rel))
      continue;  // thieves took some: there is room now
    for (schedulable* b : batch) global_.push(b);
    global_.push(s);
    return;
  }
}

void dispatcher::push_global(schedulable* s) noexcept { global_.push(s); }

schedulable* dispatcher::pop_global() noexcept {
  if (!global_.nonempty_hint()) return nullptr;
  if (global_busy_.exchange(true, std::memory_order_acquire)) return nullptr;
  mpsc_node* n = global_.pop();
  if (n != nullptr)
    global_pops_.store(global_pops_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  global_busy_.store(false, std::memory_order_release);
  return static_cast<schedulable*>(n);
}

bool dispatcher::has_work() const noexcept {
  if (global_.nonempty_hint_seq_cst() || handoff_.load(std::memory_order_seq_cst) != nullptr) return true;
  for (auto& w : workers_)
    if (w->ring_nonempty()) return true;
  return false;
}

void dispatcher::notify_work() noexcept {
  // The work was published with a seq_cst store or exchange; a parker counts
  // itself idle with a seq_cst increment and then looks for work. Either it
  // sees the new work, or we see it idle here.
  if (spinning_.load(std::memory_order_seq_cst) == 0 &&
      idle_.load(std::memory_order_seq_cst) > 0)
    wake_one();
}

void dispatcher::wake_one() noexcept {
  worker* target = nullptr;
  {
    std::lock_guard lock(idle_mu_);
    if (idle_list_.empty()) return;
    target = idle_list_.back();
    idle_list_.pop_back();
    idle_.fetch_sub(1, std::memory_order_relaxed);
    // The woken worker starts out spinning, so that concurrent producers do
    // not wake a second one for the same work.
    target->spinning = true;
    spinning_.fetch_add(1, std::memory_order_relaxed);
  }
  target->park_word.store(0, std::memory_order_release);
  futex::wake(target->park_word);
}

schedulable* dispatcher::find_work(worker& w) noexcept {
  if (schedulable* s = take_handoff()) return s;
  if (--w.until_global == 0) [[unlikely]] {
    w.until_global = global_every;
    // Now and then the shared queue goes first, so it cannot starve. What
    // waited next here goes to the first worker free to take it: the
    // queued turn may be long (a sender's flood), and the one left waiting
    // may be its receiver. A flooded receiver waiting next stays, while
    // another worker serves the queue: its senders wait there, and each of
    // their turns adds to its backlog.
    if (schedulable* s = keep_before_global(w) ? nullptr : pop_global()) {
      if (w.run_next.load(std::memory_order_relaxed) != nullptr &&
          handoff_.load(std::memory_order_relaxed) == nullptr) {
        if (schedulable* next = w.run_next.exchange(nullptr, std::memory_order_acquire)) {
          if (!put_handoff(next)) push_local(w, next);
          notify_work();
        }
      }
      return s;
    }
  }
  if (w.run_next.load(std::memory_order_relaxed) != nullptr) {
    if (w.streak < max_next_streak ||
        !(w.ring_nonempty() || global_.nonempty_hint())) {
      if (schedulable* s = w.run_next.exchange(nullptr, std::memory_order_acquire)) {
        ++w.streak;
        return s;
      }
    } else if (schedulable* s = w.run_next.exchange(nullptr, std::memory_order_acquire)) {
      push_local(w, s);
    }
  }
  w.streak = 0;
  if (schedulable* s = w.pop_ring()) return s;
  return pop_global();
}

bool dispatcher::keep_before_global(worker& w) noexcept {
  if (!w.next_kept || w.run_next.load(std::memory_order_relaxed) == nullptr || threads() == 1)
    return false;
  const std::int64_t now = steady_ns();
  const std::uint64_t pops = global_pops_.load(std::memory_order_relaxed);
  if (pops != w.seen_global_pops) {
    w.seen_global_pops = pops;
    w.seen_global_pops_at = now;
    return true;
  }
  return now - w.seen_global_pops_at < global_wait_limit_ns;
}

schedulable* dispatcher::steal(worker& thief) noexcept {
  const unsigned n = threads();
  const unsigned start = thief.next_random() % n;
  for (unsigned k = 0; k < n; ++k) {
    worker& v = *workers_[(start + k) % n];
    if (&v == &thief) continue;
    std::uint32_t h = v.head.load(std::memory_order_acquire);
    std::uint32_t t = v.tail.load(std::memory_order_acquire);
    std::uint32_t count = t - h;
    count -= count / 2;
    if (count == 0 || count > ring_size / 2) {
      // Nothing in the ring. Take the run-next slot only from a worker that
      // has not finished a run for a while: it is blocked in a handler.
      std::uint64_t r = v.runs.load(std::memory_order_relaxed);
      auto now = steady::now();
      if (r != thief.seen_runs[v.index]) {
        thief.seen_runs[v.index] = r;
        thief.seen_since[v.index] = now;
      } else if (now - thief.seen_since[v.index] > opts_.stall_threshold &&
                 v.run_next.load(std::memory_order_relaxed) != nullptr) {
        if (schedulable* s = v.run_next.exchange(nullptr, std::memory_order_acq_rel))
          return s;
      }
      continue;
    }
    std::array<schedulable*, ring_size / 2> batch;
    for (std::uint32_t i = 0; i < count; ++i)
      batch[i] = v.ring[(h + i) % ring_size].load(std::memory_order_relaxed);
    if (!v.head.compare_exchange_strong(h, h + count, std::memory_order_acq_rel))
      continue;
    // The thief's own ring is empty here: only its owner pushes to it.
    std::uint32_t tt = thief.tail.load(std::memory_order_relaxed);
    for (std::uint32_t i = 1; i < count; ++i)
      thief.ring[(tt + i - 1) % ring_size].store(batch[i], std::memory_order_relaxed);
    thief.tail.store(tt + count - 1, std::memory_order_release);
    return batch[0];
  }
  return nullptr;
}

schedulable* dispatcher::spin(worker& w) noexcept {
  if (!w.spinning) {
    if (static_cast<unsigned>(spinning_.load(std::memory_order_relaxed)) >= max_spinning_)
      return nullptr;
    w.spinning = true;
    spinning_.fetch_add(1, std::memory_order_seq_cst);
  }
  const auto deadline = steady::now() + opts_.spin;
  for (unsigned i = 1; !stopping_.load(std::memory_order_relaxed); ++i) {
    if (schedulable* s = take_handoff()) return s;
    if (schedulable* s = pop_global()) return s;
    // Also notices a stalled worker's run-next slot.
    if (schedulable* s = steal(w)) return s;
    if (i % 16 == 0 && steady::now() > deadline) break;
    for (int k = 0; k < 8; ++k) cpu_relax();
  }
  w.spinning = false;
  spinning_.fetch_sub(1, std::memory_order_seq_cst);
  return nullptr;
}

bool dispatcher::leave_idle_list(worker& w) noexcept {
  std::lock_guard lock(idle_mu_);
  auto it = std::find(idle_list_.begin(), idle_list_.end(), &w);
  if (it == idle_list_.end()) return false;  // chosen by a waker already
  idle_list_.erase(it);
  idle_.fetch_sub(1, std::memory_order_relaxed);
  w.park_word.store(0, std::memory_order_relaxed);
  return true;
}

void dispatcher::park(worker& w) noexcept {
  {
    std::lock_guard lock(idle_mu_);
    w.park_word.store(1, std::memory_order_relaxed);
    idle_list_.push_back(&w);
    idle_.fetch_add(1, std::memory_order_seq_cst);
  }
  // Someone may already have chosen us: then take their wake-up below.
  if ((has_work() || stopping_.load(std::memory_order_relaxed)) && leave_idle_list(w)) return;
  w.parks.fetch_add(1, std::memory_order_relaxed);
  while (w.park_word.load(std::memory_order_acquire) == 1) {
    if (stopping_.load(std::memory_order_relaxed)) break;
    futex::wait(w.park_word, 1, park_timeout);
    // Timed out: look around for a stalled worker, as a spinner would.
    if (w.park_word.load(std::memory_order_acquire) == 1 && leave_idle_list(w)) return;
  }
}

dispatcher::hold::hold(dispatcher& d) noexcept : d_(&d) {
  // Holds do not nest: an inner one leaves the outer in charge.
  if (tls_hold_for != nullptr || tls_worker != nullptr || tls_turn.owner != nullptr) d_ = nullptr;
  else tls_hold_for = d_;
}

dispatcher::hold::~hold() {
  if (d_ == nullptr) return;
  tls_hold_for = nullptr;
  if (schedulable* s = std::exchange(tls_held, nullptr)) d_->run_held(s);
}

bool dispatcher::in_held_turn() noexcept { return tls_turn.owner != nullptr; }

bool dispatcher::held_turn_over(schedulable& s, std::int64_t& last) noexcept {
  const std::int64_t now = steady_ns();
  const dispatcher_options& o = tls_turn.owner->opts_;
  if (now - last > std::chrono::nanoseconds(o.held_slow).count()) {
    // A slow one long after the last hold-off ended starts the count again.
    if (s.held_strikes_ != 0 && now - s.held_off_until_ > 4 * held_off_ns(o, s.held_strikes_))
      s.held_strikes_ = 0;
    s.held_strikes_ = std::min<std::uint32_t>(s.held_strikes_ + 1, 5);
    s.held_off_until_ = now + held_off_ns(o, s.held_strikes_);
    return true;
  }
  last = now;
  return now >= tls_turn.deadline;
}

void dispatcher::run_held(schedulable* s) noexcept {
  const std::int64_t now = steady_ns();
  if (!opts_.run_held || stopping_.load(std::memory_order_relaxed) || now < s->held_off_until_) {
    push_global(s);
    notify_work();
    return;
  }
  tls_turn = {this, s, now + std::chrono::nanoseconds(opts_.held_turn).count(), false};
  for (;;) {
    tls_turn.yielded = false;
    if (const std::uint32_t n = s->run(); n != 0) held_processed_.fetch_add(n, std::memory_order_relaxed);
    // What the turn sent to other nodes leaves now, before the next turn.
    if (tls_deferred_count != 0) run_deferred();
    held_runs_.fetch_add(1, std::memory_order_relaxed);
    // Gave the mailbox up: it may be another thread's by now, or gone.
    if (!tls_turn.yielded) break;
    // Used its budget: still ours. Again, while the time lasts.
    const std::int64_t t = steady_ns();
    if (t >= tls_turn.deadline || t < s->held_off_until_ || stopping_.load(std::memory_order_relaxed)) {
      push_global(s);
      notify_work();
      break;
    }
  }
  tls_turn = {};
}

bool dispatcher::after_run(void (*fn)(void*), void* arg) noexcept {
  if ((tls_worker == nullptr && tls_turn.owner == nullptr) || tls_deferred_count == max_deferred)
    return false;
  tls_deferred[tls_deferred_count++] = {fn, arg};
  return true;
}

void dispatcher::worker_main(worker& w) {
  tls_worker = &w;
  if (opts_.on_thread_start) opts_.on_thread_start();
  while (!stopping_.load(std::memory_order_relaxed)) {
    schedulable* s = find_work(w);
    if (s == nullptr) s = spin(w);
    if (s == nullptr) {
      park(w);
      continue;
    }
    if (w.spinning) {
      w.spinning = false;
      // The last spinner to find work wakes another, which helps the pool
      // ramp up when work arrives in bulk.
      if (spinning_.fetch_sub(1, std::memory_order_seq_cst) == 1 && has_work())
        wake_one();
    }
    // Odd while a turn runs, even between: what stalled_workers reads.
    w.runs.store(w.runs.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    const std::uint32_t handled = s->run();
    w.runs.store(w.runs.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    // One writer: a plain add, no locked instruction.
    w.processed.store(w.processed.load(std::memory_order_relaxed) + handled, std::memory_order_relaxed);
    if (tls_deferred_count != 0) run_deferred();
  }
  if (w.spinning) {
    w.spinning = false;
    spinning_.fetch_sub(1, std::memory_order_relaxed);
  }
  tls_worker = nullptr;
}

}  // namespace troupe
