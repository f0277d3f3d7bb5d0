#pragma once
// The cluster's news as actors hear it: members and events as the tables of
// schemas/cluster.fbs (namespace troupe.cluster), and the topology (who is
// up) whose changes are published as TopologyChanged.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "actor/message.hpp"
#include "cluster/membership.hpp"

namespace troupe::node {

// Converts the protocol's clock (the owner's steady milliseconds) to
// milliseconds since the epoch.
struct wall_clock {
  cluster::millis steady_now;
  std::int64_t wall_now_ms;
  std::uint64_t to_wall(cluster::millis steady) const noexcept {
    const std::int64_t ms = wall_now_ms - (steady_now - steady).count();
    return ms > 0 ? static_cast<std::uint64_t>(ms) : 0;
  }
};

using cluster::grains_of;
using cluster::kinds_of;

// The event message for `e` (MemberJoined, ...), or null for news that
// actors are not told (a metadata update, a forgotten member).
envelope* event_message(const cluster::member_event& e, const wall_clock& clock);

// Every member, as a troupe.cluster.Members buffer.
std::vector<std::uint8_t> members_buffer(const std::vector<cluster::member>& members, const wall_clock& clock);

// Who is up (alive or suspect): name -> generation.
using topology = std::map<std::string, std::uint64_t>;
topology up_members(const std::vector<cluster::member>& members);
// FNV-1a over the sorted names and generations: equal views, equal hashes.
std::uint64_t topology_hash(const topology& t);
// TopologyChanged from `before` to `now`.
envelope* topology_message(const topology& before, const topology& now,
                           const std::vector<cluster::member>& members, const wall_clock& clock);

}  // namespace troupe::node
