#pragma once
// Dead letters in the node's log, at a bounded rate: in every 10 s, the
// first few of each reason at once, then only a count, said with the next
// line of that reason. Drops for a full mailbox or the memory budget have
// the overload lines instead (overload.hpp), and those of a shutdown are
// expected; troupe_dead_letters_total counts them all. Any thread.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "actor/event_stream.hpp"

namespace troupe {
class process;
struct envelope;
namespace plugin {
class host;
}
}  // namespace troupe

namespace troupe::node {

class dead_letter_log {
 public:
  static constexpr std::chrono::seconds window{10};
  static constexpr unsigned lines_per_window = 5;

  // Message types are named through the plugins' schemas once there is a host.
  void name_types_with(const plugin::host* h) { host_.store(h, std::memory_order_release); }
  void report(dead_letter_reason why, const process* target, std::string_view missing, const envelope& e);

 private:
  struct per_reason {
    std::chrono::steady_clock::time_point start{};  // under mu_
    unsigned logged = 0;                             // under mu_
    // Past its lines, until the window's end: counted without the lock.
    std::atomic<std::int64_t> full_until_ns{0};
    std::atomic<std::uint64_t> unlogged{0};
  };
  std::string type_name(const envelope& e) const;

  std::atomic<const plugin::host*> host_{nullptr};
  std::mutex mu_;
  std::array<per_reason, dead_letter_reason_count> reasons_{};
};

}  // namespace troupe::node
