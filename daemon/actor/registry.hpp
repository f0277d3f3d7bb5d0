#pragma once
// The process registry: id → process for every live local actor. Sends do
// not use it (a PID already points at its process); it serves look-ups by id
// (network, admin API) and keeps each live actor referenced. Anonymous
// actors are keyed by number in 64 shards, each with its own short lock, so
// concurrent spawns and stops rarely meet; names live in one map of their own.
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "actor/cpu.hpp"
#include "actor/process.hpp"

namespace troupe {

class registry {
 public:
  registry() = default;
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;
  ~registry();

  std::uint64_t next_seq() noexcept { return seq_.fetch_add(1, std::memory_order_relaxed); }

  // Registers `p` under its number; takes one reference.
  void add(std::uint64_t seq, process* p);
  // Registers `p` under `name`; false if the name is taken.
  bool add_named(const std::string& name, process* p);
  // Unregisters and hands the registry's reference to the caller.
  process_ref remove(std::uint64_t seq);
  process_ref remove_named(const std::string& name);

  // By id: "$42" for anonymous actors, the name otherwise.
  process_ref lookup(std::string_view id) const;
  std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }
  // Waits until no process is left, or the deadline; true when none is.
  bool wait_empty(std::chrono::steady_clock::time_point deadline) const;
  // Visits every live process (holding a reference while visiting).
  void for_each(const std::function<void(process&)>& fn) const;

 private:
  static constexpr std::size_t shard_count = 64;

  // Open addressing with linear probing: 16 bytes a live actor, no node
  // allocation per spawn. Key 0 marks a free slot (sequence numbers start at 1).
  class table {
   public:
    void insert(std::uint64_t key, process* p);
    process* find(std::uint64_t key) const noexcept;
    process* erase(std::uint64_t key) noexcept;
    template <class F>
    void each(F&& f) const {
      for (const slot& s : slots_)
        if (s.key != 0) f(s.key, s.value);
    }

   private:
    struct slot {
      std::uint64_t key = 0;
      process* value = nullptr;
    };
    std::size_t index(std::uint64_t key) const noexcept {
      // Keys within a shard step by shard_count. Runs of `run` consecutive
      // keys share one scattered place, so actors spawned one after another
      // fill neighbouring slots (one cache line, not one each) while a
      // long-lived group still lands apart from the next one.
      const std::uint64_t q = key / shard_count;
      const std::uint64_t place = ((q / run) * 0x9E3779B97F4A7C15ull) >> 20;
      return static_cast<std::size_t>(place * run + q % run) & (slots_.size() - 1);
    }
    static constexpr std::uint64_t run = 8;
    void grow();
    std::vector<slot> slots_;
    std::size_t used_ = 0;
  };

  struct alignas(false_sharing_range) shard {
    mutable std::mutex mu;
    table map;
  };

  std::atomic<std::uint64_t> seq_{1};
  std::atomic<std::size_t> size_{0};
  // Told when the last process goes (see wait_empty).
  mutable std::mutex empty_mu_;
  mutable std::condition_variable empty_cv_;
  void removed() noexcept;
  std::array<shard, shard_count> shards_;
  mutable std::mutex named_mu_;
  std::unordered_map<std::string, process*> named_;
};

}  // namespace troupe
