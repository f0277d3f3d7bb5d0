#include "cluster/placement.hpp"

#include "cluster/hash.hpp"

namespace troupe::cluster {

std::uint64_t grain_key(std::string_view kind, std::string_view identity) noexcept {
  // The kind's NUL keeps ("ab", "c") apart from ("a", "bc").
  return mix(fnv1a(identity, fnv1a(std::string_view("\0", 1), fnv1a(kind))));
}

std::uint64_t member_key(std::string_view name) noexcept { return mix(fnv1a(name)); }

std::uint64_t placement_score(std::uint64_t member, std::uint64_t grain) noexcept {
  return mix(member ^ (grain * 0x9e3779b97f4a7c15ull));
}

std::size_t place(std::span<const std::uint64_t> members, std::uint64_t grain) noexcept {
  std::size_t best = no_owner;
  std::uint64_t best_score = 0;
  for (std::size_t i = 0; i < members.size(); ++i) {
    const std::uint64_t s = placement_score(members[i], grain);
    if (best == no_owner || s > best_score || (s == best_score && members[i] < members[best])) {
      best = i;
      best_score = s;
    }
  }
  return best;
}

}  // namespace troupe::cluster
