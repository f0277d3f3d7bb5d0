#include "node/dead_letter_log.hpp"

#include <cstdio>
#include <utility>

#include "actor/message.hpp"
#include "actor/process.hpp"
#include "actor/type_id.hpp"
#include "node/log.hpp"
#include "plugin/plugin_host.hpp"

namespace troupe::node {

std::string dead_letter_log::type_name(const envelope& e) const {
  if (const plugin::host* h = host_.load(std::memory_order_acquire))
    for (const plugin::message_type_info& t : h->message_types())
      if (hash_type_name(t.name) == e.type) return t.name;
  char buf[32];
  std::snprintf(buf, sizeof buf, "type %016llx", static_cast<unsigned long long>(e.type));
  return buf;
}

void dead_letter_log::report(dead_letter_reason why, const process* target, std::string_view missing,
                             const envelope& e) {
  if (why == dead_letter_reason::mailbox_full || why == dead_letter_reason::over_budget ||
      why == dead_letter_reason::shutdown)
    return;
  const auto now = std::chrono::steady_clock::now();
  const std::int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  per_reason& r = reasons_[static_cast<std::size_t>(why)];
  // A flood of one reason costs a clock read and two relaxed atomics.
  if (now_ns < r.full_until_ns.load(std::memory_order_relaxed)) {
    r.unlogged.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  std::uint64_t before = 0;
  {
    std::lock_guard lock(mu_);
    if (r.start == std::chrono::steady_clock::time_point{} || now - r.start >= window) {
      before = r.unlogged.exchange(0, std::memory_order_relaxed);
      r.start = now;
      r.logged = 0;
    }
    if (r.logged >= lines_per_window) {
      r.unlogged.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (++r.logged == lines_per_window)
      r.full_until_ns.store(
          std::chrono::duration_cast<std::chrono::nanoseconds>((r.start + window).time_since_epoch()).count(),
          std::memory_order_relaxed);
  }
  const auto name = [](const process* p) { return p->address() + "/" + p->id(); };
  std::string line = std::string("dead letter (") + to_string(why) + "): " + type_name(e) + " to " +
                     (target != nullptr  ? name(target)
                      : missing.empty() ? std::string("nobody")
                                        : std::string("'").append(missing).append("' (no actor of this node by that id)"));
  if (e.sender != nullptr) line += " from " + name(e.sender);
  if (before > 0)
    line += "; " + std::to_string(before) + " more " + to_string(why) + " dead letters went unlogged before";
  log(why == dead_letter_reason::invalid || why == dead_letter_reason::peer_queue_full ? level::warning
                                                                                         : level::info,
      line);
}

}  // namespace troupe::node
