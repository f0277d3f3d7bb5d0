// The cluster module's configuration, as each key is read and documented.
#include "modules/cluster/cluster_settings.hpp"

#include <yaml-cpp/yaml.h>

namespace troupe::node {

const section<cluster_settings>& cluster_section() {
  static const section<cluster_settings> s = [] {
    section<cluster_settings> c("cluster",
                                "Membership: who is alive, found by probes and gossip (SWIM with Lifeguard). "
                                "Used when node.listen and node.secret_file are set. A timing left at 0 is "
                                "its profile's.");
    c.choice("profile", &cluster_settings::profile, {"lan", "wan"},
             "The timing: lan (probe 1 s, timeout 500 ms, gossip every 200 ms, full exchange every 30 s) "
             "or wan (probe 5 s, timeout 3 s, gossip every 500 ms, full exchange every 60 s).")
        .number("probe_interval_ms", &cluster_settings::probe_interval_ms, 0, 600000, "milliseconds",
                "How often one member is probed.")
        .number("probe_timeout_ms", &cluster_settings::probe_timeout_ms, 0, 600000, "milliseconds",
                "How long a direct probe waits before other members are asked to probe.")
        .number("gossip_interval_ms", &cluster_settings::gossip_interval_ms, 0, 600000, "milliseconds",
                "How often news is gossiped to a few members.")
        .number("push_pull_interval_ms", &cluster_settings::push_pull_interval_ms, 0, 3600000, "milliseconds",
                "How often the whole view is exchanged with one member.")
        .number("dead_retention_ms", &cluster_settings::dead_retention_ms, 0, 86400000, "milliseconds",
                "How long dead members are remembered, and asked now and then whether they are back.")
        .number("suspicion_mult", &cluster_settings::suspicion_mult, 0, 20, "",
                "A suspicion lasts at least this many probe intervals (times log10 of the number of "
                "members) before a dead verdict.")
        .number("max_activations", &cluster_settings::max_activations, 1, 100000000, "",
                "Grain activations this node keeps; over it, the oldest idle ones are passivated.")
        .number("max_memory_mb", &cluster_settings::max_memory_mb, 0, 16777216, "MiB",
                "While the node's resident memory is over this, its oldest idle grains are passivated, a "
                "tenth each second. 0: no budget.")
        .number("max_buffered_calls", &cluster_settings::max_buffered_calls, 1, 100000000, "",
                "Grain calls that may wait at this node for partitions moving to it (a member joined or "
                "left); more are answered busy at once.")
        .number("max_moving_partitions", &cluster_settings::max_moving_partitions, 1, 1000000, "",
                "Grain partitions this node gives up at a time when members come or go (each stops its "
                "activations, then moves); the others stay here, and serve, until their turn.")
        .number("handover_timeout_ms", &cluster_settings::handover_timeout_ms, 0, 600000, "milliseconds",
                "On SIGTERM, how long the node waits for its grain activations to stop (and their "
                "partitions to be handed over) before it leaves the cluster anyway.")
        .check([](cluster_settings& c, const YAML::Node& node, section_reader& r, const config&) {
          const cluster::swim_options o = c.options();
          if (o.probe_timeout >= o.probe_interval)
            r.error(node, "'cluster.probe_timeout_ms' (" + std::to_string(o.probe_timeout.count()) +
                              ") must be shorter than 'cluster.probe_interval_ms' (" +
                              std::to_string(o.probe_interval.count()) + ")");
        });
    return c;
  }();
  return s;
}

const section<pubsub_settings>& pubsub_section() {
  static const section<pubsub_settings> s = [] {
    section<pubsub_settings> p("pubsub",
                               "Cluster pub-sub: what this node's actors publish to a topic goes to the topic's "
                               "owner in batches: at once when none of the topic's is on its way, else when "
                               "full or delayed enough (docs/pubsub.md).");
    p.number("batch_size", &pubsub_settings::batch_size, 1, 100000, "messages", "Messages in one batch, at most.")
        .number("batch_delay_us", &pubsub_settings::batch_delay_us, 0, 1000000, "microseconds",
                "While a batch of the topic is on its way, how long the next may wait for more messages "
                "before it goes beside it (0: at once). The node's timers tick in milliseconds.")
        .number("max_pending", &pubsub_settings::max_pending, 1, 100000000, "messages",
                "Messages that may wait here to go out to one topic; more are refused and counted "
                "(troupe_pubsub_delivery_failures_total{reason=\"queue_full\"}).")
        .number("timeout_ms", &pubsub_settings::timeout_ms, 100, 600000, "milliseconds",
                "How long a batch, a subscription or a delivery report may take.")
        .names("metric_topics", &pubsub_settings::metric_topics, "topics",
               "Topics whose subscribers on this node are exported as troupe_pubsub_subscribers{topic} "
               "(only these: topics are unbounded).");
    return p;
  }();
  return s;
}

const section<grain_settings>& grain_section() {
  static const section<grain_settings> s = [] {
    section<grain_settings> g("grain",
                              "Makes the kind a grain kind: members tell each other which grain kinds they host, "
                              "and in which version (the plugin's).");
    g.duration("idle_timeout", &grain_settings::idle_timeout, std::chrono::seconds(1), std::chrono::hours(24 * 7),
               "A grain that gets no message this long is passivated.");
    return g;
  }();
  return s;
}

}  // namespace troupe::node
