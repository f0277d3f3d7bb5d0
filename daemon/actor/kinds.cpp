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

}  // namespace troupe
