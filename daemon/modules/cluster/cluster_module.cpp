// The cluster module: membership (daemon/cluster) on the node's loop.
// Probes and gossip go over UDP on the node's listen address (the TCP
// port's number), each datagram sealed (remote/datagram.hpp); full-state
// exchanges ride the TLS links. Serves /v1/members and the cluster_*
// metrics, holds /readyz at "not joined" until the node has joined, and
// leaves the cluster when the node stops.
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <iterator>
#include <set>
#include <memory>
#include <unordered_set>

#include <sys/socket.h>
#include <uv.h>

#include "actor/actor_system.hpp"
#include "cluster/membership.hpp"
#include "node/log.hpp"
#include "node/module.hpp"
#include "modules/admin/admin_api.hpp"
#include "modules/cluster/cluster_events.hpp"
#include "modules/cluster/cluster_settings.hpp"
#include "modules/cluster/etcd.hpp"
#include "modules/cluster/grains.hpp"
#include "modules/cluster/pubsub.hpp"
#include "pubsub_generated.h"
#include "node/state_dir.hpp"
#include "plugin/plugin_host.hpp"
#include "remote/address.hpp"
#include "remote/datagram.hpp"
#include "remote/transport.hpp"

namespace troupe::node {

namespace {

using nlohmann::json;
using cluster::millis;

// Counters for the metrics thread, set on the loop.
struct cluster_counters {
  std::array<std::atomic<std::int64_t>, 4> members{};  // by member_state
  std::atomic<std::uint64_t> acked{0}, acked_indirectly{0}, failed{0}, indirect{0};
  std::atomic<std::uint64_t> suspicions{0}, refutations{0}, dead_verdicts{0};
  std::atomic<std::uint64_t> bytes_in{0}, bytes_out{0};
  std::array<std::atomic<std::uint64_t>, remote::datagram_seal::verdict_count> refused{};
  std::atomic<std::uint64_t> send_failures{0};
  std::atomic<unsigned> health{0};
  std::atomic<bool> joined{false};
  // With etcd: what is wrong with it now (the admin server's thread reads it).
  std::mutex provider_mu;
  std::string provider_problem;
};

class cluster_module final : public module, public cluster_view {
 public:
  int start(node_context& ctx) override {
    ctx_ = &ctx;
    transport_ = ctx.find<remote::transport>();
    const config& c = ctx.settings();
    const node_settings& n = c.get(node_section());
    if (transport_ == nullptr) {
      log(level::info, "cluster: membership is off (node.listen is not set)");
      return off("node.listen is not set");
    }
    if (n.secret.secrets.empty()) {
      log(level::warning, "cluster: membership is off: its datagrams are sealed with the cluster secret, "
                          "and node.secret_file is not set");
      return off("node.secret_file is not set");
    }
    const std::uint64_t generation = ctx.generation();
    std::string error;
    seal_ = std::make_unique<remote::datagram_seal>(n.cluster, n.secret.secrets);
    secrets_ = n.secret.secrets;
    seeds_ = c.get(seeds_section()).seeds;
    const std::string address = transport_->address();
    // The kinds this node hosts travel in its metadata, which rides in
    // every datagram that says it is alive (a refutation too): it must fit.
    std::string kinds;
    std::size_t listed = 0;
    const std::vector<std::string> names = ctx.system().kinds().names();
    for (const std::string& k : names) {
      if (kinds.size() + k.size() + 1 > max_kinds_bytes) break;
      kinds += (kinds.empty() ? "" : ",") + k;
      ++listed;
    }
    if (listed < names.size())
      log(level::warning, "cluster: this node hosts " + std::to_string(names.size()) + " kinds; only the first " +
                              std::to_string(listed) + " (" + std::to_string(max_kinds_bytes) +
                              " bytes of names) are told to the other members");
    std::map<std::string, grain_kind_options, std::less<>> grain_kinds_here = grain_kinds_of(ctx, names);
    // Every member hosts the topics of pub-sub (pubsub.hpp). A topic lives
    // while anybody publishes to it; one idle this long is passivated, and
    // asks the members for its subscribers again when it comes back.
    grain_kinds_here[pubsub_service::topic_kind] = {std::chrono::hours(1)};
    const std::string grains = grain_kinds(ctx, grain_kinds_here);
    warn_about_local_state(ctx, grain_kinds_here, transport_->address());
    const cluster_settings& cs = c.get(cluster_section());
    const cluster::metadata meta{{"protocol", "1"}, {"kinds", kinds}, {"grains", grains}};
    // With etcd, SWIM starts alone and meets the members etcd names.
    machine_ = std::make_unique<cluster::membership>(
        n.cluster, cluster::member_id{n.name, address, generation, 0},
        cs.provider == "etcd" ? std::vector<std::string>{} : c.get(seeds_section()).seeds, cs.options(),
        remote::random_u64(), meta);
    if (cs.provider == "etcd") {
      if (!seeds_.empty())
        log(level::warning, "cluster: the seeds are not used: cluster.provider is etcd, and etcd names the members");
      seeds_.clear();
      registry_ = std::make_unique<cluster::registry>(n.name, cs.options().dead_retention);
      etcd_provider::hooks h;
      h.listed = [this](const std::vector<cluster::record>& all) {
        registry_->reset(all, now());
        registry_changed();
      };
      h.put = [this](const cluster::record& r) {
        registry_->put(r, now());
        registry_changed();
      };
      h.removed = [this](const std::string& name) {
        registry_->remove(name, now());
        registry_changed();
      };
      // Every change of etcd's state (up, registered, what is wrong) comes here.
      h.changed = [this] {
        {
          std::lock_guard lock(counters_->provider_mu);
          counters_->provider_problem = etcd_->problem();
        }
        pump();
      };
      etcd_ = std::make_unique<etcd_provider>(ctx.loop(), etcd_config_of(cs),
                                              cluster::record{n.name, address, generation, meta, false}, std::move(h));
    }
    // Members are lost when the cluster says so, not when a link breaks.
    transport_->set_membership([this](const std::string& address) { return up_addresses_.count(address) != 0; });
    // UDP on the listen address, at the port TCP got.
    sockaddr_storage at{};
    const std::string listen = n.listen.substr(0, n.listen.rfind(':') + 1) + std::to_string(transport_->port());
    if (!remote::parse_ip_address(listen, at, error)) {
      log(level::error, "cluster: " + error);
      return 1;
    }
    uv_udp_init(ctx.loop().uv(), &udp_);
    udp_.data = this;
    udp_on_ = true;
    if (const int rc = uv_udp_bind(&udp_, reinterpret_cast<const sockaddr*>(&at), 0); rc != 0) {
      log(level::error, "cluster: cannot listen for datagrams on " + listen + ": " + uv_strerror(rc));
      return 1;
    }
    uv_udp_recv_start(&udp_, [](uv_handle_t*, std::size_t, uv_buf_t* buf) {
      static char space[65536];
      *buf = uv_buf_init(space, sizeof space);
    }, [](uv_udp_t* h, ssize_t n, const uv_buf_t* buf, const sockaddr* from, unsigned) {
      if (n > 0 && from != nullptr) static_cast<cluster_module*>(h->data)->on_datagram(buf, static_cast<std::size_t>(n), from);
    });
    uv_timer_init(ctx.loop().uv(), &timer_);
    timer_.data = this;
    timer_on_ = true;
    transport_->set_cluster_handler([this](const std::string& from, std::span<const std::uint8_t> bytes) {
      if (!machine_) return;
      counters_->bytes_in.fetch_add(bytes.size(), std::memory_order_relaxed);
      deaf_check();
      machine_->on_stream(from, bytes, now());
      pump();
    });
    ctx.add_readiness([c = counters_] {
      if (c->joined.load(std::memory_order_relaxed)) return std::string();
      std::lock_guard lock(c->provider_mu);
      return c->provider_problem.empty() ? std::string("not joined: no seed of the cluster has answered yet")
                                         : "not joined: etcd: " + c->provider_problem;
    });
    ctx.add_readiness_detail([c = counters_] {
      if (!c->joined.load(std::memory_order_relaxed)) return std::string();
      std::lock_guard lock(c->provider_mu);
      return c->provider_problem.empty() ? std::string()
                                         : "etcd: " + c->provider_problem + "; membership stays as last listed";
    });
    ctx.add_metrics([c = counters_](std::vector<prometheus::MetricFamily>& out) { collect(*c, out); });
    if (etcd_)
      ctx.add_metrics([e = etcd_->counters()](std::vector<prometheus::MetricFamily>& out) { collect_provider(*e, out); });
    // Answered on the loop, where the machine lives.
    ctx.add_route([this](const admin_request& r) {
      const auto& p = r.path;
      if (p.size() < 2 || p[1] != "members") return false;
      if (p.size() == 2 && r.get()) {
        ctx_->loop().post([this, r] { r.reply(200, members_json()); });
        return true;
      }
      if (p.size() == 4 && p[3] == "down" && r.method == "POST") {
        ctx_->loop().post([this, r, name = p[2]] {
          if (etcd_)
            return r.error(409, "conflict", "membership comes from etcd: a member is gone when its record is "
                                            "(etcdctl del " + etcd_->key_of(name) + ")");
          if (machine_->self().name == name)
            return r.error(400, "bad_request", "a node cannot declare itself dead; stop it instead");
          if (!machine_->down(name, now()))
            return r.error(404, "unknown_member", "no alive or suspect member '" + name + "'");
          pump();
          log(level::warning, "cluster: " + name + " declared dead by an operator");
          r.reply(200, {{"name", name}, {"state", "dead"}});
        });
        return true;
      }
      r.error(p.size() == 2 ? 405 : 404, p.size() == 2 ? "method_not_allowed" : "not_found",
              p.size() == 2 ? "use GET" : "no such endpoint under /v1/members");
      return true;
    });
    grain_options go;
    go.self_name = n.name;
    go.max_activations = c.get(cluster_section()).max_activations;
    go.max_memory_bytes = std::uint64_t(c.get(cluster_section()).max_memory_mb) << 20;
    go.max_buffered = c.get(cluster_section()).max_buffered_calls;
    go.max_moving = c.get(cluster_section()).max_moving_partitions;
    go.keep_moved = c.get(cluster_section()).moved_activations == "keep";
    handover_timeout_ = millis(c.get(cluster_section()).handover_timeout_ms);
    go.kinds = grain_kinds_here;
    grains_ = std::make_unique<grain_service>(ctx.system(), std::move(go));
    if (!grains_->start(error)) {
      log(level::error, "cluster: " + error);
      return 1;
    }
    ctx.add_metrics([g = grains_->shared_counters()](std::vector<prometheus::MetricFamily>& out) { g->collect(out); });
    ctx.add_route([this](const admin_request& r) { return grain_route(r); });
    const pubsub_settings& ps = c.get(pubsub_section());
    pubsub_options po;
    po.batch_size = ps.batch_size;
    po.batch_delay = std::chrono::microseconds(ps.batch_delay_us);
    po.max_pending = ps.max_pending;
    po.timeout = std::chrono::milliseconds(ps.timeout_ms);
    po.metric_topics = ps.metric_topics;
    pubsub_ = std::make_unique<pubsub_service>(ctx.system(), *grains_, std::move(po));
    ctx.system().kinds().add(pubsub_service::topic_kind, pubsub_->topic_props());
    if (!pubsub_->start(error)) {
      log(level::error, "cluster: " + error);
      return 1;
    }
    ctx.add_metrics([p = pubsub_->shared_counters()](std::vector<prometheus::MetricFamily>& out) { p->collect(out); });
    ctx.add_route([this](const admin_request& r) { return topic_route(r); });
    log(level::info, "cluster: member " + n.name + " at " + address + ", generation " + std::to_string(generation) +
                         "; datagrams on " + listen);
    started_ = now();
    machine_->start(now());
    if (etcd_) {
      counters_->provider_problem = etcd_->problem();
      etcd_->start();
    }
    pump();
    ctx.system().set_cluster(this);
    return 0;
  }

  // Without membership, what needs it says why rather than "not found"
  // (the member list is this node alone: the admin API answers it).
  int off(const std::string& why) {
    ctx_->add_route([why](const admin_request& r) {
      const auto& p = r.path;
      if (p.size() < 2 || (p[1] != "grains" && p[1] != "topics")) return false;
      r.error(503, "no_cluster",
              "this node is in no cluster (" + why + "): grains and topics need node.listen and "
              "node.secret_file (docs/cluster.md)");
      return true;
    });
    return 0;
  }

  std::shared_ptr<const std::vector<std::uint8_t>> members() const override {
    std::lock_guard lock(snapshot_mu_);
    return snapshot_;
  }

  future call_grain(std::string_view kind, std::string_view identity, message m,
                    std::chrono::nanoseconds timeout) override {
    return grains_->call(kind, identity, std::move(m), timeout);
  }

  void send_grain(std::string_view kind, std::string_view identity, message m) override {
    grains_->send(kind, identity, std::move(m), default_grain_timeout);
  }

  future subscribe(std::string_view topic, const topic_subscriber& s, std::chrono::nanoseconds timeout) override {
    return pubsub_->subscribe(topic, s, timeout);
  }

  future unsubscribe(std::string_view topic, const topic_subscriber& s, std::chrono::nanoseconds timeout) override {
    return pubsub_->unsubscribe(topic, s, timeout);
  }

  bool publish(std::string_view topic, message m) override { return pubsub_->publish(topic, std::move(m)); }

  future publish_reported(std::string_view topic, message m, std::chrono::nanoseconds timeout) override {
    return pubsub_->publish_reported(topic, std::move(m), timeout);
  }

  void actors_stopped() override {
    if (ctx_ != nullptr && machine_) ctx_->system().set_cluster(nullptr);
  }

  void decorate_kind(const std::string&, props&) override {}

  // SIGTERM: the grains go to their new owners first (their activations
  // stop after what they were given), then the node leaves, so that no
  // owner activates one of them while it still runs here.
  void hand_over(std::function<void()> done) override {
    if (!machine_ || !grains_) return done();
    log(level::info, "cluster: handing grains over before leaving");
    const millis begun = now();
    auto once = std::make_shared<std::function<void()>>(std::move(done));
    auto finish = [this, once](const std::string& how, bool handed) {
      if (!*once) return;
      log(handed ? level::info : level::warning, "cluster: " + how);
      auto then = [this, once] {
        if (!*once) return;
        leave();
        std::exchange(*once, nullptr)();
      };
      // With etcd, the record says leaving and the lease goes first: the
      // others see a leave, not a death.
      if (etcd_) return etcd_->leave(then);
      then();
    };
    grains_->hand_over([this, begun, finish] {
      ctx_->loop().post([this, begun, finish] {
        finish("grains handed over in " + std::to_string((now() - begun).count()) + " ms", true);
      });
    });
    handover_timer_ = ctx_->system().loop().arm(handover_timeout_, [this, finish] {
      ctx_->loop().post([this, finish] {
        finish("grains not all handed over within cluster.handover_timeout_ms (" +
                   std::to_string(handover_timeout_.count()) + " ms); leaving anyway",
               false);
      });
    });
  }

  void stop_taking_work() override { leave(); }

  void leave() {
    if (left_ || !machine_) return;
    left_ = true;
    handover_timer_.cancel();
    machine_->leave(now());
    pump();
    log(level::info, "cluster: leaving");
  }

  void reload(const config& next) override {
    if (!machine_) return;
    if (etcd_) etcd_->reload(etcd_config_of(next.get(cluster_section())));
    const auto& secrets = next.get(node_section()).secret.secrets;
    if (!secrets.empty() && secrets != secrets_) {
      seal_->set_secrets(secrets);
      secrets_ = secrets;
      log(level::info, "reload: the cluster's datagrams are sealed under the first of " +
                           std::to_string(secrets.size()) + (secrets.size() == 1 ? " secret" : " secrets") +
                           " now, and opened under any of them");
    }
    const auto& seeds = next.get(seeds_section()).seeds;
    if (seeds != seeds_) {
      seeds_ = seeds;
      std::string list;
      for (const std::string& s : seeds) list += (list.empty() ? "" : ", ") + s;
      log(level::info, "reload: the cluster's seeds are now [" + list + "]");
      machine_->set_seeds(seeds, now());
      pump();
    }
  }

  void loop_closing() override {
    handover_timer_.cancel();
    if (etcd_) etcd_->close();
    if (timer_on_) uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
    if (udp_on_) uv_close(reinterpret_cast<uv_handle_t*>(&udp_), nullptr);
    timer_on_ = udp_on_ = false;
  }

  void close() override {
    loop_closing();
    if (transport_ != nullptr) {
      transport_->set_cluster_handler(nullptr);
      transport_->set_membership(nullptr);
    }
  }

  std::string status() const override {
    if (!machine_) return {};
    std::size_t alive = 0;
    for (const auto& m : view()) alive += m.state == cluster::member_state::alive ? 1 : 0;
    return std::to_string(alive) + " members alive";
  }

 private:
  // The grain kinds this node hosts: named so in the config
  // (kinds.<kind>.grain, kinds.all.grain), or by their plugin
  // (register_grain); the config's idle timeout wins.
  static std::map<std::string, grain_kind_options, std::less<>> grain_kinds_of(node_context& ctx,
                                                                               const std::vector<std::string>& hosted) {
    const config& c = ctx.settings();
    std::map<std::string, std::chrono::nanoseconds> by_plugin;
    if (auto* plugins = ctx.find<plugin::host>())
      for (const plugin::plugin_info& p : plugins->plugins()) by_plugin.insert(p.grains.begin(), p.grains.end());
    std::map<std::string, grain_kind_options, std::less<>> out;
    for (const std::string& k : hosted) {
      if (const grain_settings* g = c.setting_for(grain_section(), k)) {
        out[k] = {g->idle_timeout};
      } else if (const auto it = by_plugin.find(k); it != by_plugin.end()) {
        grain_kind_options o;
        if (it->second.count() > 0) o.idle_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(it->second);
        out[k] = o;
      }
    }
    return out;
  }

  // Persistent grain kinds whose journal is on this node's disk, in a
  // cluster of more than one member (the seeds name another node): a grain
  // that moves starts elsewhere without its state.
  static void warn_about_local_state(node_context& ctx,
                                     const std::map<std::string, grain_kind_options, std::less<>>& grain_kinds,
                                     const std::string& self) {
    auto* plugins = ctx.find<plugin::host>();
    if (plugins == nullptr || ctx.system().journal() == nullptr || ctx.system().journal()->shared()) return;
    const auto& seeds = ctx.settings().get(seeds_section()).seeds;
    if (std::none_of(seeds.begin(), seeds.end(), [&](const std::string& s) { return s != self; })) return;
    std::string kinds;
    for (const plugin::plugin_info& p : plugins->plugins())
      for (const std::string& k : p.persistent)
        if (grain_kinds.count(k) != 0) kinds += (kinds.empty() ? "" : ", ") + k;
    if (!kinds.empty())
      log(level::warning, "persistence: the persistent grain kinds " + kinds + " keep their journal in SQLite, on "
                          "this node only: in a cluster of more than one member, a grain that moves to another "
                          "member starts there without its state (a shared store is needed; docs/persistence.md)");
  }

  // "kind@version,..." of the grain kinds this node hosts, the version being the plugin's.
  std::string grain_kinds(node_context& ctx, const std::map<std::string, grain_kind_options, std::less<>>& hosted) {
    std::map<std::string, std::string> version;
    if (auto* plugins = ctx.find<plugin::host>())
      for (const plugin::plugin_info& p : plugins->plugins())
        for (const std::string& k : p.kinds) version[k] = p.version;
    std::string out;
    version[pubsub_service::topic_kind] = "1";
    for (const auto& [k, o] : hosted) {
      const std::string item = k + "@" + (version.count(k) ? version[k] : std::string("0"));
      if (out.size() + item.size() + 1 > max_kinds_bytes) {
        log(level::warning, "cluster: too many grain kinds to tell the other members; '" + k + "' and those after "
                            "it are not told");
        break;
      }
      out += (out.empty() ? "" : ",") + item;
    }
    return out;
  }

  // The members: SWIM's, or with etcd the registry's.
  std::vector<cluster::member> view() const { return registry_ ? registry_->members() : machine_->members(); }
  bool joined() const {
    return registry_ ? etcd_->registered() && registry_->listed() : machine_->joined();
  }
  bool settled() const {
    if (!registry_) return machine_->settled(now());
    const cluster::member* me = registry_->find(machine_->self().name);
    return joined() && me != nullptr && me->id.generation == machine_->self().generation &&
           me->state == cluster::member_state::alive;
  }

  // etcd changed the members: SWIM is told whom to probe (its seeds), and
  // asks the ones it has not met for their state at once.
  void registry_changed() {
    std::vector<std::string> addresses;
    for (const cluster::member& m : registry_->members()) {
      if (m.state != cluster::member_state::alive && m.state != cluster::member_state::suspect) continue;
      if (m.id.name == machine_->self().name) continue;
      addresses.push_back(m.id.address);
      const cluster::member* known = machine_->find(m.id.name);
      if (known == nullptr || known->id.generation < m.id.generation) machine_->contact(m.id.address);
    }
    machine_->set_seeds(std::move(addresses), now());
    pump();
  }

  static etcd_config etcd_config_of(const cluster_settings& cs) {
    etcd_config e;
    e.endpoints = cs.etcd_endpoints;
    e.prefix = cs.etcd_prefix;
    e.lease_ttl = cs.etcd_lease_ttl;
    e.username = cs.etcd_username;
    e.password = cs.etcd_password.text;
    e.ca_file = cs.etcd_ca_file;
    e.cert_file = cs.etcd_cert_file;
    e.key_file = cs.etcd_key_file;
    e.request_timeout = cs.etcd_request_timeout;
    e.watch_timeout = cs.etcd_watch_timeout;
    return e;
  }

  static void collect_provider(const etcd_counters& c, std::vector<prometheus::MetricFamily>& out) {
    using prometheus::MetricType;
    auto up = metric_family("troupe_cluster_provider_up",
                            "Whether the membership provider (etcd) answered this node's last request", MetricType::Gauge);
    add_metric(up, c.up.load(std::memory_order_relaxed) ? 1 : 0, {{"provider", "etcd"}});
    out.push_back(std::move(up));
    auto errors = metric_family("troupe_cluster_provider_errors_total",
                                "Requests to the membership provider (etcd) that failed, by operation", MetricType::Counter);
    for (std::size_t o = 0; o < etcd_counters::op_count; ++o)
      add_metric(errors, static_cast<double>(c.errors[o].load(std::memory_order_relaxed)),
                 {{"provider", "etcd"}, {"op", etcd_counters::name(o)}});
    out.push_back(std::move(errors));
    out.push_back(single_metric("troupe_cluster_provider_lease_ttl_seconds",
                                "The TTL etcd gave this node's lease (it may raise the one asked for)", MetricType::Gauge,
                                static_cast<double>(c.ttl_ms.load(std::memory_order_relaxed)) / 1000.0));
    out.push_back(single_metric("troupe_cluster_provider_malformed_total",
                                "Member records in etcd that were not member records, skipped", MetricType::Counter,
                                static_cast<double>(c.malformed.load(std::memory_order_relaxed))));
  }

  // The protocol's time: the monotonic clock, in milliseconds.
  static millis now() {
    return std::chrono::duration_cast<millis>(std::chrono::steady_clock::now().time_since_epoch());
  }

  void on_datagram(const uv_buf_t* buf, std::size_t n, const sockaddr* from) {
    if (!machine_) return;
    counters_->bytes_in.fetch_add(n, std::memory_order_relaxed);
    remote::datagram_seal::sender who;
    const auto v = seal_->open({reinterpret_cast<const std::uint8_t*>(buf->base), n}, plain_, who);
    if (v != remote::datagram_seal::verdict::ok) {
      counters_->refused[static_cast<std::size_t>(v)].fetch_add(1, std::memory_order_relaxed);
      return;
    }
    deaf_check();
    machine_->on_datagram(address_of(from), plain_, now());
    pump();
  }

  json members_json() const {
    json list = json::array();
    const millis steady = now();
    const auto wall = std::chrono::system_clock::now();
    for (const cluster::member& m : view()) {
      const auto since = std::chrono::system_clock::to_time_t(
          wall - std::chrono::duration_cast<std::chrono::system_clock::duration>(steady - m.since));
      char when[32];
      std::tm tm{};
      gmtime_r(&since, &tm);
      std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
      json meta = json::object();
      for (const auto& [k, v] : m.meta) meta[k] = v;
      list.push_back({{"name", m.id.name},
                      {"address", m.id.address},
                      {"status", cluster::to_string(m.state)},
                      {"generation", m.id.generation},
                      {"incarnation", m.id.incarnation},
                      {"since", when},
                      {"self", m.id.name == machine_->self().name},
                      {"kinds", kinds_of(m)},
                      {"grains", grains_json(m)},
                      {"meta", meta}});
    }
    json out = {{"members", list}, {"joined", joined()}, {"provider", etcd_ ? "etcd" : "seeds"}};
    if (etcd_)
      out["etcd"] = {{"up", etcd_->up()},
                     {"registered", etcd_->registered()},
                     {"lease_ttl_ms", etcd_->ttl().count()},
                     {"problem", etcd_->problem()}};
    return out;
  }

  static json grains_json(const cluster::member& m) {
    json list = json::array();
    for (const auto& [kind, version] : grains_of(m)) list.push_back({{"kind", kind}, {"version", version}});
    return list;
  }

  static std::string address_of(const sockaddr* a) {
    char host[INET6_ADDRSTRLEN] = {};
    if (a->sa_family == AF_INET6) {
      const auto* six = reinterpret_cast<const sockaddr_in6*>(a);
      uv_ip6_name(six, host, sizeof host);
      return "[" + std::string(host) + "]:" + std::to_string(ntohs(six->sin6_port));
    }
    const auto* four = reinterpret_cast<const sockaddr_in*>(a);
    uv_ip4_name(four, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(four->sin_port));
  }

  // Sends what the machine wants sent, passes on its events, and arms the
  // timer for its next wake-up.
  void pump() {
    for (cluster::outgoing& o : machine_->take_outgoing()) {
      counters_->bytes_out.fetch_add(o.bytes.size(), std::memory_order_relaxed);
      if (o.via == cluster::outgoing::channel::stream) {
        transport_->send_cluster(o.to, std::move(o.bytes));
        continue;
      }
      if (!udp_on_) continue;
      const auto sealed = seal_->seal(machine_->self().name, machine_->self().generation, o.bytes);
      sockaddr_storage to{};
      std::string error;
      if (!remote::parse_ip_address(o.to, to, error)) {
        counters_->send_failures.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      uv_buf_t b = uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(sealed.data())),
                               static_cast<unsigned>(sealed.size()));
      if (uv_udp_try_send(&udp_, &b, 1, reinterpret_cast<const sockaddr*>(&to)) < 0)
        counters_->send_failures.fetch_add(1, std::memory_order_relaxed);
    }
    std::vector<cluster::member_event> events = machine_->take_events();
    if (registry_) {
      // SWIM's news only says who is unreachable; the events are etcd's.
      // SWIM's view changes only with its news, not at every datagram.
      if (!events.empty()) registry_->reachability(machine_->members(), now());
      registry_->advance(now());
      events = registry_->take_events();
    }
    if (!events.empty() || !snapshot_) publish(events);
    const cluster::membership_stats& st = machine_->stats();
    counters_->acked.store(st.acked, std::memory_order_relaxed);
    counters_->acked_indirectly.store(st.acked_indirectly, std::memory_order_relaxed);
    counters_->failed.store(st.failed, std::memory_order_relaxed);
    counters_->indirect.store(st.indirect_probes, std::memory_order_relaxed);
    counters_->suspicions.store(st.suspicions, std::memory_order_relaxed);
    counters_->refutations.store(st.refutations, std::memory_order_relaxed);
    counters_->dead_verdicts.store(st.dead_verdicts, std::memory_order_relaxed);
    counters_->health.store(machine_->health(), std::memory_order_relaxed);
    fence();
    if (grains_ && !settled_ && settled()) place_grains(view());
    if (joined() && !counters_->joined.exchange(true, std::memory_order_relaxed)) {
      log(level::info, "cluster: joined");
    } else if (!joined() && !registry_ && !said_not_joined_ && now() - started_ >= not_joined_after) {
      said_not_joined_ = true;
      std::string seeds;
      for (const std::string& s : seeds_) seeds += (seeds.empty() ? "" : ", ") + s;
      log(level::warning, "cluster: not joined after " + std::to_string(not_joined_after.count() / 1000) +
                              " s: no seed of a formed cluster has answered (seeds: " +
                              (seeds.empty() ? std::string("none") : seeds) +
                              "); /readyz says not joined until one does. The first seed forms the cluster "
                              "alone; it must be listed as it advertises itself");
    }
    if (timer_on_) {
      const millis wake = machine_->next_wake();
      // At least once a probe interval, which renews the grains' lease.
      const std::int64_t in = std::clamp<std::int64_t>((wake - now()).count(), 0,
                                                      machine_->options().probe_interval.count());
      uv_timer_start(&timer_, [](uv_timer_t* t) {
        auto* self = static_cast<cluster_module*>(t->data);
        self->deaf_check();
        self->machine_->advance(self->now());
        self->pump();
      }, static_cast<std::uint64_t>(in), 0);
    }
  }

  // Tells the log, the transport and the actors what changed.
  void publish(const std::vector<cluster::member_event>& events) {
    const std::vector<cluster::member> all = view();
    std::array<std::int64_t, 4> count{};
    for (const auto& m : all) ++count[static_cast<std::size_t>(m.state)];
    for (std::size_t i = 0; i < count.size(); ++i) counters_->members[i].store(count[i], std::memory_order_relaxed);
    const wall_clock clock{now(), std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch()).count()};
    event_stream& stream = ctx_->system().events();
    for (const cluster::member_event& e : events) {
      if (e.who.id.name == machine_->self().name) continue;
      report(e);
      using k = cluster::member_event::kind;
      if (e.what == k::dead || e.what == k::left)
        transport_->node_lost(e.who.id.address, e.who.id.generation,
                              e.what == k::left ? "it left the cluster"
                                                : "the cluster declared it dead (" + said_by(e) + ")");
      if (stream.has_subscribers())
        if (envelope* m = event_message(e, clock)) stream.publish(message::adopt(m));
    }
    up_addresses_.clear();
    for (const cluster::member& m : all)
      if (m.state == cluster::member_state::alive || m.state == cluster::member_state::suspect)
        up_addresses_.insert(m.id.address);
    place_grains(all);
    topology up = up_members(all);
    if (up != topology_) {
      if (stream.has_subscribers()) stream.publish(message::adopt(topology_message(topology_, up, all, clock)));
      topology_ = std::move(up);
    }
    auto snapshot = std::make_shared<const std::vector<std::uint8_t>>(members_buffer(all, clock));
    std::lock_guard lock(snapshot_mu_);
    snapshot_ = std::move(snapshot);
  }

  // Grains are placed by the members up, once the view is settled (a first
  // seed that restarts may have a cluster to find first: membership.hpp).
  void place_grains(const std::vector<cluster::member>& all) {
    if (!grains_) return;
    settled_ = settled();
    // Newly gone members: the call cache forgets what it placed there (once
    // each, not at every view change while they linger in the list).
    std::set<std::string> gone;
    for (const cluster::member& m : all)
      if (m.state == cluster::member_state::dead || m.state == cluster::member_state::left) gone.insert(m.id.address);
    std::vector<std::string> newly;
    std::set_difference(gone.begin(), gone.end(), gone_.begin(), gone_.end(), std::back_inserter(newly));
    gone_ = std::move(gone);
    grains_->forget_at(newly);
    grains_->set_hosts(std::make_shared<const cluster::grain_hosts>(settled_ ? all : std::vector<cluster::member>{}),
                       settled_);
  }

  // Grains: a node that heard it was declared dead, or is out of touch with
  // a majority, gives up its activations (grains.hpp).
  void fence() {
    if (!grains_) return;
    if (etcd_) {
      // With etcd, the lease is the fence: activations serve while this
      // node's lease surely holds (the others activate its grains only
      // once etcd let it expire), and none while it has no record.
      if (etcd_->registered()) was_registered_ = true;
      if (was_registered_)
        grains_->set_fenced(!etcd_->registered(), "this node's record in etcd is gone (its lease expired)");
      if (const millis until = etcd_->lease_until(); until > now()) grains_->renew_lease(until - now());
      return;
    }
    const std::uint64_t verdicts = machine_->stats().declared_dead;
    if (verdicts != declared_dead_) {
      declared_dead_ = verdicts;
      grains_->set_fenced(true, "the cluster declared this node dead");
    }
    const bool in_touch = machine_->in_touch(now());
    const bool deaf = machine_->silent_for(now()) >= machine_->earliest_verdict();
    if (!deaf)
      grains_->set_fenced(!in_touch, in_touch ? std::string() : "no word from a majority of members for " +
                                                    std::to_string(machine_->suspicion_max().count()) + " ms");
    // The lease ends well before the earliest dead verdict the others could
    // reach (a probe interval, then the shortest suspicion).
    const cluster::swim_options& o = machine_->options();
    const millis lease = 2 * o.probe_interval + o.probe_timeout;
    if (in_touch && machine_->hearing(now(), lease)) grains_->renew_lease(lease);
  }

  // Before the machine hears anything new: a node that heard no member for
  // as long as the others need to declare it dead (it was stopped, starved
  // or cut off) may be dead to them; it stops its activations before it
  // serves again. Whatever it hears next lifts the fence (see fence()).
  void deaf_check() {
    if (!grains_ || registry_) return;
    const millis silent = machine_->silent_for(now());
    if (silent >= machine_->earliest_verdict())
      grains_->set_fenced(true, "no member heard for " + std::to_string(silent.count()) +
                                    " ms (stopped or cut off): the others may have declared this node dead");
  }

  // /v1/grains: this node's activations; /v1/grains/{kind}/{identity}/{type}: a call.
  bool grain_route(const admin_request& r) {
    const auto& p = r.path;
    if (p.size() < 2 || p[1] != "grains") return false;
    if (p.size() == 2) {
      if (!r.get()) {
        r.error(405, "method_not_allowed", "use GET");
        return true;
      }
      std::size_t limit = 1000;
      if (const std::string l = r.var("limit"); !l.empty()) {
        char* end = nullptr;
        const unsigned long long v = std::strtoull(l.c_str(), &end, 10);
        if (*end != '\0' || v == 0) {
          r.error(400, "bad_request", "limit must be a positive number, not '" + l + "'");
          return true;
        }
        limit = static_cast<std::size_t>(v);
      }
      r.reply(200, grains_->list(r.var("kind"), limit));
      return true;
    }
    if (p.size() != 5) {
      r.error(404, "not_found", "no such endpoint under /v1/grains (POST /v1/grains/{kind}/{identity}/{type})");
      return true;
    }
    long long timeout_ms = std::chrono::duration_cast<std::chrono::milliseconds>(default_grain_timeout).count();
    if (const std::string t = r.var("timeout_ms"); !t.empty()) {
      char* end = nullptr;
      const long long v = std::strtoll(t.c_str(), &end, 10);
      if (*end != '\0' || v <= 0 || v > 60000) {
        r.error(400, "bad_request", "timeout_ms must be a whole number from 1 to 60000, not '" + t + "'");
        return true;
      }
      timeout_ms = v;
    }
    plugin::host* plugins = nullptr;
    message m;
    if (!posted_message(r, p[4], plugins, m)) return true;
    const std::string what = p[2] + "/" + p[3];
    grains_->call(p[2], p[3], std::move(m), std::chrono::milliseconds(timeout_ms))
        .get()
        ->on_complete([plugins, r, what, timeout_ms](future_result res) {
          answer_request(*plugins, r, what, timeout_ms, res);
        });
    return true;
  }

  // A POST's body as a message of `type` (a plugin's, from JSON); false
  // when it answered the request itself (not a POST, the node stopping, a
  // body that does not fit the type).
  bool posted_message(const admin_request& r, const std::string& type, plugin::host*& plugins, message& m) {
    if (r.method != "POST") {
      r.error(405, "method_not_allowed", "use POST");
      return false;
    }
    if (ctx_->stopping()) {
      r.error(503, "stopping", "the node is stopping and admits no new work");
      return false;
    }
    plugins = ctx_->find<plugin::host>();
    if (plugins == nullptr) {
      r.error(400, "unknown_type", "this node loads no plugins: no message types");
      return false;
    }
    json body = json::object();
    if (!r.http->body().empty() && !r.object(body)) return false;
    std::string why;
    switch (plugins->from_json(type, body.dump(), m, why)) {
      case plugin::codec_status::ok: return true;
      case plugin::codec_status::unknown_type: r.error(400, "unknown_type", why); return false;
      case plugin::codec_status::mismatch: r.error(400, "schema_mismatch", why); return false;
    }
    return false;
  }

  // POST /v1/topics/{topic}/{type}[?report=true], GET /v1/topics/{topic}/subscribers.
  bool topic_route(const admin_request& r) {
    const auto& p = r.path;
    if (p.size() < 2 || p[1] != "topics") return false;
    if (p.size() != 4 || p[2].empty()) {
      r.error(404, "not_found",
              "no such endpoint under /v1/topics (POST /v1/topics/{topic}/{type}, GET /v1/topics/{topic}/subscribers)");
      return true;
    }
    const std::string topic = p[2];
    const auto timeout = std::chrono::milliseconds(5000);
    if (p[3] == "subscribers") {
      if (!r.get()) {
        r.error(405, "method_not_allowed", "use GET");
        return true;
      }
      auto* plugins = ctx_->find<plugin::host>();
      pubsub_->subscribers(topic, timeout).get()->on_complete([r, topic, plugins](future_result res) {
        const auto* roll = res.reply.as<troupe::pubsub::Roll>();
        if (!res.ok() || roll == nullptr) {
          if (plugins != nullptr) return answer_request(*plugins, r, "topic " + topic, 5000, res);
          return r.error(503, "unavailable", "the topic '" + topic + "' did not answer");
        }
        json list = json::array();
        if (roll->subscribers() != nullptr)
          for (const troupe::pubsub::Subscriber* s : *roll->subscribers()) list.push_back(subscriber_json(s));
        r.reply(200, {{"topic", topic}, {"subscribers", std::move(list)}});
      });
      return true;
    }
    plugin::host* plugins = nullptr;
    message m;
    if (!posted_message(r, p[3], plugins, m)) return true;
    const std::string report = r.var("report");
    if (report != "true") {
      if (!pubsub_->publish(topic, std::move(m)))
        r.error(503, "queue_full", "this node has too many messages waiting to go out to '" + topic +
                                       "' (pubsub.max_pending); try again later");
      else
        r.reply(202, {{"topic", topic}, {"published", true}});
      return true;
    }
    pubsub_->publish_reported(topic, std::move(m), timeout).get()->on_complete([r, topic, plugins](future_result res) {
      const auto* rep = res.reply.as<troupe::pubsub::Report>();
      if (res.status == future_status::failed && !res.reply)
        return r.error(503, "queue_full", "this node has too many messages waiting to go out to '" + topic +
                                              "' (pubsub.max_pending); try again later");
      if (rep != nullptr && rep->stale())
        return r.error(503, "not_sent", "the batch came to the topic after a later one (it was sent again "
                                        "while the topic moved) and was dropped; publish again");
      if (!res.ok() || rep == nullptr) return answer_request(*plugins, r, "topic " + topic, 5000, res);
      json failures = json::array();
      if (rep->failures() != nullptr)
        for (const troupe::pubsub::Failure* f : *rep->failures()) {
          json one = subscriber_json(f->subscriber());
          one["reason"] = failure_name(f->reason());
          failures.push_back(std::move(one));
        }
      r.reply(200, {{"topic", topic}, {"delivered", rep->delivered()}, {"failures", std::move(failures)}});
    });
    return true;
  }

  static const char* failure_name(troupe::pubsub::FailureReason f) {
    switch (f) {
      case troupe::pubsub::FailureReason::Stopped: return "stopped";
      case troupe::pubsub::FailureReason::NodeLost: return "node_lost";
      case troupe::pubsub::FailureReason::MailboxFull: return "mailbox_full";
      case troupe::pubsub::FailureReason::Unreachable: return "unreachable";
    }
    return "unknown";
  }

  static json subscriber_json(const troupe::pubsub::Subscriber* s) {
    if (s == nullptr) return json::object();
    if (s->kind() != nullptr && s->kind()->size() != 0)
      return {{"grain", s->kind()->str() + "/" + (s->identity() ? s->identity()->str() : std::string())}};
    return {{"actor", (s->address() ? s->address()->str() : std::string()) + "/" + (s->id() ? s->id()->str() : std::string())},
            {"generation", s->generation()}};
  }

  std::string said_by(const cluster::member_event& e) const {
    if (e.from.empty()) return "as it said itself";
    if (e.from == machine_->self().name) return "by this node";
    return "reported by " + e.from;
  }

  void report(const cluster::member_event& e) {
    using k = cluster::member_event::kind;
    if (e.what == k::updated) return;
    const level l = e.what == k::dead || e.what == k::suspect ? level::warning : level::info;
    std::string line = "cluster: " + e.who.id.name + " (" + e.who.id.address + ", generation " +
                       std::to_string(e.who.id.generation) + ", incarnation " + std::to_string(e.who.id.incarnation) +
                       ") " + cluster::to_string(e.what);
    if (e.what == k::suspect || e.what == k::dead) line += ", " + said_by(e);
    log(l, line);
  }

  static void collect(const cluster_counters& c, std::vector<prometheus::MetricFamily>& out) {
    using prometheus::MetricType;
    auto members = metric_family("troupe_cluster_members", "Members this node knows, by state", MetricType::Gauge);
    for (std::size_t s = 0; s < c.members.size(); ++s)
      add_metric(members, static_cast<double>(c.members[s].load(std::memory_order_relaxed)),
                 {{"state", cluster::to_string(static_cast<cluster::member_state>(s))}});
    out.push_back(std::move(members));
    auto probes = metric_family("troupe_cluster_probes_total",
                                "Probes of members, by how they ended: acknowledged, acknowledged only "
                                "through other members, or not at all",
                                MetricType::Counter);
    add_metric(probes, static_cast<double>(c.acked.load(std::memory_order_relaxed)), {{"result", "acked"}});
    add_metric(probes, static_cast<double>(c.acked_indirectly.load(std::memory_order_relaxed)),
               {{"result", "acked_indirectly"}});
    add_metric(probes, static_cast<double>(c.failed.load(std::memory_order_relaxed)), {{"result", "failed"}});
    out.push_back(std::move(probes));
    out.push_back(single_metric("troupe_cluster_indirect_probes_total", "Members asked to probe another",
                                MetricType::Counter, static_cast<double>(c.indirect.load(std::memory_order_relaxed))));
    out.push_back(single_metric("troupe_cluster_suspicions_total", "Members this node began to suspect",
                                MetricType::Counter, static_cast<double>(c.suspicions.load(std::memory_order_relaxed))));
    out.push_back(single_metric("troupe_cluster_refutations_total", "Suspicions of this node it refuted",
                                MetricType::Counter, static_cast<double>(c.refutations.load(std::memory_order_relaxed))));
    out.push_back(single_metric("troupe_cluster_dead_verdicts_total", "Members this node declared dead",
                                MetricType::Counter, static_cast<double>(c.dead_verdicts.load(std::memory_order_relaxed))));
    auto bytes = metric_family("troupe_cluster_gossip_bytes_total", "Bytes of membership traffic", MetricType::Counter);
    add_metric(bytes, static_cast<double>(c.bytes_in.load(std::memory_order_relaxed)), {{"direction", "in"}});
    add_metric(bytes, static_cast<double>(c.bytes_out.load(std::memory_order_relaxed)), {{"direction", "out"}});
    out.push_back(std::move(bytes));
    auto refused = metric_family("troupe_cluster_datagrams_refused_total",
                                 "Datagrams refused before they were read, by reason", MetricType::Counter);
    for (std::size_t v = 1; v < c.refused.size(); ++v)
      add_metric(refused, static_cast<double>(c.refused[v].load(std::memory_order_relaxed)),
                 {{"reason", remote::datagram_seal::to_string(static_cast<remote::datagram_seal::verdict>(v))}});
    out.push_back(std::move(refused));
    out.push_back(single_metric("troupe_cluster_health_score",
                                "Lifeguard's local health score: 0 is healthy; higher, this node probes more slowly",
                                MetricType::Gauge, static_cast<double>(c.health.load(std::memory_order_relaxed))));
  }

  node_context* ctx_ = nullptr;
  remote::transport* transport_ = nullptr;
  std::unique_ptr<remote::datagram_seal> seal_;
  std::vector<std::string> secrets_;
  std::vector<std::string> seeds_;
  std::unique_ptr<cluster::membership> machine_;
  std::unique_ptr<cluster::registry> registry_;  // with etcd
  std::unique_ptr<etcd_provider> etcd_;
  bool was_registered_ = false;
  std::unique_ptr<grain_service> grains_;
  std::unique_ptr<pubsub_service> pubsub_;
  std::uint64_t declared_dead_ = 0;
  static constexpr std::chrono::seconds default_grain_timeout{5};
  std::shared_ptr<cluster_counters> counters_ = std::make_shared<cluster_counters>();
  std::vector<std::uint8_t> plain_;
  topology topology_;
  std::unordered_set<std::string> up_addresses_;  // of members alive or suspect
  mutable std::mutex snapshot_mu_;
  std::shared_ptr<const std::vector<std::uint8_t>> snapshot_;
  static constexpr millis not_joined_after{5000};
  static constexpr std::size_t max_kinds_bytes = 600;
  millis started_{0};
  bool said_not_joined_ = false;
  std::set<std::string> gone_;  // addresses of the members dead or left, as of the last view
  bool settled_ = false;
  bool left_ = false;
  millis handover_timeout_{10000};
  timer_handle handover_timer_;
  uv_udp_t udp_{};
  uv_timer_t timer_{};
  bool udp_on_ = false, timer_on_ = false;
};

}  // namespace

}  // namespace troupe::node

troupe::node::module_def troupe_module_cluster() {
  using namespace troupe::node;
  return {"cluster", {&cluster_section(), &pubsub_section()}, {&grain_section()}, [] { return std::make_unique<cluster_module>(); }};
}
