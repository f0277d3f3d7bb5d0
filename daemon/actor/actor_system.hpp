#pragma once
// The actor system of one node: registry, dispatcher, event loop (timers),
// EventStream, dead letters and the root context for code outside actors.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>

#include "actor/context.hpp"
#include "actor/dispatcher.hpp"
#include "actor/event_loop.hpp"
#include "actor/event_stream.hpp"
#include "actor/future.hpp"
#include "actor/kinds.hpp"
#include "actor/props.hpp"
#include "actor/cluster_view.hpp"
#include "actor/journal_service.hpp"
#include "actor/registry.hpp"
#include "actor/scheduler.hpp"
#include "actor/supervision.hpp"

namespace troupe {

struct system_config {
  std::string address = "local";  // this node's address, the first half of every PID
  // This start of the node (see node/generation.hpp); PIDs of its actors
  // carry it, so that one from before a restart never reaches an actor of
  // this start. 0: none (a system that is not a node's).
  std::uint64_t generation = 0;
  dispatcher_options dispatcher{};
  // The loop that owns timers. Null: the system runs a loop thread of its own.
  event_loop* loop = nullptr;
  // Supervises actors spawned from the root context.
  supervisor_strategy guardian{};
  // Told of every actor failure (a handler threw), on the failing actor's
  // thread, before its supervisor decides; for the node's log.
  std::function<void(const context&, const std::string& reason)> on_failure{};
  // Told of every dead letter (counted first), on the thread that made it,
  // before the message is released; for the node's log. Cheap, or it
  // slows every drop.
  // `missing`: the id that named no process, when that is why.
  std::function<void(dead_letter_reason, const process* target, std::string_view missing, const envelope& e)>
      on_dead_letter{};
  // The budget for queued user messages, in bytes (see set_queue_budget); 0: none.
  std::uint64_t max_queued_bytes = 0;
};

// Bytes of user messages waiting in mailboxes, in the whole process (every
// actor system in it: memory is the process's). Each thread counts in a
// counter of its own and adds it to the shared total in steps of
// `queued_bytes_step`, so a send writes no shared line; the total is within
// threads x step of the truth. Any thread.
std::int64_t queued_message_bytes() noexcept;
inline constexpr std::int64_t queued_bytes_step = 64 << 10;

// Counters of the runtime. Plain relaxed atomics, read by metrics.
struct system_stats {
  std::atomic<std::uint64_t> spawned{0};
  std::atomic<std::uint64_t> stopped{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> restarts{0};
  std::atomic<std::uint64_t> mailbox_dropped{0};
  std::array<std::atomic<std::uint64_t>, dead_letter_reason_count> dead_letters{};

  std::uint64_t dead_letters_total() const noexcept;
};

class actor_system;

// Makes processes for PIDs of other nodes; the remote transport is one.
class remote_resolver {
 public:
  // Any thread: the process standing for `id` on the node at `address`.
  // `generation` is the node's start the PID was made in (0: whichever is
  // current); sends to one of an earlier start are dead letters (stale).
  virtual process_ref resolve(std::string_view address, std::string_view id, std::uint64_t generation) = 0;
  // Any thread: spawns `kind` (named `name` unless empty) on the node at
  // `address`, as that node admits peers' spawns; `done` runs on the loop
  // thread with the new actor, or the refusal and why in words.
  virtual void spawn_remote(const std::string& address, const std::string& kind, const std::string& name,
                            std::chrono::milliseconds timeout,
                            std::function<void(spawn_result, const std::string& why)> done) = 0;

 protected:
  ~remote_resolver() = default;
};

// Spawning and messaging from code that is not an actor.
class root_context {
 public:
  explicit root_context(actor_system& sys) noexcept : sys_(sys) {}

  pid spawn(const props_ptr& p);
  spawn_result spawn_named(const props_ptr& p, const std::string& name);
  pid spawn_prefix(const props_ptr& p, std::string_view prefix);
  // A registered kind (see kinds.hpp), named unless `name` is empty.
  spawn_result spawn_kind(std::string_view kind, const std::string& name = {});

  void send(const pid& to, message m);
  template <class T, class F>
  void send(const pid& to, F&& fill) { send(to, make_message<T>(std::forward<F>(fill))); }
  // A request whose reply completes the returned future; a plain thread
  // waits with future::wait_for or get_result.
  future request_future(const pid& to, message m, std::chrono::nanoseconds timeout);
  void stop(const pid& who);
  // Stops `who` and returns a future that completes once it has stopped
  // (children first), or times out; an actor already gone completes it at once.
  future stop_future(const pid& who, std::chrono::nanoseconds timeout);
  void poison(const pid& who);

 private:
  actor_system& sys_;
};

class actor_system {
 public:
  explicit actor_system(system_config cfg = {});
  ~actor_system();
  actor_system(const actor_system&) = delete;
  actor_system& operator=(const actor_system&) = delete;

  root_context& root() noexcept { return root_; }
  // The kinds that can be spawned by name.
  kind_registry& kinds() noexcept { return kinds_; }
  // Internal: a registered kind, as a child of `parent` (none: a root
  // actor), named unless `name` is empty; see root_context::spawn_kind.
  spawn_result spawn_kind(std::string_view kind, const std::string& name, const pid& parent);
  const std::string& address() const noexcept { return cfg_.address; }
  std::uint64_t generation() const noexcept { return cfg_.generation; }
  troupe::registry& registry() noexcept { return registry_; }
  troupe::dispatcher& dispatcher() noexcept { return *dispatcher_; }
  event_loop& loop() noexcept { return *loop_; }
  event_stream& events() noexcept { return events_; }
  system_stats& stats() noexcept { return stats_; }
  const supervisor_strategy& guardian() const noexcept { return cfg_.guardian; }
  const system_config& config() const noexcept { return cfg_; }

  // Timers that send messages (see scheduler.hpp).
  troupe::scheduler scheduler() noexcept { return troupe::scheduler(*this, nullptr); }
  // The process that turns whatever it gets into dead letters.
  const pid& dead_letters() const noexcept { return dead_letters_; }

  // The process for `id`, or the dead-letter process when there is none.
  pid lookup(std::string_view id);
  // "address/id" as a PID: a local actor (null if there is none by that id),
  // a process of another node (null if this node has no transport), or null
  // when the text is not a PID. `generation`: the start of the node the PID
  // was made in, when known (0: whichever is current).
  pid resolve(std::string_view text, std::uint64_t generation = 0);
  // Set once by the transport, before anything resolves; null removes it.
  void set_remote(remote_resolver* r) noexcept { remote_.store(r, std::memory_order_release); }
  // The transport to other nodes; null when the node has none.
  remote_resolver* remote() const noexcept { return remote_.load(std::memory_order_acquire); }
  // The cluster's view of its members (null when the node has no cluster);
  // set by the cluster once it runs, removed before it goes.
  void set_cluster(cluster_view* v) noexcept { cluster_.store(v, std::memory_order_release); }
  cluster_view* cluster() const noexcept { return cluster_.load(std::memory_order_acquire); }
  // Where persistent actors keep their state (journal_service.hpp): set by
  // the node's persistence module before any actor uses it, cleared after
  // the last has stopped; null when the node has none.
  void set_journal(journal_service* j) noexcept { journal_.store(j, std::memory_order_release); }
  journal_service* journal() const noexcept { return journal_.load(std::memory_order_acquire); }

  // Live local actors.
  std::size_t actor_count() const noexcept { return registry_.size(); }

  // The queued-message budget: while queued_message_bytes() is at or over
  // it, a send to a local mailbox is dropped as a dead letter (over_budget)
  // instead of queued; system messages always pass. 0: no budget. Any thread.
  void set_queue_budget(std::uint64_t bytes) noexcept {
    queue_budget_.store(bytes, std::memory_order_relaxed);
  }
  std::uint64_t queue_budget() const noexcept { return queue_budget_.load(std::memory_order_relaxed); }
  // How much of the budget is used, in percent (0 without a budget).
  unsigned queue_pressure() const noexcept;

  // Counts and publishes a message that could not be delivered, and answers
  // a request with DeadLetterResponse so that its future fails fast.
  // `missing`: the id it was sent to here, when no actor has it (the
  // answer names it, so that the asker knows which of its requests failed).
  void dead_letter(envelope* e, process* target, dead_letter_reason reason, std::string_view missing = {}) noexcept;
  // Tells `requester` (a future, or an actor that asked) that its request
  // to `target` (or to the id `missing` here) will get no answer: a
  // DeadLetterResponse saying why.
  void answer_undelivered(process* requester, process* target, dead_letter_reason reason,
                          std::string_view missing = {}) noexcept;

  // Stops every actor (children before parents), waits up to `timeout` for
  // them, then stops the dispatcher and the loop and joins every thread.
  // Returns false if some actors had to be stopped by force.
  bool shutdown(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  bool shutting_down() const noexcept { return shutting_down_.load(std::memory_order_acquire); }

  // Internal: spawning, shared by root and actor contexts.
  // `identity`: the actor is a grain's activation (see context::identity).
  spawn_result spawn_child(const props_ptr& p, const pid& parent, std::unique_ptr<std::string> name,
                           std::unique_ptr<std::string> identity = nullptr);
  // Internal: the spawn middleware chain from hook `i`, then the spawn itself.
  spawn_result run_spawn(std::size_t i, spawn_request& r);
  // Internal: "prefix$N", unique among this system's actors.
  std::unique_ptr<std::string> prefixed_name(std::string_view prefix);
  // Internal: the guardian's handling of a failed root actor.
  void supervise_root(context& child, const std::string& reason, restart_stats& stats);
  // Internal: a delay from `b` with this system's random source.
  std::chrono::nanoseconds backoff_delay(const backoff& b, std::size_t failures);

 private:
  spawn_result spawn_plain(const props_ptr& p, const pid& parent, std::unique_ptr<std::string> name,
                           std::unique_ptr<std::string> identity);

  system_config cfg_;
  std::unique_ptr<event_loop> own_loop_;
  event_loop* loop_;
  troupe::registry registry_;
  kind_registry kinds_;
  std::unique_ptr<troupe::dispatcher> dispatcher_;
  event_stream events_;
  system_stats stats_;
  root_context root_;
  pid dead_letters_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<std::uint64_t> queue_budget_{0};
  std::atomic<remote_resolver*> remote_{nullptr};
  std::atomic<cluster_view*> cluster_{nullptr};
  std::atomic<journal_service*> journal_{nullptr};
  bool stopped_ = false;
  std::mutex rng_mu_;
  std::mt19937_64 rng_;
};

}  // namespace troupe
