#include "actor/registry.hpp"

#include <charconv>
#include <vector>

namespace troupe {

registry::~registry() {
  for (shard& s : shards_)
    for (auto& [seq, p] : s.map) p->release();
  for (auto& [name, p] : named_) p->release();
}

void registry::add(std::uint64_t seq, process* p) {
  p->retain();
  shard& s = shards_[seq % shard_count];
  std::lock_guard lock(s.mu);
  s.map.emplace(seq, p);
  size_.fetch_add(1, std::memory_order_relaxed);
}

bool registry::add_named(const std::string& name, process* p) {
  std::lock_guard lock(named_mu_);
  auto [it, inserted] = named_.emplace(name, p);
  if (!inserted) return false;
  p->retain();
  size_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

process_ref registry::remove(std::uint64_t seq) {
  shard& s = shards_[seq % shard_count];
  std::lock_guard lock(s.mu);
  auto it = s.map.find(seq);
  if (it == s.map.end()) return {};
  process* p = it->second;
  s.map.erase(it);
  size_.fetch_sub(1, std::memory_order_relaxed);
  return process_ref::adopt(p);
}

process_ref registry::remove_named(const std::string& name) {
  std::lock_guard lock(named_mu_);
  auto it = named_.find(name);
  if (it == named_.end()) return {};
  process* p = it->second;
  named_.erase(it);
  size_.fetch_sub(1, std::memory_order_relaxed);
  return process_ref::adopt(p);
}

process_ref registry::lookup(std::string_view id) const {
  if (id.size() > 1 && id[0] == '$') {
    std::uint64_t seq = 0;
    auto [end, ec] = std::from_chars(id.data() + 1, id.data() + id.size(), seq);
    if (ec == std::errc() && end == id.data() + id.size()) {
      const shard& s = shards_[seq % shard_count];
      std::lock_guard lock(s.mu);
      auto it = s.map.find(seq);
      if (it != s.map.end()) return process_ref(it->second);
    }
  }
  std::lock_guard lock(named_mu_);
  auto it = named_.find(std::string(id));
  if (it != named_.end()) return process_ref(it->second);
  return {};
}

void registry::for_each(const std::function<void(process&)>& fn) const {
  std::vector<process_ref> all;
  all.reserve(size());
  for (const shard& s : shards_) {
    std::lock_guard lock(s.mu);
    for (auto& [seq, p] : s.map) all.emplace_back(p);
  }
  {
    std::lock_guard lock(named_mu_);
    for (auto& [name, p] : named_) all.emplace_back(p);
  }
  for (process_ref& p : all) fn(*p);
}

}  // namespace troupe
