#pragma once
// Where a grain lives. The identities of a kind fall into a fixed number of
// partitions by the hash of (kind, identity); each partition is owned by
// rendezvous (highest random weight) hashing over the members that may
// host the kind. Every node that sees the same members picks the same
// owner, whatever order it lists them in; a member that joins takes about
// 1/n of the partitions, all from others, and one that goes moves only the
// partitions it owned. Partitions, not identities, are what moves between
// nodes (handover.hpp): a finite set each node can keep books on.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/member.hpp"

namespace troupe::cluster {

// The hash of a grain's (kind, identity): computed once per call.
std::uint64_t grain_key(std::string_view kind, std::string_view identity) noexcept;
// The hash of a member's name: computed once per member.
std::uint64_t member_key(std::string_view name) noexcept;
// How much `member` wants `grain`: the highest score owns it.
std::uint64_t placement_score(std::uint64_t member, std::uint64_t grain) noexcept;

inline constexpr std::size_t no_owner = static_cast<std::size_t>(-1);

// Partitions per grain kind: a constant of the protocol (every member must
// use the same number; a claim says which it uses).
inline constexpr std::uint32_t default_partitions = 1024;

// The partition of the grain with grain_key `key`.
constexpr std::uint32_t partition_of(std::uint64_t key, std::uint32_t partitions) noexcept {
  return static_cast<std::uint32_t>(key % partitions);
}
// The hash placement uses for partition `p` of `kind`.
std::uint64_t partition_key(std::string_view kind, std::uint32_t p) noexcept;

// The index in `members` (their member_key()s) of the owner of `grain`, or
// no_owner when there is none. Ties (equal scores) go to the lower key, so
// that the answer never depends on the order.
std::size_t place(std::span<const std::uint64_t> members, std::uint64_t grain) noexcept;

// A member that may own grains of a kind.
struct grain_host {
  std::string name;
  std::string address;
  std::uint64_t generation = 0;
  friend bool operator==(const grain_host&, const grain_host&) = default;
};

// Who may own the grains of each kind, as one node sees the cluster: the
// members up (alive or suspect: a suspect keeps its grains) that host the
// kind in its compatible version. Those that host it in another version
// own nothing but are still asked before a partition moves (they may have
// activations from before). Versions are compatible when their major
// numbers (up to the first '.') are equal; when members differ, the major
// hosted by the most members wins (a tie: the lower one), so that a
// rolling upgrade moves the grains once, halfway.
class grain_hosts {
 public:
  grain_hosts() = default;
  explicit grain_hosts(const std::vector<member>& members, std::uint32_t partitions = default_partitions);

  std::uint32_t partitions() const noexcept { return partitions_; }
  // The owner of the grain of `kind` with grain_key `key`; null when no
  // member hosts the kind.
  const grain_host* owner(std::string_view kind, std::uint64_t key) const {
    return owner_of(kind, partition_of(key, partitions_));
  }
  // The owner of partition `p` of `kind`.
  const grain_host* owner_of(std::string_view kind, std::uint32_t p) const;
  // Every member that hosts `kind` in its compatible version.
  const std::vector<grain_host>* hosts(std::string_view kind) const;
  // Every member that hosts `kind`, in any version.
  const std::vector<grain_host>* everyone(std::string_view kind) const;
  // The compatible major version of `kind` ("" when unversioned).
  std::string major(std::string_view kind) const;

  friend bool operator==(const grain_hosts& a, const grain_hosts& b) {
    return a.partitions_ == b.partitions_ && a.kinds_ == b.kinds_;
  }

 private:
  struct kind_hosts {
    std::string major;
    std::vector<grain_host> hosts;     // in the compatible major, by name
    std::vector<grain_host> everyone;  // in any version, by name
    std::vector<std::uint32_t> owner;  // of each partition: an index in hosts
    friend bool operator==(const kind_hosts& a, const kind_hosts& b) {
      return a.major == b.major && a.hosts == b.hosts && a.everyone == b.everyone;
    }
  };
  std::uint32_t partitions_ = default_partitions;
  std::map<std::string, kind_hosts, std::less<>> kinds_;
};

// "1" of "1.4.2".
std::string_view major_of(std::string_view version) noexcept;

}  // namespace troupe::cluster
