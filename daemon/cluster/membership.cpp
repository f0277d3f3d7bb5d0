#include "cluster/membership.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace troupe::cluster {

namespace {

// What a packet holds besides its news, at most (names and addresses of
// ordinary length); the rest of max_packet is for news.
constexpr std::size_t packet_overhead = 256;
constexpr millis never{std::numeric_limits<std::int64_t>::max()};

bool gone(member_state s) noexcept { return s == member_state::dead || s == member_state::left; }

}  // namespace

const char* to_string(member_event::kind k) noexcept {
  switch (k) {
    case member_event::kind::joined: return "joined";
    case member_event::kind::updated: return "updated";
    case member_event::kind::suspect: return "suspect";
    case member_event::kind::alive: return "alive";
    case member_event::kind::dead: return "dead";
    case member_event::kind::left: return "left";
    case member_event::kind::forgotten: return "forgotten";
  }
  return "updated";
}

membership::membership(std::string cluster, member_id self, std::vector<std::string> seeds, swim_options o,
                       std::uint64_t seed, metadata meta)
    : cluster_(std::move(cluster)), self_(std::move(self)), seeds_(std::move(seeds)), opts_(o), rng_(seed),
      awareness_(o.awareness_max) {
  entry& e = members_[self_.name];
  e.m.id = self_;
  e.m.meta = std::move(meta);
  e.m.meta_version = 1;
}

void membership::start(millis now) {
  started_ = true;
  members_[self_.name].m.since = now;
  // Only the first seed (or a node with none) forms a cluster alone.
  joined_ = seeds_.empty() || seeds_.front() == self_.address;
  next_probe_ = now + opts_.probe_interval;
  next_gossip_ = now + opts_.gossip_interval;
  next_push_pull_ = now + opts_.push_pull_interval;
  next_join_ = now;
  next_reconnect_ = now + opts_.reconnect_interval;
  started_at_ = now;
  broadcast(alive_of(members_[self_.name].m));
  // A first seed that restarts may find the cluster it formed still there:
  // it asks the other seeds at once rather than wait to be found.
  if (joined_)
    for (const std::string& s : seeds_)
      if (s != self_.address) exchange_state(s, false);
  advance(now);
}

bool membership::settled(millis now) const {
  if (!joined_) return false;
  if (answered_) return true;
  // A first seed nobody of a formed cluster answered yet: at once when no
  // other seed is listed (nobody to find), else once the members of an
  // earlier cluster have had the time to find it.
  const bool other_seeds = std::any_of(seeds_.begin(), seeds_.end(), [&](const std::string& s) { return s != self_.address; });
  return !other_seeds || now - started_at_ >= 5 * opts_.probe_interval;
}

const member* membership::find(const std::string& name) const {
  const auto it = members_.find(name);
  return it == members_.end() ? nullptr : &it->second.m;
}

std::vector<member> membership::members() const {
  std::vector<member> out;
  out.reserve(members_.size());
  for (const auto& [name, e] : members_) out.push_back(e.m);
  return out;
}

bool membership::consensus(const std::string& key, std::string* value) const {
  std::optional<std::string> seen;
  for (const auto& [name, e] : members_) {
    if (e.m.state != member_state::alive) continue;
    const auto it = e.m.meta.find(key);
    const std::string v = it == e.m.meta.end() ? std::string() : it->second;
    if (seen && *seen != v) return false;
    seen = v;
  }
  if (value != nullptr && seen) *value = *seen;
  return seen.has_value();
}

std::size_t membership::live_count() const {
  std::size_t n = 0;
  for (const auto& [name, e] : members_) n += gone(e.m.state) ? 0 : 1;
  return n;
}

unsigned membership::retransmit_limit() const {
  const double n = static_cast<double>(live_count());
  return opts_.retransmit_mult * static_cast<unsigned>(std::ceil(std::log10(n + 1.0)));
}

millis membership::suspicion_min() const {
  const double n = static_cast<double>(std::max<std::size_t>(live_count(), 1));
  const double scale = std::max(1.0, std::log10(n));
  return millis(static_cast<std::int64_t>(opts_.suspicion_mult * scale * static_cast<double>(opts_.probe_interval.count())));
}

millis membership::next_wake() const {
  if (!started_) return never;
  millis t = std::min({next_probe_, next_gossip_, next_push_pull_, next_reconnect_});
  if (!joined_) t = std::min(t, next_join_);
  if (probe_.active) t = std::min(t, probe_.indirect_sent || probe_.acked ? probe_.end : probe_.indirect_at);
  for (const auto& [seq, r] : relays_) t = std::min(t, r.nack_at);
  for (const auto& [name, e] : members_) {
    if (e.suspected) t = std::min(t, e.suspected->deadline());
    if (gone(e.m.state) && name != self_.name) t = std::min(t, e.m.since + opts_.dead_retention);
  }
  return t;
}

void membership::advance(millis now) {
  if (!started_) return;
  if (probe_.active && !probe_.acked && !probe_.indirect_sent && now >= probe_.indirect_at) probe_indirectly(now);
  if (probe_.active && now >= probe_.end) finish_probe(now);
  if (now >= next_probe_) start_probe(now);
  for (auto it = relays_.begin(); it != relays_.end();) {
    if (now < it->second.nack_at) {
      ++it;
      continue;
    }
    if (it->second.want_nack) {
      packet p;
      p.probe = probe_kind::nack;
      p.seq = it->second.their_seq;
      send(it->second.requester, std::move(p));
    }
    it = relays_.erase(it);
  }
  // Suspicions that ran out are dead verdicts; the dead, long enough gone,
  // are forgotten.
  std::vector<member_id> verdicts;
  for (auto it = members_.begin(); it != members_.end();) {
    entry& e = it->second;
    if (e.suspected && now >= e.suspected->deadline()) verdicts.push_back(e.m.id);
    if (gone(e.m.state) && it->first != self_.name && now >= e.m.since + opts_.dead_retention) {
      floors_[it->first] = std::max(floors_[it->first], e.m.id.generation);
      event(member_event::kind::forgotten, e.m);
      it = members_.erase(it);
      continue;
    }
    ++it;
  }
  for (const member_id& id : verdicts) {
    ++stats_.dead_verdicts;
    dead_news d{id, self_.name, false};
    apply(d, now);
  }
  if (now >= next_gossip_) {
    gossip(now);
    next_gossip_ = now + opts_.gossip_interval;
  }
  if (now >= next_push_pull_) {
    if (auto peer = pick(1, "", among::live, now); !peer.empty()) exchange_state(peer.front()->m.id.address, false);
    next_push_pull_ = now + opts_.push_pull_interval;
  }
  if (!joined_ && now >= next_join_) {
    for (const std::string& s : seeds_)
      if (s != self_.address) exchange_state(s, false);
    next_join_ = now + opts_.join_retry;
  }
  if (now >= next_reconnect_) {
    // One of the dead still remembered, or a seed not in view.
    std::vector<std::string> far;
    for (const auto& [name, e] : members_)
      if (e.m.state == member_state::dead) far.push_back(e.m.id.address);
    for (const std::string& s : seeds_) {
      bool seen = s == self_.address;
      for (const auto& [name, e] : members_) seen = seen || (e.m.id.address == s && !gone(e.m.state));
      if (!seen) far.push_back(s);
    }
    if (!far.empty()) exchange_state(far[std::uniform_int_distribution<std::size_t>(0, far.size() - 1)(rng_)], false);
    next_reconnect_ = now + opts_.reconnect_interval;
  }
}

// ---------------------------------------------------------------- probing

void membership::start_probe(millis now) {
  next_probe_ = now + awareness_.scale(opts_.probe_interval);
  if (leaving_) return;
  for (std::size_t tries = 0; tries < 2; ++tries) {
    // The alive go first, then the suspects. A member not yet suspected is
    // one whose failure nobody has found yet; a suspect's probe only
    // confirms (or not) what is known. On the small side of a partition,
    // whose own health slows its probing, this is what finds every member
    // of the far side within a round.
    const auto alive = std::find_if(round_.begin() + static_cast<std::ptrdiff_t>(round_at_), round_.end(), [&](const std::string& name) {
      const auto it = members_.find(name);
      return it != members_.end() && it->second.m.state == member_state::alive;
    });
    if (alive != round_.end()) std::iter_swap(round_.begin() + static_cast<std::ptrdiff_t>(round_at_), alive);
    while (round_at_ < round_.size()) {
      const auto it = members_.find(round_[round_at_++]);
      if (it == members_.end() || gone(it->second.m.state) || it->first == self_.name) continue;
      ++stats_.probes;
      probe_ = {};
      probe_.active = true;
      probe_.seq = ++seq_;
      probe_.target = it->first;
      probe_.generation = it->second.m.id.generation;
      probe_.indirect_at = now + awareness_.scale(opts_.probe_timeout);
      probe_.end = next_probe_;
      packet p;
      p.probe = probe_kind::ping;
      p.seq = probe_.seq;
      p.target = it->second.m.id;
      // Lifeguard's buddy system: a suspect learns it from the probe itself,
      // and can refute at once.
      if (it->second.m.state == member_state::suspect) p.gossip.push_back(suspect_news{it->second.m.id, self_.name});
      send(it->second.m.id.address, std::move(p));
      return;
    }
    // A new round, in a new order.
    round_.clear();
    for (const auto& [name, e] : members_)
      if (name != self_.name && !gone(e.m.state)) round_.push_back(name);
    std::shuffle(round_.begin(), round_.end(), rng_);
    round_at_ = 0;
  }
}

void membership::probe_indirectly(millis now) {
  probe_.indirect_sent = true;
  const auto it = members_.find(probe_.target);
  if (it == members_.end() || it->second.m.id.generation != probe_.generation) return;
  for (const entry* e : pick(opts_.indirect_checks, probe_.target, among::alive, now)) {
    ++stats_.indirect_probes;
    packet p;
    p.probe = probe_kind::indirect_ping;
    p.seq = probe_.seq;
    p.target = it->second.m.id;
    p.want_nack = true;
    send(e->m.id.address, std::move(p));
    ++probe_.nacks_expected;
  }
}

void membership::finish_probe(millis now) {
  probe_.active = false;
  if (probe_.acked) return;
  ++stats_.failed;
  // Lifeguard: intermediaries that did not even nack mean this node is the
  // one that is slow; no intermediary at all, one missed probe.
  awareness_.apply(probe_.nacks_expected > 0 ? static_cast<int>(probe_.nacks_expected - std::min(probe_.nacks, probe_.nacks_expected)) : 1);
  const auto it = members_.find(probe_.target);
  if (it == members_.end() || it->second.m.id.generation != probe_.generation || gone(it->second.m.state)) return;
  ++stats_.suspicions;
  suspect_news s{it->second.m.id, self_.name};
  apply(s, now);
}

void membership::gossip(millis now) {
  // Each member this node suspects hears of it directly, every round, until
  // it refutes or is declared dead: a suspicion whose gossip was lost must
  // not end in a verdict the member never had the chance to answer.
  for (const auto& [name, e] : members_)
    if (e.m.state == member_state::suspect && name != self_.name) {
      packet p;
      p.gossip.push_back(suspect_news{e.m.id, self_.name});
      // Only the suspicion: a suspect is likely unreachable, and news
      // piggy-backed here would spend its retransmissions on it.
      send(e.m.id.address, std::move(p), false);
    }
  if (queue_.size() == 0) return;
  for (const entry* e : pick(opts_.gossip_nodes, "", among::live_and_recently_dead, now)) {
    packet p;
    send(e->m.id.address, std::move(p));
  }
}

// Up to k members other than this node and `except`, at random, among those
// `who` names (the recently dead: within gossip_to_the_dead).
std::vector<const membership::entry*> membership::pick(unsigned k, const std::string& except, among who, millis now) {
  std::vector<const entry*> all;
  for (const auto& [name, e] : members_) {
    if (name == self_.name || name == except || e.m.state == member_state::left) continue;
    if (e.m.state == member_state::suspect && who == among::alive) continue;
    if (e.m.state == member_state::dead && !(who == among::live_and_recently_dead && now < e.m.since + opts_.gossip_to_the_dead)) continue;
    all.push_back(&e);
  }
  std::shuffle(all.begin(), all.end(), rng_);
  if (all.size() > k) all.resize(k);
  return all;
}

void membership::send(const std::string& to, packet p, bool piggyback) {
  p.cluster = cluster_;
  p.from = self_;
  // News fills what the probe leaves of the datagram.
  std::size_t budget = opts_.max_packet > packet_overhead ? opts_.max_packet - packet_overhead : 0;
  for (const news& n : p.gossip) budget -= std::min(budget, encoded_size(n));
  if (piggyback)
    for (news& n : queue_.take(budget, std::max(1u, retransmit_limit()))) p.gossip.push_back(std::move(n));
  if (p.probe == probe_kind::none && p.gossip.empty()) return;
  outgoing o{outgoing::channel::datagram, to, encode(p)};
  ++stats_.datagrams_out;
  stats_.bytes_out += o.bytes.size();
  out_.push_back(std::move(o));
}

void membership::exchange_state(const std::string& address, bool reply) {
  sync s;
  s.cluster = cluster_;
  s.from = self_;
  s.reply = reply;
  s.joined = joined_;
  for (const auto& [name, e] : members_) {
    switch (e.m.state) {
      case member_state::alive: s.alive.push_back(alive_of(e.m)); break;
      case member_state::suspect:
        // Its metadata travels with it; the suspicion after.
        s.alive.push_back(alive_of(e.m));
        s.suspects.push_back({e.m.id, self_.name});
        break;
      case member_state::dead:
      case member_state::left: s.dead.push_back({e.m.id, self_.name, e.m.state == member_state::left}); break;
    }
  }
  outgoing o{outgoing::channel::stream, address, encode(s)};
  ++stats_.streams_out;
  stats_.bytes_out += o.bytes.size();
  out_.push_back(std::move(o));
}

// ---------------------------------------------------------------- input

void membership::on_datagram(const std::string& from, std::span<const std::uint8_t> bytes, millis now) {
  ++stats_.datagrams_in;
  stats_.bytes_in += bytes.size();
  packet p;
  std::string why;
  if (!decode(bytes, p, why)) {
    ++stats_.malformed;
    return;
  }
  if (p.cluster != cluster_) {
    ++stats_.wrong_cluster;
    return;
  }
  if (!started_) return;
  handle(from, p, now);
  advance(now);
}

void membership::on_stream(const std::string& from, std::span<const std::uint8_t> bytes, millis now) {
  ++stats_.streams_in;
  stats_.bytes_in += bytes.size();
  sync s;
  std::string why;
  if (!decode(bytes, s, why)) {
    ++stats_.malformed;
    return;
  }
  if (s.cluster != cluster_) {
    ++stats_.wrong_cluster;
    return;
  }
  if (!started_) return;
  handle(from, s, now);
  advance(now);
}

bool membership::unknown(const member_id& who) const {
  if (who.name == self_.name) return false;
  if (const auto f = floors_.find(who.name); f != floors_.end() && who.generation <= f->second) return false;
  const auto it = members_.find(who.name);
  if (it == members_.end() || it->second.m.id.generation < who.generation) return true;
  return it->second.m.id.generation == who.generation && it->second.m.state == member_state::dead;
}

void membership::heard_from(const member_id& who, millis now) {
  const auto it = members_.find(who.name);
  if (it != members_.end() && it->second.m.id.generation == who.generation) it->second.heard = now;
}

bool membership::in_touch(millis now) const {
  const millis window = suspicion_max();
  std::size_t known = 0, heard = 0;
  bool lowest_heard = true;  // whether the member with the lowest name is on this side
  bool first = true;
  for (const auto& [name, e] : members_) {
    if (e.m.state == member_state::left && name != self_.name) continue;
    const bool here = name == self_.name || now - e.heard <= window;
    ++known;
    heard += here ? 1 : 0;
    if (first) lowest_heard = here;
    first = false;
  }
  return 2 * heard > known || (2 * heard == known && lowest_heard);
}

millis membership::silent_for(millis now) const {
  bool others = false;
  millis last{0};
  for (const auto& [name, e] : members_) {
    if (name == self_.name || gone(e.m.state)) continue;
    last = others ? std::max(last, e.heard) : e.heard;
    others = true;
  }
  return others && now > last ? now - last : millis(0);
}

bool membership::hearing(millis now, millis window) const {
  bool others = false;
  for (const auto& [name, e] : members_) {
    if (name == self_.name || gone(e.m.state)) continue;
    if (now - e.heard <= window) return true;
    others = true;
  }
  return !others;
}

void membership::handle(const std::string& from, const packet& p, millis now) {
  heard_from(p.from, now);
  bool stale = false, earlier = false;
  for (const news& n : p.gossip) {
    apply(n, now);
    stale = stale || stale_about_self(n);
    earlier = earlier || (subject(n).name == self_.name && subject(n).generation < self_.generation);
  }
  // News of an earlier start of this node: the sender has not heard of
  // this one. The two trade their whole state (see the ping below).
  if (earlier && !leaving_) exchange_state(from, false);
  // A sender this node does not know at that start, or holds dead: news of
  // its join (or its refutation) was missed here, as when a partition
  // heals while the news was spent on the far side. Trading state makes it
  // known now, not at the next full exchange.
  else if (!leaving_ && unknown(p.from) && now >= asked_[p.from.name]) {
    std::erase_if(asked_, [&](const auto& a) { return a.second <= now; });
    asked_[p.from.name] = now + opts_.reconnect_interval;
    exchange_state(from, false);
  }
  // The sender still suspects (or buried) an incarnation this node has
  // refuted: it missed the refutation, so it gets it directly.
  if (stale && !leaving_) {
    packet p2;
    p2.gossip.push_back(alive_of(members_[self_.name].m));
    send(from, std::move(p2));
  }
  switch (p.probe) {
    case probe_kind::none: break;
    case probe_kind::ping:
      // Answered only for this start of this node: a probe meant for an
      // older generation at this address goes unanswered.
      if (p.target.name == self_.name && p.target.generation == self_.generation && !leaving_) {
        packet ack;
        ack.probe = probe_kind::ack;
        ack.seq = p.seq;
        send(from, std::move(ack));
      } else if (p.target.name == self_.name && p.target.generation < self_.generation && !leaving_) {
        // A member still probes the start before this one: the two trade
        // their whole state, so that it learns of this start and this node
        // of the cluster (a first seed that restarts has no seed to ask).
        exchange_state(from, false);
      }
      break;
    case probe_kind::indirect_ping: {
      const std::uint32_t mine = ++seq_;
      // The nack goes at 80% of the probe timeout (Lifeguard), so that it
      // reaches the requester before its probe ends: the requester waits a
      // probe interval (twice the timeout) from its own ping, and a nack that
      // came late would count against its health as if it were the slow one.
      relays_[mine] = {from, p.seq, now + opts_.probe_timeout * 4 / 5, p.want_nack};
      packet ping;
      ping.probe = probe_kind::ping;
      ping.seq = mine;
      ping.target = p.target;
      send(p.target.address, std::move(ping));
      break;
    }
    case probe_kind::ack:
      if (probe_.active && p.seq == probe_.seq) {
        ++(probe_.indirect_sent ? stats_.acked_indirectly : stats_.acked);
        probe_.acked = true;
        probe_.active = false;
        awareness_.apply(-1);
      } else if (const auto it = relays_.find(p.seq); it != relays_.end()) {
        packet ack;
        ack.probe = probe_kind::ack;
        ack.seq = it->second.their_seq;
        const std::string to = it->second.requester;
        relays_.erase(it);
        send(to, std::move(ack));
      }
      break;
    case probe_kind::nack:
      if (probe_.active && p.seq == probe_.seq) ++probe_.nacks;
      break;
  }
}

bool membership::stale_about_self(const news& n) const {
  if (std::holds_alternative<alive_news>(n)) return false;
  const member_id& id = subject(n);
  return id.name == self_.name && id.generation == self_.generation && id.incarnation < self_.incarnation;
}

void membership::handle(const std::string& from, const sync& s, millis now) {
  heard_from(s.from, now);
  for (const alive_news& a : s.alive) apply(a, now);
  for (const suspect_news& x : s.suspects) apply(x, now);
  for (const dead_news& d : s.dead) apply(d, now);
  // A formed cluster answered: this node is one of it now.
  if (s.joined && s.reply) {
    joined_ = true;
    answered_ = true;
  }
  // Another seed's whole state: it knows what there is to know (a seed of
  // an earlier cluster knows its members; a fresh one, that there are none).
  if (std::find(seeds_.begin(), seeds_.end(), from) != seeds_.end() && from != self_.address) answered_ = true;
  if (!s.reply) exchange_state(from, true);
}

// ---------------------------------------------------------------- news

void membership::apply(const news& n, millis now) {
  std::visit([&](const auto& x) { apply(x, now); }, n);
}

void membership::set_state(entry& e, member_state s, millis now) {
  e.m.state = s;
  e.m.since = now;
  if (s != member_state::suspect) e.suspected.reset();
}

void membership::refute(std::uint32_t above, millis now) {
  ++stats_.refutations;
  awareness_.apply(1);
  entry& me = members_[self_.name];
  self_.incarnation = std::max(self_.incarnation, above) + 1;
  me.m.id = self_;
  set_state(me, member_state::alive, now);
  broadcast(alive_of(me.m));
}

void membership::apply(const alive_news& n, millis now) {
  const member_id& id = n.member;
  if (id.name == self_.name) {
    // Someone says this node is alive with a higher incarnation than it
    // has: only this node decides its incarnation.
    if (id.generation == self_.generation && self_.incarnation < id.incarnation && !leaving_) refute(id.incarnation, now);
    return;
  }
  if (const auto f = floors_.find(id.name); f != floors_.end()) {
    if (id.generation <= f->second) return;
    floors_.erase(f);
  }
  auto it = members_.find(id.name);
  if (it == members_.end()) {
    entry& e = members_[id.name];
    e.m = {id, member_state::alive, now, n.meta_version, n.meta};
    e.heard = now;  // a newcomer has a while to be heard from
    // A newcomer is probed in this round, at a random place.
    const std::size_t at = round_at_ + std::uniform_int_distribution<std::size_t>(0, round_.size() - round_at_)(rng_);
    round_.insert(round_.begin() + static_cast<std::ptrdiff_t>(at), id.name);
    event(member_event::kind::joined, e.m);
    broadcast(n);
    return;
  }
  entry& e = it->second;
  if (id.generation < e.m.id.generation) return;
  if (id.generation > e.m.id.generation) {
    // A new start of the node: whatever was said of the old one is over.
    e.m = {id, member_state::alive, now, n.meta_version, n.meta};
    e.suspected.reset();
    e.heard = now;
    event(member_event::kind::joined, e.m);
    broadcast(n);
    return;
  }
  if (e.m.state == member_state::left) return;  // never back without a new generation
  if (id.incarnation < e.m.id.incarnation) return;
  if (id.incarnation == e.m.id.incarnation) {
    if (e.m.state == member_state::alive && n.meta_version > e.m.meta_version) {
      e.m.meta_version = n.meta_version;
      e.m.meta = n.meta;
      event(member_event::kind::updated, e.m);
      broadcast(n);
    }
    return;
  }
  // A higher incarnation: a refutation, or news from the member itself.
  const bool was_down = e.m.state != member_state::alive;
  e.m.id = id;
  if (n.meta_version >= e.m.meta_version) {
    e.m.meta_version = n.meta_version;
    e.m.meta = n.meta;
  }
  if (was_down) set_state(e, member_state::alive, now);
  event(was_down ? member_event::kind::alive : member_event::kind::updated, e.m);
  broadcast(n);
}

void membership::apply(const suspect_news& n, millis now) {
  const member_id& id = n.member;
  if (id.name == self_.name) {
    if (id.generation == self_.generation && id.incarnation >= self_.incarnation && !leaving_) refute(id.incarnation, now);
    return;
  }
  const auto it = members_.find(id.name);
  if (it == members_.end()) return;
  entry& e = it->second;
  if (id.generation != e.m.id.generation || id.incarnation < e.m.id.incarnation || gone(e.m.state)) return;
  if (e.m.state == member_state::suspect && id.incarnation == e.m.id.incarnation) {
    if (e.suspected && e.suspected->confirm(n.from)) broadcast(n);
      return;
  }
  e.m.id.incarnation = id.incarnation;
  set_state(e, member_state::suspect, now);
  const millis min = suspicion_min();
  // Confirmations expected: suspicion_mult - 2, unless there are too few
  // members to give them (as memberlist).
  const std::size_t members = live_count();
  const unsigned k = opts_.suspicion_mult > 2 && members >= opts_.suspicion_mult ? opts_.suspicion_mult - 2 : 0;
  e.suspected = std::make_unique<suspicion>(now, min, min * opts_.suspicion_max_mult, k, n.from);
  event(member_event::kind::suspect, e.m, n.from);
  broadcast(n);
}

void membership::apply(const dead_news& n, millis now) {
  const member_id& id = n.member;
  if (id.name == self_.name) {
    // Declared dead while alive (cut off, or a false verdict): refute.
    if (leaving_ || id.generation != self_.generation) return;
    // Counted once per verdict, even one an earlier refutation made stale:
    // the others did hold this node dead for a while.
    if (!dead_heard_ || id.incarnation > *dead_heard_) {
      dead_heard_ = id.incarnation;
      ++stats_.declared_dead;
    }
    if (id.incarnation >= self_.incarnation) refute(id.incarnation, now);
    return;
  }
  const member_state to = n.left ? member_state::left : member_state::dead;
  const auto it = members_.find(id.name);
  if (it == members_.end()) {
    // A member this node never knew (it joined since, or missed the
    // news): it holds the verdict all the same. So older news of that start
    // cannot bring it back, and the verdict counts for what it is (a
    // false one is this node's too, until the member refutes it).
    if (const auto f = floors_.find(id.name); f != floors_.end() && id.generation <= f->second) return;
    entry& e = members_[id.name];
    e.m = {id, to, now, 0, {}};
    event(n.left ? member_event::kind::left : member_event::kind::dead, e.m, n.from);
    broadcast(n);
    return;
  }
  entry& e = it->second;
  if (id.generation != e.m.id.generation || id.incarnation < e.m.id.incarnation) return;
  if (gone(e.m.state)) {
    // Dead, then it turns out it left: say so, but keep its time.
    if (e.m.state == member_state::dead && to == member_state::left) {
      e.m.state = member_state::left;
      event(member_event::kind::left, e.m, n.from);
      broadcast(n);
    }
    return;
  }
  e.m.id.incarnation = id.incarnation;
  set_state(e, to, now);
  event(n.left ? member_event::kind::left : member_event::kind::dead, e.m, n.from);
  broadcast(n);
}

// ---------------------------------------------------------------- operators

void membership::leave(millis now) {
  if (leaving_) return;
  leaving_ = true;
  entry& me = members_[self_.name];
  set_state(me, member_state::left, now);
  broadcast(dead_news{self_, self_.name, true});
  gossip(now);
}

bool membership::down(const std::string& name, millis now) {
  const auto it = members_.find(name);
  if (it == members_.end() || name == self_.name || gone(it->second.m.state)) return false;
  apply(dead_news{it->second.m.id, self_.name, false}, now);
  return true;
}

void membership::set_seeds(std::vector<std::string> seeds, millis now) {
  seeds_ = std::move(seeds);
  next_join_ = now;
}

void membership::set_meta(metadata meta, millis now) {
  entry& me = members_[self_.name];
  me.m.meta = std::move(meta);
  ++me.m.meta_version;
  (void)now;
  broadcast(alive_of(me.m));
}

}  // namespace troupe::cluster
