#pragma once
// Props: how to make an actor and how its mailbox, supervision and
// middleware behave. Made once and shared by every spawn.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "actor/message.hpp"
#include "actor/supervision.hpp"

namespace troupe {

class context;
class pid;

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
  bounded_drop_newest,  // full: the incoming message is dropped and counted
  bounded_drop_oldest,  // full: the oldest queued message is dropped and counted
};

struct mailbox_options {
  mailbox_kind kind = mailbox_kind::unbounded;
  std::uint32_t capacity = 0;      // bounded kinds only
  std::uint32_t throughput = 300;  // messages per run before yielding the worker
};

// Middleware hooks, applied in the order they were added. Each gets the
// continuation to call; not calling it swallows the message.
using receive_next = std::function<void(context&)>;
using receive_middleware = std::function<void(context&, const receive_next&)>;
using send_next = std::function<void(const pid& target, envelope* e)>;
using send_middleware = std::function<void(context&, const pid& target, envelope* e,
                                           const send_next&)>;
using spawn_middleware = std::function<void(const pid& child, const std::string& kind)>;

struct props {
  producer make;
  mailbox_options mailbox{};
  // Supervises this actor's children; null means the default one-for-one restart.
  std::shared_ptr<const supervisor_strategy> supervisor;
  std::string kind;  // name for logs and metrics ("acme.counter")
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
