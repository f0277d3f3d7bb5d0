#pragma once
// An actor's cell: its mailbox, its place in the hierarchy, and the context
// its handler works with. One object per actor, kept small (an idle actor
// costs well under 300 bytes): what only some actors use lives in `extras`,
// allocated on first use.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actor/dispatcher.hpp"
#include "actor/future.hpp"
#include "actor/message.hpp"
#include "actor/mpsc_queue.hpp"
#include "actor/process.hpp"
#include "actor/props.hpp"
#include "actor/scheduler.hpp"
#include "actor/system_message.hpp"

namespace troupe {

class actor_system;
class router_state;
struct bounded_queue;
enum class dead_letter_reason : std::uint8_t;

enum class actor_state : std::uint8_t { alive, stopping, restarting, stopped };

// Actor cells come from the block pool: spawned on one thread, they are
// often freed on another.
class context final : public process, public schedulable, public pooled {
 public:
  // ---- the current message ----
  type_id type() const noexcept { return cur_->type; }
  template <class T>
  const T* message() const noexcept { return cur_->as<T>(); }
  // The envelope being handled; valid during receive only.
  troupe::envelope& envelope() const noexcept { return *cur_; }
  // A header of the current message; empty if it has none by that key.
  std::string_view header(std::string_view key) const noexcept {
    return cur_->hdrs ? cur_->hdrs->get(key) : std::string_view();
  }
  // A counted handle on the current message, to keep it.
  troupe::message current() const noexcept { return troupe::message::share(cur_); }
  // Who sent it: set for requests, empty for plain sends.
  troupe::pid sender() const noexcept { return troupe::pid(cur_->sender); }

  // ---- identity ----
  troupe::pid self() noexcept { return troupe::pid(static_cast<process*>(this)); }
  const troupe::pid& parent() const noexcept { return parent_; }
  // Spawned from the root context (fixed at spawn: safe from any thread).
  bool top_level() const noexcept { return top_level_; }
  std::vector<troupe::pid> children() const;
  actor_state state() const noexcept { return state_; }
  const troupe::props& props() const noexcept { return *props_; }

  // ---- sending ----
  void send(const troupe::pid& to, troupe::message m) {
    send_envelope(to, for_delivery(std::move(m)), false);
  }
  template <class T, class F>
  void send(const troupe::pid& to, F&& fill) {
    send_envelope(to, build<T>(std::forward<F>(fill)), false);
  }
  // Like send, with this actor as the sender: the reply arrives as a message.
  void request(const troupe::pid& to, troupe::message m) {
    send_envelope(to, for_delivery(std::move(m)), true);
  }
  template <class T, class F>
  void request(const troupe::pid& to, F&& fill) {
    send_envelope(to, build<T>(std::forward<F>(fill)), true);
  }
  // A request whose reply completes a future (see reenter_after).
  troupe::future request_future(const troupe::pid& to, troupe::message m,
                                std::chrono::nanoseconds timeout);
  // Sends an envelope made elsewhere (a plugin's bytes): ownership passes.
  void send_envelope(process* to, troupe::envelope* e, bool as_request);
  // Replies to the sender of the current message (a dead letter if none).
  void respond(troupe::message m);
  template <class T, class F>
  void respond(F&& fill) { respond(make_message<T>(std::forward<F>(fill))); }
  // Passes the current message on, keeping its sender.
  void forward(const troupe::pid& to);
  // Runs `fn` in this actor's context when `f` completes, between messages.
  void reenter_after(const troupe::future& f,
                     std::function<void(context&, const future_result&)> fn);
  // For a continuation made during a handler: a copy of the current message
  // with its sender, to be current again (with_current) when the
  // continuation runs, so that respond() there answers the requester.
  troupe::message keep_current() const;
  template <class F>
  void with_current(const troupe::message& m, F&& fn) {
    troupe::envelope* saved = cur_;
    cur_ = m.get();
    struct restore {
      context* c;
      troupe::envelope* e;
      ~restore() { c->cur_ = e; }
    } r{this, saved};
    fn();
  }

  // ---- spawning and stopping ----
  troupe::pid spawn(const props_ptr& p);
  spawn_result spawn_named(const props_ptr& p, const std::string& name);
  troupe::pid spawn_prefix(const props_ptr& p, std::string_view prefix);
  // A child of a registered kind (see kinds.hpp), named unless `name` is empty.
  spawn_result spawn_kind(std::string_view kind, const std::string& name = {});
  // A child that is the activation of the grain (p->kind, identity).
  spawn_result spawn_grain(const props_ptr& p, std::string identity);
  void stop(const troupe::pid& who);    // at once (system queue)
  void poison(const troupe::pid& who);  // after what is already queued
  void watch(const troupe::pid& who);
  void unwatch(const troupe::pid& who);

  // ---- behaviour ----
  void become(behavior b);          // replaces the current behaviour
  void become_stacked(behavior b);  // pushes; unbecome() returns to the previous
  void unbecome();
  // Keeps the current message aside; unstash_all() replays the kept ones, in
  // order, before anything else in the mailbox.
  void stash();
  void unstash_all();
  // Keeps user messages in the mailbox, undelivered, until as many
  // release_user_messages() (system messages go on: stops, watches,
  // continuations). For what the actor must wait for before its next
  // message: an event it persists, its recovery. Its own turns only; a
  // restart releases them all.
  void hold_user_messages() noexcept { ++holds_; }
  void release_user_messages() noexcept {
    if (holds_ > 0) --holds_;
  }
  bool holding_user_messages() const noexcept { return holds_ != 0; }
  // How many times the actor was restarted: a continuation made before a
  // restart (the answer to what the replaced instance asked) can tell.
  std::uint32_t incarnation() const noexcept;
  // Delivers troupe.system.ReceiveTimeout after `d` without user messages.
  void set_receive_timeout(std::chrono::nanoseconds d);
  void cancel_receive_timeout();

  // Timers owned by this actor: cancelled and released when it stops. Use
  // from the actor's own handler only.
  troupe::scheduler scheduler() noexcept { return troupe::scheduler(system(), this); }
  // Internal: keeps a handle on a timer of this actor's, to cancel it at stop.
  void own_timer(timer_handle h);

  // Fails this actor as an exception from its handler would: it is
  // suspended and its supervisor decides what happens.
  void fail(std::string reason) noexcept;
  // Internal (supervision): a child's failure that this actor's strategy
  // escalates. This actor fails; the child is resumed with it if its own
  // supervisor resumes it.
  void escalate(troupe::pid child, std::string reason, restart_stats child_stats) noexcept;

  // ---- process ----
  void send_user(troupe::envelope* e) noexcept override;
  void send_system(system_message* m) noexcept override;
  std::string id() const override;
  bool dead() const noexcept override { return dead_.load(std::memory_order_acquire); }
  unsigned pressure() const noexcept override;
  std::uint32_t run() noexcept override;

  // The routing state when this actor is a router (router.hpp), else null.
  router_state* router() const noexcept { return router_; }

  std::uint64_t seq() const noexcept { return seq_; }
  const std::string* name() const noexcept { return labels_ && labels_->name ? &*labels_->name : nullptr; }
  // A grain's identity (its kind is props().kind): null for an actor that
  // is not a grain's activation. Fixed at spawn: safe from any thread.
  const std::string* identity() const noexcept {
    return labels_ && labels_->identity ? &*labels_->identity : nullptr;
  }
  // For a grain: when it last got a user message that was not from a timer
  // (steady_ns); its spawn before the first. Any thread.
  std::int64_t active_at_ns() const noexcept {
    return identity() != nullptr ? labels_->active_at.load(std::memory_order_relaxed) : 0;
  }
  // Whether it failed and waits for its supervisor's decision.
  bool suspended() const noexcept { return suspended_; }

  // The actor whose turn the calling thread runs now, or null.
  static const context* running_here() noexcept;
  // Writes "plugin P, kind K, actor ID" (or what of it there is) of the actor
  // whose turn this thread runs, into buf (n > 0), and returns its length; 0 when
  // none runs here. Async-signal-safe: no allocation, no lock; for a report
  // from a signal handler.
  static std::size_t describe_running(char* buf, std::size_t n) noexcept;
  // About how many user messages wait (any thread; see mailbox_queue::depth).
  std::size_t mailbox_depth() const;
  // Pushes the messages this thread's actor turn sent in a row to one
  // mailbox and kept back to push together (see send_user). Call before
  // waiting for anything in a turn: a reply cannot come to a message not
  // yet sent.
  static void flush_sends() noexcept;

  // Created by actor_system::spawn_* only.
  context(actor_system& sys, props_ptr p, troupe::pid parent, std::uint64_t seq,
          std::unique_ptr<std::string> name, std::unique_ptr<std::string> identity = nullptr);
  // Shutdown after the dispatcher has stopped: no thread runs this actor.
  void force_stop() noexcept;
  // Created by actor_system::spawn_*: queues Started and schedules the new
  // actor, which nobody else can reach yet.
  void start() noexcept;


 private:
  struct extras;
  ~context() override;

  extras& ex();
  void send_envelope(const troupe::pid& to, troupe::envelope* e, bool as_request);
  void deliver(process* to, troupe::envelope* e);
  void wake() noexcept;
  void own() noexcept;
  void refuse(troupe::envelope* e, dead_letter_reason why) noexcept;
  void drain_dead() noexcept;
  troupe::envelope* next_user(bool& queued) noexcept;
  troupe::envelope* take_user(bool& queued) noexcept;
  troupe::envelope* next_bounded() noexcept;

  void process_system() noexcept;
  void handle_system(system_message& m) noexcept;
  void invoke_user(troupe::envelope* e, bool queued) noexcept;
  void dispatch();
  void handle_current();
  void run_receive(std::size_t i);
  void run_send(std::size_t i, const troupe::pid& to, troupe::envelope* e);
  friend class receive_next;
  friend class send_next;
  void send_limited(troupe::envelope* e) noexcept;
  void pace_flood() noexcept;
  void deliver_lifecycle(troupe::envelope* e) noexcept;
  void handle_failure(system_message& m) noexcept;
  void handle_terminated(system_message& m) noexcept;
  void handle_receive_timeout(std::uint64_t token) noexcept;
  void start_actor() noexcept;
  void begin_stop() noexcept;
  void begin_restart() noexcept;
  void stop_children() noexcept;
  bool children_empty() const noexcept;
  void finalize_stop() noexcept;
  void finalize_restart() noexcept;
  void arm_receive_timeout() noexcept;
  troupe::envelope* make_terminated(process* who, terminated_reason reason) const;

  // Mailbox. Producers touch user_q_, sys_q_ and dead_ only. Whoever owns
  // the mailbox (has it queued in the dispatcher or runs it) gives it up
  // with one compare-exchange on the user queue's tail: marking it idle when
  // empty, or parked while user messages must wait (suspended, stopping).
  // Every producer ends with a push to the user queue (a system message or
  // a bounded mailbox pushes a wake token), and the push that finds the tail
  // marked makes its caller the owner. So the owner never looks at the actor
  // after giving it up, which may be freed by then.
  //
  // The cell fits a 192-byte block, and the user queue starts its second
  // cache line. The small fields below fill the padding after
  // schedulable's last field, up to that line: what a send reads there
  // (dead_, capacity_) is written once a turn at most.
  std::atomic<bool> dead_{false};
  // Consumer-side state, touched only by the thread running the actor.
  actor_state state_ = actor_state::alive;
  const bool top_level_;
  // Whether a thread runs this actor's turn now: set by run() while it owns
  // the mailbox; read by a sender flooding it (pace_flood).
  std::atomic<bool> running_{false};
  // Set by a handler sending to this mailbox in bulk (pace_flood); cleared
  // when the mailbox is drained. While set, a turn that used its budget
  // keeps its worker (see run()).
  std::atomic<bool> flooded_{false};
  // Consumer-side too, and packed in one field: the byte this spares keeps
  // the cell within its block. (No bit-field may share a byte with a field
  // another thread reads or writes.)
  std::uint16_t holds_ : 15 = 0;     // hold_user_messages()
  std::uint16_t suspended_ : 1 = 0;  // a bool
  // A drop-newest mailbox keeps the lock-free queue and compares its depth
  // with this; the other bounded kinds queue in `bounded_`. 0: unbounded.
  std::uint32_t capacity_ = 0;
  mailbox_queue user_q_;  // owned by its spawner until start()
  mpsc_stack<system_message> sys_q_;
  // The rest of the second line is the running thread's: it writes the
  // queue's head, its pop count and cur_ for every message.
  troupe::envelope* cur_ = nullptr;
  // A name, and a grain activation's identity: few actors have either, so
  // both live out of line, behind one pointer.
  struct labels {
    std::optional<std::string> name;
    std::optional<std::string> identity;
    std::atomic<std::int64_t> active_at{0};  // a grain's: its last message not from its own timers
  };
  std::unique_ptr<labels> labels_;
  std::uint64_t seq_;
  // The third line: what every send reads (besides dead_ and capacity_,
  // in the first) and what the running thread only reads. Nobody writes it
  // per message, so senders on other cores keep their copies: in the second
  // line, each send would wait for the line the receiver just wrote.
  bounded_queue* bounded_ = nullptr;
  router_state* router_ = nullptr;  // set before the actor is reachable
  props_ptr props_;
  std::unique_ptr<actor> actor_;
  troupe::pid parent_;
  extras* extras_ = nullptr;
  process_ref dying_ref_;  // the registry's reference, dropped after the last run
};

// The cell's size decides the pool block every actor costs (block_pool.hpp).
static_assert(sizeof(context) <= 192, "an actor cell fits a 192-byte block");

}  // namespace troupe
