#include "actor/event_stream.hpp"

#include <algorithm>

#include "actor/pid_table.hpp"
#include "system_generated.h"

namespace troupe {

const char* to_string(dead_letter_reason r) noexcept {
  switch (r) {
    case dead_letter_reason::not_found: return "not_found";
    case dead_letter_reason::stopped: return "stopped";
    case dead_letter_reason::mailbox_full: return "mailbox_full";
    case dead_letter_reason::late_reply: return "late_reply";
    case dead_letter_reason::shutdown: return "shutdown";
    case dead_letter_reason::no_routee: return "no_routee";
    case dead_letter_reason::invalid: return "invalid";
    case dead_letter_reason::node_lost: return "node_lost";
    case dead_letter_reason::stale: return "stale";
    case dead_letter_reason::peer_queue_full: return "peer_queue_full";
    case dead_letter_reason::unconfirmed: return "unconfirmed";
    case dead_letter_reason::over_budget: return "over_budget";
    case dead_letter_reason::unhandled: return "unhandled";
  }
  return "unknown";
}

namespace {

flatbuffers::Offset<system::Pid> encode(flatbuffers::FlatBufferBuilder& b, const pid& p) {
  return encode_pid(b, p.get());
}

struct encoder {
  message operator()(const dead_letter_event& e) const {
    return make_message<system::DeadLetterEvent>([&](flatbuffers::FlatBufferBuilder& b) {
      auto target = encode(b, e.target);
      flatbuffers::Offset<system::Pid> sender;
      if (e.msg && e.msg->sender != nullptr) sender = encode(b, pid(e.msg->sender));
      return system::CreateDeadLetterEvent(b, target, e.msg ? e.msg->type : 0,
                                           static_cast<system::DeadLetterReason>(e.reason), sender);
    });
  }
  message operator()(const actor_failed_event& e) const {
    return make_message<system::ActorFailedEvent>([&](flatbuffers::FlatBufferBuilder& b) {
      auto who = encode(b, e.who);
      return system::CreateActorFailedEventDirect(b, who, e.reason.c_str());
    });
  }
  message operator()(const supervision_event& e) const {
    return make_message<system::SupervisionEvent>([&](flatbuffers::FlatBufferBuilder& b) {
      auto child = encode(b, e.child);
      return system::CreateSupervisionEventDirect(
          b, child, static_cast<system::Directive>(e.decision), e.reason.c_str());
    });
  }
  message operator()(const message& m) const { return m; }
};

// Publishing can lead to more publishing (an event delivered to a full
// mailbox is a dead letter, which is an event). Past this depth, events
// still reach callbacks but are no longer turned into messages.
constexpr int max_depth = 2;
thread_local int publish_depth = 0;

}  // namespace

message to_message(const event& e) { return std::visit(encoder{}, e); }

bool is_runtime_event(type_id t) noexcept {
  return t == type_id_of<system::DeadLetterEvent>() || t == type_id_of<system::ActorFailedEvent>() ||
         t == type_id_of<system::SupervisionEvent>();
}

type_id event_type(const event& e) noexcept {
  switch (e.index()) {
    case 0: return type_id_of<system::DeadLetterEvent>();
    case 1: return type_id_of<system::ActorFailedEvent>();
    case 2: return type_id_of<system::SupervisionEvent>();
    default: {
      const message& m = std::get<message>(e);
      return m ? m->type : 0;
    }
  }
}

void event_stream::list::compact(std::size_t room) {
  auto next = std::make_shared<block>();
  next->entries.reserve(std::max<std::size_t>(16, 2 * (live() + room)));
  for (const entry& e : b->entries)
    if (!e.gone.load(std::memory_order_relaxed)) next->entries.push_back(e);
  b = std::move(next);
  gone = 0;
}

void event_stream::list::append(std::uint64_t id, handler h, pid actor, predicate filter) {
  // Appending past the capacity would move the entries a publisher reads.
  if (b->entries.size() == b->entries.capacity()) compact(1);
  b->entries.emplace_back(id, std::move(h), std::move(actor), std::move(filter));
}

bool event_stream::list::remove(std::uint64_t id) {
  std::vector<entry>& v = b->entries;
  // Ids grow in the order entries are appended, and compaction keeps it.
  const auto it = std::lower_bound(v.begin(), v.end(), id, [](const entry& e, std::uint64_t x) { return e.id < x; });
  if (it == v.end() || it->id != id || it->gone.exchange(true, std::memory_order_relaxed)) return false;
  ++gone;
  // Mostly gone: publishers would step over more dead entries than live ones.
  if (gone > 64 && gone * 2 > v.size()) compact(0);
  return true;
}

event_stream::view event_stream::view_of(const list& l) noexcept {
  return {l.b, l.b->entries.data(), l.b->entries.size()};
}

std::uint64_t event_stream::add(handler h, pid actor, predicate filter) {
  std::lock_guard lock(mu_);
  const std::uint64_t id = next_id_++;
  all_.append(id, std::move(h), std::move(actor), std::move(filter));
  count_.store(all_.live() + types_of_.size(), std::memory_order_relaxed);
  return id;
}

std::uint64_t event_stream::subscribe(handler h, predicate filter) {
  return add(std::move(h), pid(), std::move(filter));
}

std::uint64_t event_stream::subscribe(const pid& actor, predicate filter) {
  return add(nullptr, actor, std::move(filter));
}

std::uint64_t event_stream::subscribe(const pid& actor, std::vector<type_id> types) {
  if (types.empty()) return add(nullptr, actor, {});
  std::sort(types.begin(), types.end());
  types.erase(std::unique(types.begin(), types.end()), types.end());
  std::lock_guard lock(mu_);
  const std::uint64_t id = next_id_++;
  for (type_id t : types) by_type_[t].append(id, nullptr, actor, {});
  types_of_.emplace(id, std::move(types));
  count_.store(all_.live() + types_of_.size(), std::memory_order_relaxed);
  return id;
}

void event_stream::unsubscribe(std::uint64_t id) {
  std::lock_guard lock(mu_);
  if (auto typed = types_of_.find(id); typed != types_of_.end()) {
    for (type_id t : typed->second) {
      auto l = by_type_.find(t);
      if (l == by_type_.end()) continue;
      l->second.remove(id);
      if (l->second.live() == 0) by_type_.erase(l);  // a publisher may still hold its block
    }
    types_of_.erase(typed);
  } else {
    all_.remove(id);
  }
  count_.store(all_.live() + types_of_.size(), std::memory_order_relaxed);
}

void event_stream::deliver(const entry& s, const event& e, message& as_message) {
  try {
    if (s.filter && !s.filter(e)) return;
    if (s.fn) return s.fn(e);
    if (s.actor.get()->dead()) return unsubscribe(s.id);
    if (publish_depth > max_depth) return;
    if (!as_message) as_message = to_message(e);
    s.actor.get()->send_user(share_envelope(as_message.get()));
  } catch (...) {
    handler_failures_.fetch_add(1, std::memory_order_relaxed);
  }
}

void event_stream::publish(const event& e) noexcept {
  // Each list's block, its first n entries and where they are, all taken
  // under the lock: a subscribe may append to a block meanwhile, past them.
  view all, typed;
  {
    std::lock_guard lock(mu_);
    all = view_of(all_);
    if (!by_type_.empty())
      if (auto l = by_type_.find(event_type(e)); l != by_type_.end()) typed = view_of(l->second);
  }
  ++publish_depth;
  message as_message;  // built once, for the first actor subscriber, then shared
  // Both lists in one pass, by id: subscribers get an event in the order
  // they subscribed, typed or not.
  std::size_t i = 0, j = 0;
  while (i < all.n || j < typed.n) {
    const bool from_all = j == typed.n || (i < all.n && all.at[i].id < typed.at[j].id);
    const entry& s = from_all ? all.at[i++] : typed.at[j++];
    if (!s.gone.load(std::memory_order_relaxed)) deliver(s, e, as_message);
  }
  --publish_depth;
}

}  // namespace troupe
