#pragma once
// Cluster pub-sub: an actor anywhere in the cluster publishes to a named
// topic, and every subscriber gets it, wherever it lives.
//
// - A topic is a cluster identity: the activation of the built-in grain
//   kind troupe.topic named by the topic, on the topic's owner (placement
//   as for any grain; it moves with its partition). It keeps the subscriber
//   list by node, and fans each batch out: one Deliver per node, never one
//   per subscriber.
// - Each node's troupe.pubsub (its agent) keeps the node's own subscribers
//   (the truth about them: a topic activated afresh, after a move or its
//   node's death, asks every member's agent for them before it delivers
//   anything), hands each delivered message to them sharing one copy of the
//   payload, and reports who did not get it.
// - Publishing: what a node's actors publish to one topic waits here until
//   it goes to the topic as one call: at once when no batch of the topic is
//   on its way, else when it is full or has waited the batch delay (up to
//   a few batches on their way at once). Batches are numbered, and the
//   topic drops one that comes after a later one, so that a publisher's
//   messages are never delivered out of order. The call's reply is the
//   batch's Report.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <prometheus/metric_family.h>

#include "actor/actor_system.hpp"
#include "actor/cluster_view.hpp"

namespace troupe::node {

class grain_service;

struct pubsub_options {
  std::size_t batch_size = 1000;                        // messages per batch, at most
  std::chrono::microseconds batch_delay{1000};          // how long a batch may wait to fill
  std::size_t max_pending = 100000;                     // waiting to go out to one topic; more are refused
  std::chrono::milliseconds timeout{5000};              // a batch's call, a report, a roll call
  std::vector<std::string> metric_topics;               // troupe_pubsub_subscribers{topic} for these
};

// Why a subscriber did not get a message (troupe.pubsub.FailureReason,
// then the publisher's own: its queue was full, the batch found no topic).
enum class delivery_failure : std::uint8_t { stopped, node_lost, mailbox_full, unreachable, queue_full, not_sent };
inline constexpr std::size_t delivery_failure_count = 6;
const char* to_string(delivery_failure f) noexcept;

struct pubsub_counters {
  std::atomic<std::uint64_t> published{0};  // messages accepted from this node's publishers
  std::atomic<std::uint64_t> delivered{0};  // to this node's subscribers
  std::array<std::atomic<std::uint64_t>, delivery_failure_count> failures{};
  std::atomic<std::uint64_t> malformed{0};  // frames from peers that did not verify
  // This node's subscribers of the topics an operator listed.
  std::mutex mu;
  std::map<std::string, std::int64_t, std::less<>> subscribers;

  void fail(delivery_failure f, std::uint64_t n = 1) noexcept {
    failures[static_cast<std::size_t>(f)].fetch_add(n, std::memory_order_relaxed);
  }
  void collect(std::vector<prometheus::MetricFamily>& out);
};

class pubsub_service {
 public:
  static constexpr const char* topic_kind = "troupe.topic";
  static constexpr const char* agent_name = "troupe.pubsub";

  pubsub_service(actor_system& sys, grain_service& grains, pubsub_options o);
  ~pubsub_service();
  pubsub_service(const pubsub_service&) = delete;
  pubsub_service& operator=(const pubsub_service&) = delete;

  // The props of troupe.topic, to register as a kind before membership
  // starts (every member hosts it).
  props_ptr topic_props();
  // Spawns troupe.pubsub; false (with why) when it cannot.
  bool start(std::string& why);

  // Any thread. The future completes with troupe.pubsub.Acked, or with the
  // troupe.cluster.GrainError of a topic that could not be reached.
  future subscribe(std::string_view topic, const topic_subscriber& s, std::chrono::nanoseconds timeout);
  future unsubscribe(std::string_view topic, const topic_subscriber& s, std::chrono::nanoseconds timeout);
  // Any thread: false when refused (this node has max_pending messages
  // waiting to go out to the topic already); counted.
  bool publish(std::string_view topic, message m);
  // Any thread: the future completes with the troupe.pubsub.Report of the
  // batch the message went out in (or fails as a grain call does).
  future publish_reported(std::string_view topic, message m, std::chrono::nanoseconds timeout);
  // Any thread: the topic's subscribers, as a troupe.pubsub.Roll.
  future subscribers(std::string_view topic, std::chrono::nanoseconds timeout);

  pubsub_counters& counters() noexcept { return *counters_; }
  std::shared_ptr<pubsub_counters> shared_counters() const noexcept { return counters_; }

 private:
  struct pending {
    message m;
    process_ref report;  // a future_process, or null
  };
  struct outgoing {
    std::vector<pending> items;
    unsigned in_flight = 0;  // batches on their way
    bool timer_armed = false;
    std::int64_t oldest_ns = 0;
  };
  static constexpr unsigned max_in_flight = 4;
  // Whether the waiting messages of `o` should go now.
  bool due(const outgoing& o) const;
  void enqueue(std::string_view topic, message m, process_ref report, bool& refused);
  // Sends the next batch of `topic`; with mu_ held (released while
  // sending).
  void flush(std::unique_lock<std::mutex>& lock, const std::string& topic);
  void flush_later(const std::string& topic);
  future agent_request(const topic_subscriber& s, message m, std::chrono::nanoseconds timeout);
  // The node whose agent keeps `s`: its own for an actor, this one for a grain.
  std::string node_of(const topic_subscriber& s) const {
    return s.actor ? s.actor.address() : sys_.address();
  }
  std::uint64_t generation_of(const topic_subscriber& s) const {
    return s.actor ? s.actor.generation() : sys_.generation();  // 0: its node's current start
  }

  actor_system& sys_;
  grain_service& grains_;
  pubsub_options opts_;
  std::shared_ptr<pubsub_counters> counters_ = std::make_shared<pubsub_counters>();
  pid agent_;
  std::mutex mu_;
  std::unordered_map<std::string, outgoing> out_;
  // Numbers batches, whatever their topic: increasing for each topic, also
  // across the times its entry in out_ is dropped.
  std::atomic<std::uint64_t> seq_{0};
  std::shared_ptr<std::atomic<bool>> alive_ = std::make_shared<std::atomic<bool>>(true);
};

}  // namespace troupe::node
