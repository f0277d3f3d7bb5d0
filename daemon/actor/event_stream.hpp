#pragma once
// The EventStream: system-wide publish/subscribe. The runtime publishes its
// events here (dead letters, actor failures, supervision decisions); user
// code may publish any message as an event of its own.
//
// Subscribers are callbacks, run on the publishing thread, or actors, which
// get each event as a message through their mailbox (system events arrive
// as troupe.system.DeadLetterEvent, ActorFailedEvent, SupervisionEvent).
// Each may give a predicate to see only some events. A callback that throws
// is counted and skipped, the others still get the event; a slow actor
// subscriber only lengthens its own mailbox. An actor subscriber that has
// stopped is unsubscribed on the next event.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "actor/message.hpp"
#include "actor/process.hpp"
#include "actor/supervision.hpp"

namespace troupe {

enum class dead_letter_reason : std::uint8_t {
  not_found = 0,       // no process with that id
  stopped = 1,         // the target had stopped
  mailbox_full = 2,    // dropped by a bounded mailbox
  late_reply = 3,      // a reply to a future that had already completed (timed out)
  shutdown = 4,        // still queued when the system shut down
  no_routee = 5,       // a router had no routee for it (none left, or no hash key)
  invalid = 6,         // its bytes did not verify against its schema
  node_lost = 7,       // for a node that was lost or could not be reached
  peer_queue_full = 8, // dropped by a full outbound queue to another node
  unconfirmed = 9,     // sent to another node, which never acknowledged it and will not
  over_budget = 10,    // the process's queued messages had reached their budget
  stale = 11,          // its PID names an earlier start (generation) of the target's node
  unhandled = 12,      // the actor that got it said it does not handle it
};
inline constexpr std::size_t dead_letter_reason_count = 13;
const char* to_string(dead_letter_reason r) noexcept;

struct dead_letter_event {
  pid target;
  message msg;
  dead_letter_reason reason;
};

struct actor_failed_event {
  pid who;
  std::string reason;
};

struct supervision_event {
  pid child;
  directive decision;
  std::string reason;
};

// A runtime event, or a message published by user code.
using event = std::variant<dead_letter_event, actor_failed_event, supervision_event, message>;

// The message an actor subscriber receives for `e`.
message to_message(const event& e);
// Its type, without building it (0 for an empty message).
type_id event_type(const event& e) noexcept;
// Whether `t` is the type of one of the runtime's own events (dead
// letters, failures, supervision decisions).
bool is_runtime_event(type_id t) noexcept;

class event_stream {
 public:
  using handler = std::function<void(const event&)>;
  using predicate = std::function<bool(const event&)>;

  // Returns an id for unsubscribe(). A subscriber added or removed while an
  // event is being published sees that event or not, never half of it.
  std::uint64_t subscribe(handler h, predicate filter = {});
  std::uint64_t subscribe(const pid& actor, predicate filter = {});
  // An actor that gets the events of these types only (none: every event).
  // Kept in an index by type, so that an event costs nothing for the
  // subscribers that do not want its type: thousands of actors may
  // subscribe to their own events without slowing every dead letter.
  std::uint64_t subscribe(const pid& actor, std::vector<type_id> types);
  void unsubscribe(std::uint64_t id);

  void publish(const event& e) noexcept;
  void publish(message m) noexcept { publish(event(std::move(m))); }

  // Cheap check so that publishers skip building events nobody reads.
  bool has_subscribers() const noexcept {
    return count_.load(std::memory_order_relaxed) != 0;
  }
  std::size_t subscriber_count() const noexcept { return count_.load(std::memory_order_relaxed); }
  std::uint64_t handler_failures() const noexcept {
    return handler_failures_.load(std::memory_order_relaxed);
  }

 private:
  struct entry {
    entry(std::uint64_t i, handler h, pid a, predicate f)
        : id(i), fn(std::move(h)), actor(std::move(a)), filter(std::move(f)) {}
    // Compaction copies: a publisher may still read the old block.
    entry(const entry& o)
        : id(o.id), fn(o.fn), actor(o.actor), filter(o.filter), gone(o.gone.load(std::memory_order_relaxed)) {}
    entry& operator=(const entry&) = delete;
    const std::uint64_t id;
    const handler fn;    // a callback subscriber, or
    const pid actor;     // an actor subscriber
    const predicate filter;
    std::atomic<bool> gone{false};  // unsubscribed: publishing skips it
  };
  // Subscribers in the order they came, in a vector whose capacity is
  // reserved up front: a subscribe appends in place (never moving what a
  // publisher reads), an unsubscribe marks its entry gone, and the list is
  // copied into a new block only when it is full or mostly gone. So a
  // subscribe or unsubscribe costs O(1) amortised (O(log n) to find an
  // id), not a copy of every subscriber. A publisher reads the first `size`
  // entries of the block it took under the lock; an old block lives on
  // while a publisher reads it.
  struct block {
    std::vector<entry> entries;
  };
  struct list {
    std::shared_ptr<block> b = std::make_shared<block>();
    std::size_t gone = 0;  // entries of b marked gone
    std::size_t live() const noexcept { return b->entries.size() - gone; }
    void append(std::uint64_t id, handler h, pid actor, predicate filter);
    // Marks `id` gone; false if it is not here (or gone already).
    bool remove(std::uint64_t id);
    void compact(std::size_t room);
  };
  // What a publisher reads of a list.
  struct view {
    std::shared_ptr<const block> keep;
    const entry* at = nullptr;
    std::size_t n = 0;
  };
  static view view_of(const list& l) noexcept;

  std::uint64_t add(handler h, pid actor, predicate filter);
  void deliver(const entry& s, const event& e, message& as_message);

  mutable std::mutex mu_;
  list all_;  // under mu_: callbacks, predicates, actors without a type list
  // Under mu_: actors with a type list, by type, and each one's types.
  std::unordered_map<type_id, list> by_type_;
  std::unordered_map<std::uint64_t, std::vector<type_id>> types_of_;
  std::uint64_t next_id_ = 1;
  std::atomic<std::size_t> count_{0};
  std::atomic<std::uint64_t> handler_failures_{0};
};

}  // namespace troupe
