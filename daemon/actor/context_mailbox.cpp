// The actor's mailbox: its queues, what a send does (bounds, budget,
// back-pressure figures), and a turn on a worker (run).
#include "actor/context.hpp"

#include <algorithm>
#include <thread>

#include "actor/actor_system.hpp"
#include "actor/context_internal.hpp"
#include "actor/block_pool.hpp"
#include "actor/clock.hpp"
#include "actor/cpu.hpp"
#include "actor/router.hpp"

namespace troupe {

using cell::poison_type;
using cell::wake_token;

namespace {

// How long a worker thread waits for room in a full back-pressure mailbox
// before it drops the message instead of risking a deadlock with the
// consumer it would be waiting for.
constexpr std::chrono::milliseconds worker_block_limit{100};

// Set by no_waiting_for_room on threads that must not wait for room.
thread_local bool tls_never_wait = false;

// ---- queued bytes (see queued_message_bytes) ----

std::atomic<std::int64_t> queued_total{0};
// A thread's count starts far out of range, so that its first change takes
// the slow path, which arms the flusher that hands the count over when the
// thread ends. Constant-initialised and trivially destructible: reaching it
// costs no guard.
constexpr std::int64_t meter_unarmed = std::int64_t{1} << 60;
thread_local std::int64_t queued_here = -meter_unarmed;
struct meter_flusher {
  bool armed = false;
  ~meter_flusher() {
    queued_total.fetch_add(queued_here, std::memory_order_relaxed);
    queued_here = 0;
  }
};
thread_local meter_flusher meter_flush_at_exit;

[[gnu::noinline]] void meter_settle() noexcept {
  std::int64_t v = queued_here;
  if (v <= -meter_unarmed / 2) {
    meter_flush_at_exit.armed = true;
    v += meter_unarmed;
  }
  if (v >= queued_bytes_step || v <= -queued_bytes_step) {
    queued_total.fetch_add(v, std::memory_order_relaxed);
    v = 0;
  }
  queued_here = v;
}

inline void meter_add(std::int64_t bytes) noexcept {
  const std::int64_t v = queued_here + bytes;
  queued_here = v;
  // |v| >= step, in one comparison.
  if (static_cast<std::uint64_t>(v + queued_bytes_step - 1) >= 2 * queued_bytes_step - 1) [[unlikely]]
    meter_settle();
}

// What a queued message holds: its block (a shared payload is its original's).
inline std::int64_t queued_size(const envelope* e) noexcept {
  return static_cast<std::int64_t>(block_pool::block_bytes(e->size_class, sizeof(envelope) + e->size));
}

// The owner's next message from the queue, or null; wake tokens are
// skipped (they only make the mailbox runnable). The queue keeps it as its
// head, and releases it on the next pop.
[[gnu::always_inline]] inline troupe::envelope* pop_message(mailbox_queue& q) noexcept {
  for (;;) {
    mpsc_node* retired = nullptr;
    mpsc_node* n = q.pop(retired);
    if (retired != nullptr) static_cast<troupe::envelope*>(retired)->release();
    if (n == nullptr) return nullptr;
    // The message after this one was written on another core, most likely:
    // start fetching it now, while this one is handled. A long backlog
    // (many senders, one receiver) is otherwise a cache miss per message.
    if (mpsc_node* after = n->next.load(std::memory_order_relaxed)) __builtin_prefetch(after);
    auto* e = static_cast<troupe::envelope*>(n);
    // Further ahead, where the sender left a pointer (see send_batch):
    // its header and the first line of its payload.
    if (const troupe::envelope* later = e->ahead(); later != nullptr) {
      __builtin_prefetch(later);
      __builtin_prefetch(reinterpret_cast<const char*>(later) + 64);
    }
    if (e->type == wake_token) continue;
    meter_add(-queued_size(e));
    return e;
  }
}

}  // namespace

std::int64_t queued_message_bytes() noexcept {
  return queued_total.load(std::memory_order_relaxed);
}

context::context(actor_system& sys, props_ptr p, troupe::pid parent, std::uint64_t seq,
                 std::unique_ptr<std::string> name, std::unique_ptr<std::string> identity)
    : process(sys),
      top_level_(!parent),
      seq_(seq),
      props_(std::move(p)),
      parent_(std::move(parent)) {
  if (name || identity) {
    labels_ = std::make_unique<labels>();
    if (name) labels_->name = std::move(*name);
    if (identity) labels_->identity = std::move(*identity);
  }
  plugin_code_ = !props_->plugin.empty() && !props_->on_event_loop;
  const mailbox_options& mb = props_->mailbox;
  if (mb.kind == mailbox_kind::bounded_drop_newest) {
    capacity_ = std::max<std::uint32_t>(1, mb.capacity);
  } else if (mb.kind != mailbox_kind::unbounded) {
    bounded_ = new bounded_queue;
    bounded_->capacity = std::max<std::uint32_t>(1, mb.capacity);
    bounded_->kind = mb.kind;
  }
  if (props_->router) router_ = new router_state(props_->router);
}

context::~context() {
  // Nothing here may touch the system: the last PID can outlive it.
  while (pop_message(user_q_) != nullptr) {
  }
  if (mpsc_node* head = user_q_.take_head()) static_cast<troupe::envelope*>(head)->release();
  for (system_message* m = sys_q_.take_all(); m != nullptr;) {
    system_message* next = m->next_system;
    delete m;
    m = next;
  }
  if (bounded_) {
    for (troupe::envelope* e : bounded_->q) {
      meter_add(-queued_size(e));
      e->release();
    }
    delete bounded_;
  }
  delete router_;
  if (extras_) {
    for (troupe::envelope* e : extras_->stash) e->release();
    for (troupe::envelope* e : extras_->replay) e->release();
    delete extras_;
  }
}

std::size_t context::mailbox_depth() const {
  // A bounded mailbox keeps its messages in its deque; its queue carries
  // wake tokens only.
  if (bounded_ == nullptr) return user_q_.depth();
  return bounded_->size.load(std::memory_order_relaxed);
}

// ---------------------------------------------------------------- mailbox

namespace {
// The messages an actor's handler sent in a row to one mailbox after the
// first, not yet pushed: the handler's end pushes them (run, and
// running_mark for the other ways a turn ends), as does a message to any
// other mailbox or to a future (a reply), `most` of them, or a wait
// (flush_sends). Only this thread touches it; `target` is compared, and
// dereferenced only while it holds messages (and a reference).
struct send_batch {
  static constexpr std::uint32_t most = 256;
  // Each envelope of a batch points to the one `lead` places after it
  // (envelope::ahead): the receiver fetches that one while it handles
  // this one, `lead` messages ahead instead of one.
  static constexpr std::uint32_t lead = 8;
  context* target = nullptr;
  troupe::envelope* recent[lead] = {};  // the batch's last `lead` envelopes
  troupe::envelope* first = nullptr;
  troupe::envelope* last = nullptr;
  std::uint32_t count = 0;
};
thread_local send_batch tls_sends;
// The actor whose turn this thread runs (context::run), if any.
thread_local const context* tls_running = nullptr;

// flush_sends, with its common case (nothing kept back) inline: it runs
// after every handler and before most sends.
inline void flush_kept() noexcept {
  send_batch& b = tls_sends;
  if (b.count != 0) context::flush_sends();
  else b.target = nullptr;
}
}  // namespace

void context::flush_sends() noexcept {
  send_batch& b = tls_sends;
  context* t = b.target;
  b.target = nullptr;
  if (b.count == 0) return;
  troupe::envelope* first = b.first;
  troupe::envelope* last = b.last;
  const std::uint32_t n = b.count;
  b.count = 0;
  if (t->user_q_.push_chain(first, last, n)) t->own();
  t->release();
}

void context::send_user(troupe::envelope* e) noexcept {
  // A router places the message on the sender's thread; only what is for
  // the router itself reaches its mailbox.
  if (router_ != nullptr && !dead_.load(std::memory_order_acquire) &&
      router_->route(system(), e))
    return;
  if (dead_.load(std::memory_order_acquire)) {
    system().dead_letter(e, this, dead_letter_reason::stopped);
    return;
  }
  // A poison pill always gets in: it is what relieves a full mailbox.
  if (const std::uint64_t budget = system().queue_budget();
      budget != 0 &&
      queued_total.load(std::memory_order_relaxed) >= static_cast<std::int64_t>(budget) &&
      e->type != poison_type) {
    system().dead_letter(e, this, dead_letter_reason::over_budget);
    return;
  }
  if (bounded_ != nullptr || capacity_ != 0) [[unlikely]] {
    send_limited(e);
    return;
  }
  meter_add(queued_size(e));  // before the push: the consumer may free it
  // In an actor's handler, a second message in a row to the same mailbox
  // waits for the handler's next ones (see tls_sends): the sender pushes
  // them together with one exchange on the tail, instead of one each
  // (which, with senders on several cores, moves the tail's cache line
  // between them every message).
  send_batch& b = tls_sends;
  if (b.target == this) {
    if (b.count == 0) {
      retain();  // until the batch is pushed
      b.first = e;
    } else {
      b.last->next.store(e, std::memory_order_relaxed);
    }
    b.last = e;
    troupe::envelope*& lead_back = b.recent[b.count % send_batch::lead];
    if (b.count >= send_batch::lead) lead_back->set_ahead(e);
    lead_back = e;
    if (++b.count == send_batch::most) {
      flush_sends();
      pace_flood();
    }
    return;
  }
  if (tls_running != nullptr && tls_running != this) {
    if (b.count != 0) flush_sends();
    b.target = this;
  }
  if (user_q_.push(e)) own();
}

// send_user into a mailbox with a bound: a drop-newest one's lock-free
// queue, or the other kinds' deque.
[[gnu::noinline]] void context::send_limited(troupe::envelope* e) noexcept {
  const std::int64_t bytes = queued_size(e);  // before the push: the consumer may free it
  if (bounded_ == nullptr) {
    flush_kept();  // what this turn kept back for others goes before this
    if (user_q_.depth() >= capacity_ && e->type != poison_type)
      return refuse(e, dead_letter_reason::mailbox_full);
    meter_add(bytes);
    if (user_q_.push_exact(e)) own();
    return;
  }
  // Before the lock: pushing what was kept back may run a dead actor's
  // drain right here, which may send to this mailbox.
  flush_kept();
  bounded_queue& b = *bounded_;
  std::unique_lock lock(b.mu);
  if (b.q.size() >= b.capacity) {
    switch (b.kind) {
      case mailbox_kind::bounded_drop_oldest: {
        troupe::envelope* oldest = b.q.front();
        b.q.pop_front();
        b.q.push_back(e);
        lock.unlock();
        meter_add(bytes - queued_size(oldest));
        refuse(oldest, dead_letter_reason::mailbox_full);
        wake();
        return;
      }
      case mailbox_kind::bounded_block:
      case mailbox_kind::bounded_drop_newest:
      case mailbox_kind::unbounded: {
        auto has_room = [&] {
          return b.q.size() < b.capacity || dead_.load(std::memory_order_acquire);
        };
        // The event loop never waits: its sockets, timers and peers'
        // heartbeats would stall with it. What it delivers (a message
        // read from another node, a timer's) to a full mailbox is dropped.
        // An actor's turn held on the loop is a worker's turn: it waits
        // as a worker would (and a wait that long moves that actor to
        // the workers, see dispatcher::hold).
        bool room;
        if ((system().loop().on_loop_thread() && !dispatcher::in_held_turn()) || tls_never_wait)
          room = has_room();
        else if (system().dispatcher().on_worker())
          room = b.room.wait_for(lock, worker_block_limit, has_room);
        else
          room = (b.room.wait(lock, has_room), true);
        if (!room) {
          lock.unlock();
          return refuse(e, dead_letter_reason::mailbox_full);
        }
        break;
      }
    }
  }
  b.q.push_back(e);
  b.size.store(static_cast<std::uint32_t>(b.q.size()), std::memory_order_relaxed);
  lock.unlock();
  meter_add(bytes);
  wake();
}

namespace {
// A flooded mailbox's backlog, in messages, above which its senders wait
// (pace_flood), and below which they go on: 65536 envelopes of a small
// message take 8 MiB. It allows for the backlog of a sender's whole turn
// (a receiver waiting on a busy worker); a smaller bound made senders
// wait for the receiver every few hundred microseconds, with their core
// idle.
constexpr std::uint32_t flood_backlog = 65536;
// The longest a sender waits at a time, and the longest it waits for a
// receiver that takes no message meanwhile.
constexpr std::int64_t flood_wait_limit_ns = 2'000'000;
constexpr std::int64_t flood_stall_ns = 200'000;
}  // namespace

// A handler sending in a row to one mailbox (send_batch::most messages at a
// time) outruns a receiver that does little with each: the backlog grows to
// millions, and the receiver reads every message from main memory. So:
//  - the mailbox is marked flooded until it is next drained: its turns then
//    keep their worker (see run()) instead of queueing behind its own
//    senders in the shared queue;
// and once the backlog passes flood_backlog:
//  - a receiver waiting in this worker's run-next slot, which would run only
//    after this turn, goes to a free worker if there is one;
//  - otherwise (the receiver runs on another thread, or waits for one: in
//    another worker's run-next slot, whose thread may have lost its core,
//    or in a queue), the sender waits until half the backlog is gone: what
//    the receiver reads next is still in cache, and the memory held stays
//    bounded. It stops waiting when the receiver takes nothing for
//    flood_stall_ns (a long handler, or a receiver that does not get a
//    worker so soon), after flood_wait_limit_ns in all, and never waits on
//    the event loop.
void context::pace_flood() noexcept {
  if (tls_running == this) return;
  if (!flooded_.load(std::memory_order_relaxed)) flooded_.store(true, std::memory_order_relaxed);
  if (user_q_.depth() < flood_backlog) return;
  if (!running_.load(std::memory_order_relaxed) && system().dispatcher().next_here(this)) {
    // Next on this worker, it would wait for the end of this turn.
    system().dispatcher().hand_off_next(this);
    return;
  }
  if (system().loop().on_loop_thread()) return;
  const std::int64_t start = steady_ns();
  std::int64_t progress_at = start;
  std::uint32_t popped = user_q_.popped();
  for (;;) {
    // Yielding too: on a machine with more threads than cores, the receiver
    // may be waiting for this very core.
    for (int i = 0; i < 64; ++i) cpu_relax();
    std::this_thread::yield();
    if (user_q_.depth() <= flood_backlog / 2) return;
    const std::int64_t now = steady_ns();
    if (const std::uint32_t p = user_q_.popped(); p != popped) {
      popped = p;
      progress_at = now;
    } else if (now - progress_at > flood_stall_ns) {
      return;  // in a long handler: waiting would not help
    }
    if (now - start > flood_wait_limit_ns) return;
  }
}

no_waiting_for_room::no_waiting_for_room() noexcept : before_(std::exchange(tls_never_wait, true)) {}
no_waiting_for_room::~no_waiting_for_room() { tls_never_wait = before_; }

// A message the mailbox does not take.
void context::refuse(troupe::envelope* e, dead_letter_reason why) noexcept {
  if (why == dead_letter_reason::mailbox_full)
    system().stats().mailbox_dropped.fetch_add(1, std::memory_order_relaxed);
  system().dead_letter(e, this, why);
}

unsigned context::pressure() const noexcept {
  std::uint64_t depth, capacity;
  if (bounded_ != nullptr) {
    depth = bounded_->size.load(std::memory_order_relaxed);
    capacity = bounded_->capacity;
  } else {
    depth = user_q_.depth();
    capacity = capacity_ != 0 ? capacity_ : unbounded_reference;
  }
  return static_cast<unsigned>(std::min<std::uint64_t>(1000, depth * 100 / capacity));
}

void context::send_system(system_message* m) noexcept {
  sys_q_.push(m);
  wake();
}

// After a push to a queue other than user_q_: a wake token in user_q_
// makes the mailbox runnable if its owner gave it up.
void context::wake() noexcept {
  troupe::envelope* token = envelope_pool::allocate(0);
  token->type = wake_token;
  // A capacity compares with an exact count: every push adds atomically.
  if (capacity_ != 0 ? user_q_.push_exact(token) : user_q_.push(token)) own();
}

void context::start() noexcept {
  if (router_ != nullptr) router_->start(*this);
  sys_q_.push(new system_message(system_kind::started));
  own();
}

// The caller just became the mailbox's owner.
void context::own() noexcept {
  if (dead_.load(std::memory_order_acquire)) {
    // A dead actor is never queued again: whoever wins the mailbox drains it
    // here, holding the PID it sent through.
    run();
    return;
  }
  system().dispatcher().schedule(this, dispatcher::hint::next);
}

// The next user message: replayed (stashed) ones first, then the queue,
// then a bounded mailbox's deque. `queued` tells that the queue keeps the
// envelope (as its head) and releases it itself.
troupe::envelope* context::next_user(bool& queued) noexcept { return take_user(queued); }

// next_user, inline in run().
[[gnu::always_inline]] inline troupe::envelope* context::take_user(bool& queued) noexcept {
  queued = false;
  if (extras_ && !extras_->replay.empty()) [[unlikely]] {
    troupe::envelope* e = extras_->replay.front();
    extras_->replay.pop_front();
    return e;
  }
  if (troupe::envelope* e = pop_message(user_q_)) {
    queued = true;
    return e;
  }
  if (bounded_ == nullptr) return nullptr;
  return next_bounded();
}

// A bounded mailbox's next message, from its deque.
troupe::envelope* context::next_bounded() noexcept {
  troupe::envelope* e;
  {
    std::lock_guard lock(bounded_->mu);
    if (bounded_->q.empty()) return nullptr;
    e = bounded_->q.front();
    bounded_->q.pop_front();
    bounded_->size.store(static_cast<std::uint32_t>(bounded_->q.size()), std::memory_order_relaxed);
    if (bounded_->kind == mailbox_kind::bounded_block) bounded_->room.notify_one();
  }
  meter_add(-queued_size(e));
  return e;
}

namespace {

// Appends text to buf[0..n) at `at`, truncating; returns the new length.
std::size_t put(char* buf, std::size_t n, std::size_t at, const char* text, std::size_t len) noexcept {
  for (std::size_t i = 0; i < len && at + 1 < n; ++i) buf[at++] = text[i];
  buf[at < n ? at : n - 1] = '\0';
  return at;
}
std::size_t put(char* buf, std::size_t n, std::size_t at, const char* text) noexcept {
  std::size_t len = 0;
  while (text[len] != '\0') ++len;
  return put(buf, n, at, text, len);
}
}  // namespace

const context* context::running_here() noexcept { return tls_running; }

std::size_t context::describe_running(char* buf, std::size_t n) noexcept {
  const context* c = tls_running;
  if (c == nullptr || n == 0) return 0;
  std::size_t at = 0;
  const struct props& p = *c->props_;
  if (!p.plugin.empty()) {
    at = put(buf, n, at, "plugin ");
    at = put(buf, n, at, p.plugin.data(), p.plugin.size());
    at = put(buf, n, at, ", ");
  }
  at = put(buf, n, at, "kind ");
  at = p.kind.empty() ? put(buf, n, at, "(none)") : put(buf, n, at, p.kind.data(), p.kind.size());
  at = put(buf, n, at, ", actor ");
  if (const std::string* name = c->name()) return put(buf, n, at, name->data(), name->size());
  char digits[24];
  std::size_t d = sizeof digits;
  std::uint64_t v = c->seq_;
  do {
    digits[--d] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  at = put(buf, n, at, "$");
  return put(buf, n, at, digits + d, sizeof digits - d);
}

// A mailbox with more than this many turns' worth of messages waiting is
// flooded: it keeps its worker (see run()).
constexpr std::uint32_t flooded_turns = 8;

std::uint32_t context::run() noexcept {
  // What a crash report names (describe_running); restored for nested runs.
  struct running_mark {
    const context* saved = tls_running;
    explicit running_mark(const context* c) noexcept { tls_running = c; }
    ~running_mark() {
      flush_kept();  // what the turn sent and kept back
      tls_running = saved;
    }
  } mark(this);
  process_ref last;  // the registry's reference once the actor stopped in this run
  // A turn held on the event loop also ends when its time is up or one
  // handler ran long (see dispatcher::hold).
  const bool held = dispatcher::in_held_turn();
  std::int64_t held_last = held ? steady_ns() : 0;
  bool turn_over = false;
  std::uint32_t budget = std::max<std::uint32_t>(1, props_->mailbox.throughput);
  const std::uint32_t start = budget;
  for (;;) {
    running_.store(true, std::memory_order_relaxed);
    // Whether user messages must wait (suspended, held, stopping): only
    // this thread changes that, in the loop below.
    bool blocked = false;
    if (!dead_.load(std::memory_order_relaxed)) {
      while (budget > 0) {
        // Until none is left: what handling system messages sent this actor
        // itself (the next step of a stop, a recovery's outcome, a
        // continuation of a completed future) comes before the next user
        // message. Without that, persistent grains whose recovery failed
        // stopped answering (persistence_pg_test, "deposits go on").
        while (sys_q_.nonempty_hint()) process_system();
        if (suspended_ || holds_ != 0 || state_ != actor_state::alive) {
          blocked = true;
          break;
        }
        bool queued;
        troupe::envelope* e = take_user(queued);
        if (e == nullptr) break;
        --budget;
        invoke_user(e, queued);
        // What the handler kept back goes now: a message waits for the
        // end of the handler that sent it, never for the rest of the turn.
        flush_kept();
        if (held && dispatcher::held_turn_over(*this, held_last)) {
          turn_over = true;
          break;
        }
      }
      if (dying_ref_) last = std::move(dying_ref_);
    }
    const bool dead = dead_.load(std::memory_order_relaxed);
    // Before the mailbox is given up below: after that, `this` may be gone.
    running_.store(false, std::memory_order_relaxed);
    if (dead) {
      drain_dead();
    } else if ((turn_over || budget == 0) && (user_q_.owner_nonempty() || sys_q_.nonempty_hint())) {
      // Used its turn: stays owned and queues behind the others; unless it
      // is flooded (a handler sends to it in bulk, or a backlog of many
      // turns waits): then it keeps this worker for the next turn, so that
      // many senders cannot starve their receiver and pile its messages up
      // in memory (the other workers take the rest of the queue). A turn
      // that used its budget (or, held, its time) on exactly what was there
      // gives the mailbox up below instead: queued, it would wait behind
      // everything else while its senders go on, or keep a worker busy
      // for nothing while the next message waits for it.
      const bool flooded = !turn_over && (flooded_.load(std::memory_order_relaxed) ||
                                          user_q_.depth() >= flooded_turns * props_->mailbox.throughput);
      system().dispatcher().schedule(this, flooded ? dispatcher::hint::keep : dispatcher::hint::yield);
      return start - budget;
    }
    // System messages the actor sent itself come without a wake token.
    if (!dead && sys_q_.nonempty_hint()) continue;
    // Give the mailbox up; if something arrived meanwhile, go round again.
    if (!dead && blocked) {
      // A producer pushes its system message before its wake token: if the
      // token is not yet in `seen`, park() fails; if it is, the look at the
      // system queue after reading `seen` finds the message.
      const std::uintptr_t seen = user_q_.tail_seen();
      if (sys_q_.nonempty_seq_cst()) continue;
      if (user_q_.park(seen)) return start - budget;
    } else {
      mpsc_node* retired = nullptr;
      // Drained: no longer flooded. Before the mailbox is given up (after
      // that, `this` may be gone); a sender's next bulk send marks it again.
      const bool was_flooded = flooded_.load(std::memory_order_relaxed);
      if (was_flooded) flooded_.store(false, std::memory_order_relaxed);
      if (user_q_.mark_idle(retired)) {
        // The last message's envelope, no longer reachable from the queue.
        if (retired != nullptr) static_cast<troupe::envelope*>(retired)->release();
        return start - budget;
      }
      // A push came in meanwhile: not drained after all. Unmarked, a turn
      // that now used its budget on the sender's next chain would queue
      // behind every sender in the shared queue (the sender marks it only
      // after that chain is in), and wait there for all their floods.
      if (was_flooded) flooded_.store(true, std::memory_order_relaxed);
    }
  }
}

void context::drain_dead() noexcept {
  for (system_message* m = sys_q_.take_all(); m != nullptr;) {
    system_message* next = m->next_system;
    handle_system(*m);
    delete m;
    m = next;
  }
  bool queued;
  while (troupe::envelope* e = next_user(queued)) {
    if (queued) e->retain();  // the queue keeps its own reference
    system().dead_letter(e, this, dead_letter_reason::stopped);
  }
  if (bounded_) bounded_->room.notify_all();
}


// ------------------------------------------------------------ a user message
// (beside run(), which calls it for every message)

[[gnu::always_inline]] inline void context::invoke_user(troupe::envelope* e, bool queued) noexcept {
  if (e->type == poison_type) {
    if (!queued) e->release();
    begin_stop();
    return;
  }
  if (extras_ && extras_->receive_timeout.count() != 0) extras_->last_activity_ns = steady_ns();
  // A grain stays active while it gets messages; its own timers do not count.
  if (labels_ && labels_->identity && (e->flags & troupe::envelope::from_timer) == 0)
    labels_->active_at.store(steady_ns(), std::memory_order_relaxed);
  cur_ = e;
  try {
    dispatch();
  } catch (const std::exception& ex) {
    fail(ex.what());
  } catch (...) {
    fail("unknown exception");
  }
  cur_ = nullptr;
  // The delivery is over. Its sender belongs to the delivery, not to the
  // message: someone may have kept the message, and holding on to the
  // sender could close a reference cycle (a future whose reply shares this
  // request's bytes).
  if (queued) {
    // The queue releases the envelope on its next pop.
    if (e->sender != nullptr) {
      e->sender->release();
      e->sender = nullptr;
    }
    return;
  }
  if (e->sender != nullptr && e->refs.load(std::memory_order_acquire) != 1) {
    e->sender->release();
    e->sender = nullptr;
  }
  e->release();
}

void context::dispatch() {
  if (!props_->receive_hooks.empty()) {
    run_receive(0);
    return;
  }
  handle_current();
}

void context::handle_current() {
  if (extras_ && !extras_->behaviors.empty()) {
    // Keep the behaviour alive even if it replaces itself with become().
    auto b = extras_->behaviors.back();
    (*b)(*this);
    return;
  }
  actor_->receive(*this);
}

}  // namespace troupe
