#include "cluster/handover.hpp"

#include <algorithm>
#include <iterator>

namespace troupe::cluster {

const char* to_string(handover_op op) noexcept {
  switch (op) {
    case handover_op::claim: return "claim";
    case handover_op::grant: return "grant";
    case handover_op::release: return "release";
    case handover_op::confirm: return "confirm";
    case handover_op::report: return "report";
    case handover_op::noted: return "noted";
    case handover_op::evict: return "evict";
  }
  return "unknown";
}

const char* to_string(partition_role r) noexcept {
  switch (r) {
    case partition_role::none: return "none";
    case partition_role::claiming: return "claiming";
    case partition_role::holding: return "holding";
    case partition_role::releasing: return "releasing";
  }
  return "unknown";
}

namespace {

bool same(const grain_host& h, const member_ref& m) { return h.name == m.name && h.generation == m.generation; }

}  // namespace

partition_table::partition_table(member_ref self, const std::vector<std::string>& kinds, std::uint32_t partitions,
                                 millis resend, std::size_t max_moving, partition_moves moves)
    : self_(std::move(self)), partitions_(std::max<std::uint32_t>(1, partitions)), resend_(resend),
      max_moving_(std::max<std::size_t>(1, max_moving)), moves_(moves) {
  for (const std::string& kind : kinds) kinds_[kind].parts.resize(partitions_);
}

partition_table::kind_state* partition_table::find(std::string_view kind) {
  const auto it = kinds_.find(kind);
  return it == kinds_.end() ? nullptr : &it->second;
}

const partition_table::kind_state* partition_table::find(std::string_view kind) const {
  const auto it = kinds_.find(kind);
  return it == kinds_.end() ? nullptr : &it->second;
}

bool partition_table::owns(std::string_view kind, std::uint32_t p) const {
  if (fenced_ || leaving_) return false;
  const grain_host* o = view_->owner_of(kind, p);
  return o != nullptr && same(*o, self_);
}

const grain_host* partition_table::peer(const kind_state& k, const member_ref& m) const {
  for (const grain_host& h : k.peers)
    if (same(h, m)) return &h;
  return nullptr;
}

handover_message& partition_table::outgoing(handover_op op, const grain_host& to, const std::string& kind) {
  handover_message& m = out_[{to.name, to.generation, op, kind}];
  if (m.items.empty() && m.activations.empty()) {
    m.op = op;
    m.peer = {to.name, to.generation};
    m.address = to.address;
    m.kind = kind;
    m.partitions = partitions_;
  }
  return m;
}

void partition_table::send(handover_op op, const grain_host& to, const std::string& kind, std::uint32_t p,
                           std::uint64_t epoch, std::uint64_t seq) {
  handover_message& m = outgoing(op, to, kind);
  if (op == handover_op::report || op == handover_op::grant)  // the latest list of a partition says it all
    for (partition_epoch& pe : m.items)
      if (pe.partition == p) {
        pe = {p, epoch, seq};
        return;
      }
  m.items.push_back({p, epoch, seq});
}

void partition_table::evict(const std::string& kind, const std::string& address, std::uint64_t generation,
                            kept_activation a) {
  const kind_state* k = find(kind);
  if (k == nullptr) return;
  for (const grain_host& h : k->peers)
    if (h.address == address && h.generation == generation) {
      outgoing(handover_op::evict, h, kind).activations.push_back(std::move(a));
      ++stats_.evicted;
      return;
    }
}

std::vector<handover_message> partition_table::take_messages() {
  std::vector<handover_message> out;
  out.reserve(out_.size());
  for (auto& [key, m] : out_) out.push_back(std::move(m));
  out_.clear();
  return out;
}

void partition_table::arm(millis now) {
  if (next_resend_.count() < 0) next_resend_ = now + resend_;
}

// ---------------------------------------------------------------- inputs

void partition_table::set_view(std::shared_ptr<const grain_hosts> view, millis now) {
  if (view == nullptr || view->partitions() != partitions_) return;  // a view of another layout: not ours
  view_ = std::move(view);
  // The kinds this node hosts (in any version) and, for each, its peers.
  std::map<std::string, std::vector<grain_host>, std::less<>> fresh;  // peers not in the last view
  for (auto& [kind, k] : kinds_) {
    const std::vector<grain_host>* all = view_->everyone(kind);
    std::vector<grain_host> peers;
    if (all != nullptr)
      for (const grain_host& h : *all)
        if (h.name != self_.name) peers.push_back(h);
    for (const grain_host& h : peers)
      if (std::find(k.peers.begin(), k.peers.end(), h) == k.peers.end()) fresh[kind].push_back(h);
    k.peers = std::move(peers);
  }
  // Claims already out (and partitions held) that stay: the new peers are
  // asked too (a new claim asks every peer by itself).
  std::vector<std::tuple<std::string, std::uint32_t, std::uint64_t>> standing;
  for (const auto& [kind, list] : fresh) {
    const kind_state& k = kinds_.find(kind)->second;
    for (std::uint32_t p = 0; p < partitions_; ++p)
      if (k.parts[p].role == partition_role::claiming || k.parts[p].role == partition_role::holding)
        standing.emplace_back(kind, p, k.parts[p].epoch);
  }
  // Grants from members that are gone: their activations went with them.
  for (auto& [kind, k] : kinds_)
    for (std::uint32_t p = 0; p < partitions_; ++p) {
      part& s = k.parts[p];
      for (auto g = s.granted.begin(); g != s.granted.end();) {
        if (peer(k, {g->host.name, g->host.generation}) != nullptr) {
          ++g;
          continue;
        }
        if (s.role == partition_role::holding)
          for (auto& [identity, actor] : g->kept)
            remote_.push_back({kind, p, g->host.address, g->host.generation, identity, actor, false});
        g = s.granted.erase(g);
      }
    }
  reconcile_all();
  for (const auto& [kind, p, epoch] : standing) {
    part& s = kinds_.find(kind)->second.parts[p];
    if ((s.role != partition_role::claiming && s.role != partition_role::holding) || s.epoch != epoch) continue;
    for (const grain_host& h : fresh[kind])
      if (granted_by(s, {h.name, h.generation}) == nullptr) send(handover_op::claim, h, kind, p, s.epoch);
  }
  arm(now);
}

void partition_table::set_fenced(bool fenced, millis now) {
  if (fenced_ == fenced) return;
  fenced_ = fenced;
  reconcile_all();
  if (fenced_)
    for (auto& [kind, k] : kinds_) stop_local(kind, k);
  arm(now);
}

void partition_table::leave(millis now) {
  if (leaving_) return;
  leaving_ = true;
  reconcile_all();
  for (auto& [kind, k] : kinds_) stop_local(kind, k);
  arm(now);
}

// The activations kept in partitions given up (moves: keep) stop too.
void partition_table::stop_local(const std::string& kind, kind_state& k) {
  for (std::uint32_t p = 0; p < partitions_; ++p)
    if (k.parts[p].role == partition_role::none && k.parts[p].local > 0) stops_.push_back({kind, p});
}

void partition_table::activation_added(std::string_view kind, std::uint32_t p) {
  kind_state* k = find(kind);
  if (k == nullptr || p >= partitions_) return;
  ++k->parts[p].local;
  ++k->parts[p].starting;
}

void partition_table::activation_started(std::string_view kind, std::uint32_t p, millis now) {
  const auto it = kinds_.find(kind);
  if (it == kinds_.end() || p >= partitions_) return;
  part& s = it->second.parts[p];
  if (s.starting > 0) --s.starting;
  // A grant that waited for it (its actor is known now: moves: keep).
  if (s.starting == 0 && s.role == partition_role::none && !s.deferred.empty()) {
    try_grant(it->first, it->second, p);
    arm(now);
  }
}

void partition_table::activation_removed(std::string_view kind, std::uint32_t p, millis now, bool started) {
  const auto it = kinds_.find(kind);
  if (it == kinds_.end() || p >= partitions_) return;
  part& s = it->second.parts[p];
  if (s.local > 0) --s.local;
  if (!started && s.starting > 0) --s.starting;
  if (s.local == 0) s.starting = 0;
  if (s.local == 0 && s.role == partition_role::releasing) {
    reconcile(it->first, it->second, p);
    arm(now);
  } else if (!s.grantee.empty() || s.role == partition_role::none) {
    // One it kept after giving the partition up: the grantee hears it is gone.
    if (started) report(it->first, it->second, p);
    try_grant(it->first, it->second, p);
    arm(now);
  }
}

const grain_host* partition_table::report_to(const std::string& kind, const kind_state& k, const part& s,
                                             std::uint32_t p) const {
  if (!s.grantee.empty()) return peer(k, s.grantee);
  if (s.role != partition_role::none) return nullptr;  // claimed here again: nobody else serves it
  const grain_host* o = view_->owner_of(kind, p);
  return o == nullptr || same(*o, self_) ? nullptr : peer(k, {o->name, o->generation});
}

void partition_table::report(const std::string& kind, kind_state& k, std::uint32_t p) {
  part& s = k.parts[p];
  const grain_host* h = report_to(kind, k, s, p);
  if (h == nullptr) return;
  s.reported = ++next_seq_;
  s.unnoted = true;
  send(handover_op::report, *h, kind, p, s.grantee.empty() ? 0 : s.grantee_epoch, s.reported);
}

partition_table::grant_of* partition_table::granted_by(part& s, const member_ref& m) {
  for (grant_of& g : s.granted)
    if (same(g.host, m)) return &g;
  return nullptr;
}

void partition_table::take_list(const std::string& kind, std::uint32_t p, part& s, grant_of& g, std::uint64_t seq,
                                std::vector<std::pair<std::string, std::string>> kept) {
  if (seq <= g.seq && g.seq != 0) return;  // an older list
  g.seq = seq;
  if (s.role == partition_role::holding) {
    std::sort(kept.begin(), kept.end());
    std::sort(g.kept.begin(), g.kept.end());
    std::vector<std::pair<std::string, std::string>> gone, fresh;
    std::set_difference(g.kept.begin(), g.kept.end(), kept.begin(), kept.end(), std::back_inserter(gone));
    std::set_difference(kept.begin(), kept.end(), g.kept.begin(), g.kept.end(), std::back_inserter(fresh));
    for (auto& [identity, actor] : gone)
      remote_.push_back({kind, p, g.host.address, g.host.generation, identity, actor, false});
    for (auto& [identity, actor] : fresh)
      remote_.push_back({kind, p, g.host.address, g.host.generation, identity, actor, true});
  }
  g.kept = std::move(kept);
}

void partition_table::announce_kept(const std::string& kind, std::uint32_t p, const part& s, bool added) {
  for (const grant_of& g : s.granted)
    for (const auto& [identity, actor] : g.kept)
      remote_.push_back({kind, p, g.host.address, g.host.generation, identity, actor, added});
}

void partition_table::on_message(const handover_message& m, millis now) {
  if (m.partitions != partitions_) {
    ++stats_.rejected;
    return;
  }
  const auto it = kinds_.find(m.kind);
  if (it == kinds_.end()) return;  // a kind this node does not host: it never activates it
  const std::string& kind = it->first;
  kind_state& k = it->second;
  const grain_host from_host{m.peer.name, m.address, m.peer.generation};
  if (m.op == handover_op::evict) {
    // Only the activations this node still runs are stopped (the directory
    // checks the actor): an old evict stops nothing new.
    for (const kept_activation& a : m.activations)
      if (a.partition < partitions_ && k.parts[a.partition].role != partition_role::holding)
        evictions_.push_back({kind, a.identity, a.actor});
    return;
  }
  // The activations listed in a grant or a report, by partition.
  std::map<std::uint32_t, std::vector<std::pair<std::string, std::string>>> lists;
  if (m.op == handover_op::grant || m.op == handover_op::report)
    for (const kept_activation& a : m.activations) lists[a.partition].emplace_back(a.identity, a.actor);
  for (const partition_epoch& item : m.items) {
    if (item.partition >= partitions_) {
      ++stats_.rejected;
      continue;
    }
    const std::uint32_t p = item.partition;
    part& s = k.parts[p];
    switch (m.op) {
      case handover_op::claim:
        if (s.grantee == m.peer) {
          if (item.epoch < s.grantee_epoch) break;  // an older claim
          s.grantee_epoch = item.epoch;
          if (const grain_host* h = peer(k, m.peer)) grant(*h, kind, s, p);
          break;
        }
        if (s.deferred == m.peer && item.epoch < s.deferred_epoch) break;
        s.deferred = m.peer;
        s.deferred_epoch = item.epoch;
        reconcile(kind, k, p);
        break;
      case handover_op::grant: {
        const bool wanted = (s.role == partition_role::claiming || s.role == partition_role::holding) &&
                            s.epoch == item.epoch;
        if (!wanted) {
          // Not (or no longer) claimed: let it go at once. The address is
          // the one the grant came from.
          const grain_host* h = peer(k, m.peer);
          send(handover_op::release, h ? *h : from_host, kind, p, item.epoch);
          break;
        }
        const grain_host* h = peer(k, m.peer);
        grant_of* g = granted_by(s, m.peer);
        if (g == nullptr) g = &s.granted.emplace_back(grant_of{h ? *h : from_host, 0, {}});
        take_list(kind, p, s, *g, item.seq, std::move(lists[p]));
        check_hold(kind, k, p);
        break;
      }
      case handover_op::report: {
        // The latest list of what the sender kept (seqs only grow). Taken
        // when the sender granted this node's claim; otherwise its grant,
        // which lists it again, is still to come (or not ours to take).
        if (s.role == partition_role::claiming || s.role == partition_role::holding)
          if (grant_of* g = granted_by(s, m.peer)) take_list(kind, p, s, *g, item.seq, std::move(lists[p]));
        const grain_host* h = peer(k, m.peer);
        send(handover_op::noted, h ? *h : from_host, kind, p, item.epoch, item.seq);
        break;
      }
      case handover_op::noted:
        if (item.seq >= s.reported) s.unnoted = false;
        break;
      case handover_op::evict: break;
      case handover_op::release:
        if (s.grantee == m.peer && s.grantee_epoch <= item.epoch) {
          s.grantee = {};
          s.grantee_epoch = 0;
          s.unnoted = false;
          reconcile(kind, k, p);
        }
        break;
      case handover_op::confirm:
        if (s.role == partition_role::none || s.epoch != item.epoch) {
          const grain_host* h = peer(k, m.peer);
          send(handover_op::release, h ? *h : from_host, kind, p, item.epoch);
        }
        break;
    }
  }
  arm(now);
}

void partition_table::advance(millis now) {
  if (next_resend_.count() < 0 || now < next_resend_) return;
  next_resend_ = millis(-1);
  bool pending = false;
  for (auto& [kind, k] : kinds_) {
    for (std::uint32_t p = 0; p < partitions_; ++p) {
      part& s = k.parts[p];
      if (s.role == partition_role::claiming) {
        for (const grain_host& h : k.peers)
          if (granted_by(s, {h.name, h.generation}) == nullptr) {
            send(handover_op::claim, h, kind, p, s.epoch);
            pending = true;
          }
      }
      // A report not noted yet.
      if (s.unnoted) {
        if (const grain_host* h = report_to(kind, k, s, p)) {
          send(handover_op::report, *h, kind, p, s.grantee.empty() ? 0 : s.grantee_epoch, s.reported);
          pending = true;
        } else {
          s.unnoted = false;  // nobody to tell: a grant will list it
        }
      }
      // A grant that blocks a claim (ours, or another's): is it still wanted?
      const bool blocked = (s.role == partition_role::claiming || !s.deferred.empty()) && !s.grantee.empty() &&
                           !(s.deferred == s.grantee);
      if (blocked) {
        if (const grain_host* h = peer(k, s.grantee)) send(handover_op::confirm, *h, kind, p, s.grantee_epoch);
        pending = true;
      }
      if (!s.deferred.empty() && peer(k, s.deferred) != nullptr) pending = true;
    }
  }
  if (pending) next_resend_ = now + resend_;
}

// ---------------------------------------------------------------- the machine

void partition_table::reconcile_all() {
  for (auto& [kind, k] : kinds_)
    for (std::uint32_t p = 0; p < partitions_; ++p) reconcile(kind, k, p);
}

void partition_table::reconcile(const std::string& kind, kind_state& k, std::uint32_t p) {
  part& s = k.parts[p];
  // Grants to, and claims from, members that are gone do not count.
  if (!s.grantee.empty() && peer(k, s.grantee) == nullptr) {
    s.grantee = {};
    s.grantee_epoch = 0;
    s.unnoted = false;
  }
  // (A claim from a member this node does not know yet is kept: it may
  // become known, and the owner, in a later view.)
  const bool mine = owns(kind, p);
  switch (s.role) {
    case partition_role::none:
      if (mine) start_claim(kind, k, p);
      break;
    case partition_role::claiming:
      if (!mine) {
        let_go(kind, k, p);
        lost_.push_back({kind, p});
      } else {
        check_hold(kind, k, p);
      }
      break;
    case partition_role::holding:
      if (!mine && keeps_activations()) {
        // Only the directory moves: granted at once, with what runs here.
        ++stats_.released;
        let_go(kind, k, p);
        if (s.local > 0) {
          ++stats_.kept;
          report(kind, k, p);  // the owner may hold it already, on a grant this node took back
        }
        break;
      }
      if (!mine) {
        if (moving_ >= max_moving_ && !fenced_) {
          // Not its turn yet: held (and served) a while longer.
          if (std::find(turns_.begin(), turns_.end(), partition_ref{kind, p}) == turns_.end())
            turns_.push_back({kind, p});
          break;
        }
        announce_kept(kind, p, s, false);  // not served here any more
        s.role = partition_role::releasing;
        ++moving_;
        ++stats_.released;
        if (s.local > 0) {
          stops_.push_back({kind, p});
          break;
        }
        --moving_;
        let_go(kind, k, p);
      }
      break;
    case partition_role::releasing:
      if (s.local == 0) {
        --moving_;
        let_go(kind, k, p);
        if (owns(kind, p)) start_claim(kind, k, p);
        try_grant(kind, k, p);
        next_turns();
        return;
      }
      break;
  }
  try_grant(kind, k, p);
}

void partition_table::next_turns() {
  while (moving_ < max_moving_ && !turns_.empty()) {
    const partition_ref r = turns_.front();
    turns_.erase(turns_.begin());
    const auto it = kinds_.find(r.kind);
    if (it != kinds_.end() && it->second.parts[r.partition].role == partition_role::holding)
      reconcile(it->first, it->second, r.partition);
  }
}

void partition_table::start_claim(const std::string& kind, kind_state& k, std::uint32_t p) {
  part& s = k.parts[p];
  s.role = partition_role::claiming;
  s.epoch = ++next_epoch_;
  s.granted.clear();
  ++stats_.claims;
  for (const grain_host& h : k.peers) send(handover_op::claim, h, kind, p, s.epoch);
  check_hold(kind, k, p);
}

void partition_table::check_hold(const std::string& kind, kind_state& k, std::uint32_t p) {
  part& s = k.parts[p];
  if (s.role != partition_role::claiming || !s.grantee.empty()) return;
  for (const grain_host& h : k.peers)
    if (granted_by(s, {h.name, h.generation}) == nullptr) return;
  s.role = partition_role::holding;
  ++stats_.acquired;
  announce_kept(kind, p, s, true);
  ready_.push_back({kind, p});
}

// Gives the partition up: every grant of it goes back (to each member that
// granted it, and to every peer, in case a grant is on its way).
void partition_table::let_go(const std::string& kind, kind_state& k, std::uint32_t p) {
  part& s = k.parts[p];
  for (const grain_host& h : k.peers) send(handover_op::release, h, kind, p, s.epoch);
  for (const grant_of& g : s.granted)
    if (peer(k, {g.host.name, g.host.generation}) == nullptr) send(handover_op::release, g.host, kind, p, s.epoch);
  if (s.role == partition_role::holding) announce_kept(kind, p, s, false);
  s.granted.clear();
  s.role = partition_role::none;
}

void partition_table::try_grant(const std::string& kind, kind_state& k, std::uint32_t p) {
  part& s = k.parts[p];
  if (s.deferred.empty() || s.role != partition_role::none) return;
  // What runs here stops first (moves: stop), or is listed in the grant
  // (keep), which needs the actor of every activation: none still starting.
  if (s.local != 0 && (s.starting != 0 || !keeps_activations())) return;
  if (!s.grantee.empty() && !(s.grantee == s.deferred)) return;  // one at a time
  const grain_host* to = peer(k, s.deferred);
  const grain_host* o = view_->owner_of(kind, p);
  if (to == nullptr || o == nullptr || !same(*o, s.deferred)) return;  // not the owner in this view (yet)
  s.grantee = s.deferred;
  s.grantee_epoch = s.deferred_epoch;
  s.deferred = {};
  s.deferred_epoch = 0;
  ++stats_.grants;
  grant(*to, kind, s, p);
}

// The grant of `p` to its grantee, again or for the first time: it lists
// what runs here (a newer list than any report before it).
void partition_table::grant(const grain_host& to, const std::string& kind, part& s, std::uint32_t p) {
  s.reported = ++next_seq_;
  s.unnoted = false;
  send(handover_op::grant, to, kind, p, s.grantee_epoch, s.reported);
}

// ---------------------------------------------------------------- queries

partition_role partition_table::role(std::string_view kind, std::uint32_t p) const {
  const kind_state* k = find(kind);
  return k == nullptr || p >= partitions_ ? partition_role::none : k->parts[p].role;
}

std::uint32_t partition_table::local(std::string_view kind, std::uint32_t p) const {
  const kind_state* k = find(kind);
  return k == nullptr || p >= partitions_ ? 0 : k->parts[p].local;
}

bool partition_table::granted_by(std::string_view kind, std::uint32_t p, const member_ref& m) const {
  const kind_state* k = find(kind);
  if (k == nullptr || p >= partitions_) return false;
  for (const grant_of& g : k->parts[p].granted)
    if (same(g.host, m)) return true;
  return false;
}

bool partition_table::mine(std::string_view kind, std::uint32_t p) const { return find(kind) && owns(kind, p); }

bool partition_table::idle() const {
  for (const auto& [kind, k] : kinds_)
    for (const part& s : k.parts)
      if (s.role != partition_role::none || s.local != 0) return false;
  return true;
}

std::size_t partition_table::kept() const {
  std::size_t n = 0;
  for (const auto& [kind, k] : kinds_)
    for (const part& s : k.parts) n += s.role == partition_role::none ? s.local : 0;
  return n;
}

std::size_t partition_table::count(partition_role r) const {
  std::size_t n = 0;
  for (const auto& [kind, k] : kinds_)
    for (const part& s : k.parts) n += s.role == r;
  return n;
}

}  // namespace troupe::cluster
