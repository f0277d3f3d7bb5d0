#include "cluster/directory.hpp"

#include "cluster/placement.hpp"

namespace troupe::cluster {

std::size_t grain_id_hash::operator()(const grain_id& g) const noexcept {
  return static_cast<std::size_t>(grain_key(g.kind, g.identity));
}

const char* to_string(locate_error e) noexcept {
  switch (e) {
    case locate_error::none: return "none";
    case locate_error::activation_failed: return "activation_failed";
    case locate_error::busy: return "busy";
    case locate_error::not_owner: return "not_owner";
  }
  return "unknown";
}

grain_directory::grain_directory(member_ref self, const std::vector<std::string>& kinds, directory_options o)
    : opts_(o), table_(std::move(self), kinds, o.partitions, o.resend, o.max_moving, o.moves) {}

std::uint32_t grain_directory::partition(const grain_id& id) const {
  return partition_of(grain_key(id.kind, id.identity), table_.partitions());
}

// ---------------------------------------------------------------- the members

void grain_directory::set_view(std::shared_ptr<const grain_hosts> view, millis now) {
  table_.set_view(std::move(view), now);
  settle(now);
}

void grain_directory::set_fenced(bool fenced, millis now) {
  table_.set_fenced(fenced, now);
  settle(now);
}

void grain_directory::leave(millis now) {
  table_.leave(now);
  settle(now);
}

void grain_directory::on_message(const handover_message& m, millis now) {
  table_.on_message(m, now);
  settle(now);
}

void grain_directory::advance(millis now) {
  table_.advance(now);
  settle(now);
}

std::vector<handover_message> grain_directory::take_messages() {
  std::vector<handover_message> out = table_.take_messages();
  if (local_.empty()) return out;
  // Grants and reports list what this node still runs in their partitions.
  for (handover_message& m : out) {
    if (m.op != handover_op::grant && m.op != handover_op::report) continue;
    for (const partition_epoch& pe : m.items) {
      const auto it = local_.find(std::make_pair(m.kind, pe.partition));
      if (it == local_.end()) continue;
      for (const std::string& identity : it->second) {
        const auto e = entries_.find(grain_id{m.kind, identity});
        if (e != entries_.end()) m.activations.push_back({pe.partition, identity, e->second.where.actor});
      }
    }
  }
  return out;
}

void grain_directory::remote_changed(const remote_change& c) {
  grain_id id{c.kind, c.identity};
  const activation where{c.address, c.generation, c.actor};
  const auto it = entries_.find(id);
  if (!c.added) {
    if (it != entries_.end() && it->second.remote && it->second.where == where) {
      entries_.erase(it);
      --remote_;
    }
    return;
  }
  if (it == entries_.end()) {
    entry& e = entries_[std::move(id)];
    e.active = e.remote = true;
    e.partition = c.partition;
    e.where = where;
    ++remote_;
    return;
  }
  if (it->second.where == where) return;
  // Another activation of a grain this node knows one of already (only
  // after a false dead verdict): the one known first stays.
  table_.evict(c.kind, c.address, c.generation, {c.partition, c.identity, c.actor});
}

void grain_directory::settle(millis now) {
  for (const remote_change& c : table_.take_remote()) remote_changed(c);
  for (const eviction& v : table_.take_evictions()) {
    const auto it = entries_.find(grain_id{v.kind, v.identity});
    if (it != entries_.end() && it->second.active && !it->second.remote && it->second.where.actor == v.actor) {
      stops_.push_back(it->first);
      ++stats_.evicted;
    }
  }
  // Partitions moving away: their activations stop (those still starting
  // stop once they have started: see activated()).
  const auto stops = table_.take_stops();
  if (!stops.empty()) {
    for (const auto& [id, e] : entries_) {
      if (!e.active || e.remote) continue;
      for (const partition_ref& r : stops)
        if (r.partition == e.partition && r.kind == id.kind) {
          stops_.push_back(id);
          ++stats_.stopped;
          break;
        }
    }
  }
  // Partitions this node will not hold after all: their callers go elsewhere.
  for (const partition_ref& r : table_.take_lost())
    for (auto& [id, who] : unbuffer(r)) refuse(id, who, r.partition);
  // Partitions held now: their callers are served, in the order they came.
  for (const partition_ref& r : table_.take_ready())
    for (auto& [id, who] : unbuffer(r)) locate(id, who, now);
}

std::deque<std::pair<grain_id, grain_directory::caller>> grain_directory::unbuffer(const partition_ref& r) {
  const auto it = buffered_.find(std::make_pair(r.kind, r.partition));
  if (it == buffered_.end()) return {};
  auto waiting = std::move(it->second);
  buffered_.erase(it);
  buffered_count_ -= waiting.size();
  return waiting;
}

// ---------------------------------------------------------------- grains

void grain_directory::refuse(const grain_id& id, caller who, std::uint32_t p) {
  std::string why;
  const grain_host* o = table_.view()->owner_of(id.kind, p);
  if (o == nullptr)
    why = "no member hosts the grain kind '" + id.kind + "'";
  else if (o->name == table_.self().name)
    why = "this node is giving up its grains (stopping or fenced)";
  else
    why = "the owner of " + id.kind + "/" + id.identity + " is " + o->name;
  answers_.push_back({who, id, locate_error::not_owner, {}, std::move(why)});
}

void grain_directory::locate(const grain_id& id, caller who, millis now) {
  (void)now;
  const std::uint32_t p = partition(id);
  switch (table_.role(id.kind, p)) {
    case partition_role::holding: return serve(id, who, p);
    case partition_role::claiming:
    case partition_role::releasing:
      if (table_.mine(id.kind, p)) break;  // on its way here (again): wait
      return refuse(id, who, p);
    case partition_role::none:
      if (table_.mine(id.kind, p)) break;
      return refuse(id, who, p);
  }
  if (buffered_count_ >= opts_.max_buffered) {
    ++stats_.overflow;
    answers_.push_back({who, id, locate_error::busy,
                        {},
                        std::to_string(opts_.max_buffered) + " calls wait for grain partitions moving to this node "
                                                             "already"});
    return;
  }
  ++stats_.buffered;
  ++buffered_count_;
  buffered_[std::make_pair(id.kind, p)].emplace_back(id, who);
}

void grain_directory::serve(const grain_id& id, caller who, std::uint32_t p) {
  auto [it, fresh] = entries_.try_emplace(id);
  entry& e = it->second;
  if (e.active) {
    answers_.push_back({who, id, locate_error::none, e.where, {}});
    return;
  }
  if (e.waiting.size() >= opts_.max_waiting) {
    answers_.push_back({who, id, locate_error::busy, {}, std::to_string(opts_.max_waiting) +
                                                            " callers wait for its activation already"});
    return;
  }
  e.waiting.push_back(who);
  if (fresh) {
    e.partition = p;
    table_.activation_added(id.kind, p);
    orders_.push_back(id);
  }
}

void grain_directory::activated(const grain_id& id, const activation& where, millis now) {
  const auto it = entries_.find(id);
  if (it == entries_.end() || it->second.active) return;  // not ordered here, or told twice
  entry& e = it->second;
  e.active = true;
  e.where = where;
  ++active_;
  if (opts_.moves == partition_moves::keep) local_[std::make_pair(id.kind, e.partition)].insert(id.identity);
  for (caller who : e.waiting) answers_.push_back({who, id, locate_error::none, where, {}});
  e.waiting.clear();
  e.waiting.shrink_to_fit();
  const std::uint32_t p = e.partition;
  // Its partition moved while it started: it stops after what it was given
  // (or stays, and is listed in the grant: moves: keep).
  if (table_.role(id.kind, p) != partition_role::holding && !table_.keeps_activations()) {
    stops_.push_back(id);
    ++stats_.stopped;
  }
  table_.activation_started(id.kind, p, now);
  settle(now);
}

void grain_directory::forget_local(const grain_id& id, std::uint32_t p) {
  if (local_.empty()) return;
  const auto it = local_.find(std::make_pair(id.kind, p));
  if (it == local_.end()) return;
  it->second.erase(id.identity);
  if (it->second.empty()) local_.erase(it);
}

void grain_directory::activation_failed(const grain_id& id, const std::string& why, millis now) {
  not_activated(id, locate_error::activation_failed, why, now);
}

void grain_directory::activation_stopped(const grain_id& id, const std::string& why, millis now) {
  not_activated(id, locate_error::not_owner, why, now);
}

void grain_directory::not_activated(const grain_id& id, locate_error error, const std::string& why, millis now) {
  const auto it = entries_.find(id);
  if (it == entries_.end() || it->second.active) return;
  for (caller who : it->second.waiting) answers_.push_back({who, id, error, {}, why});
  const std::uint32_t p = it->second.partition;
  entries_.erase(it);
  table_.activation_removed(id.kind, p, now, false);
  settle(now);
}

void grain_directory::deactivated(const grain_id& id, const activation& where, millis now) {
  const auto it = entries_.find(id);
  if (it == entries_.end() || !it->second.active || it->second.remote || !(it->second.where == where)) return;
  const std::uint32_t p = it->second.partition;
  entries_.erase(it);
  --active_;
  forget_local(id, p);
  table_.activation_removed(id.kind, p, now, true);
  settle(now);
}

const activation* grain_directory::find(const grain_id& id) const {
  const auto it = entries_.find(id);
  return it != entries_.end() && it->second.active ? &it->second.where : nullptr;
}

}  // namespace troupe::cluster
