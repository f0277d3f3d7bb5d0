#include "actor/future.hpp"

#include "actor/context.hpp"

#include <cstdio>

#include "actor/actor_system.hpp"
#include "actor/cpu.hpp"
#include "actor/futex.hpp"
#include "system_generated.h"

namespace troupe {

const char* to_string(future_status s) noexcept {
  switch (s) {
    case future_status::pending: return "pending";
    case future_status::completed: return "completed";
    case future_status::timed_out: return "timed_out";
    case future_status::dead_letter: return "dead_letter";
    case future_status::failed: return "failed";
  }
  return "unknown";
}

void future_process::send_user(envelope* e) noexcept {
  // A reply goes after what its handler sent before it and kept back:
  // whoever waits for it may look at those messages' effects next.
  context::flush_sends();
  future_status s = e->is<system::DeadLetterResponse>() ? future_status::dead_letter
                                                        : future_status::completed;
  if (!complete(s, e)) {
    // Too late: the request timed out. Nobody waits for this reply any more.
    system().dead_letter(e, this, dead_letter_reason::late_reply);
  }
}

void future_process::send_system(system_message* m) noexcept {
  // A future that watches (root_context::stop_future) completes when its
  // actor has terminated.
  if (m->kind == system_kind::terminated) complete(future_status::completed, nullptr);
  delete m;
}

std::string future_process::id() const {
  char buf[32];
  std::snprintf(buf, sizeof buf, "$future-%p", static_cast<const void*>(this));
  return buf;
}

bool future_process::dead() const noexcept {
  return state_.load(std::memory_order_acquire) != 0;
}

bool future_process::complete(future_status s, envelope* reply) noexcept {
  if (claimed_.exchange(true, std::memory_order_acq_rel)) return false;
  if (s != future_status::timed_out) timeout_.cancel();
  reply_ = message::adopt(reply);
  state_.store(static_cast<std::uint32_t>(s), std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) != 0) futex::wake(state_, 1 << 30);
  continuation* c = cont_.exchange(done_marker(), std::memory_order_acq_rel);
  if (c != nullptr) {
    c->fn(future_result{s, reply_});
    delete c;
  }
  return true;
}

void future_process::on_complete(std::function<void(future_result)> fn) {
  auto* c = new continuation{std::move(fn)};
  continuation* expected = nullptr;
  if (cont_.compare_exchange_strong(expected, c, std::memory_order_acq_rel)) return;
  // Already complete.
  c->fn(future_result{status(), reply_});
  delete c;
}

bool future_process::wait_for(std::chrono::nanoseconds timeout) noexcept {
  context::flush_sends();  // the request may be among what this turn kept back
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const auto deadline = start + timeout;
  // Spin first: a local reply usually comes within a few microseconds.
  const auto spin_until = start + std::min<std::chrono::nanoseconds>(timeout, std::chrono::microseconds(50));
  for (unsigned i = 0;; ++i) {
    if (state_.load(std::memory_order_acquire) != 0) return true;
    if (i % 32 == 0 && clock::now() >= spin_until) break;
    cpu_relax();
  }
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  for (;;) {
    if (state_.load(std::memory_order_seq_cst) != 0) break;
    auto now = clock::now();
    if (now >= deadline) break;
    futex::wait(state_, 0, deadline - now);
  }
  sleepers_.fetch_sub(1, std::memory_order_relaxed);
  return state_.load(std::memory_order_acquire) != 0;
}

future_result future::get_result() const {
  future_process* p = get();
  while (!p->wait_for(std::chrono::hours(1))) {
  }
  return future_result{p->status(), p->reply()};
}

}  // namespace troupe
