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

void event_stream::compact(std::size_t room) {
  auto next = std::make_shared<block>();
  const std::size_t live = subscribers_->entries.size() - gone_;
  next->entries.reserve(std::max<std::size_t>(16, 2 * (live + room)));
  for (const entry& e : subscribers_->entries)
    if (!e.gone.load(std::memory_order_relaxed)) next->entries.push_back(e);
  subscribers_ = std::move(next);
  gone_ = 0;
}

std::uint64_t event_stream::add(handler h, pid actor, predicate filter) {
  std::lock_guard lock(mu_);
  std::vector<entry>& v = subscribers_->entries;
  // Appending past the capacity would move the entries a publisher reads.
  if (v.size() == v.capacity()) compact(1);
  const std::uint64_t id = next_id_++;
  subscribers_->entries.emplace_back(id, std::move(h), std::move(actor), std::move(filter));
  count_.store(subscribers_->entries.size() - gone_, std::memory_order_relaxed);
  return id;
}

std::uint64_t event_stream::subscribe(handler h, predicate filter) {
  return add(std::move(h), pid(), std::move(filter));
}

std::uint64_t event_stream::subscribe(const pid& actor, predicate filter) {
  return add(nullptr, actor, std::move(filter));
}

void event_stream::unsubscribe(std::uint64_t id) {
  std::lock_guard lock(mu_);
  std::vector<entry>& v = subscribers_->entries;
  // Ids grow in the order entries are appended, and compaction keeps it.
  const auto it = std::lower_bound(v.begin(), v.end(), id,
                                   [](const entry& e, std::uint64_t x) { return e.id < x; });
  if (it == v.end() || it->id != id || it->gone.exchange(true, std::memory_order_relaxed)) return;
  ++gone_;
  count_.store(v.size() - gone_, std::memory_order_relaxed);
  // Mostly gone: publishers would step over more dead entries than live ones.
  if (gone_ > 64 && gone_ * 2 > v.size()) compact(0);
}

void event_stream::publish(const event& e) noexcept {
  // The block, its first n entries and where they are, all taken under
  // the lock: a subscribe may append to this block meanwhile, past them.
  std::shared_ptr<const block> snapshot;
  const entry* entries = nullptr;
  std::size_t n = 0;
  {
    std::lock_guard lock(mu_);
    snapshot = subscribers_;
    entries = subscribers_->entries.data();
    n = subscribers_->entries.size();
  }
  ++publish_depth;
  message as_message;  // built once, for the first actor subscriber, then shared
  for (std::size_t i = 0; i < n; ++i) {
    const entry& s = entries[i];
    if (s.gone.load(std::memory_order_relaxed)) continue;
    try {
      if (s.filter && !s.filter(e)) continue;
      if (s.fn) {
        s.fn(e);
        continue;
      }
      if (s.actor.get()->dead()) {
        unsubscribe(s.id);
        continue;
      }
      if (publish_depth > max_depth) continue;
      if (!as_message) as_message = to_message(e);
      s.actor.get()->send_user(share_envelope(as_message.get()));
    } catch (...) {
      handler_failures_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  --publish_depth;
}

}  // namespace troupe
