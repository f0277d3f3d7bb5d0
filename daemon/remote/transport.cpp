// The transport: the listener and admission of accepted connections,
// the ticks that drive heartbeats, the poll that resumes paused reads,
// the registry of peers and of exported local processes, spawns on other
// nodes, and shutdown. Its parts are in remote_process.cpp, peer.cpp,
// send_path.cpp, connection.cpp and inbound.cpp.
#include "remote/transport.hpp"

#include <csignal>

#include <algorithm>


#include "actor/clock.hpp"
#include "remote/address.hpp"
#include "remote/transport_internal.hpp"

namespace troupe::remote {

const char* to_string(connection_state s) noexcept {
  switch (s) {
    case connection_state::connecting: return "connecting";
    case connection_state::handshaking: return "handshaking";
    case connection_state::up: return "up";
  }
  return "unknown";
}

transport::transport(event_loop& loop, options opts) : loop_(loop), opts_(std::move(opts)) {
  if (opts_.self.incarnation == 0) opts_.self.incarnation = random_u64();
}

// shutdown() unhooked it from the system, which may be gone by now.
transport::~transport() = default;

bool transport::bind(std::string& error) {
  if (!opts_.insecure_plaintext) {
    tls_ = tls_context::make(opts_.creds, error);
    if (!tls_) return false;
  }
  if (!opts_.listen.empty()) {
    sockaddr_storage addr{};
    if (!parse_ip_address(opts_.listen, addr, error)) return false;
    uv_tcp_init(loop_.uv(), &listener_);
    listener_.data = this;
    listening_ = true;
    int rc = uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0);
    if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 256, on_connection);
    if (rc != 0) {
      error = "cannot listen on " + opts_.listen + ": " + detail::uv_text(rc);
      return false;
    }
    sockaddr_storage bound{};
    int len = sizeof bound;
    uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&bound), &len);
    port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                              : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    if (opts_.self.address.empty())
      opts_.self.address = opts_.listen.substr(0, opts_.listen.rfind(':') + 1) + std::to_string(port_);
    // A node on one address of several (127.0.0.2 beside 127.0.0.3, or one
    // interface of a host) dials from it too, so that its peers and any
    // rule between addresses see one address per node.
    const bool wildcard = (addr.ss_family == AF_INET &&
                           reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr.s_addr == htonl(INADDR_ANY)) ||
                          (addr.ss_family == AF_INET6 &&
                           IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr));
    if (!wildcard) {
      dial_from_ = addr;
      if (addr.ss_family == AF_INET) reinterpret_cast<sockaddr_in*>(&dial_from_)->sin_port = 0;
      else reinterpret_cast<sockaddr_in6*>(&dial_from_)->sin6_port = 0;
    }
  }
  return true;
}

void transport::start(actor_system& sys) {
  sys_ = &sys;
  // libuv writes with write(2): a peer that went away raises SIGPIPE, whose
  // default ends the process. Ignored unless the program chose a handler.
  struct sigaction pipe {};
  if (::sigaction(SIGPIPE, nullptr, &pipe) == 0 && pipe.sa_handler == SIG_DFL)
    ::signal(SIGPIPE, SIG_IGN);
  const auto every = std::max(opts_.heartbeat_interval / 2, std::chrono::milliseconds(10));
  ticker_ = loop_.arm_repeating(every, every, [this] {
    tick();
    return true;
  });
  sys_->set_remote(this);
}

void transport::log_close(const connection& c, close_reason reason, const std::string& detail) {
  const std::string who = c.peer_ ? c.peer_->address()
                                 : "an unidentified peer" + (c.source_.empty() ? "" : " from " + c.source_);
  switch (reason) {
    case close_reason::duplicate:
      log(log_level::debug, "remote: connection to " + who + " closed: " + detail);
      return;
    case close_reason::shutdown:
      return;
    case close_reason::peer_left:
      log(log_level::info, "remote: " + who + " left (it is stopping)");
      return;
    default:
      break;
  }
  if (!c.peer_ && !c.channel_established_ && is_handshake_failure(reason)) {
    // Whoever did not get through the TLS handshake is nobody yet: a flood
    // of such connections is one event per 1,024 of a kind, not a line each.
    const std::uint64_t n = ++unidentified_refusals_[static_cast<std::size_t>(reason)];
    if (n % 1024 == 1)
      log(log_level::warning, "remote: refused " + who + " (" + to_string(reason) + ", " + std::to_string(n) +
                 (n == 1 ? " so far" : " so far, logged once per 1,024") + "): " + detail);
    return;
  }
  if (is_handshake_failure(reason)) {
    log(log_level::warning, "remote: refused " + who + " (" + to_string(reason) + "): " + detail);
  } else if (reason == close_reason::protocol) {
    log(log_level::warning, "remote: closed the connection of " + who + " (protocol error): " + detail);
  } else if (c.state_ == connection_state::up) {
    log(log_level::warning, "remote: lost " + who + " (" + to_string(reason) + "): " + detail);
  } else {
    // A peer that stays down (a seed, say) is dialed again and again: the
    // first failure is news, then one line every 64 attempts.
    const unsigned before = c.peer_ ? c.peer_->failures() : 0;
    if (before == 0)
      log(log_level::info, "remote: cannot reach " + who + ": " + detail);
    else if (before % 64 == 0)
      log(log_level::info, "remote: still cannot reach " + who + " after " + std::to_string(before + 1) +
                 " attempts: " + detail);
    else
      log(log_level::debug, "remote: cannot reach " + who + ": " + detail);
  }
}

void transport::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<transport*>(server->data);
  if (status != 0 || self->stopped()) return;
  auto c = std::make_unique<connection>(*self, false, nullptr);
  connection* raw = c.get();
  self->connections_.push_back(std::move(c));
  if (!raw->accept(server)) return raw->close(close_reason::io_error, "accept failed");
  std::string why;
  if (!self->admit(raw->source_, why)) return raw->close(close_reason::limit, why);
  raw->pending_ = true;
}

bool transport::admit(const std::string& source, std::string& why) {
  const std::uint32_t from_source = pending_by_source_[source];
  if (connections_.size() > opts_.max_connections)
    why = "this node has " + std::to_string(connections_.size() - 1) +
          " connections already (remote.max_connections)";
  else if (pending_total_ >= opts_.max_pending)
    why = std::to_string(pending_total_) +
          " connections are in their handshake already (remote.max_pending_connections)";
  else if (from_source >= opts_.max_pending_per_address)
    why = std::to_string(from_source) + " connections from " + source +
          " are in their handshake already (remote.max_pending_per_address)";
  if (why.empty()) {
    ++pending_total_;
    ++pending_by_source_[source];
    return true;
  }
  if (from_source == 0) pending_by_source_.erase(source);
  return false;
}

void transport::handshake_done(const std::string& source) {
  --pending_total_;
  auto it = pending_by_source_.find(source);
  if (it != pending_by_source_.end() && --it->second == 0) pending_by_source_.erase(it);
}

void transport::set_secrets(const std::vector<std::string>& secrets) {
  if (tls_) tls_->set_secrets(secrets);
}

void transport::paused(connection& c) {
  stats_.read_pauses.fetch_add(1, std::memory_order_relaxed);
  stats_.reads_paused.fetch_add(1, std::memory_order_relaxed);
  paused_.push_back(&c);
  if (!pressure_poll_.pending())
    pressure_poll_ = loop_.arm_repeating(std::chrono::milliseconds(1), std::chrono::milliseconds(1),
                                         [this] { return poll_paused(); });
  // The first pause at once, then a line at most every 10 s.
  const std::int64_t now = steady_ns();
  ++pauses_unlogged_;
  if (pause_logged_ns_ != 0 && now - pause_logged_ns_ < 10'000'000'000) return;
  std::string why;
  if (c.blocker_) {
    why = "actor " + c.blocker_->id();
    if (auto* ctx = dynamic_cast<context*>(c.blocker_.get()); ctx && !ctx->props().kind.empty())
      why += " (kind " + ctx->props().kind + ")";
    why += " has " + std::to_string(c.blocker_->pressure()) + "% of its mailbox full";
  } else {
    why = "the node's queued messages hold " + std::to_string(sys_->queue_pressure()) +
          "% of their budget (node.max_queued_bytes)";
  }
  log(log_level::info, "remote: stopped reading from " + (c.peer_ ? c.peer_->address() : c.source_) + ": " + why +
             "; its messages wait in its send queue until this drains" +
             (pauses_unlogged_ > 1 ? " (" + std::to_string(pauses_unlogged_) +
                                         " pauses since the last line)"
                                   : ""));
  pause_logged_ns_ = now;
  pauses_unlogged_ = 0;
}

void transport::unpaused(connection& c) noexcept {
  std::erase(paused_, &c);
  stats_.reads_paused.fetch_sub(1, std::memory_order_relaxed);
}

bool transport::poll_paused() {
  // Resuming may pause again (frames read before the pause): take the list.
  std::vector<connection*> now_paused;
  now_paused.swap(paused_);
  for (connection* c : now_paused) {
    if (!c->drained()) {
      paused_.push_back(c);
      continue;
    }
    stats_.reads_paused.fetch_sub(1, std::memory_order_relaxed);
    c->resume();
  }
  return !paused_.empty();
}

void transport::tick() {
  const std::int64_t now = steady_ns();
  for (std::size_t i = 0; i < connections_.size(); ++i) connections_[i]->tick(now);
  std::lock_guard lock(exports_mu_);
  sweep_exports_locked();
}

void transport::sweep_exports_locked() {
  std::erase_if(exports_, [](const auto& kv) { return kv.second->dead(); });
  exports_sweep_at_ = std::max<std::size_t>(1024, 2 * exports_.size());
}

void transport::shutdown() {
  if (stopped_.exchange(true, std::memory_order_acq_rel)) return;
  if (sys_ != nullptr) sys_->set_remote(nullptr);  // null: bound, never started
  ticker_.cancel();
  pressure_poll_.cancel();
  for (std::size_t i = 0; i < connections_.size(); ++i)
    connections_[i]->close(close_reason::shutdown, "the node is stopping");
  std::vector<std::shared_ptr<peer>> ps;
  {
    std::lock_guard lock(peers_mu_);
    for (auto& [a, p] : peers_) ps.push_back(p);
  }
  for (auto& p : ps) p->shutdown();
  if (listening_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    listening_ = false;
  }
  std::vector<pending_spawn> spawns;
  {
    std::lock_guard lock(spawns_mu_);
    for (auto& [id, s] : spawns_) spawns.push_back(std::move(s));
    spawns_.clear();
  }
  for (auto& s : spawns) {
    s.timeout.cancel();
    s.done({spawn_error::shutting_down, pid(), "the node is stopping"});
  }
  std::lock_guard lock(exports_mu_);
  exports_.clear();
}

void transport::forget(connection* c) {
  std::erase_if(connections_, [&](const std::unique_ptr<connection>& x) { return x.get() == c; });
}

process_ref transport::resolve(std::string_view address, std::string_view id, std::uint64_t generation) {
  if (address == opts_.self.address) {
    // One of this node's, from an earlier start: no actor of this one.
    if (earlier_start(generation, opts_.self.incarnation)) return {};
    return local(id);
  }
  return peer_for(address)->proxy(id, generation);
}

std::shared_ptr<peer> transport::peer_for(std::string_view address) {
  std::lock_guard lock(peers_mu_);
  auto it = peers_.find(std::string(address));
  if (it != peers_.end()) return it->second;
  auto p = std::make_shared<peer>(*this, std::string(address));
  peers_.emplace(std::string(address), p);
  return p;
}

std::string transport::export_local(process* p, bool* exported) {
  std::string id = p->id();
  if (sys_->registry().lookup(id).get() == p) return id;
  if (exported != nullptr) *exported = true;
  std::lock_guard lock(exports_mu_);
  exports_.try_emplace(id, process_ref(p));
  if (exports_.size() >= exports_sweep_at_) sweep_exports_locked();
  return id;
}

process_ref transport::local(std::string_view id) {
  if (id.empty()) return {};
  if (process_ref p = sys_->registry().lookup(id)) return p;
  std::lock_guard lock(exports_mu_);
  auto it = exports_.find(std::string(id));
  return it == exports_.end() ? process_ref() : it->second;
}

process_ref transport::resolve_pid(std::string_view text, std::uint64_t generation) {
  const std::size_t slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == text.size()) return {};
  return resolve(text.substr(0, slash), text.substr(slash + 1), generation);
}

void transport::connection_opened(connection_state s) noexcept {
  stats_.connections[static_cast<std::size_t>(s)].fetch_add(1, std::memory_order_relaxed);
}
void transport::connection_moved(connection_state from, connection_state to) noexcept {
  stats_.connections[static_cast<std::size_t>(from)].fetch_sub(1, std::memory_order_relaxed);
  stats_.connections[static_cast<std::size_t>(to)].fetch_add(1, std::memory_order_relaxed);
}
void transport::connection_closed(connection_state s) noexcept {
  stats_.connections[static_cast<std::size_t>(s)].fetch_sub(1, std::memory_order_relaxed);
}

bool transport::spawn_allowed(const std::string& kind) const {
  const auto has = [&kind](const std::vector<std::string>& list) {
    return std::find(list.begin(), list.end(), kind) != list.end();
  };
  return has(opts_.spawnable) || (opts_.spawn_any && !has(opts_.not_spawnable));
}

spawn_reply transport::spawn_local(const std::string& kind, const std::string& name) {
  if (!spawn_handler_) return {spawn_error::not_allowed, pid(), "this node spawns nothing for peers"};
  return spawn_handler_(kind, name);
}

void transport::contact(const std::string& address) {
  if (address == opts_.self.address) return;
  std::shared_ptr<peer> p = peer_for(address);
  loop_.post([this, p] {
    if (!stopped()) p->contact();
  });
}

void transport::node_lost(const std::string& address, std::uint64_t generation, const std::string& why) {
  if (address == opts_.self.address || stopped()) return;
  std::shared_ptr<peer> p;
  {
    std::lock_guard lock(peers_mu_);
    auto it = peers_.find(address);
    if (it == peers_.end()) return;  // nothing here ever spoke to it
    p = it->second;
  }
  p->declared_lost(generation, why);
}

void transport::send_cluster(const std::string& address, std::vector<std::uint8_t> bytes) {
  if (stopped() || address == opts_.self.address) return;
  std::shared_ptr<peer> p = peer_for(address);
  if (std::string why; p->down(why)) return;  // the cluster asks again later
  auto* o = new outbound;
  o->kind = item_kind::cluster;
  o->text.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  p->enqueue(o);
}

void transport::spawn_remote(const std::string& address, const std::string& kind, const std::string& name,
                             std::chrono::milliseconds timeout,
                             std::function<void(spawn_result, const std::string& why)> done) {
  spawn(address, kind, name, timeout, [done = std::move(done)](spawn_reply r) {
    done(spawn_result{std::move(r.who), r.status}, r.error);
  });
}

void transport::spawn(const std::string& address, const std::string& kind, const std::string& name,
                      std::chrono::milliseconds timeout, spawn_callback done) {
  if (stopped()) {
    loop_.post([done = std::move(done)] { done({spawn_error::shutting_down, pid(), "the node is stopping"}); });
    return;
  }
  std::shared_ptr<peer> p = peer_for(address);
  if (std::string why; p->down(why)) {
    loop_.post([done = std::move(done), address, why] {
      done({spawn_error::unreachable, pid(), address + " is down: " + why});
    });
    return;
  }
  std::uint64_t id;
  {
    std::lock_guard lock(spawns_mu_);
    id = next_spawn_++;
    spawns_[id].done = std::move(done);
    spawns_[id].address = address;
  }
  timer_handle t = loop_.arm(timeout, [this, id, timeout, address] {
    // No answer: the node is unreachable, or does not exist.
    complete_spawn(id, {spawn_error::timed_out, pid(),
                        "no answer from " + address + " within " + std::to_string(timeout.count()) +
                            " ms"});
  });
  {
    std::lock_guard lock(spawns_mu_);
    auto it = spawns_.find(id);
    if (it != spawns_.end()) it->second.timeout = std::move(t);
  }
  auto* o = new outbound;
  o->kind = item_kind::spawn_request;
  o->request = id;
  o->text = kind;
  o->text2 = name;
  p->enqueue(o);
}

void transport::complete_spawn(std::uint64_t request, spawn_reply r) {
  spawn_callback done;
  {
    std::lock_guard lock(spawns_mu_);
    auto it = spawns_.find(request);
    if (it == spawns_.end()) return;
    done = std::move(it->second.done);
    it->second.timeout.cancel();
    spawns_.erase(it);
  }
  done(std::move(r));
}

void transport::fail_spawns(const std::string& address, const std::string& why) {
  std::vector<std::uint64_t> ids;
  {
    std::lock_guard lock(spawns_mu_);
    for (const auto& [id, s] : spawns_)
      if (s.address == address) ids.push_back(id);
  }
  for (std::uint64_t id : ids) complete_spawn(id, {spawn_error::unreachable, pid(), address + " is down: " + why});
}

std::vector<peer_info> transport::peers() const {
  std::vector<std::shared_ptr<peer>> ps;
  {
    std::lock_guard lock(peers_mu_);
    for (const auto& [a, p] : peers_) ps.push_back(p);
  }
  std::vector<peer_info> out;
  out.reserve(ps.size());
  for (const auto& p : ps) out.push_back(p->info());
  std::sort(out.begin(), out.end(),
            [](const peer_info& a, const peer_info& b) { return a.address < b.address; });
  return out;
}

}  // namespace troupe::remote
