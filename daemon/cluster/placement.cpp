#include "cluster/placement.hpp"

#include "cluster/hash.hpp"

#include <algorithm>
#include <cstdlib>

namespace troupe::cluster {

std::uint64_t grain_key(std::string_view kind, std::string_view identity) noexcept {
  // The kind's NUL keeps ("ab", "c") apart from ("a", "bc").
  return mix(fnv1a(identity, fnv1a(std::string_view("\0", 1), fnv1a(kind))));
}

std::uint64_t member_key(std::string_view name) noexcept { return mix(fnv1a(name)); }

std::uint64_t partition_key(std::string_view kind, std::uint32_t p) noexcept {
  return mix(fnv1a(kind) ^ mix(static_cast<std::uint64_t>(p) + 1));
}

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

std::string_view major_of(std::string_view version) noexcept { return version.substr(0, version.find('.')); }

namespace {

// Orders majors as numbers when both are, as text otherwise.
bool lower_major(const std::string& a, const std::string& b) {
  const bool an = !a.empty() && a.find_first_not_of("0123456789") == std::string::npos;
  const bool bn = !b.empty() && b.find_first_not_of("0123456789") == std::string::npos;
  if (an && bn && a.size() != b.size()) return a.size() < b.size();
  return a < b;
}

}  // namespace

grain_hosts::grain_hosts(const std::vector<member>& members, std::uint32_t partitions)
    : partitions_(std::max<std::uint32_t>(1, partitions)) {
  const auto by_name = [](const grain_host& a, const grain_host& b) { return a.name < b.name; };
  // kind -> major -> hosts
  std::map<std::string, std::map<std::string, std::vector<grain_host>>> seen;
  std::map<std::string, std::vector<grain_host>> all;
  for (const member& m : members) {
    if (m.state != member_state::alive && m.state != member_state::suspect) continue;
    for (const auto& [kind, version] : grains_of(m)) {
      seen[kind][std::string(major_of(version))].push_back({m.id.name, m.id.address, m.id.generation});
      all[kind].push_back({m.id.name, m.id.address, m.id.generation});
    }
  }
  for (auto& [kind, majors] : seen) {
    auto best = majors.begin();
    for (auto it = majors.begin(); it != majors.end(); ++it)
      if (it->second.size() > best->second.size() ||
          (it->second.size() == best->second.size() && lower_major(it->first, best->first)))
        best = it;
    kind_hosts k;
    k.major = best->first;
    k.hosts = std::move(best->second);
    // By name: the same table whatever order the members came in.
    std::sort(k.hosts.begin(), k.hosts.end(), by_name);
    k.everyone = std::move(all[kind]);
    std::sort(k.everyone.begin(), k.everyone.end(), by_name);
    std::vector<std::uint64_t> keys;
    for (const grain_host& h : k.hosts) keys.push_back(member_key(h.name));
    k.owner.resize(partitions_);
    for (std::uint32_t p = 0; p < partitions_; ++p)
      k.owner[p] = static_cast<std::uint32_t>(place(keys, partition_key(kind, p)));
    kinds_.emplace(kind, std::move(k));
  }
}

const grain_host* grain_hosts::owner_of(std::string_view kind, std::uint32_t p) const {
  const auto it = kinds_.find(kind);
  if (it == kinds_.end() || p >= partitions_) return nullptr;
  return &it->second.hosts[it->second.owner[p]];
}

const std::vector<grain_host>* grain_hosts::everyone(std::string_view kind) const {
  const auto it = kinds_.find(kind);
  return it == kinds_.end() ? nullptr : &it->second.everyone;
}

const std::vector<grain_host>* grain_hosts::hosts(std::string_view kind) const {
  const auto it = kinds_.find(kind);
  return it == kinds_.end() ? nullptr : &it->second.hosts;
}

std::string grain_hosts::major(std::string_view kind) const {
  const auto it = kinds_.find(kind);
  return it == kinds_.end() ? std::string() : it->second.major;
}

}  // namespace troupe::cluster
