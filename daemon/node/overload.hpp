#pragma once
// Keeping the node inside its memory: the limit it runs under, the budget
// for queued messages taken from it, giving freed memory back to the
// system, and saying in the log when and why messages are dropped.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace troupe {
class actor_system;
}

namespace troupe::node {

// The memory the node may use: the lowest limit of its cgroup and the
// cgroups above it (v2 memory.max and memory.high, v1
// memory.limit_in_bytes), or the machine's memory when none is set.
struct memory_limit {
  std::uint64_t bytes = 0;
  std::string source;  // for the log: "cgroup /system.slice/troupe.service (memory.max)"
};
memory_limit find_memory_limit();

// node.max_queued_bytes: "auto" (half the memory limit), a size ("512MiB",
// "2GiB", "1000000"), a share of the memory limit ("40%"), or "none".
struct queue_budget_setting {
  enum class mode : std::uint8_t { automatic, bytes, percent, none };
  mode how = mode::automatic;
  std::uint64_t value = 0;  // bytes, or percent
  bool operator==(const queue_budget_setting&) const = default;
};
bool parse_queue_budget(const std::string& text, queue_budget_setting& out, std::string& why);
// The setting as the configuration would say it ("auto", "40%", "512 MiB").
std::string to_string(const queue_budget_setting& s);
// The budget in bytes (0: none), and words for the log saying where it comes from.
std::uint64_t resolve_queue_budget(const queue_budget_setting& s, const memory_limit& m,
                                   std::string& said);

// "512 MiB", "1.5 GiB", "800 KiB", "12 B".
std::string human_bytes(std::uint64_t n);

// A thread that gives memory back to the system every `every`: the message
// pool's free slabs, then the C heap's free pages (malloc_trim) when it
// holds much free memory. Off the event loop: both walk free memory.
class housekeeper {
 public:
  explicit housekeeper(std::chrono::milliseconds every = std::chrono::seconds(2));
  ~housekeeper();  // stops and joins
  housekeeper(const housekeeper&) = delete;
  housekeeper& operator=(const housekeeper&) = delete;

  // Process-wide counts, for metrics.
  static std::uint64_t pool_bytes_returned() noexcept;
  static std::uint64_t heap_trims() noexcept;

  // One pass, as the thread makes every `every`: free message memory and
  // free heap go back to the system when there is enough of it.
  static void once();

 private:
  void run();

  std::chrono::milliseconds every_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// Says in the log when messages are dropped because the budget bit or
// mailboxes were full, and which mailboxes hold the most: the first drop
// at once, then a line at most every 10 s while drops go on, and a line
// when the budget no longer bites. check() runs on the event loop.
class overload_log {
 public:
  void check(actor_system& sys, std::chrono::steady_clock::time_point now);

 private:
  std::uint64_t over_budget_ = 0, mailbox_full_ = 0;  // counts already told
  std::chrono::steady_clock::time_point last_{};
  bool budget_biting_ = false;
};

}  // namespace troupe::node
