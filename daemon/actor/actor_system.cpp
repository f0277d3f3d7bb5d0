#include "actor/actor_system.hpp"

#include <algorithm>
#include <thread>

#include "actor/pid_table.hpp"
#include "system_generated.h"

namespace troupe {

namespace {

// Where messages to nobody go. A watch on it answers Terminated(not found).
class dead_letter_process final : public process {
 public:
  using process::process;
  void send_user(envelope* e) noexcept override {
    system().dead_letter(e, nullptr, dead_letter_reason::not_found);
  }
  void send_system(system_message* m) noexcept override {
    if (m->kind == system_kind::watch && m->who) {
      auto* t = new system_message(system_kind::terminated, process_ref(this));
      t->reason = terminated_reason::not_found;
      m->who->send_system(t);
    }
    delete m;
  }
  std::string id() const override { return "deadletter"; }
  bool dead() const noexcept override { return true; }
};

class fn_actor final : public actor {
 public:
  explicit fn_actor(std::shared_ptr<const behavior> fn) : fn_(std::move(fn)) {}
  void receive(context& ctx) override { (*fn_)(ctx); }

 private:
  std::shared_ptr<const behavior> fn_;
};

}  // namespace

props props::from_fn(behavior fn) {
  auto shared = std::make_shared<const behavior>(std::move(fn));
  return from([shared] { return std::unique_ptr<actor>(new fn_actor(shared)); });
}

std::uint64_t system_stats::dead_letters_total() const noexcept {
  std::uint64_t n = 0;
  for (const auto& c : dead_letters) n += c.load(std::memory_order_relaxed);
  return n;
}

// ---------------------------------------------------------------- system

actor_system::actor_system(system_config cfg)
    : cfg_(std::move(cfg)), root_(*this), rng_(std::random_device{}()) {
  if (cfg_.loop == nullptr) {
    own_loop_ = std::make_unique<event_loop>();
    own_loop_->start_thread();
    loop_ = own_loop_.get();
  } else {
    loop_ = cfg_.loop;
  }
  dispatcher_ = std::make_unique<troupe::dispatcher>(cfg_.dispatcher);
  dead_letters_ = pid(process_ref::adopt(new dead_letter_process(*this)));
  queue_budget_.store(cfg_.max_queued_bytes, std::memory_order_relaxed);
}

unsigned actor_system::queue_pressure() const noexcept {
  const std::uint64_t budget = queue_budget();
  if (budget == 0) return 0;
  const std::int64_t queued = queued_message_bytes();
  if (queued <= 0) return 0;
  return static_cast<unsigned>(std::min<std::uint64_t>(
      1000, static_cast<std::uint64_t>(queued) * 100 / budget));
}

actor_system::~actor_system() { shutdown(); }

pid actor_system::lookup(std::string_view id) {
  if (process_ref p = registry_.lookup(id)) return pid(std::move(p));
  return dead_letters_;
}

pid actor_system::resolve(std::string_view text, std::uint64_t generation) {
  const std::size_t slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == text.size()) return pid();
  const std::string_view address = text.substr(0, slash);
  const std::string_view id = text.substr(slash + 1);
  if (address == cfg_.address) {
    // One of this node's, from an earlier start: no actor of this one.
    if (earlier_start(generation, cfg_.generation)) return pid();
    return pid(registry_.lookup(id));
  }
  if (remote_resolver* r = remote_.load(std::memory_order_acquire))
    return pid(r->resolve(address, id, generation));
  return pid();
}

void actor_system::dead_letter(envelope* e, process* target, dead_letter_reason reason,
                               std::string_view missing) noexcept {
  stats_.dead_letters[static_cast<std::size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
  if (cfg_.on_dead_letter) {
    try {
      cfg_.on_dead_letter(reason, target, missing, *e);
    } catch (...) {
    }
  }
  message msg = message::adopt(e);
  // An undeliverable event is not published again: that could go round.
  if (events_.has_subscribers() && !is_runtime_event(e->type))
    events_.publish(dead_letter_event{pid(target), msg, reason});
  // A request to nobody gets an answer, so that its future fails at once
  // instead of waiting for its timeout. Never answer an answer.
  process* requester = e->sender;
  if (requester != nullptr && reason != dead_letter_reason::late_reply && !e->is<system::DeadLetterResponse>())
    answer_undelivered(requester, target, reason, missing);
}

void actor_system::answer_undelivered(process* requester, process* target, dead_letter_reason reason,
                                      std::string_view missing) noexcept {
  if (requester == nullptr || requester->dead()) return;
  requester->send_user(build<system::DeadLetterResponse>([&](flatbuffers::FlatBufferBuilder& b) {
    auto p = target ? encode_pid(b, target)
                    : system::CreatePidDirect(b, cfg_.address.c_str(), std::string(missing).c_str(), cfg_.generation);
    return system::CreateDeadLetterResponse(b, p, static_cast<system::DeadLetterReason>(reason));
  }));
}

std::chrono::nanoseconds actor_system::backoff_delay(const backoff& b, std::size_t failures) {
  std::lock_guard lock(rng_mu_);
  return b.delay(failures, rng_);
}

spawn_result actor_system::spawn_child(const props_ptr& p, const pid& parent,
                                       std::unique_ptr<std::string> name,
                                       std::unique_ptr<std::string> identity) {
  if (p->spawn_hooks.empty()) return spawn_plain(p, parent, std::move(name), std::move(identity));
  spawn_request r{*this, p, parent, std::move(name), std::move(identity)};
  return run_spawn(0, r);
}

spawn_result actor_system::run_spawn(std::size_t i, spawn_request& r) {
  const auto& hooks = r.props->spawn_hooks;
  if (i >= hooks.size()) return spawn_plain(r.props, r.parent, std::move(r.name), std::move(r.identity));
  return hooks[i](r, spawn_next(i + 1));
}

spawn_result spawn_next::operator()(spawn_request& r) const { return r.system.run_spawn(i_, r); }

spawn_result actor_system::spawn_plain(const props_ptr& p, const pid& parent,
                                       std::unique_ptr<std::string> name,
                                       std::unique_ptr<std::string> identity) {
  if (!parent && shutting_down()) return {pid(), spawn_error::shutting_down};
  if (name && (name->empty() || (*name)[0] == '$' || name->find('/') != std::string::npos))
    return {pid(), spawn_error::invalid_name};
  const std::uint64_t seq = registry_.next_seq();
  auto* c = new context(*this, p, parent, seq, std::move(name), std::move(identity));
  pid child(process_ref::adopt(c));
  if (c->name() != nullptr) {
    // Never started: nothing to stop, the last reference frees it.
    if (!registry_.add_named(*c->name(), c)) return {pid(), spawn_error::name_taken};
  } else {
    registry_.add(seq, c);
  }
  stats_.spawned.fetch_add(1, std::memory_order_relaxed);
  c->start();
  return {std::move(child), spawn_error::none};
}

bool actor_system::shutdown(std::chrono::milliseconds timeout) {
  if (stopped_) return true;
  shutting_down_.store(true, std::memory_order_release);
  // Stop the top of every tree; each stops its children before itself.
  registry_.for_each([](process& p) {
    auto* c = dynamic_cast<context*>(&p);
    if (c != nullptr && c->top_level()) c->send_system(new system_message(system_kind::stop));
  });
  const bool clean = registry_.wait_empty(std::chrono::steady_clock::now() + timeout);
  dispatcher_->stop();
  // Whatever did not stop in time is stopped here, with no worker running.
  registry_.for_each([](process& p) {
    if (auto* c = dynamic_cast<context*>(&p)) c->force_stop();
  });
  if (own_loop_) own_loop_->stop();
  stopped_ = true;
  return clean;
}

std::unique_ptr<std::string> actor_system::prefixed_name(std::string_view prefix) {
  auto name = std::make_unique<std::string>(prefix);
  name->push_back('$');
  name->append(std::to_string(registry_.next_seq()));
  return name;
}

// ---------------------------------------------------------------- root

pid root_context::spawn(const props_ptr& p) { return sys_.spawn_child(p, pid(), nullptr).pid; }

spawn_result root_context::spawn_named(const props_ptr& p, const std::string& name) {
  return sys_.spawn_child(p, pid(), std::make_unique<std::string>(name));
}

spawn_result root_context::spawn_kind(std::string_view kind, const std::string& name) {
  return sys_.spawn_kind(kind, name, pid());
}

spawn_result actor_system::spawn_kind(std::string_view kind, const std::string& name,
                                      const pid& parent) {
  props_ptr p = kinds_.find(kind);
  if (!p) return {pid(), spawn_error::unknown_kind};
  spawn_result r =
      spawn_child(p, parent, name.empty() ? nullptr : std::make_unique<std::string>(name));
  if (r.error == spawn_error::none && !r.pid)
    r.error = !parent && shutting_down() ? spawn_error::shutting_down : spawn_error::refused;
  return r;
}

pid root_context::spawn_prefix(const props_ptr& p, std::string_view prefix) {
  return sys_.spawn_child(p, pid(), sys_.prefixed_name(prefix)).pid;
}

void root_context::send(const pid& to, message m) {
  envelope* e = for_delivery(std::move(m));
  if (!to) {
    sys_.dead_letter(e, nullptr, dead_letter_reason::not_found);
    return;
  }
  to.get()->send_user(e);
}

namespace {

// A future whose timeout is armed already: armed before anything goes out,
// so that a fast answer can always cancel it.
future armed_future(actor_system& sys, std::chrono::nanoseconds timeout, future_process*& f) {
  f = new future_process(sys);
  future result{process_ref::adopt(f)};
  f->set_timeout(sys.loop().arm(timeout, [ref = process_ref(static_cast<process*>(f))] {
    static_cast<future_process*>(ref.get())->complete(future_status::timed_out, nullptr);
  }));
  return result;
}

}  // namespace

future root_context::request_future(const pid& to, message m, std::chrono::nanoseconds timeout) {
  future_process* f;
  future result = armed_future(sys_, timeout, f);
  envelope* e = for_delivery(std::move(m));
  f->retain();
  e->sender = f;
  if (!to) sys_.dead_letter(e, nullptr, dead_letter_reason::not_found);
  else to.get()->send_user(e);
  return result;
}

void root_context::stop(const pid& who) {
  if (who) who.get()->send_system(new system_message(system_kind::stop));
}

future root_context::stop_future(const pid& who, std::chrono::nanoseconds timeout) {
  future_process* f;
  future result = armed_future(sys_, timeout, f);
  if (!who) {
    f->complete(future_status::completed, nullptr);
    return result;
  }
  // Watch, then stop: both system messages, taken in order. The Terminated
  // the watch brings completes the future.
  who.get()->send_system(new system_message(system_kind::watch, process_ref(static_cast<process*>(f))));
  who.get()->send_system(new system_message(system_kind::stop));
  return result;
}

void root_context::poison(const pid& who) {
  send(who, make_message<system::PoisonPill>(
                [](flatbuffers::FlatBufferBuilder& b) { return system::CreatePoisonPill(b); }));
}

}  // namespace troupe
