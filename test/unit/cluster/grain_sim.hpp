#pragma once
// The grain layer in the deterministic simulator (sim.hpp): on every
// simulated member, the grain directory and its partition hand-over
// (cluster/directory.hpp, cluster/handover.hpp) wired as the node wires
// them, fencing as the node fences, activations that take a while to start
// and to stop and passivate on their own, and callers that call grains as a
// node's grain calls do (locate at the owner, deliver, retry with backoff
// within a timeout).
//
// Checked after every step: never two activations of one identity at once
// while membership is healthy (no member holds a dead verdict about a start
// that still runs, paused or not); the bound of the buffers; every call
// ended by its deadline.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cluster/directory.hpp"
#include "sim.hpp"

namespace troupe::cluster::sim {

struct grain_world_options {
  std::uint32_t partitions = 32;
  std::size_t identities = 200;
  std::size_t max_buffered = 64;
  millis call_timeout{3000};
  millis call_every{4};        // a call starts somewhere about this often
  millis lifetime_max{4000};   // an activation passivates after at most this
  unsigned versions = 1;       // members host the kind in version 1..versions (a rolling upgrade)
  partition_moves moves = partition_moves::stop;  // what a partition given up does with its activations
};

struct call_counts {
  std::uint64_t started = 0, ok = 0, timeout = 0, busy = 0, no_host = 0, abandoned = 0;
  std::uint64_t retries = 0;
};

class grain_world final : public application {
 public:
  grain_world(simulator& s, grain_world_options o);

  // Calls start (from running members) while on.
  void set_calling(bool on) { calling_ = on; }
  // SIGTERM: member i hands its partitions over, then leaves, then exits.
  void stop(unsigned i);
  // Member i hosts the kind in this version from its next start.
  void set_version(unsigned i, unsigned version) { version_[i] = version; }

  // Calls `identities` grains from every running member; true when every
  // call got its reply within `within` (why not, otherwise).
  bool all_answer(millis within, std::string* why);

  // What happens, in words, for a replay (TROUPE_SIM_TRACE).
  std::function<void(const std::string&)> trace;

  // An identity with more than one activation now, in words (empty: none).
  std::string duplicates() const;
  // Membership is healthy (docs/grains.md): no false dead verdict held,
  // and after one, the views agree again and no partition is held twice.
  bool healthy();
  // The partitions each running member claims but does not hold yet.
  std::string claiming() const;

  const std::string& violation() const noexcept { return violation_; }
  const call_counts& calls() const noexcept { return counts_; }
  // Overlaps excused: a false dead verdict was held, or the views had not
  // agreed again since (docs/grains.md, "healthy membership").
  std::uint64_t excused() const noexcept { return excused_; }
  std::uint64_t activations() const noexcept { return activations_; }
  std::uint64_t moved() const noexcept { return moved_; }  // activations stopped because their partition moved
  std::size_t most_buffered() const noexcept { return most_buffered_; }
  // Locates answered with an activation on another member (one it kept).
  std::uint64_t answered_elsewhere() const noexcept { return elsewhere_; }

  // application
  metadata metadata_of(unsigned i) override;
  void started(unsigned i, millis now) override;
  void killed(unsigned i) override;
  void before(unsigned i, millis now) override;
  void ran(unsigned i, millis now) override;
  void received(unsigned to, unsigned from, const std::any& m, millis now) override;
  void undeliverable(unsigned to, unsigned from, const std::any& m, millis now) override;
  millis next_wake(unsigned i) const override;

 private:
  struct act {
    grain_id id;
    std::uint64_t number = 0;
    enum class state : std::uint8_t { starting, running, stopping } st = state::starting;
    millis until{0};    // the next change of state
    millis expires{0};  // when it passivates on its own
  };
  struct call {
    std::uint64_t id = 0;
    unsigned node = 0;
    std::uint64_t generation = 0;
    grain_id g;
    millis deadline{0};
    std::uint32_t attempt = 0;
    bool done = false;
    bool probe = false;  // one of all_answer()'s
    bool ok = false;
    std::uint64_t call_counts::*how = nullptr;  // how it ended
  };
  struct timer {
    millis at;
    enum class kind : std::uint8_t { act, retry, deadline, leave, exit, reply } what;
    std::uint64_t ref;
    bool operator<(const timer& o) const { return std::tie(at, what, ref) < std::tie(o.at, o.what, o.ref); }
  };
  struct node {
    bool up = false;
    std::uint64_t generation = 0;
    std::unique_ptr<grain_directory> dir;
    std::string signature;  // of the members up, as last seen
    bool members_changed = true, settled = false;
    std::uint64_t declared_dead = 0;
    bool fenced = false;
    millis lease_until{0};  // its activations serve until then (renewed while it hears the cluster)
    bool leaving = false, left = false;
    millis leave_by{0};
    std::map<std::uint64_t, act> acts;  // by number
    std::map<grain_id, std::pair<unsigned, std::uint64_t>> cache;  // grain -> (node, activation)
    std::set<timer> timers;
    std::map<std::uint64_t, std::tuple<unsigned, std::uint64_t, std::uint64_t>> locates;  // caller -> (node, call, attempt)
    std::uint64_t next_caller = 0;
    millis next_call{0};
    std::set<std::pair<millis, std::uint64_t>> deadlines;  // of its calls, ended or not (check() prunes)
  };

  // Messages between members.
  struct hand { handover_message m; std::uint64_t to_generation; };
  struct locate_msg { std::uint64_t call, attempt; unsigned from; grain_id g; };
  struct located_msg { std::uint64_t call, attempt; locate_error error; std::string address; std::string actor; };
  struct deliver_msg { std::uint64_t call, attempt; unsigned from; std::uint64_t actor; };
  struct reply_msg { std::uint64_t call, attempt; bool ok; };

  void pump(unsigned i, millis now);
  void fence(unsigned i, bool on, millis now);
  void end_act(unsigned i, std::uint64_t number, millis now, bool at_once);
  void start_call(unsigned i, const grain_id& g, millis now, bool probe);
  void attempt(call& c, millis now);
  void retry(call& c, millis now);
  void finish(call& c, bool ok, std::uint64_t call_counts::*counter);
  void check(unsigned i);
  void violate(const std::string& what);
  unsigned index_of(const std::string& address) const;
  std::string name(unsigned i) const { return std::string("n").append(std::to_string(i)); }

  simulator& sim_;
  grain_world_options opts_;
  std::map<unsigned, node> nodes_;
  std::map<unsigned, unsigned> version_;
  std::map<std::uint64_t, call> calls_;  // pending, and all_answer()'s
  std::vector<std::uint64_t> done_;
  std::uint64_t next_call_ = 0, next_act_ = 0;
  bool calling_ = true;
  call_counts counts_;
  std::string violation_;
  // The activations alive in the cluster: grain -> (node, generation, number).
  std::map<grain_id, std::vector<std::tuple<unsigned, std::uint64_t, std::uint64_t>>> alive_;
  // Dead verdicts held about starts that still run: (observer, member, generation).
  std::set<std::tuple<unsigned, unsigned, std::uint64_t>> false_verdicts_;
  // A false verdict was held, and the views have not agreed since: its
  // aftermath, while which membership is not healthy yet either.
  bool aftermath_ = false;
  std::uint64_t excused_ = 0, activations_ = 0, moved_ = 0, elsewhere_ = 0;
  std::size_t most_buffered_ = 0;
};

}  // namespace troupe::cluster::sim
