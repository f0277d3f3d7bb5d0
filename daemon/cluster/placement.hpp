#pragma once
// Where a grain lives: rendezvous (highest random weight) hashing of its
// (kind, identity) over the members that may host it. Every node that sees
// the same members picks the same owner, whatever order it lists them in;
// a member that joins takes about 1/n of the identities, all from others,
// and one that goes moves only the identities it owned.
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
// kind in its compatible version. Versions are compatible when their major
// numbers (up to the first '.') are equal; when members differ, the major
// hosted by the most members wins (a tie: the lower one), so that a
// rolling upgrade moves the grains once, halfway.
class grain_hosts {
 public:
  grain_hosts() = default;
  explicit grain_hosts(const std::vector<member>& members);

  // The owner of the grain of `kind` with grain_key `key`; null when no
  // member hosts the kind.
  const grain_host* owner(std::string_view kind, std::uint64_t key) const;
  // Every member that hosts `kind` in its compatible version.
  const std::vector<grain_host>* hosts(std::string_view kind) const;
  // The compatible major version of `kind` ("" when unversioned).
  std::string major(std::string_view kind) const;

  friend bool operator==(const grain_hosts& a, const grain_hosts& b) { return a.kinds_ == b.kinds_; }

 private:
  struct kind_hosts {
    std::string major;
    std::vector<std::uint64_t> keys;  // member_key of each host
    std::vector<grain_host> hosts;
    friend bool operator==(const kind_hosts&, const kind_hosts&) = default;
  };
  std::map<std::string, kind_hosts, std::less<>> kinds_;
};

// "1" of "1.4.2".
std::string_view major_of(std::string_view version) noexcept;

}  // namespace troupe::cluster
