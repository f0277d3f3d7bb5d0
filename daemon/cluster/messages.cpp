#include "cluster/messages.hpp"

#include <flatbuffers/flatbuffers.h>

#include "cluster_generated.h"

namespace troupe::cluster {

namespace w = troupe::cluster::wire;
using flatbuffers::FlatBufferBuilder;
using flatbuffers::Offset;

const char* to_string(member_state s) noexcept {
  switch (s) {
    case member_state::alive: return "alive";
    case member_state::suspect: return "suspect";
    case member_state::dead: return "dead";
    case member_state::left: return "left";
  }
  return "alive";
}

const member_id& subject(const news& n) noexcept {
  return std::visit([](const auto& x) -> const member_id& { return x.member; }, n);
}

namespace {

// Limits of what a message may hold: a datagram is small, a full-state
// exchange holds at most this many members.
constexpr std::size_t max_members = 100'000;

Offset<w::Member> put(FlatBufferBuilder& b, const member_id& m) {
  return w::CreateMember(b, b.CreateString(m.name), b.CreateString(m.address), m.generation, m.incarnation);
}

Offset<w::Alive> put(FlatBufferBuilder& b, const alive_news& a) {
  std::vector<Offset<w::Entry>> entries;
  for (const auto& [k, v] : a.meta) entries.push_back(w::CreateEntry(b, b.CreateString(k), b.CreateString(v)));
  const auto meta = b.CreateVector(entries);
  return w::CreateAlive(b, put(b, a.member), a.meta_version, meta);
}

Offset<w::Suspect> put(FlatBufferBuilder& b, const suspect_news& s) {
  const auto from = b.CreateString(s.from);
  return w::CreateSuspect(b, put(b, s.member), from);
}

Offset<w::Dead> put(FlatBufferBuilder& b, const dead_news& d) {
  const auto from = b.CreateString(d.from);
  return w::CreateDead(b, put(b, d.member), from, d.left);
}

Offset<w::Broadcast> put_news(FlatBufferBuilder& b, const news& n) {
  if (const auto* a = std::get_if<alive_news>(&n)) return w::CreateBroadcast(b, w::News::Alive, put(b, *a).Union());
  if (const auto* s = std::get_if<suspect_news>(&n)) return w::CreateBroadcast(b, w::News::Suspect, put(b, *s).Union());
  return w::CreateBroadcast(b, w::News::Dead, put(b, std::get<dead_news>(n)).Union());
}

std::string text(const flatbuffers::String* s) { return s != nullptr ? s->str() : std::string(); }

bool get(const w::Member* m, member_id& out, std::string& why) {
  if (m == nullptr || m->name() == nullptr || m->name()->size() == 0) {
    why = "a member without a name";
    return false;
  }
  out.name = m->name()->str();
  out.address = text(m->address());
  out.generation = m->generation();
  out.incarnation = m->incarnation();
  return true;
}

bool get(const w::Alive* a, alive_news& out, std::string& why) {
  if (a == nullptr || !get(a->member(), out.member, why)) return false;
  out.meta_version = a->meta_version();
  if (a->meta() != nullptr)
    for (const w::Entry* e : *a->meta())
      if (e != nullptr && e->key() != nullptr) out.meta[e->key()->str()] = text(e->value());
  return true;
}

bool get(const w::Suspect* s, suspect_news& out, std::string& why) {
  if (s == nullptr || !get(s->member(), out.member, why)) return false;
  out.from = text(s->from());
  return true;
}

bool get(const w::Dead* d, dead_news& out, std::string& why) {
  if (d == nullptr || !get(d->member(), out.member, why)) return false;
  out.from = text(d->from());
  out.left = d->left();
  return true;
}

bool verify(std::span<const std::uint8_t> bytes, bool (*check)(flatbuffers::Verifier&), std::string& why) {
  flatbuffers::Verifier::Options o;
  o.max_depth = 16;
  o.max_tables = 4 * max_members;
  flatbuffers::Verifier v(bytes.data(), bytes.size(), o);
  if (bytes.size() < 8 || !check(v)) {
    why = "malformed (" + std::to_string(bytes.size()) + " bytes do not verify)";
    return false;
  }
  return true;
}

}  // namespace

std::vector<std::uint8_t> encode(const packet& p) {
  FlatBufferBuilder b(256);
  std::vector<Offset<w::Broadcast>> gossip;
  for (const news& n : p.gossip) gossip.push_back(put_news(b, n));
  const auto news_vec = b.CreateVector(gossip);
  w::Probe kind = w::Probe::NONE;
  Offset<void> probe;
  switch (p.probe) {
    case probe_kind::none: break;
    case probe_kind::ping:
      kind = w::Probe::Ping;
      probe = w::CreatePing(b, p.seq, put(b, p.target)).Union();
      break;
    case probe_kind::indirect_ping:
      kind = w::Probe::IndirectPing;
      probe = w::CreateIndirectPing(b, p.seq, put(b, p.target), p.want_nack).Union();
      break;
    case probe_kind::ack:
      kind = w::Probe::Ack;
      probe = w::CreateAck(b, p.seq).Union();
      break;
    case probe_kind::nack:
      kind = w::Probe::Nack;
      probe = w::CreateNack(b, p.seq).Union();
      break;
  }
  const auto cluster = b.CreateString(p.cluster);
  const auto from = put(b, p.from);
  b.Finish(w::CreatePacket(b, cluster, from, kind, probe, news_vec));
  return {b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize()};
}

std::vector<std::uint8_t> encode(const sync& s) {
  FlatBufferBuilder b(1024);
  std::vector<Offset<w::Alive>> alive;
  for (const auto& a : s.alive) alive.push_back(put(b, a));
  std::vector<Offset<w::Suspect>> suspects;
  for (const auto& x : s.suspects) suspects.push_back(put(b, x));
  std::vector<Offset<w::Dead>> dead;
  for (const auto& d : s.dead) dead.push_back(put(b, d));
  const auto a = b.CreateVector(alive);
  const auto x = b.CreateVector(suspects);
  const auto d = b.CreateVector(dead);
  const auto cluster = b.CreateString(s.cluster);
  const auto from = put(b, s.from);
  b.Finish(w::CreateSync(b, cluster, from, s.reply, s.joined, a, x, d));
  return {b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize()};
}

std::size_t encoded_size(const news& n) {
  FlatBufferBuilder b(128);
  b.Finish(put_news(b, n));
  return b.GetSize();
}

bool decode(std::span<const std::uint8_t> bytes, packet& out, std::string& why) {
  if (!verify(bytes, [](flatbuffers::Verifier& v) { return v.VerifyBuffer<w::Packet>(nullptr); }, why)) return false;
  const w::Packet* p = flatbuffers::GetRoot<w::Packet>(bytes.data());
  out.cluster = text(p->cluster());
  if (!get(p->from(), out.from, why)) return false;
  out.probe = probe_kind::none;
  switch (p->probe_type()) {
    case w::Probe::NONE: break;
    case w::Probe::Ping:
      out.probe = probe_kind::ping;
      out.seq = p->probe_as_Ping()->seq();
      if (!get(p->probe_as_Ping()->target(), out.target, why)) return false;
      break;
    case w::Probe::IndirectPing:
      out.probe = probe_kind::indirect_ping;
      out.seq = p->probe_as_IndirectPing()->seq();
      out.want_nack = p->probe_as_IndirectPing()->nack();
      if (!get(p->probe_as_IndirectPing()->target(), out.target, why)) return false;
      break;
    case w::Probe::Ack:
      out.probe = probe_kind::ack;
      out.seq = p->probe_as_Ack()->seq();
      break;
    case w::Probe::Nack:
      out.probe = probe_kind::nack;
      out.seq = p->probe_as_Nack()->seq();
      break;
    default:
      why = "an unknown kind of probe";
      return false;
  }
  out.gossip.clear();
  if (p->news() != nullptr)
    for (const w::Broadcast* b : *p->news()) {
      if (b == nullptr) continue;
      switch (b->news_type()) {
        case w::News::Alive: {
          alive_news a;
          if (!get(b->news_as_Alive(), a, why)) return false;
          out.gossip.emplace_back(std::move(a));
          break;
        }
        case w::News::Suspect: {
          suspect_news s;
          if (!get(b->news_as_Suspect(), s, why)) return false;
          out.gossip.emplace_back(std::move(s));
          break;
        }
        case w::News::Dead: {
          dead_news d;
          if (!get(b->news_as_Dead(), d, why)) return false;
          out.gossip.emplace_back(std::move(d));
          break;
        }
        default: break;  // news of a newer protocol: skipped
      }
    }
  return true;
}

bool decode(std::span<const std::uint8_t> bytes, sync& out, std::string& why) {
  if (!verify(bytes, [](flatbuffers::Verifier& v) { return v.VerifyBuffer<w::Sync>(nullptr); }, why)) return false;
  const w::Sync* s = flatbuffers::GetRoot<w::Sync>(bytes.data());
  out.cluster = text(s->cluster());
  if (!get(s->from(), out.from, why)) return false;
  out.reply = s->reply();
  out.joined = s->joined();
  out.alive.clear();
  out.suspects.clear();
  out.dead.clear();
  if (s->members() != nullptr)
    for (const w::Alive* a : *s->members()) {
      alive_news x;
      if (!get(a, x, why)) return false;
      out.alive.push_back(std::move(x));
    }
  if (s->suspects() != nullptr)
    for (const w::Suspect* a : *s->suspects()) {
      suspect_news x;
      if (!get(a, x, why)) return false;
      out.suspects.push_back(std::move(x));
    }
  if (s->dead() != nullptr)
    for (const w::Dead* a : *s->dead()) {
      dead_news x;
      if (!get(a, x, why)) return false;
      out.dead.push_back(std::move(x));
    }
  return true;
}

}  // namespace troupe::cluster
