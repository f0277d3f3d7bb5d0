#include "modules/cluster/cluster_events.hpp"

#include "cluster/hash.hpp"
#include "cluster_generated.h"

namespace troupe::node {

namespace {

namespace ev = troupe::cluster;
using flatbuffers::FlatBufferBuilder;
using flatbuffers::Offset;

Offset<ev::MemberInfo> encode(FlatBufferBuilder& b, const cluster::member& m, const wall_clock& clock) {
  std::vector<Offset<flatbuffers::String>> kinds;
  for (const std::string& k : kinds_of(m)) kinds.push_back(b.CreateString(k));
  std::vector<Offset<ev::GrainKind>> grains;
  for (const auto& [kind, version] : grains_of(m))
    grains.push_back(ev::CreateGrainKindDirect(b, kind.c_str(), version.c_str()));
  return ev::CreateMemberInfoDirect(b, m.id.name.c_str(), m.id.address.c_str(), m.id.generation, m.id.incarnation,
                                    static_cast<ev::MemberStatus>(m.state), &kinds, clock.to_wall(m.since), &grains);
}

}  // namespace

envelope* event_message(const cluster::member_event& e, const wall_clock& clock) {
  using k = cluster::member_event::kind;
  switch (e.what) {
    case k::joined:
      return build<ev::MemberJoined>([&](FlatBufferBuilder& b) { return ev::CreateMemberJoined(b, encode(b, e.who, clock)); });
    case k::suspect:
      return build<ev::MemberSuspect>([&](FlatBufferBuilder& b) {
        auto m = encode(b, e.who, clock);
        return ev::CreateMemberSuspect(b, m, b.CreateString(e.from));
      });
    case k::alive:
      return build<ev::MemberAlive>([&](FlatBufferBuilder& b) { return ev::CreateMemberAlive(b, encode(b, e.who, clock)); });
    case k::dead:
      return build<ev::MemberDead>([&](FlatBufferBuilder& b) {
        auto m = encode(b, e.who, clock);
        return ev::CreateMemberDead(b, m, b.CreateString(e.from));
      });
    case k::left:
      return build<ev::MemberLeft>([&](FlatBufferBuilder& b) { return ev::CreateMemberLeft(b, encode(b, e.who, clock)); });
    case k::updated:
    case k::forgotten:
      return nullptr;
  }
  return nullptr;
}

std::vector<std::uint8_t> members_buffer(const std::vector<cluster::member>& members, const wall_clock& clock) {
  FlatBufferBuilder b(1024);
  std::vector<Offset<ev::MemberInfo>> list;
  list.reserve(members.size());
  for (const cluster::member& m : members) list.push_back(encode(b, m, clock));
  b.Finish(ev::CreateMembersDirect(b, &list));
  return {b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize()};
}

topology up_members(const std::vector<cluster::member>& members) {
  topology t;
  for (const cluster::member& m : members)
    if (m.state == cluster::member_state::alive || m.state == cluster::member_state::suspect)
      t.emplace(m.id.name, m.id.generation);
  return t;
}

std::uint64_t topology_hash(const topology& t) {
  std::uint64_t h = cluster::fnv_offset;
  for (const auto& [name, generation] : t) {
    h = cluster::fnv1a(name.data(), name.size() + 1, h);  // with its NUL: "ab"+"c" is not "a"+"bc"
    h = cluster::fnv1a(&generation, sizeof generation, h);
  }
  return h;
}

envelope* topology_message(const topology& before, const topology& now,
                           const std::vector<cluster::member>& members, const wall_clock& clock) {
  return build<ev::TopologyChanged>([&](FlatBufferBuilder& b) {
    std::vector<Offset<flatbuffers::String>> joined, left;
    for (const auto& [name, generation] : now)
      if (auto it = before.find(name); it == before.end() || it->second != generation) joined.push_back(b.CreateString(name));
    for (const auto& [name, generation] : before)
      if (auto it = now.find(name); it == now.end() || it->second != generation) left.push_back(b.CreateString(name));
    std::vector<Offset<ev::MemberInfo>> up;
    for (const cluster::member& m : members)
      if (now.count(m.id.name) != 0) up.push_back(encode(b, m, clock));
    return ev::CreateTopologyChangedDirect(b, &up, &joined, &left, topology_hash(now));
  });
}

}  // namespace troupe::node
