#include "node/http_server.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <strings.h>

#include <microhttpd.h>

#include "node/log.hpp"

namespace troupe::node {

namespace {

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "host:port" or "[v6]:port" to a bound, listening socket; throws with the
// reason.
int listen_on(const std::string& listen) {
  const std::size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size())
    throw std::runtime_error("'" + listen + "' is not host:port");
  std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
      rc != 0)
    throw std::runtime_error(std::string("cannot resolve it: ") + ::gai_strerror(rc));
  std::string why = "no address";
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    const int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 1024) != 0) {
      why = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd < 0) throw std::runtime_error(why);
  return fd;
}

int bound_port(int fd) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port);
  return 0;
}

// The client's address without its port: what the per-address limit counts.
std::string address_of(const sockaddr* a) {
  char text[INET6_ADDRSTRLEN] = {};
  if (a == nullptr) return {};
  if (a->sa_family == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(a)->sin_addr, text, sizeof text);
  else if (a->sa_family == AF_INET6)
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr, text, sizeof text);
  return text;
}

void send_response(MHD_Connection* c, const http_response& r) {
  MHD_Response* resp = MHD_create_response_from_buffer(
      r.body.size(), const_cast<char*>(r.body.data()), MHD_RESPMEM_MUST_COPY);
  if (resp == nullptr) return;  // out of memory: MHD closes the connection
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r.content_type.c_str());
  for (const auto& [k, v] : r.headers) MHD_add_response_header(resp, k.c_str(), v.c_str());
  MHD_queue_response(c, static_cast<unsigned>(r.status), resp);
  MHD_destroy_response(resp);
}

http_response error_response(int status, const char* code, const std::string& message) {
  http_response r;
  r.status = status;
  r.body = std::string("{\"error\":{\"code\":\"") + code + "\",\"message\":\"" + message + "\"}}\n";
  return r;
}

// A body over the limit is read and dropped up to this much, so that the
// client sees the 413 rather than a reset; beyond, the connection closes.
std::size_t discard_limit(const http_limits& l) { return std::max<std::size_t>(4 * l.max_body, 1 << 20); }

http_response too_large(const http_limits& l) {
  return error_response(413, "too_large",
                        "the body is larger than " + std::to_string(l.max_body) + " bytes");
}

}  // namespace

std::string url_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string http_request::query(std::string_view name) const {
  for (const auto& [k, v] : query_)
    if (url_decode(k, true) == name) return url_decode(v, true);
  return {};
}

std::string http_request::header(std::string_view name) const {
  for (const auto& [k, v] : headers_)
    if (k.size() == name.size() && ::strncasecmp(k.data(), name.data(), k.size()) == 0) return v;
  return {};
}

void http_request::answer(http_response r) {
  std::lock_guard lock(mu_);
  if (answered_) return;
  answered_ = true;
  response_ = std::move(r);
  if (parked_) {
    parked_ = false;
    // MHD calls the access handler again, which sends the response.
    MHD_resume_connection(conn_);
  }
}

// MHD's callbacks, with the server as their closure.
struct http_server::callbacks {
  using holder = std::shared_ptr<http_request>;

  static MHD_Result accept(void* cls, const sockaddr* addr, socklen_t) {
    auto* s = static_cast<http_server*>(cls);
    if (s->stats_.open.load(std::memory_order_relaxed) >=
        static_cast<std::int64_t>(s->limits_.max_connections)) {
      s->stats_.refused_limit.fetch_add(1, std::memory_order_relaxed);
      return MHD_NO;
    }
    if (s->limits_.max_connections_per_address != 0) {
      const std::string who = address_of(addr);
      std::lock_guard lock(s->mu_);
      auto it = s->per_address_.find(who);
      if (it != s->per_address_.end() && it->second >= s->limits_.max_connections_per_address) {
        s->stats_.refused_per_address.fetch_add(1, std::memory_order_relaxed);
        return MHD_NO;
      }
    }
    return MHD_YES;
  }

  static void connection(void* cls, MHD_Connection* c, void** socket_context,
                         MHD_ConnectionNotificationCode what) {
    auto* s = static_cast<http_server*>(cls);
    if (what == MHD_CONNECTION_NOTIFY_STARTED) {
      s->stats_.open.fetch_add(1, std::memory_order_relaxed);
      s->stats_.accepted.fetch_add(1, std::memory_order_relaxed);
      if (s->limits_.max_connections_per_address != 0) {
        const MHD_ConnectionInfo* info =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        auto* who = new std::string(address_of(info != nullptr ? info->client_addr : nullptr));
        std::lock_guard lock(s->mu_);
        ++s->per_address_[*who];
        *socket_context = who;
      }
      return;
    }
    s->stats_.open.fetch_sub(1, std::memory_order_relaxed);
    if (auto* who = static_cast<std::string*>(*socket_context)) {
      {
        std::lock_guard lock(s->mu_);
        auto it = s->per_address_.find(*who);
        if (it != s->per_address_.end() && --it->second == 0) s->per_address_.erase(it);
      }
      delete who;
      *socket_context = nullptr;
    }
  }

  static MHD_Result collect(void* cls, MHD_ValueKind, const char* key, const char* value) {
    static_cast<std::vector<std::pair<std::string, std::string>>*>(cls)->emplace_back(
        key != nullptr ? key : "", value != nullptr ? value : "");
    return MHD_YES;
  }

  static MHD_Result access(void* cls, MHD_Connection* c, const char* url, const char* method,
                           const char*, const char* upload, std::size_t* upload_size,
                           void** request_context) {
    auto* s = static_cast<http_server*>(cls);
    auto* h = static_cast<holder*>(*request_context);
    if (h == nullptr) {
      // The request line and headers are in; the body (if any) follows.
      auto r = std::make_shared<http_request>();
      r->conn_ = c;
      r->server_ = s;
      r->method_ = method;
      r->path_ = url;
      MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, &collect, &r->query_);
      MHD_get_connection_values(c, MHD_HEADER_KIND, &collect, &r->headers_);
      const std::string length = r->header(MHD_HTTP_HEADER_CONTENT_LENGTH);
      if (!length.empty() && std::strtoull(length.c_str(), nullptr, 10) > s->limits_.max_body) {
        r->too_large_ = true;
        if (std::strtoull(length.c_str(), nullptr, 10) > discard_limit(s->limits_)) {
          // Too much even to read and drop: answer now; the connection closes.
          s->stats_.too_large.fetch_add(1, std::memory_order_relaxed);
          send_response(c, too_large(s->limits_));
          return MHD_YES;
        }
      }
      *request_context = new holder(std::move(r));
      return MHD_YES;
    }
    const holder& r = *h;
    if (*upload_size != 0) {
      r->received_ += *upload_size;
      if (r->received_ > s->limits_.max_body) {
        // Read and dropped, so that the client (still sending) sees the 413;
        // past the discard limit the connection closes.
        r->too_large_ = true;
        r->body_.clear();
        r->body_.shrink_to_fit();
        if (r->received_ > discard_limit(s->limits_)) {
          s->stats_.too_large.fetch_add(1, std::memory_order_relaxed);
          log(level::warning, s->name_ + ": a request body went on past " +
                                  std::to_string(discard_limit(s->limits_)) +
                                  " bytes; connection closed");
          return MHD_NO;
        }
      } else {
        r->body_.append(upload, *upload_size);
      }
      *upload_size = 0;
      return MHD_YES;
    }
    {
      std::lock_guard lock(r->mu_);
      if (r->sent_) return MHD_YES;
      if (r->answered_) {  // resumed after a late answer
        r->sent_ = true;
        send_response(c, r->response_);
        return MHD_YES;
      }
    }
    bool stopping;
    {
      std::lock_guard lock(s->mu_);
      stopping = s->stopping_;
    }
    if (r->too_large_) {
      s->stats_.too_large.fetch_add(1, std::memory_order_relaxed);
      r->answer(too_large(s->limits_));
    } else if (stopping) {
      r->answer(error_response(503, "stopping", "the node is stopping"));
    } else {
      try {
        s->handler_(r);
      } catch (const std::exception& e) {
        r->answer(error_response(500, "internal", "the handler failed"));
        log(level::error, s->name_ + ": " + r->method_ + " " + r->path_ + ": " + e.what());
      }
    }
    if (s->park(r)) return MHD_YES;
    std::lock_guard lock(r->mu_);
    r->sent_ = true;
    send_response(c, r->response_);
    return MHD_YES;
  }

  static void completed(void* cls, MHD_Connection*, void** request_context,
                        MHD_RequestTerminationCode) {
    auto* s = static_cast<http_server*>(cls);
    auto* h = static_cast<holder*>(*request_context);
    if (h == nullptr) return;
    {
      std::lock_guard lock(s->mu_);
      std::erase(s->parked_, *h);
    }
    {
      // Whatever answers later must not touch this connection again.
      std::lock_guard lock((*h)->mu_);
      (*h)->answered_ = true;
      (*h)->parked_ = false;
      (*h)->conn_ = nullptr;
    }
    delete h;
    *request_context = nullptr;
  }

  // Paths and query arguments stay as sent; the handler decodes them.
  static std::size_t keep_escapes(void*, MHD_Connection*, char* s) { return std::strlen(s); }

  static void logger(void* cls, const char* format, va_list args) {
    char text[512];
    std::vsnprintf(text, sizeof text, format, args);
    std::size_t n = std::strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' ')) text[--n] = '\0';
    log(level::debug, static_cast<http_server*>(cls)->name_ + ": " + text);
  }
};

bool http_server::park(const std::shared_ptr<http_request>& r) {
  std::lock_guard lock(mu_);
  std::lock_guard request_lock(r->mu_);
  if (r->answered_) return false;
  if (stopping_) {
    r->answered_ = true;
    r->response_ = error_response(503, "stopping", "the node is stopping");
    return false;
  }
  r->parked_ = true;
  MHD_suspend_connection(r->conn_);
  parked_.push_back(r);
  return true;
}

http_server::http_server(std::string name, const std::string& listen, http_limits limits,
                         http_handler handler)
    : name_(std::move(name)), limits_(limits), handler_(std::move(handler)) {
  int fd;
  try {
    fd = listen_on(listen);
  } catch (const std::exception& e) {
    throw std::runtime_error(name_ + ": cannot listen on " + listen + ": " + e.what());
  }
  port_ = bound_port(fd);
  unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
  MHD_OptionItem options[] = {
      {MHD_OPTION_LISTEN_SOCKET, fd, nullptr},
      // A little above ours: the accept policy refuses first, and counts.
      {MHD_OPTION_CONNECTION_LIMIT, static_cast<intptr_t>(limits_.max_connections + 16), nullptr},
      {MHD_OPTION_CONNECTION_TIMEOUT, static_cast<intptr_t>(limits_.idle_timeout_s), nullptr},
      {MHD_OPTION_CONNECTION_MEMORY_LIMIT, static_cast<intptr_t>(limits_.memory_per_connection),
       nullptr},
      {MHD_OPTION_NOTIFY_COMPLETED, reinterpret_cast<intptr_t>(&callbacks::completed), this},
      {MHD_OPTION_NOTIFY_CONNECTION, reinterpret_cast<intptr_t>(&callbacks::connection), this},
      {MHD_OPTION_UNESCAPE_CALLBACK, reinterpret_cast<intptr_t>(&callbacks::keep_escapes), this},
      {MHD_OPTION_EXTERNAL_LOGGER, reinterpret_cast<intptr_t>(&callbacks::logger), this},
      {MHD_OPTION_THREAD_POOL_SIZE, static_cast<intptr_t>(limits_.threads > 1 ? limits_.threads : 0),
       nullptr},
      {MHD_OPTION_END, 0, nullptr},
  };
  daemon_ = MHD_start_daemon(flags, 0, &callbacks::accept, this, &callbacks::access, this,
                             MHD_OPTION_ARRAY, options, MHD_OPTION_END);
  if (daemon_ == nullptr) {
    ::close(fd);
    throw std::runtime_error(name_ + ": the HTTP server on " + listen + " did not start");
  }
}

http_server::~http_server() {
  std::vector<std::shared_ptr<http_request>> parked;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    parked.swap(parked_);
  }
  // MHD must not stop with a connection suspended.
  for (auto& r : parked) r->answer(error_response(503, "stopping", "the node is stopping"));
  MHD_stop_daemon(daemon_);  // closes the listening socket too
}

}  // namespace troupe::node
