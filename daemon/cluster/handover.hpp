#pragma once
// Which grain partitions a node may activate grains in, and how a partition
// moves from one node to another (placement.hpp says who should own it; this
// makes the move safe).
//
// A node activates grains of a partition only while it *holds* it: it owns
// the partition in its view of the members, and every other member up that
// hosts the kind (in any version) has granted it the partition. A member
// grants a partition to one member at a time, and only
//   - to the owner in its own view,
//   - while it holds no activation of that partition itself (a node that no
//     longer owns a partition stops those first, after the messages they had
//     already accepted),
// and the grant stands until the grantee releases it or is gone (declared
// dead, left, restarted). Two members therefore never hold one partition at
// once while every dead verdict is true, however their views differ for a
// while, as long as they know each other or a member in common (which
// joining through the seeds gives). Views decide who should hold a
// partition; grants make the move safe; a wrong view only delays it.
//
// Two ways to give a partition up (`partition_moves`):
//   - stop: as above; the activations stop first, `max_moving` partitions at
//     a time, and start again on the new holder when next called;
//   - keep: only the directory moves. The old holder grants at once, listing
//     the activations it still runs in the partition, and keeps them until
//     they end on their own (passivation, a limit, a leave, fencing); the
//     new holder answers for them and activates nothing it was told of.
//     Each end is reported to the grantee (resent until noted), so the new
//     holder activates the grain again only once the old activation is gone.
//     A node that gives a partition up without a grantee (its grant was
//     void: it had taken the owner for dead) reports what it kept to the
//     owner in its view at once, so that an owner that held on meanwhile
//     learns of it.
//     A node never activates in a partition it does not hold, so what it
//     keeps only shrinks. A holder told of an activation of a grain it
//     already knows (after a false dead verdict) keeps the one it knew and
//     asks the other's node to stop its own (evict).
//
// Every claim has an epoch (a number that grows with each claim of the
// node), echoed by grants and releases, so that an old message never undoes
// a newer one.
//
// A state machine with no socket, thread or clock inside: the node feeds it
// its view, the messages of the other members and the ends of its
// activations, and carries out what it asks (send these messages; stop the
// activations of these partitions; these partitions are held now; these are
// not owned any more).
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "cluster/member.hpp"
#include "cluster/placement.hpp"

namespace troupe::cluster {

// A member at one start.
struct member_ref {
  std::string name;
  std::uint64_t generation = 0;
  bool empty() const noexcept { return name.empty(); }
  friend bool operator==(const member_ref&, const member_ref&) = default;
};

enum class handover_op : std::uint8_t {
  claim,    // I own these partitions in my view: grant them to me
  grant,    // granted to you (until you release them or are gone)
  release,  // I do not want these from you any more
  confirm,  // you hold a grant of these from me: do you still want them?
  report,   // the activations I still run in these, which you hold by my grant, are now these
  noted,    // your report is noted
  evict,    // stop these activations of yours: I know another activation of their grains
};
const char* to_string(handover_op op) noexcept;

struct partition_epoch {
  std::uint32_t partition = 0;
  std::uint64_t epoch = 0;
  std::uint64_t seq = 0;  // grant, report, noted: which list of the sender's activations
  friend bool operator==(const partition_epoch&, const partition_epoch&) = default;
};

// An activation a member runs in a partition it does not hold (in a grant,
// a report or an evict); it runs on the sender's node.
struct kept_activation {
  std::uint32_t partition = 0;
  std::string identity;
  std::string actor;
  friend bool operator==(const kept_activation&, const kept_activation&) = default;
};

struct handover_message {
  handover_op op = handover_op::claim;
  member_ref peer;       // the receiver (take_messages) or the sender (on_message)
  std::string address;   // the receiver's address (take_messages)
  std::string kind;
  std::uint32_t partitions = default_partitions;  // the sender's partition count
  std::vector<partition_epoch> items;
  // Grant and report: every activation the sender runs in those partitions
  // (filled by the grain directory, which knows them); evict: those to stop.
  std::vector<kept_activation> activations;
};

enum class partition_role : std::uint8_t {
  none,       // not owned here, or not yet claimed
  claiming,   // owned in this node's view; waiting for grants
  holding,    // grants complete: grains of it are activated here
  releasing,  // no longer owned: its activations are stopping
};
const char* to_string(partition_role r) noexcept;

struct partition_ref {
  std::string kind;
  std::uint32_t partition = 0;
  friend bool operator==(const partition_ref&, const partition_ref&) = default;
};

// How a node gives a partition up (see above).
enum class partition_moves : std::uint8_t { stop, keep };

// An activation another member runs in a partition this node holds, which
// the directory answers for (added) or forgets (not added).
struct remote_change {
  std::string kind;
  std::uint32_t partition = 0;
  std::string address;  // the member's
  std::uint64_t generation = 0;
  std::string identity, actor;
  bool added = true;
};

// An activation of this node to stop at once: another member holds its
// partition and knows another activation of the grain.
struct eviction {
  std::string kind, identity, actor;
};

struct handover_stats {
  std::uint64_t claims = 0;    // partitions claimed (each claim once, not each resend)
  std::uint64_t acquired = 0;  // partitions that came to be held
  std::uint64_t released = 0;  // held partitions given up
  std::uint64_t grants = 0;    // partitions granted to others
  std::uint64_t rejected = 0;  // messages refused (another partition count, a partition out of range)
  std::uint64_t kept = 0;      // partitions given up with activations still running here (moves: keep)
  std::uint64_t evicted = 0;   // activations this node asked another to stop
};

class partition_table {
 public:
  // `kinds`: the grain kinds this node hosts (in whatever version).
  // `max_moving`: partitions this node gives up at a time (the others it
  // keeps holding, and serving, until their turn): a join or a leave stops
  // and restarts activations in waves, not all at once. A fenced node gives
  // up everything at once.
  partition_table(member_ref self, const std::vector<std::string>& kinds,
                  std::uint32_t partitions = default_partitions, millis resend = millis(500),
                  std::size_t max_moving = 16, partition_moves moves = partition_moves::stop);

  const member_ref& self() const noexcept { return self_; }
  std::uint32_t partitions() const noexcept { return partitions_; }
  partition_moves moves() const noexcept { return moves_; }
  // Whether an activation in a partition this node gives up keeps running
  // (moves: keep, and the node neither fenced nor leaving).
  bool keeps_activations() const noexcept { return moves_ == partition_moves::keep && !fenced_ && !leaving_; }

  // The members up, as this node sees them now.
  void set_view(std::shared_ptr<const grain_hosts> view, millis now);
  // Fenced (out of touch, or declared dead): this node holds nothing and
  // claims nothing until it is not.
  void set_fenced(bool fenced, millis now);
  // The node is stopping: it gives up everything it holds (and claims
  // nothing more), as if it had gone from its own view.
  void leave(millis now);
  void on_message(const handover_message& m, millis now);
  // Resends what was not answered.
  void advance(millis now);
  millis next_wake() const noexcept { return next_resend_; }

  // An activation of partition `p` of `kind` was ordered here / has
  // started / has ended (`started`: after it had started).
  void activation_added(std::string_view kind, std::uint32_t p);
  void activation_started(std::string_view kind, std::uint32_t p, millis now);
  void activation_removed(std::string_view kind, std::uint32_t p, millis now, bool started = true);
  // Asks `to` (the member at `address`, start `generation`) to stop its
  // activation `a` of a grain of `kind`.
  void evict(const std::string& kind, const std::string& address, std::uint64_t generation, kept_activation a);

  partition_role role(std::string_view kind, std::uint32_t p) const;
  // Activations of the partition here (ordered, running or stopping).
  std::uint32_t local(std::string_view kind, std::uint32_t p) const;
  // Whether `m` granted this node's claim of the partition (and with it,
  // listed what it kept there).
  bool granted_by(std::string_view kind, std::uint32_t p, const member_ref& m) const;
  // Whether this node owns the partition in its view (and is neither fenced
  // nor leaving): it holds it, or will once the grants are in.
  bool mine(std::string_view kind, std::uint32_t p) const;
  // Nothing held, claimed, or still stopping (after leave(): all handed over).
  bool idle() const;
  std::size_t count(partition_role r) const;
  // Activations here in partitions this node does not hold (moves: keep).
  std::size_t kept() const;
  const std::shared_ptr<const grain_hosts>& view() const noexcept { return view_; }
  const handover_stats& stats() const noexcept { return stats_; }

  // What the node must do: send these...
  std::vector<handover_message> take_messages();
  // ...stop every activation of these partitions (after the messages they
  // have accepted)...
  std::vector<partition_ref> take_stops() { return std::exchange(stops_, {}); }
  // ...serve the calls waiting for these, held now...
  std::vector<partition_ref> take_ready() { return std::exchange(ready_, {}); }
  // ...and send those waiting for these elsewhere: not owned here any more.
  std::vector<partition_ref> take_lost() { return std::exchange(lost_, {}); }
  // ...answer for (or forget) these activations of other members...
  std::vector<remote_change> take_remote() { return std::exchange(remote_, {}); }
  // ...and stop these of this node at once.
  std::vector<eviction> take_evictions() { return std::exchange(evictions_, {}); }

 private:
  // A grant of this node's claim, and the activations its member still
  // runs in the partition (as of its list `seq`).
  struct grant_of {
    grain_host host;
    std::uint64_t seq = 0;
    std::vector<std::pair<std::string, std::string>> kept;  // (identity, actor)
  };
  struct part {
    partition_role role = partition_role::none;
    std::uint64_t epoch = 0;           // of this node's latest claim
    std::vector<grant_of> granted;     // who granted that claim
    member_ref grantee;                // whom this node granted the partition to
    std::uint64_t grantee_epoch = 0;
    std::uint64_t reported = 0;        // the seq of the list last sent to the grantee
    bool unnoted = false;              // ...not yet noted by it
    member_ref deferred;               // a claim this node cannot grant yet
    std::uint64_t deferred_epoch = 0;
    std::uint32_t local = 0;           // activations here (ordered, running, stopping)
    std::uint32_t starting = 0;        // of which not started yet
  };
  struct kind_state {
    std::vector<part> parts;
    std::vector<grain_host> peers;  // every other member up that hosts the kind
  };

  kind_state* find(std::string_view kind);
  const kind_state* find(std::string_view kind) const;
  bool owns(std::string_view kind, std::uint32_t p) const;
  const grain_host* peer(const kind_state& k, const member_ref& m) const;
  void reconcile(const std::string& kind, kind_state& k, std::uint32_t p);
  void reconcile_all();
  void start_claim(const std::string& kind, kind_state& k, std::uint32_t p);
  void check_hold(const std::string& kind, kind_state& k, std::uint32_t p);
  void let_go(const std::string& kind, kind_state& k, std::uint32_t p);
  // A partition released: the next ones waiting for their turn to move.
  void next_turns();
  void try_grant(const std::string& kind, kind_state& k, std::uint32_t p);
  // The message of (receiver, op, kind) being batched, started if new.
  handover_message& outgoing(handover_op op, const grain_host& to, const std::string& kind);
  void send(handover_op op, const grain_host& to, const std::string& kind, std::uint32_t p, std::uint64_t epoch,
            std::uint64_t seq = 0);
  grant_of* granted_by(part& s, const member_ref& m);
  // A grant of `p` from `from`, or a report of it: its list replaces the
  // one known (when newer), and the directory hears what changed.
  void take_list(const std::string& kind, std::uint32_t p, part& s, grant_of& g, std::uint64_t seq,
                 std::vector<std::pair<std::string, std::string>> kept);
  // The activations other members run in `p`, for the directory: all of
  // them (added) once it is held, none (not added) once it is not.
  void announce_kept(const std::string& kind, std::uint32_t p, const part& s, bool added);
  void report(const std::string& kind, kind_state& k, std::uint32_t p);
  void grant(const grain_host& to, const std::string& kind, part& s, std::uint32_t p);
  // Whom this node tells what it kept in `p`: its grantee, or else the
  // owner in its view.
  const grain_host* report_to(const std::string& kind, const kind_state& k, const part& s, std::uint32_t p) const;
  void stop_local(const std::string& kind, kind_state& k);
  void arm(millis now);

  member_ref self_;
  std::uint32_t partitions_;
  millis resend_;
  std::size_t max_moving_;
  partition_moves moves_;
  std::size_t moving_ = 0;           // partitions releasing now
  std::vector<partition_ref> turns_;  // held, owned elsewhere, waiting to move (in order)
  std::shared_ptr<const grain_hosts> view_ = std::make_shared<grain_hosts>();
  std::map<std::string, kind_state, std::less<>> kinds_;
  bool fenced_ = false, leaving_ = false;
  std::uint64_t next_epoch_ = 0, next_seq_ = 0;
  millis next_resend_{-1};
  handover_stats stats_;
  // Outgoing, batched per (receiver, op, kind) until taken.
  std::map<std::tuple<std::string, std::uint64_t, handover_op, std::string>, handover_message> out_;
  std::vector<partition_ref> stops_, ready_, lost_;
  std::vector<remote_change> remote_;
  std::vector<eviction> evictions_;
};

}  // namespace troupe::cluster
