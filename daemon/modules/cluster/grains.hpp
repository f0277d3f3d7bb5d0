#pragma once
// Grains (virtual actors) on one node. A grain is (kind, identity); the
// cluster makes sure one activation of it exists, on its owner (placement:
// rendezvous hashing over the members that host the kind), created by the
// first message and passivated when idle.
//
// - The host side is the actor "troupe.grains" of each node: it keeps the
//   directory of the grains this node owns (cluster/directory.hpp),
//   activates them as its children, passivates them (idle, on request, over
//   the activation limit or the memory budget, moved to another owner,
//   fenced), and answers GrainLocate from any node.
// - The call side (any thread): a cache of (kind, identity) -> PID, and for
//   each call a process that locates the grain when the cache has nothing,
//   sends the message, and retries with backoff and jitter within the
//   call's timeout when the PID it used is gone (stopped, node lost) or the
//   owner asked says not yet (not the owner in its view, fenced, busy).
// - Moves: identities fall into partitions, and a partition moves to its
//   new owner only once the node that held it has stopped its activations
//   there (cluster/handover.hpp); calls meanwhile wait at the new owner in
//   a bounded buffer.
// - Fencing: a node that heard it was declared dead, or is out of touch
//   with a majority of members, stops its activations and activates none
//   until it is in touch again, so that the rest of the cluster may
//   activate them elsewhere.
#include <atomic>
#include <chrono>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>
#include <prometheus/metric_family.h>

#include "actor/actor_system.hpp"
#include "actor/clock.hpp"
#include "cluster/name_cache.hpp"
#include "cluster/placement.hpp"

namespace troupe::node {

struct grain_kind_options {
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(10)};
};

struct grain_options {
  std::string self_name;     // this member's name
  std::map<std::string, grain_kind_options, std::less<>> kinds;  // the grain kinds this node hosts
  std::size_t max_activations = 1000000;  // then the oldest idle are passivated
  std::uint64_t max_memory_bytes = 0;     // resident memory over this: the same; 0: no budget
  std::size_t max_waiting = 10000;        // calls waiting for one activation
  std::size_t max_buffered = 100000;      // calls waiting for partitions on their way to this node
  std::size_t max_moving = 16;            // partitions this node gives up at a time
  bool keep_moved = false;                // a partition given up keeps its activations (moved_activations: keep)
  std::size_t max_cached = 1000000;       // places of grains remembered by the call cache
};

// Why activations ended, for troupe_grain_passivations_total{reason}.
enum class passivation : std::uint8_t { idle, requested, limit, memory, moved, fenced, failed, stopping };
inline constexpr std::size_t passivation_count = 8;
const char* to_string(passivation p) noexcept;

// How calls ended, for troupe_grain_calls_total{result}.
enum class call_result : std::uint8_t { ok, timeout, no_host, activation_failed, undelivered, busy };
inline constexpr std::size_t call_result_count = 6;
const char* to_string(call_result r) noexcept;

// Counters of one grain kind, for the metrics thread.
struct grain_kind_counters {
  std::atomic<std::int64_t> active{0};
  std::atomic<std::uint64_t> activations{0};
  std::array<std::atomic<std::uint64_t>, passivation_count> passivations{};
  std::array<std::atomic<std::uint64_t>, call_result_count> calls{};
};

class grain_counters {
 public:
  grain_kind_counters& of(std::string_view kind);
  void collect(std::vector<prometheus::MetricFamily>& out) const;

  std::atomic<std::uint64_t> retries{0};
  std::atomic<std::uint64_t> malformed{0};  // GrainLocate/GrainLocated/GrainHandover that did not verify
  // The partition hand-over (cluster/handover.hpp), as troupe.grains last saw it.
  std::atomic<std::int64_t> partitions_held{0}, partitions_moving{0};
  std::atomic<std::int64_t> kept_here{0}, kept_elsewhere{0};  // moved_activations: keep
  std::atomic<std::uint64_t> partitions_acquired{0}, partitions_released{0}, handover_rejected{0};
  std::atomic<std::uint64_t> buffered{0}, overflow{0};  // calls that waited for a partition; refused: buffer full
  void observe_activation(double seconds);

 private:
  static constexpr std::array<double, 12> bounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                     0.01,   0.025,   0.05,   0.1,   0.5,    1.0};
  mutable std::shared_mutex mu_;
  std::map<std::string, std::unique_ptr<grain_kind_counters>, std::less<>> kinds_;
  mutable std::mutex hist_mu_;
  std::array<std::uint64_t, bounds.size() + 1> buckets_{};
  double sum_ = 0;
};

class grain_host_state;

// The message as a T when it is one and its bytes verify (those from
// another node); null otherwise.
template <class T>
const T* verified(const envelope& e) {
  if (!e.is<T>()) return nullptr;
  if ((e.flags & envelope::trusted) == 0) {
    flatbuffers::Verifier v(e.data, e.size);
    if (!v.VerifyBuffer<T>(nullptr)) return nullptr;
  }
  return flatbuffers::GetRoot<T>(e.data);
}

class grain_service {
 public:
  grain_service(actor_system& sys, grain_options o);
  ~grain_service();
  grain_service(const grain_service&) = delete;
  grain_service& operator=(const grain_service&) = delete;

  // Spawns "troupe.grains"; false (with why) when it cannot.
  bool start(std::string& why);

  // Any thread: the members that host each grain kind changed. Grains this
  // node no longer owns are passivated; the call cache starts afresh.
  // `settled`: whether the view is one to place grains by (membership.hpp);
  // until it is, calls wait (and retry) rather than fail with no host.
  void set_hosts(std::shared_ptr<const cluster::grain_hosts> hosts, bool settled = true);
  bool settled() const noexcept { return settled_.load(std::memory_order_acquire); }
  // Any thread: the members at these addresses left or were declared dead:
  // the call cache forgets the grains it placed there, so that the next
  // call locates them again rather than waiting on a node that is gone.
  void forget_at(const std::vector<std::string>& addresses);
  std::shared_ptr<const cluster::grain_hosts> hosts() const;
  // Any thread: the node is stopping. Its partitions are handed over (their
  // activations stop after what they were given); `done` runs (on the
  // grain service's thread) once nothing is held here.
  void hand_over(std::function<void()> done);
  // Any thread: fenced (why says why), or not. Fencing passivates every
  // activation at once; while fenced, nothing is activated here.
  void set_fenced(bool fenced, const std::string& why);
  bool fenced() const noexcept { return fenced_.load(std::memory_order_acquire); }
  // Any thread: this node heard the cluster just now (membership::hearing);
  // its activations may serve for `lease` from now. A node that stopped
  // hearing (paused, cut off) stops serving them when the lease runs out,
  // before it learns whether it was declared dead (and is fenced).
  void renew_lease(std::chrono::nanoseconds lease) noexcept {
    lease_until_.store(steady_ns() + lease.count(), std::memory_order_release);
  }
  // Whether this node's activations may serve now.
  bool serving() const noexcept {
    return !fenced() && fences_done_.load(std::memory_order_acquire) == fences_ordered_.load(std::memory_order_acquire) &&
           steady_ns() < lease_until_.load(std::memory_order_acquire);
  }
  // Internal: the host has stopped every activation for fence `n`.
  void fence_done(std::uint64_t n) noexcept { fences_done_.store(n, std::memory_order_release); }

  // Any thread: a request to the grain. The future completes with its
  // reply, timed_out, or failed with a troupe.cluster.GrainError.
  future call(std::string_view kind, std::string_view identity, message m, std::chrono::nanoseconds timeout);
  // Any thread: a message to the grain, once located (at most once: one
  // that finds the grain moving may be lost, and is counted).
  void send(std::string_view kind, std::string_view identity, message m, std::chrono::nanoseconds timeout);

  // This node's activations as JSON (GET /v1/grains).
  nlohmann::json list(const std::string& kind, std::size_t limit) const;
  grain_counters& counters() noexcept { return *counters_; }
  std::shared_ptr<grain_counters> shared_counters() const noexcept { return counters_; }
  actor_system& system() noexcept { return sys_; }
  const grain_options& options() const noexcept { return opts_; }
  const pid& host() const noexcept { return host_; }

  // ---- the call cache (any thread) ----
  pid cached(std::string_view kind, std::string_view identity, std::uint64_t key) const;
  void remember(std::string_view kind, std::string_view identity, std::uint64_t key, const pid& where);
  // Forgets the entry if it still is `where` (any entry when `where` is empty).
  void forget(std::string_view kind, std::string_view identity, std::uint64_t key, const pid& where);

 private:
  struct cache_shard {
    mutable std::mutex mu;
    cluster::name_cache<pid> entries;
  };
  static constexpr std::size_t shards = 16;
  // The high bits: the shard's own table places entries by the low ones.
  cache_shard& shard_of(std::uint64_t key) const noexcept { return cache_[key >> 60]; }

  actor_system& sys_;
  grain_options opts_;
  std::shared_ptr<grain_counters> counters_ = std::make_shared<grain_counters>();
  std::shared_ptr<grain_host_state> state_;
  pid host_;
  mutable std::mutex hosts_mu_;
  std::shared_ptr<const cluster::grain_hosts> hosts_ = std::make_shared<cluster::grain_hosts>();
  std::atomic<bool> fenced_{false};
  std::atomic<bool> settled_{false};
  std::atomic<std::int64_t> lease_until_{0};
  // Fences ordered, and carried out (their activations told to stop): a
  // fence lifted at once still holds until its stops are on their way.
  std::atomic<std::uint64_t> fences_ordered_{0}, fences_done_{0};
  mutable std::array<cache_shard, shards> cache_;
};

}  // namespace troupe::node
