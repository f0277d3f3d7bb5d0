// The proxy for another node's PID: what actors send it, messages and
// watch, unwatch, terminated and stop, goes to its peer's queue.
#include "remote/transport_internal.hpp"

#include "actor/system_message.hpp"

namespace troupe::remote {

remote_process::~remote_process() { peer_->forget_proxy(this); }

const std::string& remote_process::address() const noexcept { return peer_->address(); }

void remote_process::send_user(envelope* e) noexcept {
  auto* o = new outbound;
  o->e = e;
  o->target = process_ref(this);
  peer_->enqueue(o);
}

void remote_process::send_system(system_message* m) noexcept {
  outbound* o = nullptr;
  switch (m->kind) {
    case system_kind::watch:
      if (!m->who) break;
      add_watcher(m->who);
      o = new outbound;
      o->kind = item_kind::watch;
      o->other = m->who;
      break;
    case system_kind::unwatch:
      if (!m->who) break;
      remove_watcher(m->who.get());
      o = new outbound;
      o->kind = item_kind::unwatch;
      o->other = m->who;
      break;
    case system_kind::terminated:
      // A local actor that this (remote) watcher watched has stopped.
      if (!m->who) break;
      o = new outbound;
      o->kind = item_kind::terminated;
      o->other = m->who;
      o->text = m->who->id();
      o->reason = static_cast<std::uint8_t>(m->reason);
      break;
    case system_kind::stop:
      o = new outbound;
      o->kind = item_kind::stop;
      break;
    default:
      break;
  }
  delete m;
  if (o) {
    o->target = process_ref(this);
    peer_->enqueue(o);
  }
}

}  // namespace troupe::remote
