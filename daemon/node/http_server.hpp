#pragma once
// The HTTP/1.1 server behind the node's own endpoints (the admin API and
// /metrics), on GNU libmicrohttpd. Event-driven: a thread or two and epoll
// serve every connection, so an idle keep-alive client or a slow sender
// costs a descriptor and a little memory, never a thread, and cannot hold
// up anyone else.
//
// Bounded everywhere: connections in all and per client address, the
// header block of a request (memory_per_connection), the body (max_body),
// and an inactivity timeout that closes a connection which sends nothing
// (a half-open one, or one that stopped in the middle of its headers).
//
// A handler answers at once (request::answer inside the call) or later,
// from any thread, keeping the request's shared_ptr: the connection is then
// parked and the server goes on with the others.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct MHD_Daemon;
struct MHD_Connection;

namespace troupe::node {

struct http_response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// Counters of one server, read by metrics.
struct http_stats {
  std::atomic<std::int64_t> open{0};                  // connections now
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> refused_limit{0};        // the server's connection limit
  std::atomic<std::uint64_t> refused_per_address{0};  // one address's limit
  std::atomic<std::uint64_t> too_large{0};            // bodies over max_body (413)
};

class http_server;

// Percent-decoding of a path segment or (plus_is_space) a query value.
std::string url_decode(std::string_view s, bool plus_is_space);

class http_request {
 public:
  const std::string& method() const noexcept { return method_; }
  // The path as sent: percent-escapes are left for the handler, which
  // decodes each segment on its own (an id may hold "/" as %2F).
  const std::string& path() const noexcept { return path_; }
  const std::string& body() const noexcept { return body_; }
  // A query argument, decoded; empty when absent.
  std::string query(std::string_view name) const;
  // A request header (names compare without case); empty when absent.
  std::string header(std::string_view name) const;

  // Answers once, from any thread; later calls, and answers after the
  // client or the server went away, are dropped.
  void answer(http_response r);

 private:
  friend class http_server;
  std::mutex mu_;
  MHD_Connection* conn_ = nullptr;
  http_server* server_ = nullptr;
  bool answered_ = false;
  bool parked_ = false;
  bool sent_ = false;
  bool too_large_ = false;  // the body is dropped; the answer is 413
  std::size_t received_ = 0;
  http_response response_;

  std::string method_, path_, body_;
  std::vector<std::pair<std::string, std::string>> query_, headers_;
};

using http_handler = std::function<void(const std::shared_ptr<http_request>&)>;

struct http_limits {
  unsigned max_connections = 4096;
  unsigned max_connections_per_address = 0;  // 0: no limit by address
  unsigned idle_timeout_s = 30;              // nothing received for this long closes
  std::size_t max_body = 1 << 20;            // larger bodies answer 413
  std::size_t memory_per_connection = 32 * 1024;  // bounds the request line and headers
  unsigned threads = 1;
};

class http_server {
 public:
  // Binds `listen` ("127.0.0.1:7780", "[::1]:0", "0.0.0.0:7780"); throws
  // std::runtime_error naming the address if it cannot. `name` prefixes
  // what the server logs ("admin", "metrics").
  http_server(std::string name, const std::string& listen, http_limits limits, http_handler handler);
  // Answers every parked request 503 and closes every connection.
  ~http_server();
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  int port() const noexcept { return port_; }
  const http_stats& stats() const noexcept { return stats_; }

 private:
  struct callbacks;
  friend struct callbacks;
  friend class http_request;

  // Parks `r` unless the server is stopping; false means answer it now.
  bool park(const std::shared_ptr<http_request>& r);

  std::string name_;
  http_limits limits_;
  http_handler handler_;
  http_stats stats_;
  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;

  std::mutex mu_;  // guards what follows
  bool stopping_ = false;
  std::vector<std::shared_ptr<http_request>> parked_;
  std::map<std::string, unsigned> per_address_;
};

}  // namespace troupe::node
