#include "actor/event_stream.hpp"

namespace troupe {

const char* to_string(dead_letter_reason r) noexcept {
  switch (r) {
    case dead_letter_reason::not_found: return "not_found";
    case dead_letter_reason::stopped: return "stopped";
    case dead_letter_reason::mailbox_full: return "mailbox_full";
    case dead_letter_reason::late_reply: return "late_reply";
    case dead_letter_reason::shutdown: return "shutdown";
  }
  return "unknown";
}

std::uint64_t event_stream::subscribe(handler h) {
  std::lock_guard lock(mu_);
  auto next = std::make_shared<list>(*subscribers_);
  std::uint64_t id = next_id_++;
  next->push_back(entry{id, std::move(h)});
  count_.store(next->size(), std::memory_order_relaxed);
  subscribers_ = std::move(next);
  return id;
}

void event_stream::unsubscribe(std::uint64_t id) {
  std::lock_guard lock(mu_);
  auto next = std::make_shared<list>();
  for (const entry& e : *subscribers_)
    if (e.id != id) next->push_back(e);
  count_.store(next->size(), std::memory_order_relaxed);
  subscribers_ = std::move(next);
}

void event_stream::publish(const event& e) noexcept {
  std::shared_ptr<const list> snapshot;
  {
    std::lock_guard lock(mu_);
    snapshot = subscribers_;
  }
  for (const entry& s : *snapshot) {
    try {
      s.fn(e);
    } catch (...) {
      handler_failures_.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

}  // namespace troupe
