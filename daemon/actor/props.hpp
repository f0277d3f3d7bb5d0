#pragma once
// Props: how to make an actor and how its mailbox, supervision and
// middleware behave. Made once and shared by every spawn.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "actor/message.hpp"
#include "actor/process.hpp"
#include "actor/supervision.hpp"

namespace troupe {

class context;

// What user code implements.
class actor {
 public:
  virtual ~actor() = default;
  // Handles the current message: ctx.message<T>(), ctx.type(), ...
  virtual void receive(context& ctx) = 0;
};

using producer = std::function<std::unique_ptr<actor>()>;
using behavior = std::function<void(context&)>;

enum class mailbox_kind : std::uint8_t {
  unbounded,            // the default: lock-free, never refuses a message
  bounded_block,        // full: senders outside the actor system wait for room
  bounded_drop_newest,  // full: the incoming message is dropped and counted (the
                        // queue stays lock-free; senders racing at the bound may
                        // each add one)
  bounded_drop_oldest,  // full: the oldest queued message is dropped and counted
};

// While one lives, the calling thread never waits for room in a
// bounded_block mailbox: what it sends to a full one is refused and counted
// (mailbox_full), as on the event loop. For threads that serve many
// clients, such as the admin API's: one full mailbox must not hold them.
class no_waiting_for_room {
 public:
  no_waiting_for_room() noexcept;
  ~no_waiting_for_room();
  no_waiting_for_room(const no_waiting_for_room&) = delete;
  no_waiting_for_room& operator=(const no_waiting_for_room&) = delete;

 private:
  bool before_;
};

struct mailbox_options {
  mailbox_kind kind = mailbox_kind::unbounded;
  std::uint32_t capacity = 0;      // bounded kinds only
  std::uint32_t throughput = 300;  // messages per run before yielding the worker
};

class actor_system;

// Why a spawn made no actor: one vocabulary wherever the spawn happens
// (here, or on another node through the transport, which adds the last
// three). The wire's SpawnError has the same values.
enum class spawn_error : std::uint8_t {
  none,
  name_taken,       // an actor with that name is alive
  invalid_name,     // empty, or starts with '$' (reserved for anonymous ids)
  shutting_down,    // the system is stopping and admits no new actors
  unknown_kind,     // spawn_kind: no kind of that name is registered
  refused,          // spawn middleware made no actor
  not_allowed,      // the other node does not let peers spawn the kind
  unreachable,      // the other node cannot be reached, or broke the protocol
  timed_out,        // the other node did not answer in time
};
const char* to_string(spawn_error e) noexcept;

struct spawn_result {
  troupe::pid pid;
  spawn_error error = spawn_error::none;
  // False when refused: with an error, or by spawn middleware that made no
  // actor (no pid, no error).
  explicit operator bool() const noexcept { return error == spawn_error::none && pid; }
};


// Middleware, set on Props and composed in the order added: the first one
// added is the outermost. Each gets the rest of the chain as `next`; not
// calling it swallows the message (or refuses the spawn). The continuations
// are plain values: running a chain allocates nothing.
class receive_next {
 public:
  void operator()(context& ctx) const;

 private:
  friend class context;
  explicit receive_next(std::size_t i) noexcept : i_(i) {}
  std::size_t i_;
};

class send_next {
 public:
  // Sends `e` (ownership passes) to `target`.
  void operator()(const pid& target, envelope* e) const;

 private:
  friend class context;
  send_next(context& ctx, std::size_t i) noexcept : ctx_(&ctx), i_(i) {}
  context* ctx_;
  std::size_t i_;
};

// What a spawn asks for; spawn middleware may change the name or the props.
struct spawn_request {
  actor_system& system;
  std::shared_ptr<const struct props> props;
  const pid& parent;  // empty for a spawn from the root context
  std::unique_ptr<std::string> name;  // null for an anonymous actor
  // A grain's identity (its kind is the props'); null for other actors.
  std::unique_ptr<std::string> identity = nullptr;
};

class spawn_next {
 public:
  spawn_result operator()(spawn_request& r) const;

 private:
  friend class actor_system;
  explicit spawn_next(std::size_t i) noexcept : i_(i) {}
  std::size_t i_;
};

// Around the handling of each message (lifecycle messages included).
using receive_middleware = std::function<void(context&, const receive_next&)>;
// Around each send from the actor (send, request, respond, forward): may
// look at or replace the envelope (set_header), redirect or drop it.
using send_middleware =
    std::function<void(context&, const pid& target, envelope* e, const send_next&)>;
// Around each spawn of these Props.
using spawn_middleware = std::function<spawn_result(spawn_request&, const spawn_next&)>;

struct props {
  producer make;
  mailbox_options mailbox{};
  // Supervises this actor's children; null means the default one-for-one restart.
  std::shared_ptr<const supervisor_strategy> supervisor;
  // Set for routers (router.hpp): sends to the actor are routed.
  std::shared_ptr<const struct router_config> router;
  std::string kind;  // name for logs and metrics ("acme.counter")
  // The plugin whose code this kind runs; empty for the node's own actors.
  // Plugin code runs on the workers only, never on the event loop thread,
  // unless the operator declared that the kind's handlers never block
  // (kinds.<kind>.on_event_loop): then a message from another node may run
  // its turn there, as it runs the node's own actors' (dispatcher::hold).
  std::string plugin;
  bool on_event_loop = false;
  // A persistent kind's actors store a snapshot every this many events
  // (journal_service.hpp); 0: only when an actor asks.
  std::uint32_t snapshot_every = 0;
  std::vector<receive_middleware> receive_hooks;
  std::vector<send_middleware> send_hooks;
  std::vector<spawn_middleware> spawn_hooks;

  template <class A, class... Args>
  static props of(Args... args) {
    props p;
    p.make = [=] { return std::unique_ptr<actor>(new A(args...)); };
    return p;
  }
  static props from(producer make) {
    props p;
    p.make = std::move(make);
    return p;
  }
  // Props from a function: the actor's whole behaviour is `fn`.
  static props from_fn(behavior fn);
};

using props_ptr = std::shared_ptr<const props>;

inline props_ptr share(props p) { return std::make_shared<const props>(std::move(p)); }

}  // namespace troupe
