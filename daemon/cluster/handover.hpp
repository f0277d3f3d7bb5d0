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
};
const char* to_string(handover_op op) noexcept;

struct partition_epoch {
  std::uint32_t partition = 0;
  std::uint64_t epoch = 0;
  friend bool operator==(const partition_epoch&, const partition_epoch&) = default;
};

struct handover_message {
  handover_op op = handover_op::claim;
  member_ref peer;       // the receiver (take_messages) or the sender (on_message)
  std::string address;   // the receiver's address (take_messages)
  std::string kind;
  std::uint32_t partitions = default_partitions;  // the sender's partition count
  std::vector<partition_epoch> items;
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

struct handover_stats {
  std::uint64_t claims = 0;    // partitions claimed (each claim once, not each resend)
  std::uint64_t acquired = 0;  // partitions that came to be held
  std::uint64_t released = 0;  // held partitions given up
  std::uint64_t grants = 0;    // partitions granted to others
  std::uint64_t rejected = 0;  // messages refused (another partition count, a partition out of range)
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
                  std::size_t max_moving = 16);

  const member_ref& self() const noexcept { return self_; }
  std::uint32_t partitions() const noexcept { return partitions_; }

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

  // An activation of partition `p` of `kind` was ordered here / has ended.
  void activation_added(std::string_view kind, std::uint32_t p);
  void activation_removed(std::string_view kind, std::uint32_t p, millis now);

  partition_role role(std::string_view kind, std::uint32_t p) const;
  // Whether this node owns the partition in its view (and is neither fenced
  // nor leaving): it holds it, or will once the grants are in.
  bool mine(std::string_view kind, std::uint32_t p) const;
  // Nothing held, claimed, or still stopping (after leave(): all handed over).
  bool idle() const;
  std::size_t count(partition_role r) const;
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

 private:
  struct part {
    partition_role role = partition_role::none;
    std::uint64_t epoch = 0;           // of this node's latest claim
    std::vector<grain_host> granted;   // who granted that claim
    member_ref grantee;                // whom this node granted the partition to
    std::uint64_t grantee_epoch = 0;
    member_ref deferred;               // a claim this node cannot grant yet
    std::uint64_t deferred_epoch = 0;
    std::uint32_t local = 0;           // activations here (ordered, running, stopping)
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
  void send(handover_op op, const grain_host& to, const std::string& kind, std::uint32_t p, std::uint64_t epoch);
  void arm(millis now);

  member_ref self_;
  std::uint32_t partitions_;
  millis resend_;
  std::size_t max_moving_;
  std::size_t moving_ = 0;           // partitions releasing now
  std::vector<partition_ref> turns_;  // held, owned elsewhere, waiting to move (in order)
  std::shared_ptr<const grain_hosts> view_ = std::make_shared<grain_hosts>();
  std::map<std::string, kind_state, std::less<>> kinds_;
  bool fenced_ = false, leaving_ = false;
  std::uint64_t next_epoch_ = 0;
  millis next_resend_{-1};
  handover_stats stats_;
  // Outgoing, batched per (receiver, op, kind) until taken.
  std::map<std::tuple<std::string, std::uint64_t, handover_op, std::string>, handover_message> out_;
  std::vector<partition_ref> stops_, ready_, lost_;
};

}  // namespace troupe::cluster
