#include "cluster/broadcasts.hpp"

#include <algorithm>

namespace troupe::cluster {

void broadcast_queue::push(news n) {
  const std::string name = subject(n).name;
  const std::size_t bytes = encoded_size(n);
  items_.insert_or_assign(name, item{std::move(n), bytes, 0, next_++});
}

std::vector<news> broadcast_queue::take(std::size_t budget, unsigned limit) {
  std::vector<std::map<std::string, item>::iterator> order;
  order.reserve(items_.size());
  for (auto it = items_.begin(); it != items_.end(); ++it) order.push_back(it);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    if (a->second.sent != b->second.sent) return a->second.sent < b->second.sent;
    return a->second.order > b->second.order;
  });
  std::vector<news> out;
  std::size_t used = 0;
  for (auto it : order) {
    if (used + it->second.bytes > budget) continue;
    used += it->second.bytes;
    out.push_back(it->second.n);
    if (++it->second.sent >= limit) items_.erase(it);
  }
  return out;
}

}  // namespace troupe::cluster
