#include "actor/kinds.hpp"

namespace troupe {

bool kind_registry::add(const std::string& name, props_ptr p) {
  std::lock_guard lock(mu_);
  return kinds_.emplace(name, std::move(p)).second;
}

props_ptr kind_registry::find(std::string_view name) const {
  std::lock_guard lock(mu_);
  auto it = kinds_.find(name);
  return it == kinds_.end() ? nullptr : it->second;
}

std::vector<std::string> kind_registry::names() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  out.reserve(kinds_.size());
  for (const auto& [name, p] : kinds_) out.push_back(name);
  return out;
}

std::size_t kind_registry::size() const {
  std::lock_guard lock(mu_);
  return kinds_.size();
}

std::string spawn_refusal(spawn_error e, const std::string& kind, const std::string& name) {
  switch (e) {
    case spawn_error::none: break;
    case spawn_error::name_taken: return "an actor named '" + name + "' is alive";
    case spawn_error::invalid_name: return "a name may not be empty or start with '$'";
    case spawn_error::shutting_down: return "the node is stopping and admits no new actors";
    case spawn_error::unknown_kind: return "no loaded plugin has a kind '" + kind + "'";
    case spawn_error::refused: return "the spawn of '" + kind + "' was refused by its spawn middleware";
    case spawn_error::not_allowed: return "the node does not let peers spawn '" + kind + "' (kinds." + kind + ".remote_spawn)";
    case spawn_error::unreachable: return "the node cannot be reached";
    case spawn_error::timed_out: return "the node did not answer in time";
  }
  return "spawned";
}

}  // namespace troupe
