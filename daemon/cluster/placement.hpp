#pragma once
// Where a grain lives: rendezvous (highest random weight) hashing of its
// (kind, identity) over the members that may host it. Every node that sees
// the same members picks the same owner, whatever order it lists them in;
// a member that joins takes about 1/n of the identities, all from others,
// and one that goes moves only the identities it owned.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

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

}  // namespace troupe::cluster
