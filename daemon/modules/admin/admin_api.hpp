#pragma once
// The admin HTTP API of a node (JSON over HTTP), on admin.listen:
//
//   GET    /healthz                   the process answers
//   GET    /readyz                    200 once ready, 503 while starting or stopping
//   GET    /v1/node                   name, cluster, version, addresses, counts
//   GET    /v1/members                the nodes this node knows of
//   GET    /v1/actors[?kind=K&limit=N]  live actors with kind and mailbox depth
//   POST   /v1/actors                 {"kind": K, "name": N?, "node": ADDR?} spawns
//                                      (on the node at ADDR when given)
//   GET    /v1/actors/{id}            one actor
//   DELETE /v1/actors/{id}            stops (waits up to 5 s for the stop)
//   POST   /v1/actors/{id}/send       {"type": T, "message": {...}}
//   POST   /v1/actors/{id}/request    {"type": T, "message": {...}, "timeout_ms": N?}
//
// and whatever routes modules add (/v1/plugins, /v1/kinds, /v1/peers, ...),
// which are tried first. Errors are {"error": {"code": "...", "message":
// "..."}} with a fitting status. With a token, every /v1 call needs
// "Authorization: Bearer TOKEN"; the probes stay open.
//
// The server is event-driven (http_server): nothing a request waits for (a
// reply, an actor stopping, a remote spawn) holds a thread, so the probes
// answer at once whatever the other clients do.
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "actor/process.hpp"
#include "node/http_server.hpp"
#include "node/module.hpp"

namespace troupe {
struct future_result;
namespace plugin {
class host;
}
namespace remote {
class transport;
}
}  // namespace troupe

namespace troupe::node {

// Answers `r` with the outcome of a request to `what` (an actor's id, a
// grain's kind/identity): the reply as JSON, or the error that fits.
void answer_request(plugin::host& plugins, const admin_request& r, const std::string& what, long long timeout_ms,
                    const future_result& res);

class admin_api {
 public:
  // Binds `listen` ("127.0.0.1:7780"); throws std::runtime_error naming the
  // address if it cannot. An empty token leaves the API open.
  admin_api(const std::string& listen, std::string token, http_limits limits, node_context& ctx);
  ~admin_api();
  admin_api(const admin_api&) = delete;
  admin_api& operator=(const admin_api&) = delete;

  int port() const;
  const admin_stats& stats() const noexcept { return *stats_; }

  // Replaces the bearer token (reload); empty opens the API.
  void set_token(std::string token);

 private:
  void on_request(const std::shared_ptr<http_request>& http);
  void handle(const admin_request& r);
  void route_actor(const admin_request& r, const std::string& id, const std::string& action);
  void list_actors(const admin_request& r);
  void spawn(const admin_request& r);
  troupe::pid actor_at(const std::string& id);
  void unknown_actor(const admin_request& r, const std::string& id) const;
  void stop(const admin_request& r, const std::string& id);
  void send(const admin_request& r, const std::string& id, bool wait_reply);

  node_context& ctx_;
  actor_system& sys_;
  plugin::host* plugins_;        // null: no JSON codec (no plugins module)
  remote::transport* remote_;    // null: no node-to-node transport
  std::mutex info_mu_;  // guards token_
  std::string token_;
  std::shared_ptr<admin_stats> stats_ = std::make_shared<admin_stats>();
  std::unique_ptr<http_server> server_;  // last: stopped first
};

}  // namespace troupe::node
