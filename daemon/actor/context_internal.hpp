#pragma once
// Private to the actor's cell (context_*.cpp, supervision.cpp): what its
// parts share. Not for other code: it may change with the cell.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <unordered_set>
#include <vector>

#include "actor/context.hpp"
#include "actor/event_loop.hpp"
#include "actor/supervision.hpp"
#include "system_generated.h"

namespace troupe::cell {

// Lifecycle messages carry no data: one envelope each, built once, never
// queued (only ever the current message), and never freed.
template <class T>
envelope* lifecycle() {
  static envelope* const e =
      build<T>([](flatbuffers::FlatBufferBuilder& b) { return typename T::Builder(b).Finish(); });
  return e;
}

inline constexpr type_id poison_type = type_id_of<system::PoisonPill>();
// A payload-less envelope that only makes its mailbox runnable.
inline constexpr type_id wake_token = 0;

}  // namespace troupe::cell

namespace troupe {

// The queue of a mailbox that drops the oldest or makes senders wait.
struct bounded_queue {
  std::mutex mu;
  std::condition_variable room;
  std::deque<envelope*> q;
  std::atomic<std::uint32_t> size{0};  // q.size(), for pressure() without the lock
  std::uint32_t capacity;
  mailbox_kind kind;
};

// What an actor has beyond its mailbox, made on first use: most actors
// never watch, stash, time out or have children.
struct context::extras {
  std::unordered_set<troupe::pid> children;
  std::vector<troupe::pid> watchers;
  std::vector<troupe::pid> watchees;
  // Children suspended by failures this actor escalated, with their
  // restart records.
  std::vector<std::pair<troupe::pid, restart_stats>> escalated;
  std::vector<std::shared_ptr<const behavior>> behaviors;
  std::deque<troupe::envelope*> stash;
  std::deque<troupe::envelope*> replay;
  restart_stats stats;
  std::uint32_t incarnation = 0;  // restarts, ever
  std::chrono::nanoseconds receive_timeout{0};
  std::int64_t last_activity_ns = 0;
  std::uint64_t receive_timeout_token = 0;
  timer_handle receive_timer;
  std::vector<timer_handle> timers;  // from scheduler(); cancelled at stop
  std::size_t timers_kept = 0;       // size after the last pruning
};

}  // namespace troupe

