#pragma once
// The grain directory of one node: for each grain of the partitions this
// node holds (handover.hpp), where its activation runs and who waits for
// it. A state machine with no socket, thread or clock inside: the node feeds
// it the requests, its view of the members, the hand-over messages of the
// others and the outcomes of activations, and carries out what it asks
// (activate a grain here, stop one, answer a caller, send a message).
//
// One activation per grain: the first request for an unknown grain of a
// held partition orders its activation and every request until it is done
// waits for that one; a failed activation is an error for every waiting
// caller at once, not a timeout; an activation that ends leaves the
// directory, and the next request activates the grain again.
//
// While a partition this node owns is on its way here (claimed, not yet
// held), its requests wait in a bounded buffer and are served in the order
// they came once it is held; what overflows the buffer is answered busy.
// A request for a partition this node does not own is answered not_owner.
//
// With partition_moves::keep, the directory also answers for activations
// that other members kept when they gave a partition up (handover.hpp):
// they are known, not activated again, until their member reports them
// gone. And it lists its own kept activations in its grants and reports.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cluster/handover.hpp"

namespace troupe::cluster {

struct grain_id {
  std::string kind;
  std::string identity;
  friend bool operator<(const grain_id& a, const grain_id& b) {
    return std::tie(a.kind, a.identity) < std::tie(b.kind, b.identity);
  }
  friend bool operator==(const grain_id& a, const grain_id& b) = default;
};

struct grain_id_hash {
  std::size_t operator()(const grain_id& g) const noexcept;
};

// Where an activation runs: the node (its address and start) and the
// actor's id there.
struct activation {
  std::string address;
  std::uint64_t generation = 0;
  std::string actor;
  friend bool operator==(const activation& a, const activation& b) = default;
};

enum class locate_error : std::uint8_t {
  none,
  activation_failed,  // the grain's constructor failed (detail says why)
  busy,               // too many callers wait for this grain, or for partitions on their way here
  not_owner,          // this node does not own the grain's partition in its view
};
const char* to_string(locate_error e) noexcept;

struct directory_options {
  std::uint32_t partitions = default_partitions;
  std::size_t max_waiting = 10000;    // callers waiting for one activation
  std::size_t max_buffered = 100000;  // callers waiting for partitions on their way here
  millis resend{500};                 // hand-over messages not answered are sent again
  std::size_t max_moving = 16;        // partitions given up at a time (handover.hpp)
  partition_moves moves = partition_moves::stop;  // what a partition given up does with its activations
};

struct directory_stats {
  std::uint64_t buffered = 0;  // requests that waited for a partition on its way
  std::uint64_t overflow = 0;  // requests answered busy: the buffer was full
  std::uint64_t stopped = 0;   // activations stopped because their partition moved
  std::uint64_t evicted = 0;   // activations stopped because another member knew another of their grain
};

class grain_directory {
 public:
  // Who asked (the node's own number for a waiting call).
  using caller = std::uint64_t;

  struct answer {
    caller who;
    grain_id id;
    locate_error error = locate_error::none;
    activation where;    // when error is none
    std::string detail;  // why not, in words
  };

  // `self`: this node; `kinds`: the grain kinds it hosts.
  grain_directory(member_ref self, const std::vector<std::string>& kinds, directory_options o = {});

  // ---- the members and the hand-over (see handover.hpp)
  void set_view(std::shared_ptr<const grain_hosts> view, millis now);
  void set_fenced(bool fenced, millis now);
  void leave(millis now);
  void on_message(const handover_message& m, millis now);
  void advance(millis now);
  millis next_wake() const noexcept { return table_.next_wake(); }
  std::vector<handover_message> take_messages();
  const partition_table& partitions() const noexcept { return table_; }

  // ---- grains
  // `who` asks where `id` runs: answered at once when it is known, after
  // the activation otherwise (which this call orders when none is on its
  // way: see take_activations), or once its partition is held here.
  void locate(const grain_id& id, caller who, millis now);
  // The activation of `id` ordered here is done: every waiting caller is
  // answered.
  void activated(const grain_id& id, const activation& where, millis now);
  // It failed: every waiting caller gets the error, and the grain is
  // unknown again.
  void activation_failed(const grain_id& id, const std::string& why, millis now);
  // It was stopped before it started (its partition moved, the node is
  // stopping): not the grain's fault, so every waiting caller is told to
  // ask again (not_owner), and finds the grain where it goes next.
  void activation_stopped(const grain_id& id, const std::string& why, millis now);
  // The activation ended (passivated, stopped): forgotten, if it is still
  // the one the directory knows.
  void deactivated(const grain_id& id, const activation& where, millis now);

  // What the node must do: activate these grains here...
  std::vector<grain_id> take_activations() { return std::exchange(orders_, {}); }
  // ...answer these callers...
  std::vector<answer> take_answers() { return std::exchange(answers_, {}); }
  // ...and stop these activations, after the messages they have accepted:
  // their partition moves to another node.
  std::vector<grain_id> take_stops() { return std::exchange(stops_, {}); }

  // Grains active here, grains whose activation is on its way, and grains
  // active on other members that this node answers for (kept there).
  std::size_t active() const noexcept { return active_; }
  std::size_t activating() const noexcept { return entries_.size() - active_ - remote_; }
  std::size_t remote() const noexcept { return remote_; }
  // Requests waiting for partitions on their way here.
  std::size_t buffered() const noexcept { return buffered_count_; }
  // Where `id` runs, when it is active.
  const activation* find(const grain_id& id) const;
  std::uint32_t partition(const grain_id& id) const;
  const directory_stats& stats() const noexcept { return stats_; }

 private:
  struct entry {
    bool active = false;
    bool remote = false;  // active on another member, which kept it
    std::uint32_t partition = 0;
    activation where;
    std::vector<caller> waiting;
  };

  void serve(const grain_id& id, caller who, std::uint32_t p);
  void refuse(const grain_id& id, caller who, std::uint32_t p);
  void not_activated(const grain_id& id, locate_error error, const std::string& why, millis now);
  // Carries out what the partition table asks after any input.
  void settle(millis now);
  // The requests waiting for `r`, which wait no more.
  std::deque<std::pair<grain_id, caller>> unbuffer(const partition_ref& r);
  void remote_changed(const remote_change& c);
  void forget_local(const grain_id& id, std::uint32_t p);

  directory_options opts_;
  partition_table table_;
  std::unordered_map<grain_id, entry, grain_id_hash> entries_;
  std::size_t active_ = 0, remote_ = 0;
  // The grains active here, by partition, for the lists of grants and
  // reports: kept with moves: keep only (moves: stop grants nothing that
  // still runs here).
  std::map<std::pair<std::string, std::uint32_t>, std::set<std::string>, std::less<>> local_;
  // Requests waiting for a partition, by (kind, partition), in arrival order.
  std::map<std::pair<std::string, std::uint32_t>, std::deque<std::pair<grain_id, caller>>, std::less<>> buffered_;
  std::size_t buffered_count_ = 0;
  std::vector<grain_id> orders_;
  std::vector<answer> answers_;
  std::vector<grain_id> stops_;
  directory_stats stats_;
};

}  // namespace troupe::cluster
