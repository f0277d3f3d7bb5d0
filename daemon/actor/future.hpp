#pragma once
// Futures: the reply side of a request. A future is a process of its own,
// so the request's sender is the future's PID and the responder needs to
// know nothing about it. It completes once: with the reply, on timeout, or
// when the target did not exist; a reply that arrives later is a dead letter.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "actor/event_loop.hpp"
#include "actor/message.hpp"
#include "actor/process.hpp"

namespace troupe {

enum class future_status : std::uint32_t {
  pending = 0,
  completed = 1,    // the reply is there
  timed_out = 2,    // no reply within the timeout
  dead_letter = 3,  // the target does not exist (it answered DeadLetterResponse)
  failed = 4,       // the request could not be made; the reply says why (a grain
                    // call's: troupe.cluster.GrainError)
};

const char* to_string(future_status s) noexcept;

struct future_result {
  future_status status = future_status::pending;
  message reply;

  bool ok() const noexcept { return status == future_status::completed; }
  template <class T>
  const T* as() const noexcept { return reply.as<T>(); }
};

// From the block pool: made on one thread, freed on another.
class future_process final : public process, public pooled {
 public:
  explicit future_process(actor_system& sys) noexcept : process(sys) {}


  void send_user(envelope* e) noexcept override;
  void send_system(system_message* m) noexcept override;
  std::string id() const override;
  bool dead() const noexcept override;

  // First call wins; returns false (and drops `reply`) if already complete.
  bool complete(future_status s, envelope* reply) noexcept;
  void set_timeout(timer_handle t) noexcept { timeout_ = std::move(t); }

  future_status status() const noexcept {
    return static_cast<future_status>(state_.load(std::memory_order_acquire));
  }
  // Valid once status() is not pending.
  const message& reply() const noexcept { return reply_; }

  // Blocks the calling thread (never a worker of the same pool: see
  // future::wait) until complete or `timeout` passes; true if complete.
  bool wait_for(std::chrono::nanoseconds timeout) noexcept;

  // Runs `fn` once on completion: at once if already complete, otherwise on
  // the completing thread.
  void on_complete(std::function<void(future_result)> fn);

 private:
  struct continuation {
    std::function<void(future_result)> fn;
  };
  static continuation* done_marker() noexcept {
    return reinterpret_cast<continuation*>(alignof(continuation));
  }

  std::atomic<std::uint32_t> state_{0};  // future_status; the futex word
  std::atomic<bool> claimed_{false};
  std::atomic<std::uint32_t> sleepers_{0};
  std::atomic<continuation*> cont_{nullptr};
  message reply_;
  timer_handle timeout_;
};

// What a requester holds.
class future {
 public:
  future() noexcept = default;
  explicit future(process_ref p) noexcept : p_(std::move(p)) {}

  explicit operator bool() const noexcept { return static_cast<bool>(p_); }
  future_process* get() const noexcept { return static_cast<future_process*>(p_.get()); }
  troupe::pid pid() const noexcept { return troupe::pid(p_); }
  future_status status() const noexcept { return get()->status(); }

  // Blocks until complete or `timeout`. Spins briefly first: replies from a
  // busy node usually come within microseconds, and a sleep/wake costs ~20 µs.
  bool wait_for(std::chrono::nanoseconds timeout) const noexcept {
    return get()->wait_for(timeout);
  }
  // Waits for completion (the request's own timeout bounds the wait).
  future_result get_result() const;

 private:
  process_ref p_;
};

}  // namespace troupe
