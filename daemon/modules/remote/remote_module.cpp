// The remote module: the node-to-node transport (daemon/remote) on the
// node's loop, when node.listen is set. Binds before the actor system
// exists (the address it gets is the first half of every PID), contacts the
// seeds, answers peers' spawns, and serves /v1/peers and the remote_*
// metrics.
#include <algorithm>
#include <memory>

#include "actor/actor_system.hpp"
#include "node/log.hpp"
#include "node/module.hpp"
#include "remote/transport.hpp"

namespace troupe::node {

namespace {

using nlohmann::json;

struct remote_settings {
  unsigned max_frame_bytes = 4u << 20;
  unsigned send_queue = 65536;
  unsigned heartbeat_interval_ms = 1000;
  unsigned heartbeat_timeout_ms = 5000;
  unsigned handshake_timeout_ms = 5000;
  unsigned unreachable_timeout_ms = 5000;
  bool insecure_plaintext = false;
  std::string tls_cert_file, tls_key_file, tls_ca_file;
  unsigned max_connections = 1024;
  unsigned max_pending_connections = 64;
  unsigned max_pending_per_address = 8;
};

// A key naming a file that must be readable (remote.tls.*).
void readable(const YAML::Node& v, section_reader& r, const std::string& what, std::string& out) {
  read::text(v, r, what, out);
  r.readable_file(v, what, out);
}

const section<remote_settings>& remote_section() {
  static const section<remote_settings> s = [] {
    section<remote_settings> n("remote", "The links between nodes (used when node.listen is set).");
    n.number("max_frame_bytes", &remote_settings::max_frame_bytes, 65536, 64 << 20, "bytes",
             "The largest frame a peer may send; a larger one closes the link (a protocol error).")
        .number("send_queue", &remote_settings::send_queue, 16, 1 << 24, "messages",
                "Messages waiting per peer; more become dead letters.")
        .number("heartbeat_interval_ms", &remote_settings::heartbeat_interval_ms, 10, 600000, "milliseconds",
                "How often a link with nothing to send says it is alive (a link to a cluster member with "
                "nothing in flight either way says nothing: the cluster watches the member).")
        .number("heartbeat_timeout_ms", &remote_settings::heartbeat_timeout_ms, 20, 3600000, "milliseconds",
                "A link that hears nothing this long is closed; longer than heartbeat_interval_ms.")
        .number("handshake_timeout_ms", &remote_settings::handshake_timeout_ms, 10, 600000, "milliseconds",
                "How long a new link may take to prove it belongs to the cluster.")
        .number("unreachable_timeout_ms", &remote_settings::unreachable_timeout_ms, 0, 3600000, "milliseconds",
                "How long messages wait for a peer that cannot be reached, and what a peer did not "
                "acknowledge waits for its link to come back, before they become dead letters.")
        .moved("spawn", "set kinds.<kind>.remote_spawn: true (kinds.all.remote_spawn for every kind)")
        .flag("insecure_plaintext", &remote_settings::insecure_plaintext,
              "No TLS at all: anyone who reaches node.listen is a member. For trusted networks and tests.")
        .key<std::string>("tls.cert_file", &remote_settings::tls_cert_file, "path",
                          "This node's certificate (PEM), for mutual TLS with certificates instead of the secret.",
                          readable, [](const std::string& p) { return read::show(p); })
        .key<std::string>("tls.key_file", &remote_settings::tls_key_file, "path",
                          "The certificate's private key (PEM).", readable,
                          [](const std::string& p) { return read::show(p); })
        .key<std::string>("tls.ca_file", &remote_settings::tls_ca_file, "path",
                          "The authority whose certificates are members (PEM).", readable,
                          [](const std::string& p) { return read::show(p); })
        .number("max_connections", &remote_settings::max_connections, 1, 1 << 20, "",
                "Node-to-node connections in all, both directions; more are refused at once.")
        .number("max_pending_connections", &remote_settings::max_pending_connections, 1, 1 << 20, "",
                "Connections not yet through the handshake.")
        .number("max_pending_per_address", &remote_settings::max_pending_per_address, 1, 1 << 20, "",
                "Connections not yet through the handshake from one address.")
        .check([](remote_settings& s, const YAML::Node& node, section_reader& r, const config& so_far) {
          if (s.heartbeat_timeout_ms <= s.heartbeat_interval_ms)
            r.error(node, "'remote.heartbeat_timeout_ms' (" + std::to_string(s.heartbeat_timeout_ms) +
                              ") must be longer than 'remote.heartbeat_interval_ms' (" +
                              std::to_string(s.heartbeat_interval_ms) + ")");
          if (YAML::Node t = node["tls"]; t && t.IsMap() &&
                                           (s.tls_cert_file.empty() || s.tls_key_file.empty() || s.tls_ca_file.empty()))
            r.error(t, "'remote.tls' needs cert_file, key_file and ca_file together");
          // Peers prove membership with the secret or a certificate, unless
          // the operator turned TLS off.
          const node_settings& n = so_far.get(node_section());
          if (!n.listen.empty() && n.secret.file.empty() && s.tls_cert_file.empty() && !s.insecure_plaintext)
            r.error(n.line, "'node.secret_file' (or 'remote.tls') is needed with 'node.listen': peers "
                            "prove that they are members with it (or set 'remote.insecure_plaintext: "
                            "true' to turn TLS off)");
        });
    return n;
  }();
  return s;
}

struct remote_spawn_setting {
  bool allowed = false;
};

// kinds.<kind>.remote_spawn
const section<remote_spawn_setting>& remote_spawn_section() {
  static const section<remote_spawn_setting> s = [] {
    section<remote_spawn_setting> k("remote_spawn", "Whether other nodes may spawn the kind here.");
    k.flag("", &remote_spawn_setting::allowed,
           "Other nodes may spawn actors of the kind on this node (troupectl spawn --node). "
           "Unset: they may not.");
    return k;
  }();
  return s;
}

remote::options to_options(const config& c) {
  const node_settings& n = c.get(node_section());
  const remote_settings& s = c.get(remote_section());
  remote::options o;
  o.self.cluster = n.cluster;
  o.self.node = n.name;
  o.self.address = n.advertise;  // empty: the listen address as bound
  o.self.max_frame = s.max_frame_bytes;
  o.listen = n.listen;
  o.creds.secrets = n.secret.secrets;
  o.creds.cert_file = s.tls_cert_file;
  o.creds.key_file = s.tls_key_file;
  o.creds.ca_file = s.tls_ca_file;
  o.insecure_plaintext = s.insecure_plaintext;
  o.max_connections = s.max_connections;
  o.max_pending = s.max_pending_connections;
  o.max_pending_per_address = s.max_pending_per_address;
  o.send_queue = s.send_queue;
  o.heartbeat_interval = std::chrono::milliseconds(s.heartbeat_interval_ms);
  o.heartbeat_timeout = std::chrono::milliseconds(s.heartbeat_timeout_ms);
  o.handshake_timeout = std::chrono::milliseconds(s.handshake_timeout_ms);
  o.unreachable_timeout = std::chrono::milliseconds(s.unreachable_timeout_ms);
  // kinds.<kind>.remote_spawn, else kinds.all.remote_spawn.
  const remote_spawn_setting* all = c.for_kind(remote_spawn_section(), config::all_kinds);
  o.spawn_any = all != nullptr && all->allowed;
  for (const std::string& kind : c.kinds())
    if (const remote_spawn_setting* k = c.for_kind(remote_spawn_section(), kind); k != nullptr && kind != config::all_kinds)
      (k->allowed ? o.spawnable : o.not_spawnable).push_back(kind);
  o.log = [](log_level l, const std::string& line) { log(l, line); };
  return o;
}

void add_metrics(node_context& ctx, const remote::stats& rs) {
  ctx.add_metrics([&rs](std::vector<prometheus::MetricFamily>& out) {
    using prometheus::MetricType;
    auto counter = [&](const char* name, const char* help, const std::atomic<std::uint64_t>& v) {
      out.push_back(single_metric(name, help, MetricType::Counter, static_cast<double>(v.load(std::memory_order_relaxed))));
    };
    counter("troupe_remote_messages_sent_total", "Messages written to other nodes", rs.messages_sent);
    counter("troupe_remote_messages_received_total", "Messages received from other nodes", rs.messages_received);
    counter("troupe_remote_sent_bytes_total", "Bytes written to other nodes", rs.bytes_sent);
    counter("troupe_remote_received_bytes_total", "Bytes read from other nodes", rs.bytes_received);
    counter("troupe_remote_resent_total",
            "Messages and control items sent to a peer again after its link came back, "
            "because it had not acknowledged them",
            rs.resent);
    counter("troupe_remote_duplicates_total",
            "Items a peer sent again that this node had already delivered (dropped)", rs.duplicates);
    counter("troupe_remote_protocol_errors_total",
            "Connections closed for frames that were oversized, malformed or out of place", rs.protocol_errors);
    counter("troupe_remote_read_pauses_total",
            "Times a link stopped reading because a target's mailbox, or the node's queued "
            "messages, were over their high-water mark (back-pressure)",
            rs.read_pauses);
    out.push_back(single_metric("troupe_remote_reads_paused", "Links not read now (back-pressure)",
                                MetricType::Gauge, static_cast<double>(rs.reads_paused.load(std::memory_order_relaxed))));
    out.push_back(single_metric("troupe_remote_read_paused_seconds_total", "Time links spent not read (back-pressure)",
                                MetricType::Counter,
                                static_cast<double>(rs.paused_ns.load(std::memory_order_relaxed)) / 1e9));
    auto conns = metric_family("troupe_remote_connections",
                               "Node-to-node connections by state, and peers without one (backoff, down, idle)",
                               MetricType::Gauge);
    for (std::size_t s = 0; s < remote::connection_state_count; ++s)
      add_metric(conns, static_cast<double>(rs.connections[s].load(std::memory_order_relaxed)),
                 {{"state", remote::to_string(static_cast<remote::connection_state>(s))}});
    // Peers without a connection, in the states troupectl peers shows.
    add_metric(conns, static_cast<double>(rs.peers_waiting[0].load(std::memory_order_relaxed)), {{"state", "backoff"}});
    add_metric(conns, static_cast<double>(rs.peers_waiting[1].load(std::memory_order_relaxed)), {{"state", "idle"}});
    add_metric(conns, static_cast<double>(rs.peers_waiting[2].load(std::memory_order_relaxed)), {{"state", "down"}});
    out.push_back(std::move(conns));
    auto hs = metric_family("troupe_remote_handshake_failures_total",
                            "Connections refused during the handshake, by reason", MetricType::Counter);
    for (std::size_t r = 0; r < remote::close_reason_count; ++r) {
      const auto reason = static_cast<remote::close_reason>(r);
      if (!remote::is_handshake_failure(reason)) continue;
      add_metric(hs, static_cast<double>(rs.handshake_failures[r].load(std::memory_order_relaxed)),
                 {{"reason", remote::to_string(reason)}});
    }
    out.push_back(std::move(hs));
  });
}

class remote_module final : public module {
 public:
  bool prepare(node_context& ctx, system_config& sc) override {
    const config& c = ctx.settings();
    const node_settings& n = c.get(node_section());
    if (n.listen.empty()) return true;
    remote::options o = to_options(c);
    o.self.incarnation = ctx.generation();  // a restarted node is a new peer
    transport_ = std::make_unique<remote::transport>(ctx.loop(), std::move(o));
    std::string error;
    if (!transport_->bind(error)) {
      log(level::error, "remote: " + error);
      return false;
    }
    sc.address = transport_->address();
    secrets_ = n.secret.secrets;
    if (c.get(remote_section()).insecure_plaintext)
      log(level::warning, "remote: TLS IS OFF (remote.insecure_plaintext): node-to-node traffic is neither "
                          "authenticated nor encrypted, and anyone who reaches " + n.listen +
                              " can act as a member of cluster '" + n.cluster + "'");
    else
      log(level::info, std::string("remote: TLS 1.3, members authenticated by ") +
                           (c.get(remote_section()).tls_cert_file.empty()
                                ? "the cluster secret"
                                : "certificates from " + c.get(remote_section()).tls_ca_file));
    return true;
  }

  int start(node_context& ctx) override {
    const config& c = ctx.settings();
    if (transport_) {
      transport_->set_spawn_handler([&ctx](const std::string& kind, const std::string& name) {
        return spawn_for_peer(ctx, kind, name);
      });
      transport_->start(ctx.system());
      const std::string& listen = c.get(node_section()).listen;
      log(level::info, "remote: listening on " + listen.substr(0, listen.rfind(':') + 1) +
                           std::to_string(transport_->port()) + ", PIDs as " + transport_->address() + "/ID");
      ctx.offer<remote::transport>(transport_.get());
      add_metrics(ctx, transport_->counters());
    }
    ctx.add_route([t = transport_.get()](const admin_request& r) { return peers_route(t, r); });
    contact_seeds({}, c.get(seeds_section()).seeds);
    return 0;
  }

  // Peers first: nothing more comes in or goes out while actors stop.
  void stop_taking_work() override {
    if (transport_) transport_->shutdown();
  }

  void reload(const config& next) override {
    const node_settings& n = next.get(node_section());
    if (transport_ && n.secret.secrets != secrets_) {
      transport_->set_secrets(n.secret.secrets);
      secrets_ = n.secret.secrets;
      log(level::info, "reload: handshakes from now on offer the first of " +
                           std::to_string(secrets_.size()) + " cluster secrets and accept any of them");
    }
    contact_seeds(seeds_, next.get(seeds_section()).seeds);
  }

 private:
  // A peer asks this node to spawn `kind` (kinds.<kind>.remote_spawn allowed it).
  static remote::spawn_reply spawn_for_peer(node_context& ctx, const std::string& kind, const std::string& name) {
    if (ctx.stopping()) return {spawn_error::shutting_down, pid(), "the node is stopping"};
    const spawn_result r = ctx.system().root().spawn_kind(kind, name);
    if (r) return {spawn_error::none, r.pid, ""};
    return {r.error, pid(), spawn_refusal(r.error, kind, name)};
  }

  // GET /v1/peers: none when the node does not listen.
  static bool peers_route(remote::transport* t, const admin_request& r) {
    if (r.path.size() != 2 || r.path[1] != "peers") return false;
    if (!r.get()) {
      r.error(405, "method_not_allowed", "use GET");
      return true;
    }
    json list = json::array();
    for (const remote::peer_info& p : t != nullptr ? t->peers() : std::vector<remote::peer_info>{})
      list.push_back({{"address", p.address},
                      {"node", p.node.empty() ? json(nullptr) : json(p.node)},
                      {"state", p.state},
                      // Of the connection when up; this node's own dials otherwise.
                      {"direction", p.state == "idle" ? json(nullptr) : json(p.inbound ? "inbound" : "outbound")},
                      {"messages_sent", p.messages_sent},
                      {"messages_received", p.messages_received},
                      {"bytes_sent", p.bytes_sent},
                      {"bytes_received", p.bytes_received},
                      {"queued", p.queued},
                      {"last_error", p.last_error.empty() ? json(nullptr) : json(p.last_error)}});
    r.reply(200, {{"peers", list}});
    return true;
  }

  // Keeps connections to the seeds in `now` that `before` did not list.
  // (A seed a reload drops is not disconnected: traffic may use it.)
  void contact_seeds(std::vector<std::string> before, const std::vector<std::string>& now) {
    seeds_ = now;
    std::vector<std::string> fresh;
    for (const std::string& s : now)
      if (std::find(before.begin(), before.end(), s) == before.end()) fresh.push_back(s);
    if (fresh.empty()) return;
    if (!transport_) {
      log(level::warning, "seeds are listed but node.listen is not set: no other node is contacted");
      return;
    }
    std::string list;
    for (const std::string& s : fresh) {
      transport_->contact(s);
      list += (list.empty() ? "" : ", ") + s;
    }
    log(level::info, "remote: contacting seeds " + list + " (troupectl peers shows how it went)");
  }

  std::unique_ptr<remote::transport> transport_;
  std::vector<std::string> secrets_;
  std::vector<std::string> seeds_;
};

}  // namespace

}  // namespace troupe::node

troupe::node::module_def troupe_module_remote() {
  using namespace troupe::node;
  return {"remote", {&remote_section()}, {&remote_spawn_section()}, [] { return std::make_unique<remote_module>(); }};
}
