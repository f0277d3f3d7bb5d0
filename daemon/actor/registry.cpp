#include "actor/registry.hpp"

#include <charconv>
#include <vector>

namespace troupe {

void registry::table::grow() {
  std::vector<slot> old = std::move(slots_);
  slots_.assign(old.empty() ? 64 : old.size() * 2, slot{});
  used_ = 0;
  for (const slot& s : old)
    if (s.key != 0) insert(s.key, s.value);
}

void registry::table::insert(std::uint64_t key, process* p) {
  if ((used_ + 1) * 2 > slots_.size()) grow();
  const std::size_t mask = slots_.size() - 1;
  std::size_t i = index(key);
  while (slots_[i].key != 0) i = (i + 1) & mask;
  slots_[i] = slot{key, p};
  ++used_;
}

process* registry::table::find(std::uint64_t key) const noexcept {
  if (slots_.empty()) return nullptr;
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = index(key);; i = (i + 1) & mask) {
    if (slots_[i].key == key) return slots_[i].value;
    if (slots_[i].key == 0) return nullptr;
  }
}

process* registry::table::erase(std::uint64_t key) noexcept {
  if (slots_.empty()) return nullptr;
  const std::size_t mask = slots_.size() - 1;
  std::size_t i = index(key);
  while (slots_[i].key != key) {
    if (slots_[i].key == 0) return nullptr;
    i = (i + 1) & mask;
  }
  process* p = slots_[i].value;
  // Backward-shift deletion keeps every probe chain unbroken without tombstones.
  for (std::size_t j = (i + 1) & mask; slots_[j].key != 0; j = (j + 1) & mask) {
    std::size_t home = index(slots_[j].key);
    if (((j - home) & mask) >= ((j - i) & mask)) {
      slots_[i] = slots_[j];
      i = j;
    }
  }
  slots_[i] = slot{};
  --used_;
  return p;
}

registry::~registry() {
  for (shard& s : shards_) s.map.each([](std::uint64_t, process* p) { p->release(); });
  for (auto& [name, p] : named_) p->release();
}

void registry::add(std::uint64_t seq, process* p) {
  p->retain();
  shard& s = shards_[seq % shard_count];
  std::lock_guard lock(s.mu);
  s.map.insert(seq, p);
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
  process* p = s.map.erase(seq);
  if (p == nullptr) return {};
  removed();
  return process_ref::adopt(p);
}

process_ref registry::remove_named(const std::string& name) {
  std::lock_guard lock(named_mu_);
  auto it = named_.find(name);
  if (it == named_.end()) return {};
  process* p = it->second;
  named_.erase(it);
  removed();
  return process_ref::adopt(p);
}

void registry::removed() noexcept {
  if (size_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  // The last one: under the lock, so that a waiter that found some left
  // cannot miss this.
  std::lock_guard lock(empty_mu_);
  empty_cv_.notify_all();
}

bool registry::wait_empty(std::chrono::steady_clock::time_point deadline) const {
  std::unique_lock lock(empty_mu_);
  return empty_cv_.wait_until(lock, deadline, [this] { return size() == 0; });
}

process_ref registry::lookup(std::string_view id) const {
  if (id.size() > 1 && id[0] == '$') {
    std::uint64_t seq = 0;
    auto [end, ec] = std::from_chars(id.data() + 1, id.data() + id.size(), seq);
    if (ec == std::errc() && end == id.data() + id.size()) {
      const shard& s = shards_[seq % shard_count];
      std::lock_guard lock(s.mu);
      if (process* p = s.map.find(seq)) return process_ref(p);
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
    s.map.each([&](std::uint64_t, process* p) { all.emplace_back(p); });
  }
  {
    std::lock_guard lock(named_mu_);
    for (auto& [name, p] : named_) all.emplace_back(p);
  }
  for (process_ref& p : all) fn(*p);
}

}  // namespace troupe
