#pragma once
// Test helpers: a probe actor whose received messages the test thread can
// wait for, a latch to hold an actor inside its handler, and message makers.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "actor/actor_system.hpp"
#include "system_generated.h"
#include "test_messages_generated.h"

namespace Catch {
// Shows what an optional held when a comparison fails.
template <class T>
struct StringMaker<std::optional<T>> {
  static std::string convert(const std::optional<T>& v) {
    return v ? ::Catch::Detail::stringify(*v) : std::string("nothing (timed out or another type)");
  }
};
}  // namespace Catch

namespace troupe::testing {

using namespace std::chrono_literals;

inline message num(std::int64_t n) {
  return make_message<test::Num>(
      [&](flatbuffers::FlatBufferBuilder& b) { return test::CreateNum(b, n); });
}
inline message text(const std::string& s) {
  return make_message<test::Text>(
      [&](flatbuffers::FlatBufferBuilder& b) { return test::CreateTextDirect(b, s.c_str()); });
}

// A thread-safe queue of things the test waits for.
template <class T>
class inbox {
 public:
  void put(T v) {
    // Notify under the lock: the waiter may destroy the inbox as soon as it
    // sees the item.
    std::lock_guard lock(mu_);
    q_.push_back(std::move(v));
    cv_.notify_all();
  }
  std::optional<T> take(std::chrono::milliseconds timeout = 5000ms) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return !q_.empty(); })) return std::nullopt;
    T v = std::move(q_.front());
    q_.pop_front();
    return v;
  }
  // Waits until `n` items arrived; returns all of them.
  std::vector<T> take_n(std::size_t n, std::chrono::milliseconds timeout = 5000ms) {
    std::vector<T> out;
    while (out.size() < n) {
      auto v = take(timeout);
      if (!v) break;
      out.push_back(std::move(*v));
    }
    return out;
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return q_.size();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<T> q_;
};

// Polls `pred` until it holds or `timeout` passes; returns its last value.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Stops `who` (and so its children) and waits until it is gone.
inline void stop_and_wait(actor_system& sys, const pid& who) {
  if (!who || who.get()->dead()) return;
  sys.root().stop(who);
  while (!who.get()->dead()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

// An actor that hands every message it receives to the test thread.
struct probe {
  inbox<message> got;
  pid self;
  actor_system* sys;

  explicit probe(actor_system& s) : sys(&s) {
    self = sys->root().spawn(share(props::from_fn([this](context& ctx) {
      if (ctx.message<system::Started>() || ctx.message<system::Stopping>() ||
          ctx.message<system::Stopped>())
        return;
      got.put(ctx.current());
    })));
  }
  // The probe's actor must be gone before the inbox it writes to.
  ~probe() { stop_and_wait(*sys, self); }

  message expect(std::chrono::milliseconds timeout = 5000ms) {
    auto m = got.take(timeout);
    return m ? *m : message();
  }
  std::optional<std::int64_t> expect_num(std::chrono::milliseconds timeout = 5000ms) {
    message m = expect(timeout);
    if (auto* n = m.as<test::Num>()) return n->n();
    return std::nullopt;
  }
  bool silent_for(std::chrono::milliseconds d) { return !got.take(d).has_value(); }
};

// Holds actors inside their handlers until released.
class latch {
 public:
  void wait() {
    std::unique_lock lock(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  bool wait_for_waiters(int n, std::chrono::milliseconds timeout = 5000ms) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return waiting_ >= n; });
  }
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int waiting_ = 0;
  bool open_ = false;
};

inline system_config small_config(unsigned threads = 2) {
  system_config cfg;
  cfg.dispatcher.threads = threads;
  return cfg;
}

}  // namespace troupe::testing
