#include "actor/scheduler.hpp"

#include "actor/actor_system.hpp"

namespace troupe {

process* scheduler::sender_of(const pid& sender) const noexcept {
  if (sender) return sender.get();
  return owner_;  // null from the root: a plain send
}

timer_handle scheduler::owned(timer_handle h) {
  if (owner_ != nullptr) owner_->own_timer(h.share());
  return h;
}

// Both callbacks hold the target and one envelope: 16 bytes, stored in the
// timer itself, so arming allocates nothing beyond the timer's pool block.
timer_handle scheduler::once(duration delay, const pid& target, message m, process* sender) {
  envelope* e = for_delivery(std::move(m));
  e->flags |= envelope::from_timer;
  if (sender != nullptr) {
    sender->retain();
    e->sender = sender;
  }
  pid to = target ? target : sys_.dead_letters();
  return owned(sys_.loop().arm(delay, [to = std::move(to), msg = message::adopt(e)]() mutable {
    to.get()->send_user(msg.release());
  }));
}

timer_handle scheduler::repeatedly(duration initial, duration interval, const pid& target,
                                   message m, process* sender) {
  envelope* e = for_delivery(std::move(m));
  if (sender != nullptr) {
    sender->retain();
    e->sender = sender;
  }
  pid to = target ? target : sys_.dead_letters();
  return owned(sys_.loop().arm_repeating(
      initial, interval, [to = std::move(to), msg = message::adopt(e)]() -> bool {
        // A stopped target ends the timer: its messages would only be dead letters.
        if (to.get()->dead()) return false;
        // Each firing is a new envelope sharing the payload (and the sender).
        envelope* x = share_envelope(msg.get());
        x->flags |= envelope::from_timer;
        if (msg->sender != nullptr) {
          msg->sender->retain();
          x->sender = msg->sender;
        }
        to.get()->send_user(x);
        return true;
      }));
}

timer_handle scheduler::send_once(duration delay, const pid& target, message m) {
  return once(delay, target, std::move(m), nullptr);
}

timer_handle scheduler::send_repeatedly(duration initial, duration interval, const pid& target,
                                        message m) {
  return repeatedly(initial, interval, target, std::move(m), nullptr);
}

timer_handle scheduler::request_once(duration delay, const pid& target, message m,
                                     const pid& sender) {
  return once(delay, target, std::move(m), sender_of(sender));
}

timer_handle scheduler::request_repeatedly(duration initial, duration interval, const pid& target,
                                           message m, const pid& sender) {
  return repeatedly(initial, interval, target, std::move(m), sender_of(sender));
}

}  // namespace troupe
