// The cluster module's configuration, as each key is read and documented.
#include "modules/cluster/cluster_settings.hpp"

#include <yaml-cpp/yaml.h>

#include "node/config.hpp"

namespace troupe::node {

const section<cluster_settings>& cluster_section() {
  static const section<cluster_settings> s = [] {
    section<cluster_settings> c("cluster",
                                "Membership: who is alive, found by probes and gossip (SWIM with Lifeguard). "
                                "Used when node.listen and node.secret_file are set. A timing left at 0 is "
                                "its profile's.");
    c.choice("provider", &cluster_settings::provider, {"seeds", "etcd"},
             "Who is a member. seeds: the seeds and gossip decide (SWIM). etcd: the members registered in "
             "etcd are, each under a lease it keeps alive; SWIM then only marks members unreachable "
             "(docs/cluster.md).")
        .names("etcd.endpoints", &cluster_settings::etcd_endpoints, "URLs",
               "For etcd: its client URLs (http://host:2379 or https://...); when one fails the next is used.")
        .live()
        .text("etcd.prefix", &cluster_settings::etcd_prefix,
              "For etcd: where the member records go (<prefix>members/<name>). Empty: /troupe/<node.cluster>/.")
        .duration("etcd.lease_ttl", &cluster_settings::etcd_lease_ttl, std::chrono::seconds(1), std::chrono::hours(1),
                  "For etcd: the TTL of this node's lease: a node that stops keeping it alive (killed, cut "
                  "off) is seen dead this long after. etcd raises a TTL below 1.5 times its election timeout.")
        .text("etcd.username", &cluster_settings::etcd_username,
              "For etcd with authentication: the user. A reload re-reads it.")
        .live()
        .key<file_text>("etcd.password_file", &cluster_settings::etcd_password, "path",
                        "For etcd with authentication: a file holding the user's password. A reload re-reads it.",
                        read_file_text, [](const file_text& f) { return read::show(f.file); })
        .live()
        .path("etcd.ca_file", &cluster_settings::etcd_ca_file,
              "For https endpoints: the CA certificates to check etcd's against (default: the system's). "
              "A reload re-reads it.")
        .live()
        .path("etcd.cert_file", &cluster_settings::etcd_cert_file,
              "For etcd with client certificates: this node's certificate (PEM). A reload re-reads it.")
        .live()
        .path("etcd.key_file", &cluster_settings::etcd_key_file,
              "For etcd with client certificates: its private key (PEM). A reload re-reads it.")
        .live()
        .duration("etcd.request_timeout", &cluster_settings::etcd_request_timeout, std::chrono::milliseconds(100),
                  std::chrono::minutes(1), "For etcd: how long one request may take.")
        .duration("etcd.watch_timeout", &cluster_settings::etcd_watch_timeout, std::chrono::seconds(1),
                  std::chrono::hours(24),
                  "For etcd: a watch that says nothing this long, not even a progress notification, is taken "
                  "for dead and the members are listed again. etcd sends progress every 10 minutes unless "
                  "told otherwise (--experimental-watch-progress-notify-interval).");
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
                "activations, then moves); the others stay here, and serve, until their turn.");
    c.choice("moved_activations", &cluster_settings::moved_activations, {"stop", "keep"},
             "What a grain partition this node gives up (members came or went) does with its activations: "
             "stop them (max_moving_partitions at a time) so that each starts again on its new owner when "
             "next called, or keep them here until they passivate, while only the directory moves "
             "(docs/grains.md). Every member of a cluster must run a Troupe that knows 'keep' before one "
             "uses it.")
        .number("handover_timeout_ms", &cluster_settings::handover_timeout_ms, 0, 600000, "milliseconds",
                "On SIGTERM, how long the node waits for its grain activations to stop (and their "
                "partitions to be handed over) before it leaves the cluster anyway.")
        .check([](cluster_settings& c, const YAML::Node& node, section_reader& r, const config& so_far) {
          if (c.provider == "etcd") {
            if (c.etcd_endpoints.empty())
              r.error(node, "'cluster.provider' etcd needs 'cluster.etcd.endpoints' (its client URLs, "
                            "http://127.0.0.1:2379)");
            for (const std::string& e : c.etcd_endpoints)
              if (e.rfind("http://", 0) != 0 && e.rfind("https://", 0) != 0)
                r.error(node, "'cluster.etcd.endpoints': '" + e + "' is not an http:// or https:// URL");
            if (c.etcd_username.empty() != c.etcd_password.file.empty())
              r.error(node, "'cluster.etcd.username' and 'cluster.etcd.password_file' go together");
            if (c.etcd_cert_file.empty() != c.etcd_key_file.empty())
              r.error(node, "'cluster.etcd.cert_file' and 'cluster.etcd.key_file' go together");
          }
          if (c.etcd_prefix.empty()) c.etcd_prefix = "/troupe/" + so_far.get(node_section()).cluster + "/";
          if (c.etcd_prefix.front() != '/' || c.etcd_prefix.back() != '/')
            r.error(node, "'cluster.etcd.prefix' must begin and end with '/', not '" + c.etcd_prefix + "'");
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
