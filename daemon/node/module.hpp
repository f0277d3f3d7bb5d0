#pragma once
// The seam between the node and its modules. The node owns the event loop,
// the actor system, the state directory, signals and health; everything
// else it does (loading plugins, talking to other nodes, the admin API,
// the metrics endpoint, ...) is a module: a folder under daemon/modules/
// whose name is in the list of daemon/modules/meson.build.
//
// A module owns its configuration sections (described once with
// settings.hpp), starts in the order of that list and stops in the
// reverse order, applies its live keys on reload, and contributes routes
// to the admin API, metrics to the scrape, settings to the actors of each
// kind, and facts to /v1/node. docs/architecture.md walks through adding one.
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <typeindex>
#include <map>
#include <vector>

#include <nlohmann/json.hpp>
#include <prometheus/metric_family.h>

#include "node/config.hpp"
#include "node/http_server.hpp"

namespace troupe {
class actor_system;
class event_loop;
struct props;
struct system_config;
namespace middleware {
class latency_histogram;
}
}  // namespace troupe

namespace troupe::node {

class state_dir;

// Exit statuses (sysexits.h): a configuration that cannot be, and a bug.
constexpr int ex_config = 78;
constexpr int ex_software = 70;

// One admin API request, as the routes see it: copied into whatever
// answers it later (a reply, a stop, a remote spawn), so it holds only
// shared state.
struct admin_request {
  std::shared_ptr<http_request> http;
  std::shared_ptr<struct admin_stats> stats;  // outlives the admin for late answers
  std::string method;
  std::vector<std::string> path;  // decoded segments: {"v1", "actors", "a%2Fb" decoded}

  const std::string& body() const { return http->body(); }
  std::string var(const char* name) const { return http->query(name); }
  bool get() const { return method == "GET" || method == "HEAD"; }
  // Answers with `body_json` (from any thread; only the first answer counts).
  void reply(int status, const nlohmann::json& body_json) const;
  // {"error": {"code": ..., "message": ...}}
  void error(int status, const std::string& code, const std::string& message) const;
  // The body as a JSON object; answers 400 and returns false otherwise.
  bool object(nlohmann::json& out) const;
};

// Requests answered, by status class (1xx..5xx), read by metrics.
struct admin_stats {
  std::array<std::atomic<std::uint64_t>, 6> by_class{};
  const http_stats* connections = nullptr;  // the server's; null until it runs
};

// A route answers the requests it knows and returns true; false lets the
// next one try. Routes run on the admin server's thread: they must not wait.
using admin_route = std::function<bool(const admin_request&)>;

// What modules add to /metrics, read at scrape time (from the metrics
// server's thread): relaxed atomics, never a lock held by the hot path.
using metric_source = std::function<void(std::vector<prometheus::MetricFamily>&)>;

// Helpers for metric sources.
prometheus::MetricFamily metric_family(std::string name, std::string help, prometheus::MetricType type);
void add_metric(prometheus::MetricFamily& f, double value,
                std::vector<prometheus::ClientMetric::Label> labels = {});
prometheus::MetricFamily single_metric(std::string name, std::string help,
                                       prometheus::MetricType type, double value);
// A histogram from per-bucket counts (not cumulative) and their upper
// bounds; the last count is over every bound (+Inf): counts.size() ==
// bounds.size() + 1.
prometheus::ClientMetric histogram_metric(const std::vector<std::uint64_t>& counts, const std::vector<double>& bounds,
                                          double sum, std::vector<prometheus::ClientMetric::Label> labels = {});
// A runtime latency histogram, in seconds.
prometheus::ClientMetric seconds_histogram(const middleware::latency_histogram& h,
                                           std::vector<prometheus::ClientMetric::Label> labels = {});

// What the node gives its modules. Lives as long as the node.
class node_context {
 public:
  enum class phase { starting, ready, stopping };

  node_context(event_loop& loop, const state_dir& state) : loop_(loop), state_(state) {}

  event_loop& loop() noexcept { return loop_; }
  // From start() on (null in prepare()).
  actor_system& system() noexcept { return *system_; }
  const state_dir& state() const noexcept { return state_; }
  // This start of the node: higher than any before it (node/generation.hpp).
  // From prepare() on.
  std::uint64_t generation() const noexcept { return generation_; }
  // The running configuration: restart-only keys keep their values on
  // reload. On the loop thread only (a reload replaces it); a module copies
  // what other threads need.
  const config& settings() const noexcept { return *config_; }
  phase current_phase() const noexcept { return phase_.load(std::memory_order_acquire); }
  bool stopping() const noexcept { return current_phase() == phase::stopping; }

  // Services modules offer one another (a module's own type, found by
  // those that start after it); null when no module offers it.
  template <class T>
  void offer(T* service) {
    services_[std::type_index(typeid(T))] = service;
  }
  template <class T>
  T* find() const {
    const auto it = services_.find(std::type_index(typeid(T)));
    return it == services_.end() ? nullptr : static_cast<T*>(it->second);
  }

  void add_route(admin_route r);
  // A check /readyz makes once the node has started: why it is not ready
  // (empty: it is). From the admin server's thread; it must not wait.
  void add_readiness(std::function<std::string()> why_not);
  std::string not_ready() const;
  // What a ready node does without (a coordination service out of reach):
  // /readyz lists it as detail and stays ready. Same rules as add_readiness.
  void add_readiness_detail(std::function<std::string()> what);
  std::vector<std::string> readiness_details() const;
  void add_metrics(metric_source s);
  // The admin server runs the routes in the order they were added.
  bool route(const admin_request& r) const;
  void collect(std::vector<prometheus::MetricFamily>& out) const;

  // Why the node is unhealthy, or empty (from any thread; never waits).
  std::function<std::string()> health;
  // Asks every module for the settings of `kind`'s actors (module::decorate_kind).
  std::function<void(const std::string& kind, props& p)> decorate_kind;
  // What /v1/node shows but for live counts: the node's facts and every
  // module's (module::describe), gathered at start and on reload. Any thread.
  nlohmann::json node_info() const {
    std::lock_guard lock(mu_);
    return node_info_;
  }

 private:
  friend class node_core;
  event_loop& loop_;
  const state_dir& state_;
  std::uint64_t generation_ = 0;
  actor_system* system_ = nullptr;
  const config* config_ = nullptr;
  std::atomic<phase> phase_{phase::starting};
  std::map<std::type_index, void*> services_;
  // Guards what follows. The lists are copied on write: a request or a
  // scrape takes one under the lock and runs it without.
  mutable std::mutex mu_;
  std::shared_ptr<const std::vector<admin_route>> routes_;
  std::shared_ptr<const std::vector<metric_source>> metrics_;
  std::shared_ptr<const std::vector<std::function<std::string()>>> readiness_, details_;
  nlohmann::json node_info_;
};

class module {
 public:
  virtual ~module() = default;
  // Before the actor system exists: the transport binds here, since the
  // address it gets is the first half of every PID. False stops the start
  // with exit status 1 (the module logged why).
  virtual bool prepare(node_context&, system_config&) { return true; }
  // Once the actor system runs, in list order. A non-zero exit status stops
  // the start (the module logged why): 78 for what the configuration asked
  // that cannot be (a required plugin that does not load), 1 otherwise.
  virtual int start(node_context&) = 0;
  // SIGTERM or SIGINT, on the loop thread, before anything stops: hand
  // what this node is responsible for to others while everything still
  // runs (the cluster moves its grains). `done` (any thread, once) lets the
  // stop go on; the module bounds how long that takes.
  virtual void hand_over(std::function<void()> done) { done(); }
  // Then, on the loop thread, in reverse order: take no new work from
  // outside. Actors are stopped after every module did this.
  virtual void stop_taking_work() {}
  // Every actor has stopped (on the thread that stopped them).
  virtual void actors_stopped() {}
  // The loop is about to end (on its thread, in reverse order): close the
  // module's own libuv handles. Also called when a start fails.
  virtual void loop_closing() {}
  // The loop has ended, in reverse order: let go of what uses the actor
  // system, which is destroyed next. Modules are destroyed after it.
  virtual void close() {}
  // SIGHUP with a valid file: `next` is the new configuration, in which
  // restart-only keys already hold their running values. On the loop thread.
  virtual void reload(const config& /*next*/) {}
  // Settings of `kind`'s actors before one is spawned (its mailbox, its
  // timing): called for every module, in list order.
  virtual void decorate_kind(const std::string& /*kind*/, props& /*p*/) {}
  // Adds what it knows to /v1/node (on the loop thread, at start and reload).
  virtual void describe(nlohmann::json& /*node*/) const {}
  // A part of the status systemd shows ("3 plugins, 5 kinds"), or empty.
  virtual std::string status() const { return {}; }
};

// A module as the node's list knows it.
struct module_def {
  std::string name;
  std::vector<const section_base*> sections;   // top-level keys it owns
  std::vector<const section_base*> kind_keys;  // keys under kinds.<kind>
  std::function<std::unique_ptr<module>()> make;
  // What a start would refuse beyond the file itself (a required file
  // missing...), for --check-config: one message per problem. May be empty.
  std::function<std::vector<std::string>(const config&)> preflight = nullptr;
};

// Every module, in start order (daemon/modules/meson.build's list).
const std::vector<module_def>& modules();
// The node's sections and every module's: what a configuration file may hold.
const schema& node_schema();

}  // namespace troupe::node
