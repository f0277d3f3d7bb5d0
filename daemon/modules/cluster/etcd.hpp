// Membership kept in etcd (cluster.provider: etcd): this node's member
// record under a lease it keeps alive, and a watch of everybody's.
//
// etcd_http speaks etcd's v3 JSON API through libcurl's multi interface on
// the node's loop: its sockets are watched with uv_poll, its timeouts with
// a uv_timer; nothing blocks. etcd_provider is the protocol on top:
//   authenticate (with a user) -> grant a lease -> put the record ->
//   list the prefix at a revision -> watch from the next one,
// keep-alives four times per lease TTL, a watch that asks for progress
// notifications (one silent for watch_timeout is taken for dead and the
// prefix listed again), a listing again when the watch's revision was
// compacted, and a new lease and record whenever the old lease is gone.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <uv.h>

#include "actor/event_loop.hpp"
#include "cluster/registry.hpp"

namespace troupe::node {

struct etcd_config {
  std::vector<std::string> endpoints;  // http://host:port or https://host:port
  std::string prefix = "/troupe/";     // records go under <prefix>members/<name>
  std::chrono::milliseconds lease_ttl{5000};
  std::string username, password;      // the password as read from its file
  std::string ca_file, cert_file, key_file;
  std::chrono::milliseconds request_timeout{5000};
  std::chrono::milliseconds watch_timeout{std::chrono::minutes(15)};
};

class etcd_http {
 public:
  struct reply {
    long status = 0;       // HTTP status; 0 when none came
    std::string error;     // empty when it went well
    int code = 0;          // etcd's (gRPC) error code, when it sent one
    nlohmann::json body;   // a call's answer
    bool ok() const { return error.empty(); }
    // No answer at all (refused, timed out): another endpoint may do.
    bool unreachable() const { return !ok() && status == 0; }
  };
  using done_fn = std::function<void(const reply&)>;
  using message_fn = std::function<void(const nlohmann::json&)>;

  etcd_http(event_loop& loop, etcd_config c);
  ~etcd_http();
  etcd_http(const etcd_http&) = delete;
  etcd_http& operator=(const etcd_http&) = delete;

  // POSTs `body` to `path` (/v3/...); `done` runs once, on the loop.
  std::uint64_t call(const std::string& path, const nlohmann::json& body, done_fn done);
  // A streaming call (a watch): each message to `on_message`, then `done` once when it ends.
  std::uint64_t stream(const std::string& path, const nlohmann::json& body, message_fn on_message, done_fn done);
  // Ends a request; its callbacks are not called.
  void cancel(std::uint64_t id);
  // Another endpoint for the requests that start from now on.
  void next_endpoint();
  const std::string& endpoint() const { return cfg_.endpoints[endpoint_ % cfg_.endpoints.size()]; }
  void set_token(std::string token) { token_ = std::move(token); }
  void set_config(etcd_config c);
  const etcd_config& config() const { return cfg_; }
  // Ends everything; the object may be destroyed once the loop ran once more.
  void close();
  // Blocking: one call, for the last words of a node that stops.
  reply call_now(const std::string& path, const nlohmann::json& body, std::chrono::milliseconds timeout);

 private:
  struct request;
  struct watched_socket;
  std::uint64_t start(const std::string& path, const nlohmann::json& body, bool streaming, message_fn on_message,
                      done_fn done);
  void* easy_for(request& r, const std::string& path, const std::string& body, std::chrono::milliseconds timeout);
  void action(int fd, int flags);
  void drain();
  void finish(request& r, int curl_code);
  static reply error_reply(long status, const std::string& body, const std::string& curl_error);
  static int on_socket(void* easy, int fd, int what, void* self, void* socketp);
  static int on_timer(void* multi, long timeout_ms, void* self);

  event_loop& loop_;
  etcd_config cfg_;
  std::size_t endpoint_ = 0;
  std::string token_;
  void* multi_ = nullptr;
  uv_timer_t* timer_ = nullptr;
  std::uint64_t next_id_ = 1;
  std::map<std::uint64_t, std::unique_ptr<request>> requests_;
  bool closed_ = false;
};

// Counted for the metrics thread.
struct etcd_counters {
  enum op : std::size_t { authenticate, grant, put, keepalive, range, watch, revoke, op_count };
  static const char* name(std::size_t o);
  std::array<std::atomic<std::uint64_t>, op_count> errors{};
  std::atomic<bool> up{false};
  std::atomic<std::int64_t> ttl_ms{0};
  std::atomic<std::uint64_t> malformed{0};
};

class etcd_provider {
 public:
  struct hooks {
    std::function<void(const std::vector<cluster::record>&)> listed;  // the whole prefix
    std::function<void(const cluster::record&)> put;
    std::function<void(const std::string& name)> removed;
    std::function<void()> changed;  // up, registered or the lease changed
  };

  etcd_provider(event_loop& loop, etcd_config c, cluster::record self, hooks h);
  ~etcd_provider();

  void start();
  // Marks the record leaving, then revokes the lease (which deletes it);
  // `done` runs once either is through or failed.
  void leave(std::function<void()> done);
  void reload(etcd_config c);
  // Ends every request; revokes the lease at once when leave() did not.
  void close();

  bool up() const noexcept { return up_; }
  bool registered() const noexcept { return registered_; }
  bool listed() const noexcept { return listed_; }
  // What is wrong now (empty when nothing is), and since when.
  const std::string& problem() const noexcept { return problem_; }
  cluster::millis problem_since() const noexcept { return problem_since_; }
  // Until when (steady milliseconds) this node's lease surely holds: its
  // last keep-alive was sent before then minus the TTL etcd answered.
  cluster::millis lease_until() const noexcept { return lease_until_; }
  cluster::millis ttl() const noexcept { return ttl_; }
  std::shared_ptr<etcd_counters> counters() const { return counters_; }
  std::string key_of(const std::string& name) const { return cfg_.prefix + "members/" + name; }

 private:
  void connect();
  void authenticate();
  void grant();
  void register_self();
  void list();
  void watch();
  void keepalive();
  void schedule_keepalive();
  void on_watch_message(const nlohmann::json& m);
  // A step failed: count it, say so, try again after a backoff from `again`.
  void failed(etcd_counters::op o, const etcd_http::reply& r, void (etcd_provider::*again)());
  void reachable();
  void set_problem(std::string why);
  static cluster::millis now();

  event_loop& loop_;
  etcd_config cfg_;
  cluster::record self_;
  hooks hooks_;
  std::unique_ptr<etcd_http> http_;
  std::shared_ptr<etcd_counters> counters_ = std::make_shared<etcd_counters>();
  std::int64_t lease_ = 0;
  cluster::millis ttl_{0}, lease_until_{0};
  std::int64_t revision_ = 0;  // the last one the watch or a listing reached
  std::uint64_t watch_id_ = 0;
  cluster::millis watch_heard_{0};
  bool up_ = false, registered_ = false, listed_ = false, watching_ = false, connecting_ = false;
  bool leaving_ = false, revoked_ = false, closed_ = false;
  std::string problem_ = "connecting to etcd";
  cluster::millis problem_since_{0};
  std::chrono::milliseconds backoff_{250};
  timer_handle retry_, keepalive_timer_, watch_check_;
};

}  // namespace troupe::node
