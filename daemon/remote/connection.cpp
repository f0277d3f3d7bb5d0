// A connection to a peer: dialing or accepting it, what it reads (plain or
// through TLS) handed to its session, the session's verdicts, heartbeats
// and timeouts, and closing it. What it writes goes through send_path.cpp;
// what arrives on it is handled in inbound.cpp.
#include "remote/transport_internal.hpp"

#include <algorithm>

#include "actor/clock.hpp"
#include "remote/address.hpp"

namespace troupe::remote {

connection::connection(transport& t, bool dialer, std::shared_ptr<peer> p)
    : t_(t),
      dialer_(dialer),
      peer_(std::move(p)),
      s_(t.opts_.self, *this),
      enc_(t.opts_.self.max_frame),
      opened_ns_(steady_ns()),
      last_heard_ns_(opened_ns_),
      last_write_ns_(opened_ns_) {
  tcp_.data = this;
  if (t_.tls() != nullptr) {
    tls_ = std::make_unique<tls_channel>(*t_.tls(), dialer);
    rbuf_.resize(64 << 10);
  }
  t_.connection_opened(state_);
}

void connection::end_pending() {
  if (!pending_) return;
  pending_ = false;
  t_.handshake_done(source_);
}

void connection::move_state(connection_state to) {
  t_.connection_moved(state_, to);
  state_ = to;
}

void connection::start_dial() {
  std::string host, port;
  std::string error;
  if (!split_address(peer_->address(), host, port, error)) {
    close(close_reason::io_error, "cannot dial " + peer_->address() + ": " + error);
    return;
  }
  resolve_req_.data = this;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const int rc = uv_getaddrinfo(t_.loop_.uv(), &resolve_req_, on_resolved, host.c_str(),
                                port.c_str(), &hints);
  resolving_ = rc == 0;
  if (rc != 0) close(close_reason::io_error, "cannot resolve " + peer_->address() + ": " + detail::uv_text(rc));
}

void connection::on_resolved(uv_getaddrinfo_t* req, int status, struct addrinfo* res) {
  auto* self = static_cast<connection*>(req->data);
  self->resolving_ = false;
  if (self->closing_) {
    uv_freeaddrinfo(res);
    self->t_.forget(self);
    return;
  }
  if (status != 0 || !res) {
    uv_freeaddrinfo(res);
    self->close(close_reason::io_error,
                "cannot resolve " + self->peer_->address() + ": " + detail::uv_text(status));
    return;
  }
  uv_tcp_init(self->t_.loop_.uv(), &self->tcp_);
  self->tcp_open_ = true;
  self->connect_req_.data = self;
  int rc = 0;
  if (self->t_.dial_from_.ss_family == res->ai_family)
    rc = uv_tcp_bind(&self->tcp_, reinterpret_cast<const sockaddr*>(&self->t_.dial_from_), 0);
  if (rc == 0) rc = uv_tcp_connect(&self->connect_req_, &self->tcp_, res->ai_addr, on_connected);
  uv_freeaddrinfo(res);
  if (rc != 0)
    self->close(close_reason::io_error,
                "cannot connect to " + self->peer_->address() + ": " + detail::uv_text(rc));
}

void connection::on_connected(uv_connect_t* req, int status) {
  auto* self = static_cast<connection*>(req->data);
  if (self->closing_) return;
  if (status != 0) {
    self->refused_ = status == UV_ECONNREFUSED;
    self->close(close_reason::io_error,
                "cannot connect to " + self->peer_->address() + ": " + detail::uv_text(status));
    return;
  }
  self->begin();
}

bool connection::accept(uv_stream_t* server) {
  uv_tcp_init(t_.loop_.uv(), &tcp_);
  tcp_open_ = true;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&tcp_)) != 0) return false;
  sockaddr_storage addr{};
  int len = sizeof addr;
  char ip[INET6_ADDRSTRLEN] = "?";
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    if (addr.ss_family == AF_INET6)
      uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&addr), ip, sizeof ip);
    else
      uv_ip4_name(reinterpret_cast<sockaddr_in*>(&addr), ip, sizeof ip);
  }
  source_ = ip;
  begin();
  return true;
}

void connection::begin() {
  uv_tcp_nodelay(&tcp_, 1);
  move_state(connection_state::handshaking);
  opened_ns_ = last_heard_ns_ = steady_ns();
  if (!tls_) {
    s_.start();
  } else if (dialer_) {
    int rc;
    {
      std::lock_guard lock(wmu_);
      tls_->handshake();  // the client's hello
      rc = flush_locked(true);
    }
    if (rc < 0) return fail_write();
  }
  uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc, on_read);
}

void connection::on_alloc(uv_handle_t* h, std::size_t hint, uv_buf_t* buf) {
  auto* self = static_cast<connection*>(h->data);
  std::span<std::uint8_t> room =
      self->tls_ ? std::span<std::uint8_t>(self->rbuf_)
                 : self->s_.prepare(std::max<std::size_t>(hint, 64 << 10));
  *buf = uv_buf_init(reinterpret_cast<char*>(room.data()), static_cast<unsigned>(room.size()));
}

void connection::on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* self = static_cast<connection*>(s->data);
  if (self->closing_) return;
  if (n > 0) {
    self->t_.stats_.bytes_received.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    if (self->peer_ && self->state_ == connection_state::up)
      self->peer_->count_received(0, static_cast<std::uint64_t>(n));
    // The first actor this read makes runnable may run here when it ends
    // (see dispatcher::hold): a reply then leaves without a thread hand-off.
    dispatcher::hold hold(self->t_.system().dispatcher());
    if (self->tls_) {
      if (self->read_tls(static_cast<std::size_t>(n))) self->send_ack_if_due(detail::ack_every);
      return;
    }
    if (!self->read_any_) {
      self->read_any_ = true;
      // A TLS record where a frame's length should be.
      const auto* first = reinterpret_cast<const std::uint8_t*>(buf->base);
      if (n >= 2 && first[0] == 0x16 && first[1] == 0x03) {
        self->close(close_reason::tls,
                    "the peer speaks TLS, this node plaintext (remote.insecure_plaintext is set "
                    "on one side only?)");
        return;
      }
    }
    if (!self->s_.commit(static_cast<std::size_t>(n))) {
      if (self->s_.reason() == close_reason::protocol)
        self->t_.stats_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
      self->close(self->s_.reason(), self->s_.detail());
      return;
    }
    self->send_ack_if_due(detail::ack_every);
  } else if (n == UV_EOF) {
    self->close(close_reason::peer_closed, "the peer closed the connection");
  } else if (n < 0) {
    self->close(close_reason::io_error, "read failed: " + detail::uv_text(static_cast<int>(n)));
  }
}

bool connection::read_tls(std::size_t n) {
  if (!read_any_) {
    read_any_ = true;
    // Every TLS connection starts with a handshake record.
    if (rbuf_[0] != 0x16) {
      close(close_reason::tls,
            "the peer does not speak TLS (remote.insecure_plaintext is set on one side only?)");
      return false;
    }
  }
  bool established_now = false, plaintext = false;
  int rc;
  tls_channel::status st;
  {
    std::lock_guard lock(wmu_);
    tls_->received({rbuf_.data(), n});
    if (!tls_->established() && tls_->handshake() == tls_channel::status::established)
      established_now = true;
    if (tls_->established()) {
      for (;;) {
        std::span<std::uint8_t> room = s_.prepare(16 << 10);
        const long got = tls_->read(room);
        if (got <= 0) break;
        s_.received(static_cast<std::size_t>(got));
        plaintext = true;
      }
    }
    rc = flush_locked(true);  // handshake records, alerts
    st = tls_->state();
  }
  if (rc < 0) {
    fail_write();
    return false;
  }
  // Hello goes first, before anything the peer sent in the same read is
  // answered.
  if (established_now) {
    channel_established_ = true;
    t_.log(log_level::debug, "remote: TLS with " + (peer_ ? peer_->address() : source_) + " established (" +
                  tls_->cipher() + ")");
    s_.start();
  }
  // What arrived before the channel closed counts (a Disconnect saying why).
  if (plaintext && !s_.process()) {
    if (s_.reason() == close_reason::protocol)
      t_.stats_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    close(s_.reason(), s_.detail());
    return false;
  }
  if (st != tls_channel::status::open) {
    fail_tls();
    return false;
  }
  return true;
}

// The channel closed or failed: say why in the peer's and operator's terms.
void connection::fail_tls() {
  std::string error;
  bool unknown_key, established;
  tls_channel::status st;
  {
    std::lock_guard lock(wmu_);
    error = tls_->error();
    unknown_key = tls_->unknown_key();
    established = tls_->established();
    st = tls_->state();
  }
  if (st == tls_channel::status::closed)
    return close(close_reason::peer_closed, "the peer closed the connection");
  if (established) {
    t_.stats_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    return close(close_reason::protocol, "a TLS record does not verify: " + error);
  }
  if (unknown_key)
    return close(close_reason::secret,
                 "the peer holds none of this node's cluster secrets (a different secret_file?)");
  if (t_.tls()->certificates() && error.find("certificate") != std::string::npos)
    return close(close_reason::certificate, "the peer's certificate is refused: " + error);
  if (dialer_ && error.find("alert") != std::string::npos)
    return close(close_reason::refused,
                 "the peer refused the TLS handshake (" + error +
                     "): it holds none of this node's secrets, or trusts another CA");
  close(close_reason::tls, "the TLS handshake failed: " + error);
}

session_events::verdict connection::on_hello(const peer_hello& hello) {
  if (tls_ && t_.tls()->certificates()) {
    bool names;
    {
      std::lock_guard lock(wmu_);
      names = tls_->certificate_names(hello.node);
    }
    if (!names)
      return {false, close_reason::certificate,
              "the peer says it is node '" + hello.node + "' but its certificate names another"};
  }
  if (dialer_ && hello.address != peer_->address())
    return {false, close_reason::address,
            "dialed " + peer_->address() + " but the node there advertises " + hello.address};
  if (!peer_) peer_ = t_.peer_for(hello.address);
  verdict v = peer_->judge(*this, hello);
  if (v.accept) v.received = peer_->received_from(hello.incarnation);
  return v;
}

void connection::on_up(std::uint64_t received) {
  end_pending();
  move_state(connection_state::up);
  last_heard_ns_ = steady_ns();
  peer_->attach(*this, s_.peer(), received);
}

void connection::on_ack(std::uint64_t ack) { peer_->on_ack(ack); }

void connection::send_ack_if_due(std::uint64_t threshold) {
  if (closing_ || state_ != connection_state::up || !peer_->ack_due(threshold)) return;
  send_now(encode_frame(0, ack_value(), [](flatbuffers::FlatBufferBuilder& b) {
    return std::pair(wire::Body::Ack, wire::CreateAck(b).Union());
  }));
}

void connection::tick(std::int64_t now) {
  if (closing_) return;
  using std::chrono::nanoseconds;
  const auto& o = t_.opts_;
  if (state_ != connection_state::up) {
    if (now - opened_ns_ > std::chrono::duration_cast<nanoseconds>(o.handshake_timeout).count())
      close(close_reason::handshake_timeout,
            "the handshake did not finish within " +
                std::to_string(o.handshake_timeout.count()) + " ms");
    return;
  }
  // A link to a member of the cluster with nothing in flight either way is
  // quiet: no heartbeats, and silence is no failure. The cluster's probes
  // watch the member itself; the link speaks again, and expects answers,
  // as soon as something is sent. A paused link is not idle: the peer
  // waits for what it sent to be read, and must hear this node meanwhile.
  const bool quiet = !paused_ && t_.cluster_decides(peer_->address()) && peer_->settled();
  if (s_.take_activity() || paused_ || quiet) last_heard_ns_ = now;
  if (now - last_heard_ns_ > std::chrono::duration_cast<nanoseconds>(o.heartbeat_timeout).count()) {
    close(close_reason::heartbeat_timeout,
          "nothing heard for " + std::to_string(o.heartbeat_timeout.count()) + " ms");
    return;
  }
  std::int64_t last_write;
  {
    std::lock_guard lock(wmu_);
    last_write = last_write_ns_;
  }
  if (quiet) return;
  if (now - last_write >= std::chrono::duration_cast<nanoseconds>(o.heartbeat_interval).count())
    send_now(encode_frame(0, ack_value(), [](flatbuffers::FlatBufferBuilder& b) {
      return std::pair(wire::Body::Heartbeat, wire::CreateHeartbeat(b).Union());
    }));
  else
    send_ack_if_due(1);
}

void connection::close(close_reason reason, std::string detail) {
  if (closing_) return;
  closing_ = true;
  if (is_handshake_failure(reason))
    t_.stats_.handshake_failures[static_cast<std::size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
  t_.log_close(*this, reason, detail);
  // The rest of a held batch was acknowledged with it: it is delivered.
  if (const wire::Batch* b = std::exchange(held_, nullptr)) deliver_from(*b, held_next_, true);
  if (paused_) {
    paused_ = false;
    blocker_.reset();
    t_.stats_.paused_ns.fetch_add(static_cast<std::uint64_t>(steady_ns() - paused_ns_),
                                  std::memory_order_relaxed);
    t_.unpaused(*this);
  }
  // First out of the peer's reach, so that no worker writes to it any more.
  if (peer_) peer_->connection_closed(*this, reason, detail);
  t_.connection_closed(state_);
  targets_.clear();
  senders_.clear();
  sender_cache_.clear();
  if (state_ == connection_state::up && peer_ && peer_->ack_due(1)) {
    // What arrived is acknowledged before the goodbye: a peer that leaves
    // must not leave what it received counted as unconfirmed.
    std::lock_guard lock(wmu_);
    queue_bytes_locked(encode_frame(0, ack_value(), [](flatbuffers::FlatBufferBuilder& b) {
      return std::pair(wire::Body::Ack, wire::CreateAck(b).Union());
    }));
  }
  s_.close(reason, detail);  // queues a Disconnect (write() only queues now)
  end_pending();
  {
    // Tell the peer why (best effort, once): the connection goes whatever
    // happens to these bytes.
    std::lock_guard lock(wmu_);
    if (tls_) {
      tls_->shutdown();
      take_tls_output_locked();
    }
    if (tcp_open_ && !write_busy_ && !queued_.empty()) {
      bufs_.clear();
      for (const segment& seg : queued_)
        bufs_.push_back(uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(seg.data() + seg.offset)),
                                    static_cast<unsigned>(seg.size() - seg.offset)));
      uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), bufs_.data(),
                   static_cast<unsigned>(bufs_.size()));
    }
  }
  if (tcp_open_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_closed);
  } else if (resolving_) {
    // The resolver's callback forgets this connection.
    uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_req_));
  } else {
    // Nothing of libuv's holds it: forget it once the caller is done with it.
    transport* t = &t_;
    t_.loop_.post([t, self = this] { t->forget(self); });
  }
}

void connection::on_closed(uv_handle_t* h) {
  auto* self = static_cast<connection*>(h->data);
  self->t_.forget(self);
}

}  // namespace troupe::remote
