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
  }
  return "unknown";
}

void grain_directory::locate(const grain_id& id, caller who) {
  auto [it, fresh] = entries_.try_emplace(id);
  entry& e = it->second;
  if (e.active) {
    answers_.push_back({who, id, locate_error::none, e.where, {}});
    return;
  }
  if (e.waiting.size() >= max_waiting_) {
    answers_.push_back({who, id, locate_error::busy, {}, std::to_string(max_waiting_) +
                                                            " callers wait for its activation already"});
    return;
  }
  e.waiting.push_back(who);
  if (fresh) orders_.push_back(id);
}

void grain_directory::activated(const grain_id& id, const activation& where) {
  const auto it = entries_.find(id);
  if (it == entries_.end() || it->second.active) return;  // not ordered here, or told twice
  entry& e = it->second;
  e.active = true;
  e.where = where;
  ++active_;
  for (caller who : e.waiting) answers_.push_back({who, id, locate_error::none, where, {}});
  e.waiting.clear();
  e.waiting.shrink_to_fit();
}

void grain_directory::activation_failed(const grain_id& id, const std::string& why) {
  const auto it = entries_.find(id);
  if (it == entries_.end() || it->second.active) return;
  for (caller who : it->second.waiting) answers_.push_back({who, id, locate_error::activation_failed, {}, why});
  entries_.erase(it);
}

void grain_directory::deactivated(const grain_id& id, const activation& where) {
  const auto it = entries_.find(id);
  if (it == entries_.end() || !it->second.active || !(it->second.where == where)) return;
  entries_.erase(it);
  --active_;
}

std::size_t grain_directory::node_lost(const std::string& address) {
  std::size_t gone = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.active && it->second.where.address == address) {
      it = entries_.erase(it);
      --active_;
      ++gone;
    } else {
      ++it;
    }
  }
  return gone;
}

const activation* grain_directory::find(const grain_id& id) const {
  const auto it = entries_.find(id);
  return it != entries_.end() && it->second.active ? &it->second.where : nullptr;
}

}  // namespace troupe::cluster
