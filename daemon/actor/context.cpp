#include "actor/context.hpp"

#include <algorithm>

#include "actor/actor_system.hpp"
#include "actor/context_internal.hpp"
#include "actor/clock.hpp"

namespace troupe {

using cell::lifecycle;

const char* to_string(spawn_error e) noexcept {
  switch (e) {
    case spawn_error::none: return "none";
    case spawn_error::name_taken: return "name taken";
    case spawn_error::invalid_name: return "invalid name";
    case spawn_error::shutting_down: return "shutting down";
    case spawn_error::unknown_kind: return "unknown kind";
    case spawn_error::refused: return "refused";
    case spawn_error::not_allowed: return "not allowed";
    case spawn_error::unreachable: return "unreachable";
    case spawn_error::timed_out: return "timed out";
  }
  return "unknown";
}

const char* to_string(persist_status s) noexcept {
  switch (s) {
    case persist_status::ok: return "ok";
    case persist_status::rejected: return "rejected";
    case persist_status::conflict: return "conflict";
    case persist_status::failed: return "failed";
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
context::extras& context::ex() {
  if (extras_ == nullptr) extras_ = new extras;
  return *extras_;
}

std::string context::id() const {
  if (const std::string* n = name()) return *n;
  std::string id = "$";
  id.append(std::to_string(seq_));
  return id;
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
  troupe::message original = keep_current();
  process_ref me(static_cast<process*>(this));
  f.get()->on_complete([me = std::move(me), original = std::move(original),
                        fn = std::move(fn)](future_result r) {
    auto* m = new system_message(system_kind::continuation);
    m->fn = [original, fn, r = std::move(r)](context& ctx) {
      ctx.with_current(original, [&] { fn(ctx, r); });
    };
    me->send_system(m);
  });
}

troupe::message context::keep_current() const {
  troupe::envelope* copy = share_envelope(cur_);
  if (cur_->sender != nullptr) {
    cur_->sender->retain();
    copy->sender = cur_->sender;
  }
  return troupe::message::adopt(copy);
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

spawn_result context::spawn_grain(const props_ptr& p, std::string identity) {
  spawn_result r = system().spawn_child(p, self(), nullptr, std::make_unique<std::string>(std::move(identity)));
  if (r) ex().children.insert(r.pid);
  return r;
}

spawn_result context::spawn_kind(std::string_view kind, const std::string& name) {
  spawn_result r = system().spawn_kind(kind, name, self());
  if (r) ex().children.insert(r.pid);
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

std::uint32_t context::incarnation() const noexcept { return extras_ ? extras_->incarnation : 0; }

void context::stash() {
  // A delivery's sender is let go when its turn ends (invoke_user), so the
  // stash keeps a copy of its own that holds it: a request stashed now is
  // answered when it comes back.
  troupe::envelope* kept = share_envelope(cur_);
  if (cur_->sender != nullptr) {
    cur_->sender->retain();
    kept->sender = cur_->sender;
  }
  ex().stash.push_back(kept);
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
    if (!suspended_ && holds_ == 0) deliver_lifecycle(lifecycle<system::ReceiveTimeout>());
  }
  if (extras_ && token == x.receive_timeout_token && x.receive_timeout.count() != 0)
    arm_receive_timeout();
}

}  // namespace troupe
