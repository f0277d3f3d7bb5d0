// The actor's system messages and lifecycle: start, stop (children
// first), restart, watch and Terminated.
#include "actor/context.hpp"

#include <algorithm>

#include "actor/actor_system.hpp"
#include "actor/context_internal.hpp"
#include "actor/pid_table.hpp"

namespace troupe {

using cell::lifecycle;

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
      if (extras_) extras_->escalated.clear();  // they stop with this actor
      begin_stop();
      break;
    case system_kind::restart:
      if (state_ == actor_state::alive) {
        ex().stats = std::move(m.stats);
        ex().escalated.clear();  // a restart stops the children
        begin_restart();
      }
      break;
    case system_kind::resume:
      if (state_ == actor_state::alive) {
        ex().stats = std::move(m.stats);
        suspended_ = false;
        // The children whose failures this actor escalated wait for the
        // same decision: resumed with it (a restart or a stop of this
        // actor stops them instead).
        for (auto& [c, stats] : std::exchange(ex().escalated, {}))
          if (c) {
            auto* r = new system_message(system_kind::resume);
            r->stats = std::move(stats);  // its restart window goes on
            c.get()->send_system(r);
          }
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
  troupe::envelope* e = build<system::Terminated>([&](flatbuffers::FlatBufferBuilder& b) {
    auto p = who ? encode_pid(b, who) : system::CreatePidDirect(b, "", "");
    return system::CreateTerminated(b, p, static_cast<system::TerminatedReason>(reason));
  });
  // Its sender is the actor that is gone: the very process, which a name
  // (now free, or another actor's) would not find again.
  if (who != nullptr) {
    who->retain();
    e->sender = who;
  }
  return e;
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
  // What the old instance waited for is not the new one's business.
  holds_ = 0;
  ++ex().incarnation;
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
  dying_ref_ = name() ? system().registry().remove_named(*name()) : system().registry().remove(seq_);
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
      name() ? system().registry().remove_named(*name()) : system().registry().remove(seq_);
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

}  // namespace troupe
