#pragma once
// The admin HTTP API of a node (JSON over HTTP), on admin.listen:
//
//   GET    /healthz                   the process answers
//   GET    /readyz                    200 once ready, 503 while starting or stopping
//   GET    /v1/node                   name, cluster, version, addresses, counts
//   GET    /v1/members                the nodes this node knows of
//   GET    /v1/plugins                loaded plugins and their kinds
//   GET    /v1/kinds                  kinds and the message types plugins declare
//   GET    /v1/actors[?kind=K&limit=N]  live actors with kind and mailbox depth
//   POST   /v1/actors                 {"kind": K, "name": N?, "node": ADDR?} spawns
//                                      (on the node at ADDR when given)
//   GET    /v1/peers                  the nodes this node is connected to
//   DELETE /v1/actors/{id}            stops (waits up to 5 s for the stop)
//   POST   /v1/actors/{id}/send       {"type": T, "message": {...}}
//   POST   /v1/actors/{id}/request    {"type": T, "message": {...}, "timeout_ms": N?}
//
// Errors are {"error": {"code": "...", "message": "..."}} with a fitting
// status. With a token, every /v1 call needs "Authorization: Bearer TOKEN";
// the probes stay open.
//
// The server is event-driven (http_server): nothing a request waits for (a
// reply, an actor stopping, a remote spawn) holds a thread, so the probes
// answer at once whatever the other clients do.
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "node/http_server.hpp"

namespace troupe {
class actor_system;
struct future_result;
enum class spawn_error : std::uint8_t;
namespace plugin {
class host;
}
}  // namespace troupe

namespace troupe::node {

// Requests answered, by status class (1xx..5xx), read by metrics.
struct admin_stats {
  std::array<std::atomic<std::uint64_t>, 6> by_class{};
  const http_stats* connections = nullptr;  // the server's; null until it runs
};

// Why a spawn was refused, in words for an HTTP client, a peer or the log.
std::string spawn_refusal(spawn_error e, const std::string& kind, const std::string& name);

class admin {
 public:
  enum class state { starting, ready, stopping };

  // Binds `listen` ("127.0.0.1:7780"); throws std::runtime_error naming the
  // address if it cannot. An empty token leaves the API open.
  admin(const std::string& listen, std::string token, http_limits limits, actor_system& sys,
        std::shared_ptr<plugin::host> plugins);
  ~admin();
  admin(const admin&) = delete;
  admin& operator=(const admin&) = delete;

  int port() const;
  const admin_stats& stats() const noexcept { return *stats_; }

  void set_state(state s) noexcept { state_.store(s, std::memory_order_release); }
  // What /v1/node and /v1/members show besides live counts; set at start
  // and on reload, from the loop thread.
  void set_node_info(nlohmann::json node, nlohmann::json members);
  // Replaces the bearer token (reload); empty opens the API.
  void set_token(std::string token);

  // What the node-to-node transport offers the API (when the node listens).
  struct remote_hooks {
    // GET /v1/peers: {"peers": [...]}.
    std::function<nlohmann::json()> peers;
    // Spawns `kind` on the node at `address`, then calls `done` (from any
    // thread) with 0 and the PID text, or a troupe_status code and the reason.
    std::function<void(const std::string& address, const std::string& kind,
                       const std::string& name,
                       std::function<void(int status, std::string pid_or_error)> done)>
        spawn;
  };
  void set_remote(remote_hooks hooks);
  // Why the node is unhealthy (empty: it is), asked by /healthz from the
  // server's thread; it must not wait on the loop or the workers.
  void set_health(std::function<std::string()> why_unhealthy);

 private:
  struct request;
  void on_request(const std::shared_ptr<http_request>& http);
  void handle(const request& r);
  void route_actor(const request& r, const std::string& id, const std::string& action);
  void list_actors(const request& r);
  void spawn(const request& r);
  void stop(const request& r, const std::string& id);
  void send(const request& r, const std::string& id, bool wait_reply);
  static void answer_reply(plugin::host& plugins, const request& r, const std::string& id,
                           long long timeout_ms, const future_result& res);

  actor_system& sys_;
  std::shared_ptr<plugin::host> plugins_;
  std::atomic<state> state_{state::starting};
  std::mutex info_mu_;  // guards token_, node_info_, members_, remote_
  std::string token_;
  nlohmann::json node_info_;
  nlohmann::json members_;
  remote_hooks remote_;
  std::function<std::string()> health_;
  std::shared_ptr<admin_stats> stats_ = std::make_shared<admin_stats>();
  std::unique_ptr<http_server> server_;  // last: stopped first
};

}  // namespace troupe::node
