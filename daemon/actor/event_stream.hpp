#pragma once
// The EventStream: system-wide publish/subscribe of runtime events (dead
// letters, failures, supervision decisions). Subscribers run on the
// publishing thread; one that throws is counted and skipped, the others still
// get the event.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <variant>
#include <vector>

#include "actor/message.hpp"
#include "actor/process.hpp"
#include "actor/supervision.hpp"

namespace troupe {

enum class dead_letter_reason : std::uint8_t {
  not_found = 0,       // no process with that id
  stopped = 1,         // the target had stopped
  mailbox_full = 2,    // dropped by a bounded mailbox
  late_reply = 3,      // a reply to a future that had already completed (timed out)
  shutdown = 4,        // still queued when the system shut down
};
inline constexpr std::size_t dead_letter_reason_count = 5;
const char* to_string(dead_letter_reason r) noexcept;

struct dead_letter_event {
  pid target;
  message msg;
  dead_letter_reason reason;
};

struct actor_failed_event {
  pid who;
  std::string reason;
};

struct supervision_event {
  pid child;
  directive decision;
  std::string reason;
};

using event = std::variant<dead_letter_event, actor_failed_event, supervision_event>;

class event_stream {
 public:
  using handler = std::function<void(const event&)>;

  // Returns an id for unsubscribe().
  std::uint64_t subscribe(handler h);
  void unsubscribe(std::uint64_t id);
  void publish(const event& e) noexcept;

  // Cheap check so that publishers skip building events nobody reads.
  bool has_subscribers() const noexcept {
    return count_.load(std::memory_order_relaxed) != 0;
  }
  std::uint64_t handler_failures() const noexcept {
    return handler_failures_.load(std::memory_order_relaxed);
  }

 private:
  struct entry {
    std::uint64_t id;
    handler fn;
  };
  using list = std::vector<entry>;

  mutable std::mutex mu_;
  std::shared_ptr<const list> subscribers_ = std::make_shared<const list>();
  std::uint64_t next_id_ = 1;
  std::atomic<std::size_t> count_{0};
  std::atomic<std::uint64_t> handler_failures_{0};
};

}  // namespace troupe
