#pragma once
// The worker pool that runs mailboxes.
//
// Each worker owns a run-next slot and a 256-entry ring; a shared injection
// queue takes work from threads outside the pool. Scheduling from a worker
// puts the target in that worker's run-next slot, so an actor that messages
// another hands the core straight to it (ping-pong never crosses cores and
// never wakes anyone). The slot's previous occupant moves to the ring, where
// idle workers can steal half of it. Nothing on the schedule path takes a
// lock; parking and waking take one short lock, and a worker spins for a
// while before it parks because a futex wake-up costs ~20 µs on our machines.
//
// A handler that blocks holds its worker: the other workers keep running and
// steal what is queued on the blocked one, its run-next slot included once
// the worker has made no progress for `stall_threshold`. If every worker
// blocks, nothing runs until one returns; blocking work belongs off the pool.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "actor/mpsc_queue.hpp"

namespace troupe {

// Something the dispatcher can run: in practice an actor's mailbox.
class schedulable : public mpsc_node {
 public:
  // Returns how many user messages it handled (the workers' counts).
  virtual std::uint32_t run() noexcept = 0;

 protected:
  ~schedulable() = default;

 private:
  friend class dispatcher;
  // Held turns (see dispatcher::hold). Only the thread running it touches
  // these, and the mailbox's ownership orders successive owners.
  std::int64_t held_off_until_ = 0;  // steady ns: until then it goes to the workers
  std::uint32_t held_strikes_ = 0;   // held turns in a row that ran long

 protected:
  // Runs code from a plugin: never on the event loop thread (see hold).
  // Last, so that a derived class's small fields fill the padding after it.
  bool plugin_code_ = false;
};

struct dispatcher_options {
  unsigned threads = 0;  // 0: one per core
  std::chrono::microseconds spin{50};
  std::chrono::microseconds stall_threshold{500};
  // Whether a holder runs the mailbox it held (see hold); off, it goes to
  // the workers as any scheduling from outside does.
  bool run_held = true;
  // How long a held turn may go on handling messages; what is left then
  // goes to the workers.
  std::chrono::microseconds held_turn{200};
  // A held message that took longer than this was slow (or the thread lost
  // its core): its mailbox is not held for held_off, then 8 times that if
  // it happens again soon, up to 4096 times.
  std::chrono::microseconds held_slow{500};
  std::chrono::milliseconds held_off{10};
  std::string thread_name = "troupe-worker";
  // Run first on each worker thread (the node gives each an alternate
  // signal stack, so that a crash report survives a stack overflow).
  std::function<void()> on_thread_start{};
};

class dispatcher {
 public:
  enum class hint {
    next,   // the caller just messaged it: run it next on this worker
    yield,  // it used its turn: queue it behind everything waiting
    // It used its turn but is flooded (context::run): run it next on this
    // worker, also when the shared queue's periodic turn comes, as long as
    // another worker has taken from that queue lately (global_wait_limit).
    keep,
  };

  explicit dispatcher(dispatcher_options opts = {});
  ~dispatcher();
  dispatcher(const dispatcher&) = delete;
  dispatcher& operator=(const dispatcher&) = delete;

  // Any thread. `s` must not be scheduled already (mailboxes ensure that).
  void schedule(schedulable* s, hint h = hint::next) noexcept;

  // On a worker: if `s` waits in this worker's run-next slot and another
  // worker is free, hands it to that worker, which takes it before any
  // queued work, rather than after the caller's turn (a receiver flooded by
  // that turn). True if handed off.
  bool hand_off_next(schedulable* s) noexcept;
  // Whether `s` waits in the calling worker's run-next slot: it runs only
  // after the caller's turn.
  bool next_here(const schedulable* s) const noexcept;

  // Stops and joins every worker. Work still queued is not run.
  void stop();

  unsigned threads() const noexcept { return static_cast<unsigned>(workers_.size()); }
  // True on a worker thread of this dispatcher.
  bool on_worker() const noexcept;
  // Mailbox runs so far, summed over workers (read while running: approximate).
  std::uint64_t runs() const noexcept;
  // Parks so far, summed over workers.
  std::uint64_t parks() const noexcept;
  // How many workers have been inside one mailbox turn for at least
  // `threshold`, as seen over successive calls: a turn is noticed at the
  // first call that finds it, so call about once a second (one caller).
  unsigned stalled_workers(std::chrono::nanoseconds threshold);
  // User messages handled on the workers (counted once per mailbox run).
  std::uint64_t processed() const noexcept;

  // On a worker: runs fn(arg) once the actor running now ends its turn,
  // after everything that turn did (a send to another node is written
  // then, with whatever else the turn queued for it). False off the
  // workers, or when the worker holds too many already: do it another way.
  static bool after_run(void (*fn)(void*), void* arg) noexcept;

  // A thread outside the pool that delivers messages it read (the node's
  // event loop) holds the first mailbox it schedules while a hold lives.
  // A mailbox that runs plugin code is never held: it goes to the workers.
  // When the hold ends, that mailbox runs right there, its turn and what the
  // turn deferred (a reply to another node is written at once): no worker
  // is woken (~20 µs here) and no thread is crossed, and a burst read from a
  // socket is handled where it was read. A held turn goes on a mailbox
  // budget at a time, its sends written in between, until its time is up
  // (see held_turn_over); what is left goes to the workers. A mailbox whose held turn ran long anyway (one slow handler)
  // goes to the workers for a while, longer each time it does it again, so
  // that a slow actor does not keep the loop from its other work.
  class hold {
   public:
    explicit hold(dispatcher& d) noexcept;
    ~hold();
    hold(const hold&) = delete;
    hold& operator=(const hold&) = delete;

   private:
    dispatcher* d_;
  };
  // Turns run by holders so far.
  std::uint64_t held_runs() const noexcept { return held_runs_.load(std::memory_order_relaxed); }
  // Whether the calling thread runs a held turn now.
  static bool in_held_turn() noexcept;
  // In a held turn, after each message: true when the turn should end (its
  // time is up, or that message took long: `s` then goes to the workers
  // for a while). `last`: when the previous message ended (or the turn began).
  static bool held_turn_over(schedulable& s, std::int64_t& last) noexcept;

  struct worker;

 private:
  void run_held(schedulable* s) noexcept;

  void worker_main(worker& w);
  schedulable* find_work(worker& w) noexcept;
  schedulable* steal(worker& thief) noexcept;
  schedulable* pop_global() noexcept;
  // Whether `w`, whose run-next slot holds a kept mailbox, lets the shared
  // queue's periodic turn pass (see hint::keep).
  bool keep_before_global(worker& w) noexcept;
  void push_global(schedulable* s) noexcept;
  void push_local(worker& w, schedulable* s) noexcept;
  bool has_work() const noexcept;
  void notify_work() noexcept;
  void wake_one() noexcept;
  schedulable* spin(worker& w) noexcept;
  void park(worker& w) noexcept;
  // Takes `w` off the idle list; false if a waker took it off first.
  bool leave_idle_list(worker& w) noexcept;

  dispatcher_options opts_;
  std::vector<std::unique_ptr<worker>> workers_;

  alignas(128) mpsc_queue global_;
  std::atomic<bool> global_busy_{false};  // consumer token of global_
  // Mailboxes taken from global_ so far; written under its consumer token.
  std::atomic<std::uint64_t> global_pops_{0};
  // A mailbox handed off to a free worker (hand_off_next): the next worker
  // looking for work takes it before anything queued. At the back of the
  // shared queue it would wait for everything there: a flooded receiver
  // behind its own senders.
  alignas(128) std::atomic<schedulable*> handoff_{nullptr};
  bool put_handoff(schedulable* s) noexcept;  // false: the slot is taken
  schedulable* take_handoff() noexcept;
  alignas(128) std::atomic<int> spinning_{0};
  std::atomic<int> idle_{0};
  std::atomic<bool> stopping_{false};
  std::mutex idle_mu_;
  std::vector<worker*> idle_list_;
  unsigned max_spinning_ = 1;

  // What stalled_workers saw: each worker's run count and since when.
  std::mutex monitor_mu_;
  std::vector<std::pair<std::uint64_t, std::chrono::steady_clock::time_point>> monitor_;

  // Turns run by holders, and the messages they handled.
  alignas(128) std::atomic<std::uint64_t> held_runs_{0};
  std::atomic<std::uint64_t> held_processed_{0};
};

}  // namespace troupe
