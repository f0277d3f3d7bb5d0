#pragma once
// What the cluster tells code that is not its own: native actors, and
// plugins' actors through the plugin host. The events are published on the
// EventStream as messages (tables of schemas/cluster.fbs, namespace
// troupe.cluster); the member list is asked for.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "actor/future.hpp"
#include "actor/message.hpp"
#include "actor/type_id.hpp"

namespace troupe {

inline constexpr type_id cluster_event_types[] = {
    hash_type_name("troupe.cluster.MemberJoined"), hash_type_name("troupe.cluster.MemberSuspect"),
    hash_type_name("troupe.cluster.MemberAlive"),  hash_type_name("troupe.cluster.MemberDead"),
    hash_type_name("troupe.cluster.MemberLeft"),   hash_type_name("troupe.cluster.TopologyChanged"),
};

inline bool is_cluster_event(type_id t) noexcept {
  for (type_id c : cluster_event_types)
    if (c == t) return true;
  return false;
}

// A subscriber of a topic: an actor, or (no actor) the grain (kind, identity).
struct topic_subscriber {
  pid actor;
  std::string kind, identity;
};

class cluster_view {
 public:
  // Any thread: every member this node knows, itself included, as a
  // troupe.cluster.Members buffer.
  virtual std::shared_ptr<const std::vector<std::uint8_t>> members() const = 0;

  // Any thread: a request to the grain (kind, identity), activated where the
  // cluster places it. The future completes with the grain's reply, or
  // timed_out, or failed with a troupe.cluster.GrainError that says why.
  virtual future call_grain(std::string_view kind, std::string_view identity, message m,
                            std::chrono::nanoseconds timeout) = 0;
  // Any thread: a message to the grain, with no reply.
  virtual void send_grain(std::string_view kind, std::string_view identity, message m) = 0;

  // Any thread: pub-sub (schemas/pubsub.fbs). subscribe and unsubscribe
  // complete with troupe.pubsub.Acked once the topic has it (or fail as a
  // grain call does); publish is false when this node refused the message
  // (too many wait to go out to the topic); publish_reported completes with
  // the troupe.pubsub.Report of the batch the message went out in, or fails
  // (no reply: refused here).
  virtual future subscribe(std::string_view topic, const topic_subscriber& s, std::chrono::nanoseconds timeout) = 0;
  virtual future unsubscribe(std::string_view topic, const topic_subscriber& s, std::chrono::nanoseconds timeout) = 0;
  virtual bool publish(std::string_view topic, message m) = 0;
  virtual future publish_reported(std::string_view topic, message m, std::chrono::nanoseconds timeout) = 0;

 protected:
  ~cluster_view() = default;
};

}  // namespace troupe
