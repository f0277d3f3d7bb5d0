#pragma once
// The scheduler: messages sent later, once or repeatedly, on the node's
// libuv loop timers. Every call returns a timer_handle; cancel() is safe from
// any thread and a cancelled timer never fires afterwards.
//
// From the root (actor_system::scheduler()) a timer lives until it fires or
// is cancelled; a repeating one also ends when its target has stopped. From
// an actor (context::scheduler(), used inside its handler) the timers also
// belong to the actor: they are cancelled and released when it stops.
#include <chrono>

#include "actor/event_loop.hpp"
#include "actor/message.hpp"
#include "actor/process.hpp"

namespace troupe {

class actor_system;
class context;

class scheduler {
 public:
  using duration = std::chrono::nanoseconds;

  scheduler(actor_system& sys, context* owner) noexcept : sys_(sys), owner_(owner) {}

  timer_handle send_once(duration delay, const pid& target, message m);
  timer_handle send_repeatedly(duration initial, duration interval, const pid& target, message m);
  // As the sends, with `sender` as the message's sender, so that the reply
  // goes there. From an actor, an empty sender means the actor itself.
  timer_handle request_once(duration delay, const pid& target, message m, const pid& sender = {});
  timer_handle request_repeatedly(duration initial, duration interval, const pid& target,
                                  message m, const pid& sender = {});

 private:
  timer_handle once(duration delay, const pid& target, message m, process* sender);
  timer_handle repeatedly(duration initial, duration interval, const pid& target, message m,
                          process* sender);
  process* sender_of(const pid& sender) const noexcept;
  timer_handle owned(timer_handle h);

  actor_system& sys_;
  context* owner_;
};

}  // namespace troupe
