// The cluster module's configuration: the `cluster:` section and each
// kind's `grain:` settings.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "cluster/membership.hpp"
#include "node/settings.hpp"

namespace troupe::node {

struct cluster_settings {
  // Who is a member: seeds and gossip, or etcd (etcd.hpp).
  std::string provider = "seeds";
  std::vector<std::string> etcd_endpoints;
  std::string etcd_prefix;  // default /troupe/<node.cluster>/
  std::chrono::milliseconds etcd_lease_ttl{5000};
  std::string etcd_username;
  file_text etcd_password;
  std::string etcd_ca_file, etcd_cert_file, etcd_key_file;
  std::chrono::milliseconds etcd_request_timeout{5000};
  std::chrono::milliseconds etcd_watch_timeout{std::chrono::minutes(15)};
  std::string profile = "lan";
  unsigned max_activations = 1000000;
  unsigned max_memory_mb = 0;
  unsigned max_buffered_calls = 100000;
  unsigned max_moving_partitions = 16;
  std::string moved_activations = "stop";
  unsigned handover_timeout_ms = 10000;
  // 0: the profile's.
  unsigned probe_interval_ms = 0, probe_timeout_ms = 0, gossip_interval_ms = 0, push_pull_interval_ms = 0,
           dead_retention_ms = 0, suspicion_mult = 0;

  cluster::swim_options options() const {
    cluster::swim_options o = profile == "wan" ? cluster::swim_options::wan() : cluster::swim_options::lan();
    auto set = [](cluster::millis& to, unsigned ms) {
      if (ms != 0) to = cluster::millis(ms);
    };
    set(o.probe_interval, probe_interval_ms);
    set(o.probe_timeout, probe_timeout_ms);
    set(o.gossip_interval, gossip_interval_ms);
    set(o.push_pull_interval, push_pull_interval_ms);
    set(o.dead_retention, dead_retention_ms);
    if (suspicion_mult != 0) o.suspicion_mult = suspicion_mult;
    return o;
  }
};

const section<cluster_settings>& cluster_section();

// pubsub: how what this node's actors publish is batched.
struct pubsub_settings {
  unsigned batch_size = 1000;
  unsigned batch_delay_us = 1000;
  unsigned max_pending = 100000;
  unsigned timeout_ms = 5000;
  std::vector<std::string> metric_topics;
};

const section<pubsub_settings>& pubsub_section();

// kinds.<kind>.grain: the kind is a grain kind (a virtual actor, named by
// kind and identity, activated where the cluster places it).
struct grain_settings {
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(10)};
};

const section<grain_settings>& grain_section();

}  // namespace troupe::node
