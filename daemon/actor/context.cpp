#include "actor/context.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <unordered_set>

#include "actor/actor_system.hpp"
#include "actor/block_pool.hpp"
#include "actor/clock.hpp"
#include "actor/router.hpp"
#include "system_generated.h"

namespace troupe {

const char* to_string(spawn_error e) noexcept {
  switch (e) {
    case spawn_error::none: return "none";
    case spawn_error::name_taken: return "name taken";
    case spawn_error::invalid_name: return "invalid name";
    case spawn_error::shutting_down: return "shutting down";
    case spawn_error::unknown_kind: return "unknown kind";
    case spawn_error::refused: return "refused";
  }
  return "unknown";
}

const char* to_string(terminated_reason r) noexcept {
  switch (r) {
    case terminated_reason::stopped: return "stopped";
    case terminated_reason::not_found: return "not_found";
    case terminated_reason::node_lost: return "node_lost";
  }
  return "unknown";
}

namespace {

// Lifecycle messages carry no data: one envelope each, built once, never
// queued (only ever the current message), and never freed.
template <class T>
envelope* lifecycle() {
  static envelope* const e =
      build<T>([](flatbuffers::FlatBufferBuilder& b) { return typename T::Builder(b).Finish(); });
  return e;
}

constexpr type_id poison_type = type_id_of<system::PoisonPill>();
// A payload-less envelope that only makes its mailbox runnable.
constexpr type_id wake_token = 0;

// How long a worker thread waits for room in a full back-pressure mailbox
// before it drops the message instead of risking a deadlock with the
// consumer it would be waiting for.
constexpr std::chrono::milliseconds worker_block_limit{100};

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

}  // namespace

std::int64_t queued_message_bytes() noexcept {
  return queued_total.load(std::memory_order_relaxed);
}

struct bounded_queue {
  std::mutex mu;
  std::condition_variable room;
  std::deque<envelope*> q;
  std::atomic<std::uint32_t> size{0};  // q.size(), for pressure() without the lock
  std::uint32_t capacity;
  mailbox_kind kind;
};

struct context::extras {
  std::unordered_set<troupe::pid> children;
  std::vector<troupe::pid> watchers;
  std::vector<troupe::pid> watchees;
  std::vector<std::shared_ptr<const behavior>> behaviors;
  std::deque<troupe::envelope*> stash;
  std::deque<troupe::envelope*> replay;
  restart_stats stats;
  std::chrono::nanoseconds receive_timeout{0};
  std::int64_t last_activity_ns = 0;
  std::uint64_t receive_timeout_token = 0;
  timer_handle receive_timer;
  std::vector<timer_handle> timers;  // from scheduler(); cancelled at stop
  std::size_t timers_kept = 0;       // size after the last pruning
};

context::context(actor_system& sys, props_ptr p, troupe::pid parent, std::uint64_t seq,
                 std::unique_ptr<std::string> name)
    : process(sys),
      top_level_(!parent),
      seq_(seq),
      name_(std::move(name)),
      props_(std::move(p)),
      parent_(std::move(parent)) {
  plugin_code_ = !props_->plugin.empty();
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
  for (;;) {
    mpsc_node* retired = nullptr;
    mpsc_node* n = user_q_.pop(retired);
    if (retired != nullptr) static_cast<troupe::envelope*>(retired)->release();
    if (n == nullptr) break;
    auto* e = static_cast<troupe::envelope*>(n);
    if (e->type != wake_token) meter_add(-queued_size(e));
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

context::extras& context::ex() {
  if (extras_ == nullptr) extras_ = new extras;
  return *extras_;
}

std::string context::id() const {
  if (name_) return *name_;
  std::string id = "$";
  id.append(std::to_string(seq_));
  return id;
}

std::size_t context::mailbox_depth() const {
  // A bounded mailbox keeps its messages in its deque; its queue carries
  // wake tokens only.
  if (bounded_ == nullptr) return user_q_.depth();
  return bounded_->size.load(std::memory_order_relaxed);
}

std::vector<troupe::pid> context::children() const {
  if (!extras_) return {};
  return {extras_->children.begin(), extras_->children.end()};
}

void context::own_timer(timer_handle h) {
  extras& x = ex();
  // Forget timers that are done, whenever the list doubles: amortised O(1).
  if (x.timers.size() >= 2 * x.timers_kept + 8) {
    std::erase_if(x.timers, [](const timer_handle& t) { return !t.pending(); });
    x.timers_kept = x.timers.size();
  }
  x.timers.push_back(std::move(h));
}

bool context::children_empty() const noexcept { return !extras_ || extras_->children.empty(); }

// ---------------------------------------------------------------- mailbox

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
  const std::int64_t bytes = queued_size(e);  // before the push: the consumer may free it
  if (bounded_ == nullptr) {
    if (capacity_ == 0) {
      meter_add(bytes);
      if (user_q_.push(e)) own();
      return;
    }
    if (user_q_.depth() >= capacity_ && e->type != poison_type)
      return refuse(e, dead_letter_reason::mailbox_full);
    meter_add(bytes);
    if (user_q_.push_exact(e)) own();
    return;
  }
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
        if (system().loop().on_loop_thread() && !dispatcher::in_held_turn())
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
troupe::envelope* context::next_user(bool& queued) noexcept {
  queued = false;
  if (extras_ && !extras_->replay.empty()) {
    troupe::envelope* e = extras_->replay.front();
    extras_->replay.pop_front();
    return e;
  }
  for (;;) {
    mpsc_node* retired = nullptr;
    mpsc_node* n = user_q_.pop(retired);
    if (retired != nullptr) static_cast<troupe::envelope*>(retired)->release();
    if (n == nullptr) break;
    auto* e = static_cast<troupe::envelope*>(n);
    // Wake tokens only make the mailbox runnable; they carry nothing.
    if (e->type == wake_token) continue;
    meter_add(-queued_size(e));
    queued = true;
    return e;
  }
  if (bounded_ == nullptr) return nullptr;
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
thread_local const context* tls_running = nullptr;

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
  if (c->name_) return put(buf, n, at, c->name_->data(), c->name_->size());
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

void context::run() noexcept {
  // What a crash report names (describe_running); restored for nested runs.
  struct running_mark {
    const context* saved = tls_running;
    explicit running_mark(const context* c) noexcept { tls_running = c; }
    ~running_mark() { tls_running = saved; }
  } mark(this);
  process_ref last;  // the registry's reference once the actor stopped in this run
  // A turn held on the event loop also ends when its time is up or one
  // handler ran long (see dispatcher::hold).
  const bool held = dispatcher::in_held_turn();
  std::int64_t held_last = held ? steady_ns() : 0;
  bool turn_over = false;
  std::uint32_t budget = props_->mailbox.throughput;
  // Counted once per run, whichever way the run ends.
  struct counter {
    const std::uint32_t start;
    const std::uint32_t& left;
    ~counter() { dispatcher::count_processed(start - left); }
  } count{budget, budget};
  for (;;) {
    if (!dead_.load(std::memory_order_relaxed)) {
      process_system();
      while (budget > 0) {
        if (sys_q_.nonempty_hint()) process_system();
        if (suspended_ || state_ != actor_state::alive) break;
        bool queued;
        troupe::envelope* e = next_user(queued);
        if (e == nullptr) break;
        --budget;
        invoke_user(e, queued);
        if (held && dispatcher::held_turn_over(*this, held_last)) {
          turn_over = true;
          break;
        }
      }
      if (dying_ref_) last = std::move(dying_ref_);
    }
    const bool dead = dead_.load(std::memory_order_relaxed);
    if (dead) {
      drain_dead();
    } else if (budget == 0 || turn_over) {
      // Used its turn: stays owned and queues behind the others.
      system().dispatcher().schedule(this, dispatcher::hint::yield);
      return;
    }
    // System messages the actor sent itself come without a wake token.
    if (!dead && sys_q_.nonempty_hint()) continue;
    // Give the mailbox up; if something arrived meanwhile, go round again.
    if (!dead && (suspended_ || state_ != actor_state::alive)) {
      // A producer pushes its system message before its wake token: if the
      // token is not yet in `seen`, park() fails; if it is, the look at the
      // system queue after reading `seen` finds the message.
      const std::uintptr_t seen = user_q_.tail_seen();
      if (sys_q_.nonempty_seq_cst()) continue;
      if (user_q_.park(seen)) return;
    } else {
      mpsc_node* retired = nullptr;
      if (user_q_.mark_idle(retired)) {
        // The last message's envelope, no longer reachable from the queue.
        if (retired != nullptr) static_cast<troupe::envelope*>(retired)->release();
        return;
      }
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

// ------------------------------------------------------------ user messages

void context::invoke_user(troupe::envelope* e, bool queued) noexcept {
  if (e->type == poison_type) {
    if (!queued) e->release();
    begin_stop();
    return;
  }
  if (extras_ && extras_->receive_timeout.count() != 0) extras_->last_activity_ns = steady_ns();
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

void context::run_receive(std::size_t i) {
  const auto& hooks = props_->receive_hooks;
  if (i == hooks.size()) handle_current();
  else hooks[i](*this, receive_next(i + 1));
}

void context::run_send(std::size_t i, const troupe::pid& to, troupe::envelope* e) {
  const auto& hooks = props_->send_hooks;
  if (i == hooks.size()) deliver(to.get(), e);
  else hooks[i](*this, to, e, send_next(*this, i + 1));
}

void receive_next::operator()(context& ctx) const { ctx.run_receive(i_); }

void send_next::operator()(const pid& target, envelope* e) const { ctx_->run_send(i_, target, e); }

void context::deliver_lifecycle(troupe::envelope* e) noexcept {
  if (!actor_) return;
  troupe::envelope* saved = cur_;
  cur_ = e;
  const bool starting = e->is<system::Started>();
  try {
    dispatch();
  } catch (const std::exception& ex) {
    if (starting) fail(ex.what());
    else system().events().publish(actor_failed_event{self(), ex.what()});
  } catch (...) {
    if (starting) fail("unknown exception");
    else system().events().publish(actor_failed_event{self(), "unknown exception"});
  }
  cur_ = saved;
}

// ------------------------------------------------------------- sending

void context::send_envelope(const troupe::pid& to, troupe::envelope* e, bool as_request) {
  if (as_request) {
    retain();
    e->sender = this;
  }
  if (!props_->send_hooks.empty()) run_send(0, to, e);
  else deliver(to.get(), e);
}

void context::send_envelope(process* to, troupe::envelope* e, bool as_request) {
  if (as_request) {
    retain();
    e->sender = this;
  }
  if (!props_->send_hooks.empty()) run_send(0, troupe::pid(to), e);
  else deliver(to, e);
}

void context::deliver(process* to, troupe::envelope* e) {
  if (to == nullptr) {
    system().dead_letter(e, nullptr, dead_letter_reason::not_found);
    return;
  }
  to->send_user(e);
}

void context::respond(troupe::message m) {
  process* to = cur_ ? cur_->sender : nullptr;
  troupe::envelope* e = for_delivery(std::move(m));
  if (!props_->send_hooks.empty()) run_send(0, troupe::pid(to), e);
  else deliver(to, e);
}

void context::forward(const troupe::pid& to) {
  troupe::envelope* e = share_envelope(cur_);
  if (cur_->sender) {
    cur_->sender->retain();
    e->sender = cur_->sender;
  }
  if (!props_->send_hooks.empty()) run_send(0, to, e);
  else deliver(to.get(), e);
}

troupe::future context::request_future(const troupe::pid& to, troupe::message m,
                                       std::chrono::nanoseconds timeout) {
  return system().root().request_future(to, std::move(m), timeout);
}

void context::reenter_after(const troupe::future& f,
                            std::function<void(context&, const future_result&)> fn) {
  // The continuation sees a copy of the current message with its sender,
  // so that respond() there answers the original requester.
  troupe::envelope* copy = share_envelope(cur_);
  if (cur_->sender != nullptr) {
    cur_->sender->retain();
    copy->sender = cur_->sender;
  }
  troupe::message original = troupe::message::adopt(copy);
  process_ref me(static_cast<process*>(this));
  f.get()->on_complete([me = std::move(me), original = std::move(original),
                        fn = std::move(fn)](future_result r) {
    auto* m = new system_message(system_kind::continuation);
    m->fn = [original, fn, r = std::move(r)](context& ctx) {
      troupe::envelope* saved = ctx.cur_;
      ctx.cur_ = original.get();
      fn(ctx, r);
      ctx.cur_ = saved;
    };
    me->send_system(m);
  });
}

// ------------------------------------------------------------ spawn, stop

troupe::pid context::spawn(const props_ptr& p) {
  spawn_result r = system().spawn_child(p, self(), nullptr);
  if (r) ex().children.insert(r.pid);
  return r.pid;
}

spawn_result context::spawn_named(const props_ptr& p, const std::string& name) {
  spawn_result r = system().spawn_child(p, self(), std::make_unique<std::string>(name));
  if (r) ex().children.insert(r.pid);
  return r;
}

spawn_result context::spawn_kind(std::string_view kind, const std::string& name) {
  spawn_result r;
  props_ptr p = system().kind_props(kind, r.error);
  if (!p) return r;
  if (name.empty()) r.pid = spawn(p);
  else r = spawn_named(p, name);
  if (r.error == spawn_error::none && !r.pid) r.error = spawn_error::refused;
  return r;
}

troupe::pid context::spawn_prefix(const props_ptr& p, std::string_view prefix) {
  spawn_result r = system().spawn_child(p, self(), system().prefixed_name(prefix));
  if (r) ex().children.insert(r.pid);
  return r.pid;
}

void context::stop(const troupe::pid& who) {
  if (!who) return;
  auto* m = new system_message(system_kind::stop);
  if (who.get() == this) {
    // To itself: this thread owns the mailbox and looks at the system queue
    // before giving it up, so no wake token is needed.
    sys_q_.push(m);
    return;
  }
  who.get()->send_system(m);
}

void context::poison(const troupe::pid& who) {
  system().root().poison(who);
}

void context::watch(const troupe::pid& who) {
  if (!who) return;
  auto& w = ex().watchees;
  if (std::find(w.begin(), w.end(), who) == w.end()) w.push_back(who);
  who.get()->send_system(new system_message(system_kind::watch, process_ref(this)));
}

void context::unwatch(const troupe::pid& who) {
  if (!who) return;
  if (extras_) std::erase(extras_->watchees, who);
  who.get()->send_system(new system_message(system_kind::unwatch, process_ref(this)));
}

// ------------------------------------------------------------ behaviour

void context::become(behavior b) {
  auto& bs = ex().behaviors;
  bs.clear();
  bs.push_back(std::make_shared<const behavior>(std::move(b)));
}

void context::become_stacked(behavior b) {
  ex().behaviors.push_back(std::make_shared<const behavior>(std::move(b)));
}

void context::unbecome() {
  if (extras_ && !extras_->behaviors.empty()) extras_->behaviors.pop_back();
}

void context::stash() {
  cur_->retain();
  ex().stash.push_back(cur_);
}

void context::unstash_all() {
  if (!extras_ || extras_->stash.empty()) return;
  auto& x = *extras_;
  // Stashed messages go before anything replayed later but after what is
  // already being replayed, keeping their original order.
  x.replay.insert(x.replay.end(), x.stash.begin(), x.stash.end());
  x.stash.clear();
}

void context::set_receive_timeout(std::chrono::nanoseconds d) {
  auto& x = ex();
  x.receive_timer.cancel();
  x.receive_timeout = d;
  ++x.receive_timeout_token;
  if (d.count() <= 0) {
    x.receive_timeout = std::chrono::nanoseconds{0};
    return;
  }
  x.last_activity_ns = steady_ns();
  arm_receive_timeout();
}

void context::cancel_receive_timeout() { set_receive_timeout(std::chrono::nanoseconds{0}); }

void context::arm_receive_timeout() noexcept {
  auto& x = *extras_;
  std::int64_t remaining = x.receive_timeout.count() - (steady_ns() - x.last_activity_ns);
  x.receive_timer = system().loop().arm(
      std::chrono::nanoseconds(std::max<std::int64_t>(remaining, 0)),
      [self = process_ref(static_cast<process*>(this)), token = x.receive_timeout_token] {
        auto* m = new system_message(system_kind::receive_timeout);
        m->token = token;
        self->send_system(m);
      });
}

void context::handle_receive_timeout(std::uint64_t token) noexcept {
  if (!extras_ || token != extras_->receive_timeout_token ||
      extras_->receive_timeout.count() == 0 || state_ != actor_state::alive || !actor_)
    return;
  auto& x = *extras_;
  if (steady_ns() - x.last_activity_ns >= x.receive_timeout.count()) {
    x.last_activity_ns = steady_ns();
    if (!suspended_) deliver_lifecycle(lifecycle<system::ReceiveTimeout>());
  }
  if (extras_ && token == x.receive_timeout_token && x.receive_timeout.count() != 0)
    arm_receive_timeout();
}

// ------------------------------------------------------------ system messages

void context::process_system() noexcept {
  // Taking is an atomic exchange: skip it when there is nothing to take. A
  // system message pushed after this look comes with a wake token, or, if
  // the actor sent it itself, is seen before the mailbox is given up.
  if (!sys_q_.nonempty_hint()) return;
  for (system_message* m = sys_q_.take_all(); m != nullptr;) {
    system_message* next = m->next_system;
    handle_system(*m);
    delete m;
    m = next;
  }
}

void context::handle_system(system_message& m) noexcept {
  if (state_ == actor_state::stopped) {
    // Dead: answer watches, make failed children stop, drop the rest.
    if (m.kind == system_kind::watch && m.who)
      m.who->send_system([&] {
        auto* t = new system_message(system_kind::terminated, process_ref(this));
        t->reason = terminated_reason::stopped;
        return t;
      }());
    else if (m.kind == system_kind::failure && m.who)
      m.who->send_system(new system_message(system_kind::stop));
    return;
  }
  switch (m.kind) {
    case system_kind::started:
      start_actor();
      break;
    case system_kind::stop:
      begin_stop();
      break;
    case system_kind::restart:
      if (state_ == actor_state::alive) {
        ex().stats = std::move(m.stats);
        begin_restart();
      }
      break;
    case system_kind::resume:
      if (state_ == actor_state::alive) {
        ex().stats = std::move(m.stats);
        suspended_ = false;
      }
      break;
    case system_kind::watch: {
      troupe::pid w(m.who);
      auto& ws = ex().watchers;
      if (std::find(ws.begin(), ws.end(), w) == ws.end()) ws.push_back(std::move(w));
      break;
    }
    case system_kind::unwatch:
      if (extras_) std::erase(extras_->watchers, troupe::pid(m.who));
      break;
    case system_kind::terminated:
      handle_terminated(m);
      break;
    case system_kind::failure:
      handle_failure(m);
      break;
    case system_kind::continuation:
      if (actor_ && state_ == actor_state::alive) {
        try {
          m.fn(*this);
        } catch (const std::exception& ex) {
          fail(ex.what());
        } catch (...) {
          fail("unknown exception");
        }
      }
      break;
    case system_kind::receive_timeout:
      handle_receive_timeout(m.token);
      break;
  }
}

troupe::envelope* context::make_terminated(process* who, terminated_reason reason) const {
  const std::string address = who ? who->system().address() : std::string();
  const std::string id = who ? who->id() : std::string();
  return build<system::Terminated>([&](flatbuffers::FlatBufferBuilder& b) {
    auto p = system::CreatePidDirect(b, address.c_str(), id.c_str());
    return system::CreateTerminated(b, p, static_cast<system::TerminatedReason>(reason));
  });
}

void context::handle_terminated(system_message& m) noexcept {
  troupe::pid who(m.who);
  bool was_child = extras_ && extras_->children.erase(who) > 0;
  bool watched = false;
  if (extras_) {
    auto& w = extras_->watchees;
    auto it = std::find(w.begin(), w.end(), who);
    if (it != w.end()) {
      w.erase(it);
      watched = true;
    }
  }
  if ((was_child || watched) && actor_) {
    troupe::envelope* e = make_terminated(m.who.get(), m.reason);
    cur_ = e;
    try {
      dispatch();
    } catch (const std::exception& ex) {
      if (state_ == actor_state::alive) fail(ex.what());
    } catch (...) {
      if (state_ == actor_state::alive) fail("unknown exception");
    }
    cur_ = nullptr;
    e->release();
  }
  if (was_child && children_empty()) {
    if (state_ == actor_state::stopping) finalize_stop();
    else if (state_ == actor_state::restarting) finalize_restart();
  }
}

// ------------------------------------------------------------ lifecycle

void context::start_actor() noexcept {
  try {
    actor_ = props_->make();
    if (!actor_) throw std::runtime_error("the producer made no actor");
  } catch (const std::exception& ex) {
    fail(std::string("creating the actor failed: ") + ex.what());
    return;
  } catch (...) {
    fail("creating the actor failed: unknown exception");
    return;
  }
  deliver_lifecycle(lifecycle<system::Started>());
}

void context::begin_stop() noexcept {
  if (state_ == actor_state::stopping || state_ == actor_state::stopped) return;
  state_ = actor_state::stopping;
  if (extras_) {
    extras_->receive_timer.cancel();
    extras_->receive_timeout = std::chrono::nanoseconds{0};
  }
  deliver_lifecycle(lifecycle<system::Stopping>());
  stop_children();
  if (children_empty()) finalize_stop();
}

void context::begin_restart() noexcept {
  state_ = actor_state::restarting;
  system().stats().restarts.fetch_add(1, std::memory_order_relaxed);
  deliver_lifecycle(lifecycle<system::Restarting>());
  stop_children();
  if (children_empty()) finalize_restart();
}

void context::stop_children() noexcept {
  if (!extras_) return;
  for (const troupe::pid& c : extras_->children)
    c.get()->send_system(new system_message(system_kind::stop));
}

void context::finalize_restart() noexcept {
  actor_.reset();
  if (extras_) {
    extras_->behaviors.clear();
    extras_->receive_timer.cancel();
    extras_->receive_timeout = std::chrono::nanoseconds{0};
    // Stashed messages are not lost with the old instance.
    unstash_all();
  }
  state_ = actor_state::alive;
  suspended_ = false;
  start_actor();
}

void context::finalize_stop() noexcept {
  deliver_lifecycle(lifecycle<system::Stopped>());
  actor_.reset();
  state_ = actor_state::stopped;
  dying_ref_ = name_ ? system().registry().remove_named(*name_) : system().registry().remove(seq_);
  system().stats().stopped.fetch_add(1, std::memory_order_relaxed);
  auto terminated = [this] {
    auto* t = new system_message(system_kind::terminated, process_ref(static_cast<process*>(this)));
    t->reason = terminated_reason::stopped;
    return t;
  };
  if (extras_) {
    for (timer_handle& t : extras_->timers) t.cancel();
    for (const troupe::pid& w : extras_->watchers) w.get()->send_system(terminated());
    for (troupe::envelope* e : extras_->stash)
      system().dead_letter(e, this, dead_letter_reason::stopped);
    for (troupe::envelope* e : extras_->replay)
      system().dead_letter(e, this, dead_letter_reason::stopped);
    delete extras_;
    extras_ = nullptr;
  }
  if (parent_) {
    parent_.get()->send_system(terminated());
    parent_ = troupe::pid();
  }
  // Last, so that whoever sees the actor dead also finds its Terminated
  // already sent. What is still queued becomes dead letters in drain_dead().
  dead_.store(true, std::memory_order_seq_cst);
}

void context::force_stop() noexcept {
  if (state_ == actor_state::stopped) return;
  actor_.reset();
  state_ = actor_state::stopped;
  process_ref reg =
      name_ ? system().registry().remove_named(*name_) : system().registry().remove(seq_);
  dead_.store(true, std::memory_order_seq_cst);
  if (extras_) {
    for (troupe::envelope* e : extras_->stash)
      system().dead_letter(e, this, dead_letter_reason::shutdown);
    for (troupe::envelope* e : extras_->replay)
      system().dead_letter(e, this, dead_letter_reason::shutdown);
    delete extras_;
    extras_ = nullptr;
  }
  parent_ = troupe::pid();
  for (system_message* m = sys_q_.take_all(); m != nullptr;) {
    system_message* next = m->next_system;
    delete m;
    m = next;
  }
  bool queued;
  while (troupe::envelope* e = next_user(queued)) {
    if (queued) e->retain();
    system().dead_letter(e, this, dead_letter_reason::shutdown);
  }
}

// ------------------------------------------------------------ supervision

void context::fail(std::string reason) noexcept {
  suspended_ = true;
  system().stats().failures.fetch_add(1, std::memory_order_relaxed);
  if (const auto& hook = system().config().on_failure) {
    try {
      hook(*this, reason);
    } catch (...) {
    }
  }
  if (system().events().has_subscribers())
    system().events().publish(actor_failed_event{self(), reason});
  if (parent_) {
    auto* m = new system_message(system_kind::failure, process_ref(static_cast<process*>(this)));
    m->error = std::move(reason);
    m->stats = ex().stats;
    parent_.get()->send_system(m);
  } else {
    system().supervise_root(*this, reason, ex().stats);
  }
}

namespace {

// Applies a supervisor's decision about `child`. `supervisor` is null for
// root actors, which the system's guardian strategy supervises.
void apply_directive(actor_system& sys, const supervisor_strategy& s, context* supervisor,
                     const process_ref& child, const std::string& reason, restart_stats stats) {
  troupe::pid child_pid(child);
  directive d;
  try {
    d = s.decide_for(child_pid, reason);
  } catch (...) {
    d = directive::stop;  // a decider that fails cannot be trusted to restart
  }
  std::vector<troupe::pid> targets;
  if (s.applies_to == supervisor_strategy::scope::all_for_one && supervisor != nullptr)
    targets = supervisor->children();
  else
    targets.push_back(child_pid);

  if (d == directive::restart) {
    std::size_t n = stats.record(std::chrono::steady_clock::now(), s.window);
    if (n > s.max_restarts) d = directive::stop;
  }
  if (sys.events().has_subscribers()) sys.events().publish(supervision_event{child_pid, d, reason});

  switch (d) {
    case directive::resume: {
      auto* m = new system_message(system_kind::resume);
      m->stats = std::move(stats);
      child->send_system(m);
      break;
    }
    case directive::restart: {
      auto delay = sys.backoff_delay(s.backoff, stats.failures.size());
      for (const troupe::pid& t : targets) {
        restart_stats st = t == child_pid ? stats : restart_stats{};
        auto send = [target = t, st = std::move(st)]() {
          auto* m = new system_message(system_kind::restart);
          m->stats = st;
          target.get()->send_system(m);
        };
        if (delay.count() > 0) sys.loop().arm(delay, std::move(send));
        else send();
      }
      break;
    }
    case directive::stop:
      for (const troupe::pid& t : targets)
        t.get()->send_system(new system_message(system_kind::stop));
      break;
    case directive::escalate:
      if (supervisor != nullptr) {
        supervisor->fail(reason);
      } else {
        child->send_system(new system_message(system_kind::stop));
      }
      break;
  }
}

}  // namespace

void context::handle_failure(system_message& m) noexcept {
  static const supervisor_strategy default_strategy{};
  const supervisor_strategy& s = props_->supervisor ? *props_->supervisor : default_strategy;
  apply_directive(system(), s, this, m.who, m.error, std::move(m.stats));
}

void actor_system::supervise_root(context& child, const std::string& reason, restart_stats& stats) {
  apply_directive(*this, cfg_.guardian, nullptr, process_ref(static_cast<process*>(&child)), reason,
                  stats);
}

}  // namespace troupe
