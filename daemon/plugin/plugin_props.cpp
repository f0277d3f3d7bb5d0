// A plugin's troupe_props (ABI 1.9), read and checked: every field in its
// range, or a sentence that says which is not, and why.
#include <cstring>

#include "plugin/plugin_internal.hpp"

namespace troupe::plugin {

namespace {

constexpr std::uint32_t max_capacity = 100'000'000, max_throughput = 1'000'000, max_restarts = 1'000'000;
constexpr std::uint64_t ms = 1'000'000, day = 86'400'000 * ms, hour = 3'600'000 * ms;

std::string number(std::uint64_t v) { return std::to_string(v); }

}  // namespace

bool props_of(const troupe_props* in, plugin_props& out, std::string& why) {
  troupe_props p{};
  std::memcpy(&p, in, std::min<std::size_t>(in->size, sizeof p));
  switch (p.mailbox) {
    case TROUPE_MAILBOX_NODE:
    case TROUPE_MAILBOX_UNBOUNDED:
      if (p.capacity != 0) {
        why = "a capacity (" + number(p.capacity) + ") needs a bounded mailbox (block, drop_newest, drop_oldest)";
        return false;
      }
      break;
    case TROUPE_MAILBOX_BLOCK:
    case TROUPE_MAILBOX_DROP_NEWEST:
    case TROUPE_MAILBOX_DROP_OLDEST:
      if (p.capacity == 0 || p.capacity > max_capacity) {
        why = "a bounded mailbox needs a capacity of 1 to " + number(max_capacity) + " messages, not " +
              number(p.capacity);
        return false;
      }
      break;
    default:
      why = "mailbox " + number(static_cast<std::uint64_t>(static_cast<unsigned>(p.mailbox))) +
            " is not one of TROUPE_MAILBOX_NODE, _UNBOUNDED, _BLOCK, _DROP_NEWEST, _DROP_OLDEST (0 to 4)";
      return false;
  }
  if (p.throughput > max_throughput) {
    why = "throughput " + number(p.throughput) + " is over " + number(max_throughput) + " messages a turn";
    return false;
  }
  if (p.supervision < TROUPE_SUPERVISE_NODE || p.supervision > TROUPE_SUPERVISE_ALL_FOR_ONE) {
    why = "supervision " + std::to_string(p.supervision) +
          " is not one of TROUPE_SUPERVISE_NODE, _ONE_FOR_ONE, _ALL_FOR_ONE (0 to 2)";
    return false;
  }
  if (p.max_restarts > max_restarts) {
    why = "max_restarts " + number(p.max_restarts) + " is over " + number(max_restarts);
    return false;
  }
  if (p.restart_window_ns != 0 && (p.restart_window_ns < ms || p.restart_window_ns > day)) {
    why = "restart_window_ns " + number(p.restart_window_ns) + " is not between 1 ms and 1 day";
    return false;
  }
  if (p.backoff_max_ns > hour) {
    why = "backoff_max_ns " + number(p.backoff_max_ns) + " is over 1 hour";
    return false;
  }
  if (p.backoff_first_ns == 0 && p.backoff_max_ns != 0) {
    why = "backoff_max_ns without backoff_first_ns: set the first delay too";
    return false;
  }
  const std::uint64_t first = p.backoff_first_ns, most = p.backoff_max_ns != 0 ? p.backoff_max_ns : 30'000 * ms;
  if (first > most) {
    why = "backoff_first_ns " + number(first) + " is over backoff_max_ns " + number(most);
    return false;
  }
  const bool supervises = p.supervision != TROUPE_SUPERVISE_NODE || p.max_restarts != 0 ||
                          p.restart_window_ns != 0 || first != 0 || p.decide != nullptr;
  if (!supervises && p.decide_closure != nullptr) {
    why = "decide_closure without decide";
    return false;
  }

  out = plugin_props{};
  switch (p.mailbox) {
    case TROUPE_MAILBOX_UNBOUNDED: out.mailbox.kind = mailbox_kind::unbounded; break;
    case TROUPE_MAILBOX_BLOCK: out.mailbox.kind = mailbox_kind::bounded_block; break;
    case TROUPE_MAILBOX_DROP_NEWEST: out.mailbox.kind = mailbox_kind::bounded_drop_newest; break;
    case TROUPE_MAILBOX_DROP_OLDEST: out.mailbox.kind = mailbox_kind::bounded_drop_oldest; break;
    default: break;
  }
  out.mailbox_set = p.mailbox != TROUPE_MAILBOX_NODE;
  out.mailbox.capacity = p.capacity;
  out.throughput = p.throughput;
  if (supervises) {
    auto s = std::make_shared<supervisor_strategy>();
    s->applies_to = p.supervision == TROUPE_SUPERVISE_ALL_FOR_ONE ? supervisor_strategy::scope::all_for_one
                                                                  : supervisor_strategy::scope::one_for_one;
    if (p.max_restarts != 0) s->max_restarts = p.max_restarts;
    if (p.restart_window_ns != 0) s->window = std::chrono::nanoseconds(p.restart_window_ns);
    if (first != 0) {
      s->backoff.initial = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::nanoseconds(first));
      s->backoff.max = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::nanoseconds(most));
      if (s->backoff.initial.count() == 0) s->backoff.initial = std::chrono::milliseconds(1);
    }
    if (p.decide != nullptr)
      s->decide = [fn = p.decide, closure = p.decide_closure](const pid& child, const std::string& reason) {
        switch (fn(closure, detail::to_abi(child.get()), reason.data(), reason.size())) {
          case TROUPE_DIRECTIVE_RESUME: return directive::resume;
          case TROUPE_DIRECTIVE_RESTART: return directive::restart;
          case TROUPE_DIRECTIVE_ESCALATE: return directive::escalate;
          default: return directive::stop;  // TROUPE_DIRECTIVE_STOP, or a value it cannot mean
        }
      };
    out.supervisor = std::move(s);
  }
  return true;
}

void plugin_props::apply(props& p, bool mailbox_too) const {
  if (mailbox_set && mailbox_too) {
    p.mailbox.kind = mailbox.kind;
    p.mailbox.capacity = mailbox.capacity;
  }
  if (throughput != 0) p.mailbox.throughput = throughput;
  if (supervisor) p.supervisor = supervisor;
}

}  // namespace troupe::plugin
