#include "modules/cluster/etcd.hpp"

#include <algorithm>
#include <cstring>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "node/log.hpp"

namespace troupe::node {

namespace {

using nlohmann::json;

// A reply (or a stream's pending line) larger than this is refused: a
// member list is small, and one peer must not make the node buffer without end.
constexpr std::size_t max_reply_bytes = 64u << 20;

std::string base64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(std::max(n, 0)));
  return out;
}

bool unbase64(const std::string& in, std::string& out) {
  if (in.size() % 4 != 0) return false;
  out.assign(3 * in.size() / 4, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return false;
  std::size_t pad = 0;
  if (!in.empty() && in.back() == '=') ++pad;
  if (in.size() > 1 && in[in.size() - 2] == '=') ++pad;
  out.resize(static_cast<std::size_t>(n) - pad);
  return true;
}

// The key just past every key that starts with `prefix` (etcd's range_end).
std::string prefix_end(std::string prefix) {
  while (!prefix.empty()) {
    if (static_cast<unsigned char>(prefix.back()) < 0xff) {
      prefix.back() = static_cast<char>(prefix.back() + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');
}

// int64 fields come as strings in etcd's JSON (proto3's mapping).
std::int64_t int64_of(const json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end()) return 0;
  if (it->is_string()) {
    try {
      return std::stoll(it->get<std::string>());
    } catch (...) {
      return 0;
    }
  }
  return it->is_number_integer() ? it->get<std::int64_t>() : 0;
}

struct curl_global {
  curl_global() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

}  // namespace

// ---------------------------------------------------------------- etcd_http

struct etcd_http::request {
  std::uint64_t id = 0;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  bool streaming = false;
  bool cancelled = false;
  std::string in;
  std::size_t scanned = 0;  // a stream's bytes delivered as messages
  message_fn on_message;
  done_fn done;
  char errbuf[CURL_ERROR_SIZE] = {};
  ~request() {
    if (headers != nullptr) curl_slist_free_all(headers);
  }
};

struct etcd_http::watched_socket {
  uv_poll_t poll;
  curl_socket_t fd;
  etcd_http* owner;
};

etcd_http::etcd_http(event_loop& loop, etcd_config c) : loop_(loop), cfg_(std::move(c)) {
  static curl_global once;
  multi_ = curl_multi_init();
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &etcd_http::on_socket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &etcd_http::on_timer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  timer_ = new uv_timer_t;
  uv_timer_init(loop_.uv(), timer_);
  timer_->data = this;
}

etcd_http::~etcd_http() { close(); }

void etcd_http::close() {
  if (closed_) return;
  closed_ = true;
  for (auto& [id, r] : requests_) {
    curl_multi_remove_handle(multi_, r->easy);
    curl_easy_cleanup(r->easy);
  }
  requests_.clear();
  curl_multi_cleanup(multi_);  // closes the sockets' polls (on_socket, CURL_POLL_REMOVE)
  multi_ = nullptr;
  uv_timer_stop(timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  timer_ = nullptr;
}

void etcd_http::set_config(etcd_config c) {
  cfg_ = std::move(c);
  endpoint_ = 0;
}

void etcd_http::next_endpoint() { ++endpoint_; }

std::uint64_t etcd_http::call(const std::string& path, const json& body, done_fn done) {
  return start(path, body, false, nullptr, std::move(done));
}

std::uint64_t etcd_http::stream(const std::string& path, const json& body, message_fn on_message, done_fn done) {
  return start(path, body, true, std::move(on_message), std::move(done));
}

void* etcd_http::easy_for(request& r, const std::string& path, const std::string& body,
                          std::chrono::milliseconds timeout) {
  CURL* e = curl_easy_init();
  const std::string url = endpoint() + path;
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body.c_str());
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::min<std::int64_t>(timeout.count(), 3000)));
  if (timeout.count() > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 10L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 5L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  if (!cfg_.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, cfg_.ca_file.c_str());
  if (!cfg_.cert_file.empty()) curl_easy_setopt(e, CURLOPT_SSLCERT, cfg_.cert_file.c_str());
  if (!cfg_.key_file.empty()) curl_easy_setopt(e, CURLOPT_SSLKEY, cfg_.key_file.c_str());
  r.headers = curl_slist_append(r.headers, "Content-Type: application/json");
  if (!token_.empty()) r.headers = curl_slist_append(r.headers, ("Authorization: " + token_).c_str());
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r.headers);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r.errbuf);
  curl_easy_setopt(e, CURLOPT_PRIVATE, &r);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &r);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, +[](char* data, std::size_t, std::size_t n, void* p) -> std::size_t {
    auto* req = static_cast<request*>(p);
    if (req->cancelled || req->in.size() - req->scanned + n > max_reply_bytes) return 0;
    req->in.append(data, n);
    return n;
  });
  return e;
}

std::uint64_t etcd_http::start(const std::string& path, const json& body, bool streaming, message_fn on_message,
                               done_fn done) {
  if (closed_) return 0;
  auto r = std::make_unique<request>();
  r->id = next_id_++;
  r->streaming = streaming;
  r->on_message = std::move(on_message);
  r->done = std::move(done);
  r->easy = easy_for(*r, path, body.dump(), streaming ? std::chrono::milliseconds(0) : cfg_.request_timeout);
  const std::uint64_t id = r->id;
  CURL* easy = r->easy;
  requests_.emplace(id, std::move(r));
  curl_multi_add_handle(multi_, easy);
  return id;
}

void etcd_http::cancel(std::uint64_t id) {
  const auto it = requests_.find(id);
  if (it == requests_.end()) return;
  curl_multi_remove_handle(multi_, it->second->easy);
  curl_easy_cleanup(it->second->easy);
  requests_.erase(it);
}

int etcd_http::on_socket(void*, int fd, int what, void* self, void* socketp) {
  auto* h = static_cast<etcd_http*>(self);
  auto* w = static_cast<watched_socket*>(socketp);
  if (what == CURL_POLL_REMOVE) {
    if (w != nullptr) {
      uv_poll_stop(&w->poll);
      uv_close(reinterpret_cast<uv_handle_t*>(&w->poll),
               [](uv_handle_t* p) { delete reinterpret_cast<watched_socket*>(p); });
      if (h->multi_ != nullptr) curl_multi_assign(h->multi_, fd, nullptr);
    }
    return 0;
  }
  if (w == nullptr) {
    w = new watched_socket;
    w->fd = fd;
    w->owner = h;
    if (uv_poll_init_socket(h->loop_.uv(), &w->poll, fd) != 0) {
      delete w;
      return -1;
    }
    w->poll.data = w;
    curl_multi_assign(h->multi_, fd, w);
  }
  int events = 0;
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  uv_poll_start(&w->poll, events, [](uv_poll_t* p, int status, int ev) {
    auto* ws = static_cast<watched_socket*>(p->data);
    int flags = 0;
    if (status < 0) flags |= CURL_CSELECT_ERR;
    if (ev & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (ev & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    ws->owner->action(ws->fd, flags);
  });
  return 0;
}

int etcd_http::on_timer(void*, long timeout_ms, void* self) {
  auto* h = static_cast<etcd_http*>(self);
  if (h->timer_ == nullptr) return 0;
  if (timeout_ms < 0) {
    uv_timer_stop(h->timer_);
    return 0;
  }
  uv_timer_start(h->timer_, [](uv_timer_t* t) {
    static_cast<etcd_http*>(t->data)->action(CURL_SOCKET_TIMEOUT, 0);
  }, static_cast<std::uint64_t>(timeout_ms), 0);
  return 0;
}

void etcd_http::action(int fd, int flags) {
  if (closed_) return;
  int running = 0;
  curl_multi_socket_action(multi_, fd, flags, &running);
  drain();
}

// Out of libcurl's callbacks: hands streams' whole messages and finished
// requests to their owners, who may start or cancel requests meanwhile.
void etcd_http::drain() {
  std::vector<std::uint64_t> streams;
  for (const auto& [id, r] : requests_)
    if (r->streaming && r->in.size() > r->scanned) streams.push_back(id);
  for (std::uint64_t id : streams) {
    for (;;) {
      auto it = requests_.find(id);
      if (it == requests_.end() || closed_) break;
      request& r = *it->second;
      const std::size_t nl = r.in.find('\n', r.scanned);
      if (nl == std::string::npos) break;
      const std::string line = r.in.substr(r.scanned, nl - r.scanned);
      r.scanned = nl + 1;
      if (r.scanned > 65536) {
        r.in.erase(0, r.scanned);
        r.scanned = 0;
      }
      json m = json::parse(line, nullptr, false);
      if (m.is_discarded()) continue;
      message_fn fn = r.on_message;  // the owner may cancel r while it runs
      if (fn) fn(m);
    }
  }
  CURLMsg* msg = nullptr;
  int left = 0;
  while (!closed_ && (msg = curl_multi_info_read(multi_, &left)) != nullptr) {
    if (msg->msg != CURLMSG_DONE) continue;
    request* r = nullptr;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &r);
    if (r == nullptr) continue;
    finish(*r, msg->data.result);
  }
}

etcd_http::reply etcd_http::error_reply(long status, const std::string& body, const std::string& curl_error) {
  reply out;
  out.status = status;
  if (!curl_error.empty()) {
    out.error = curl_error;
    return out;
  }
  json j = json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object()) {
    if (j.contains("result") && j["result"].is_object()) j = j["result"];
    if (auto it = j.find("error"); it != j.end()) {
      const json& e = *it;
      out.error = e.is_string() ? e.get<std::string>() : e.is_object() ? e.value("message", e.dump()) : e.dump();
      out.code = e.is_object() ? e.value("grpc_code", e.value("code", 0)) : j.value("code", 0);
      return out;
    }
    out.body = std::move(j);
  }
  if (status >= 400 || out.body.is_null()) out.error = "HTTP " + std::to_string(status) + ": " + body.substr(0, 200);
  return out;
}

void etcd_http::finish(request& r, int curl_code) {
  long status = 0;
  curl_easy_getinfo(r.easy, CURLINFO_RESPONSE_CODE, &status);
  std::string curl_error;
  if (curl_code != CURLE_OK)
    curl_error = r.errbuf[0] != '\0' ? r.errbuf : curl_easy_strerror(static_cast<CURLcode>(curl_code));
  reply out;
  if (r.streaming) {
    out.status = status;
    // A stream that ends at all has ended badly: etcd never closes a watch.
    out.error = !curl_error.empty() ? curl_error : status >= 400 ? error_reply(status, r.in.substr(r.scanned), "").error
                                                                 : "the server ended the stream";
    if (curl_code != CURLE_OK) out.status = 0;
  } else {
    out = error_reply(curl_code == CURLE_OK ? status : 0, r.in, curl_error);
  }
  done_fn done = std::move(r.done);
  cancel(r.id);
  if (done) done(out);
}

etcd_http::reply etcd_http::call_now(const std::string& path, const json& body, std::chrono::milliseconds timeout) {
  request r;
  CURL* e = static_cast<CURL*>(easy_for(r, path, body.dump(), timeout));
  r.easy = e;
  const CURLcode rc = curl_easy_perform(e);
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  reply out = error_reply(rc == CURLE_OK ? status : 0, r.in, rc == CURLE_OK ? "" : curl_easy_strerror(rc));
  curl_easy_cleanup(e);
  return out;
}

// ---------------------------------------------------------------- etcd_provider

const char* etcd_counters::name(std::size_t o) {
  static const char* const names[] = {"authenticate", "grant", "put", "keepalive", "range", "watch", "revoke"};
  return o < op_count ? names[o] : "unknown";
}

etcd_provider::etcd_provider(event_loop& loop, etcd_config c, cluster::record self, hooks h)
    : loop_(loop), cfg_(std::move(c)), self_(std::move(self)), hooks_(std::move(h)) {
  http_ = std::make_unique<etcd_http>(loop_, cfg_);
}

etcd_provider::~etcd_provider() { close(); }

cluster::millis etcd_provider::now() {
  return std::chrono::duration_cast<cluster::millis>(std::chrono::steady_clock::now().time_since_epoch());
}

void etcd_provider::start() {
  problem_since_ = now();
  log(level::info, "cluster: membership from etcd at " + http_->endpoint() + " (prefix " + cfg_.prefix +
                       ", lease TTL asked " + std::to_string(cfg_.lease_ttl.count()) + " ms)");
  connect();
}

void etcd_provider::connect() {
  if (closed_ || leaving_) return;
  connecting_ = true;
  if (!cfg_.username.empty()) return authenticate();
  if (lease_ == 0 || !registered_) return grant();
  if (!watching_) return list();
  connecting_ = false;
}

void etcd_provider::set_problem(std::string why) {
  if (problem_.empty()) problem_since_ = now();
  problem_ = std::move(why);
}

void etcd_provider::reachable() {
  const bool was = up_;
  up_ = true;
  counters_->up.store(true, std::memory_order_relaxed);
  backoff_ = std::chrono::milliseconds(250);
  if (!was) {
    if (problem_since_.count() != 0 && !problem_.empty() && registered_)
      log(level::info, "cluster: etcd is reachable again at " + http_->endpoint() + " (after " +
                           std::to_string((now() - problem_since_).count()) + " ms)");
    if (hooks_.changed) hooks_.changed();
  }
}

void etcd_provider::failed(etcd_counters::op o, const etcd_http::reply& r, void (etcd_provider::*again)()) {
  if (closed_) return;
  counters_->errors[o].fetch_add(1, std::memory_order_relaxed);
  const std::string why = std::string(etcd_counters::name(o)) + " at " + http_->endpoint() + " failed: " + r.error;
  if (r.unreachable()) http_->next_endpoint();
  if (r.code == 16 || r.error.find("token") != std::string::npos) {
    http_->set_token({});  // authenticate again
    if (again == nullptr && !cfg_.username.empty()) again = &etcd_provider::connect;
  }
  const bool was = up_;
  if (r.unreachable() || r.status >= 500 || r.code == 14) {
    up_ = false;
    counters_->up.store(false, std::memory_order_relaxed);
  }
  if (was != up_ || problem_.empty() || problem_ != why) {
    log(level::warning, "cluster: etcd: " + why +
                            (registered_ ? "; membership stays as last listed" : "; not registered yet"));
    set_problem(why);
    if (hooks_.changed) hooks_.changed();
  }
  if (again == nullptr) return;
  const auto delay = backoff_;
  backoff_ = std::min(backoff_ * 2, std::chrono::milliseconds(5000));
  retry_.cancel();
  retry_ = loop_.arm(delay, [this, again] { (this->*again)(); });
}

void etcd_provider::authenticate() {
  http_->call("/v3/auth/authenticate", {{"name", cfg_.username}, {"password", cfg_.password}},
              [this](const etcd_http::reply& r) {
                const std::string token = r.ok() ? r.body.value("token", std::string()) : std::string();
                if (token.empty()) {
                  etcd_http::reply why = r;
                  if (why.ok()) why.error = "no token in the answer";
                  return failed(etcd_counters::authenticate, why, &etcd_provider::connect);
                }
                http_->set_token(token);
                if (lease_ == 0 || !registered_) return grant();
                if (!watching_) return list();
                connecting_ = false;
              });
}

void etcd_provider::grant() {
  const std::int64_t ttl_s = std::max<std::int64_t>(1, (cfg_.lease_ttl.count() + 999) / 1000);
  const cluster::millis sent = now();
  http_->call("/v3/lease/grant", {{"TTL", std::to_string(ttl_s)}}, [this, sent, ttl_s](const etcd_http::reply& r) {
    const std::int64_t id = r.ok() ? int64_of(r.body, "ID") : 0;
    const std::int64_t ttl = r.ok() ? int64_of(r.body, "TTL") : 0;
    if (id == 0 || ttl <= 0) {
      etcd_http::reply why = r;
      if (why.ok()) why.error = "no lease in the answer";
      return failed(etcd_counters::grant, why, &etcd_provider::connect);
    }
    lease_ = id;
    ttl_ = cluster::millis(ttl * 1000);
    lease_until_ = sent + ttl_;
    counters_->ttl_ms.store(ttl_.count(), std::memory_order_relaxed);
    log(level::info, "cluster: etcd lease " + std::to_string(id) + " granted, TTL " + std::to_string(ttl) + " s" +
                         (ttl != ttl_s ? " (asked " + std::to_string(ttl_s) + " s; etcd holds leases to at least "
                                         "1.5 times its election timeout)" : ""));
    reachable();
    register_self();
  });
}

void etcd_provider::register_self() {
  http_->call("/v3/kv/put",
              {{"key", base64(key_of(self_.name))},
               {"value", base64(cluster::format_record(self_))},
               {"lease", std::to_string(lease_)}},
              [this](const etcd_http::reply& r) {
                if (!r.ok()) {
                  // A lease that is gone meanwhile: the next try asks for another.
                  if (r.error.find("lease not found") != std::string::npos) lease_ = 0;
                  return failed(etcd_counters::put, r, &etcd_provider::connect);
                }
                const bool again = registered_;
                registered_ = true;
                log(level::info, std::string("cluster: ") + (again ? "registered again" : "registered") + " in etcd as " +
                                     key_of(self_.name));
                problem_.clear();
                reachable();
                schedule_keepalive();
                if (hooks_.changed) hooks_.changed();
                if (!watching_) return list();
                connecting_ = false;
              });
}

void etcd_provider::list() {
  const std::string prefix = cfg_.prefix + "members/";
  http_->call("/v3/kv/range", {{"key", base64(prefix)}, {"range_end", base64(prefix_end(prefix))}},
              [this](const etcd_http::reply& r) {
                if (!r.ok()) return failed(etcd_counters::range, r, &etcd_provider::list);
                std::vector<cluster::record> all;
                if (const auto kvs = r.body.find("kvs"); kvs != r.body.end() && kvs->is_array())
                  for (const json& kv : *kvs) {
                    std::string value, why;
                    if (!unbase64(kv.value("value", std::string()), value)) {
                      counters_->malformed.fetch_add(1, std::memory_order_relaxed);
                      continue;
                    }
                    if (auto rec = cluster::parse_record(value, why)) {
                      all.push_back(std::move(*rec));
                    } else {
                      counters_->malformed.fetch_add(1, std::memory_order_relaxed);
                      log(level::warning, "cluster: etcd: a member record that is not one (" + why + ") skipped");
                    }
                  }
                revision_ = r.body.contains("header") ? int64_of(r.body["header"], "revision") : 0;
                listed_ = true;
                reachable();
                if (hooks_.listed) hooks_.listed(all);
                watch();
              });
}

void etcd_provider::watch() {
  if (closed_) return;
  if (watch_id_ != 0) http_->cancel(watch_id_);
  const std::string prefix = cfg_.prefix + "members/";
  watching_ = true;
  connecting_ = false;
  watch_heard_ = now();
  watch_id_ = http_->stream(
      "/v3/watch",
      {{"create_request",
        {{"key", base64(prefix)},
         {"range_end", base64(prefix_end(prefix))},
         {"start_revision", std::to_string(revision_ + 1)},
         {"progress_notify", true}}}},
      [this](const json& m) { on_watch_message(m); },
      [this](const etcd_http::reply& r) {
        watch_id_ = 0;
        watching_ = false;
        failed(etcd_counters::watch, r, &etcd_provider::watch);
      });
  // A watch that hears nothing, not even progress, for watch_timeout is taken for dead.
  watch_check_.cancel();
  const auto every = std::max(cfg_.watch_timeout / 4, std::chrono::milliseconds(100));
  watch_check_ = loop_.arm_repeating(every, every, [this] {
    if (closed_ || !watching_ || now() - watch_heard_ < cfg_.watch_timeout) return true;
    counters_->errors[etcd_counters::watch].fetch_add(1, std::memory_order_relaxed);
    log(level::warning, "cluster: etcd: the watch said nothing for " + std::to_string(cfg_.watch_timeout.count()) +
                            " ms, not even progress; listing the members again");
    http_->cancel(watch_id_);
    watch_id_ = 0;
    watching_ = false;
    list();
    return false;
  });
}

void etcd_provider::on_watch_message(const json& m) {
  watch_heard_ = now();
  const json* res = m.contains("result") ? &m["result"] : &m;
  if (m.contains("error")) {
    etcd_http::reply r;
    r.error = m["error"].is_object() ? m["error"].value("message", m["error"].dump()) : m["error"].dump();
    http_->cancel(watch_id_);
    watch_id_ = 0;
    watching_ = false;
    return failed(etcd_counters::watch, r, &etcd_provider::watch);
  }
  if (res->value("canceled", false)) {
    http_->cancel(watch_id_);
    watch_id_ = 0;
    watching_ = false;
    if (const std::int64_t compacted = int64_of(*res, "compact_revision"); compacted != 0) {
      log(level::info, "cluster: etcd: the watch's revision " + std::to_string(revision_ + 1) +
                           " was compacted (now " + std::to_string(compacted) + "); listing the members again");
      return list();
    }
    etcd_http::reply r;
    r.error = "the watch was cancelled: " + res->value("cancel_reason", std::string("no reason given"));
    return failed(etcd_counters::watch, r, &etcd_provider::watch);
  }
  if (res->contains("header")) revision_ = std::max(revision_, int64_of((*res)["header"], "revision"));
  const auto events = res->find("events");
  if (events == res->end() || !events->is_array()) return;
  const std::string prefix = cfg_.prefix + "members/";
  for (const json& e : *events) {
    if (!e.contains("kv")) continue;
    const json& kv = e["kv"];
    std::string key, value, why;
    if (!unbase64(kv.value("key", std::string()), key) || key.compare(0, prefix.size(), prefix) != 0) continue;
    revision_ = std::max(revision_, int64_of(kv, "mod_revision"));
    const std::string name = key.substr(prefix.size());
    if (e.value("type", std::string()) == "DELETE") {
      if (hooks_.removed) hooks_.removed(name);
      if (name == self_.name && !leaving_) {
        // This node's record went (its lease ran out while it could not
        // keep it alive): register again at once.
        registered_ = false;
        lease_ = 0;
        log(level::warning, "cluster: etcd deleted this node's record (its lease expired); registering again");
        if (hooks_.changed) hooks_.changed();
        if (!connecting_) connect();
      }
      continue;
    }
    if (!unbase64(kv.value("value", std::string()), value)) continue;
    if (auto rec = cluster::parse_record(value, why)) {
      if (rec->name == self_.name && rec->generation != self_.generation && rec->generation > self_.generation)
        log(level::error, "cluster: etcd: another node registered as " + self_.name + " (at " + rec->address +
                              ", generation " + std::to_string(rec->generation) + "): two nodes share one name");
      if (hooks_.put) hooks_.put(*rec);
    } else {
      counters_->malformed.fetch_add(1, std::memory_order_relaxed);
      log(level::warning, "cluster: etcd: a member record under " + key + " that is not one (" + why + ") skipped");
    }
  }
}

void etcd_provider::schedule_keepalive() {
  keepalive_timer_.cancel();
  // Four times per TTL: one lost or late keep-alive leaves three.
  const auto every = std::max(std::chrono::duration_cast<std::chrono::milliseconds>(ttl_) / 4,
                              std::chrono::milliseconds(100));
  keepalive_timer_ = loop_.arm_repeating(every, every, [this] {
    if (closed_ || leaving_) return false;
    keepalive();
    return true;
  });
}

void etcd_provider::keepalive() {
  if (lease_ == 0 || !registered_) return;
  const cluster::millis sent = now();
  const std::int64_t lease = lease_;
  http_->call("/v3/lease/keepalive", {{"ID", std::to_string(lease)}}, [this, sent, lease](const etcd_http::reply& r) {
    if (!r.ok()) return failed(etcd_counters::keepalive, r, nullptr);
    const json& res = r.body.contains("result") ? r.body["result"] : r.body;
    const std::int64_t ttl = int64_of(res, "TTL");
    if (lease != lease_) return;
    if (ttl <= 0) {
      // The lease is gone (it expired while etcd was out of reach, or etcd
      // lost it): a new one, and the record again.
      counters_->errors[etcd_counters::keepalive].fetch_add(1, std::memory_order_relaxed);
      log(level::warning, "cluster: etcd lease " + std::to_string(lease) + " has expired; registering again");
      registered_ = false;
      lease_ = 0;
      reachable();
      if (hooks_.changed) hooks_.changed();
      if (!connecting_) connect();
      return;
    }
    lease_until_ = std::max(lease_until_, sent + cluster::millis(ttl * 1000));
    reachable();
    if (!problem_.empty() && registered_) {
      problem_.clear();
      if (hooks_.changed) hooks_.changed();
    }
  });
}

void etcd_provider::leave(std::function<void()> done) {
  if (leaving_ || closed_ || !registered_ || lease_ == 0) return done();
  leaving_ = true;
  keepalive_timer_.cancel();
  retry_.cancel();
  cluster::record r = self_;
  r.leaving = true;
  auto once = std::make_shared<std::function<void()>>(std::move(done));
  http_->call("/v3/kv/put",
              {{"key", base64(key_of(self_.name))},
               {"value", base64(cluster::format_record(r))},
               {"lease", std::to_string(lease_)}},
              [this, once](const etcd_http::reply& put) {
                if (!put.ok()) counters_->errors[etcd_counters::put].fetch_add(1, std::memory_order_relaxed);
                http_->call("/v3/lease/revoke", {{"ID", std::to_string(lease_)}},
                            [this, once](const etcd_http::reply& rv) {
                              if (rv.ok()) {
                                revoked_ = true;
                                log(level::info, "cluster: left etcd (lease revoked)");
                              } else {
                                counters_->errors[etcd_counters::revoke].fetch_add(1, std::memory_order_relaxed);
                                log(level::warning, "cluster: etcd: revoking the lease failed (" + rv.error +
                                                        "); the others see this node gone when it expires");
                              }
                              if (*once) std::exchange(*once, nullptr)();
                            });
              });
}

void etcd_provider::reload(etcd_config c) {
  const bool credentials = c.username != cfg_.username || c.password != cfg_.password;
  cfg_ = std::move(c);
  http_->set_config(cfg_);
  if (credentials && !cfg_.username.empty()) {
    log(level::info, "reload: etcd credentials re-read; authenticating again");
    http_->set_token({});
    if (!connecting_) authenticate();
  }
}

void etcd_provider::close() {
  if (closed_) return;
  closed_ = true;
  retry_.cancel();
  keepalive_timer_.cancel();
  watch_check_.cancel();
  // A node that stops without leaving (no SIGTERM hand-over) still tells
  // etcd at once rather than after its lease's TTL.
  if (registered_ && lease_ != 0 && !revoked_) {
    const auto r = http_->call_now("/v3/lease/revoke", {{"ID", std::to_string(lease_)}}, std::chrono::milliseconds(1000));
    if (!r.ok()) log(level::warning, "cluster: etcd: revoking the lease at stop failed (" + r.error + ")");
  }
  http_->close();
}

}  // namespace troupe::node
