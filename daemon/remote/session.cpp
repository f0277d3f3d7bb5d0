#include "remote/session.hpp"

#include <utility>

namespace troupe::remote {

const char* to_string(close_reason r) noexcept {
  switch (r) {
    case close_reason::version: return "version";
    case close_reason::cluster: return "cluster";
    case close_reason::secret: return "secret";
    case close_reason::address: return "address";
    case close_reason::handshake_timeout: return "timeout";
    case close_reason::refused: return "refused";
    case close_reason::duplicate: return "duplicate";
    case close_reason::protocol: return "protocol";
    case close_reason::heartbeat_timeout: return "heartbeat_timeout";
    case close_reason::peer_closed: return "peer_closed";
    case close_reason::peer_left: return "peer_left";
    case close_reason::io_error: return "io_error";
    case close_reason::shutdown: return "shutdown";
  }
  return "unknown";
}

bool is_handshake_failure(close_reason r) noexcept {
  return r <= close_reason::refused;
}

session::session(const identity& self, session_events& events)
    : self_(self), events_(events), reader_(self.max_frame) {}

void session::start() {
  nonce_ = random_nonce();
  events_.write(encode_frame([&](flatbuffers::FlatBufferBuilder& b) {
    auto hello = wire::CreateHello(b, protocol_version, b.CreateString(self_.cluster),
                                   b.CreateString(self_.node), b.CreateString(self_.address),
                                   self_.incarnation, b.CreateVector(nonce_.data(), nonce_.size()));
    return std::pair(wire::Body::Hello, hello.Union());
  }));
}

bool session::commit(std::size_t n) {
  reader_.commit(n);
  while (state_ != state::closed) {
    const wire::Frame* f = nullptr;
    switch (reader_.next(f)) {
      case frame_reader::status::need_more:
        return true;
      case frame_reader::status::oversized:
        fail(close_reason::protocol,
             "a frame of " + std::to_string(reader_.announced()) + " bytes exceeds the cap of " +
                 std::to_string(self_.max_frame),
             true);
        return false;
      case frame_reader::status::invalid:
        fail(close_reason::protocol, "a frame does not verify against wire.fbs", true);
        return false;
      case frame_reader::status::frame:
        activity_ = true;
        handle(*f);
        break;
    }
  }
  return false;
}

void session::handle(const wire::Frame& f) {
  // A union may name its type and still leave its value out.
  if (f.body_type() != wire::Body::NONE && f.body() == nullptr)
    return fail(close_reason::protocol,
                std::string("a ") + wire::EnumNameBody(f.body_type()) + " frame without its body", true);
  switch (f.body_type()) {
    case wire::Body::Hello:
      if (state_ != state::hello_sent) return fail(close_reason::protocol, "a second Hello", true);
      return on_hello(*f.body_as_Hello());
    case wire::Body::Auth:
      if (state_ != state::auth_sent) return fail(close_reason::protocol, "Auth out of place", true);
      return on_auth(*f.body_as_Auth());
    case wire::Body::Disconnect: {
      const auto* s = f.body_as_Disconnect()->reason();
      std::string text = s ? s->str() : std::string("no reason given");
      const std::string code = text.substr(0, text.find(':'));
      close_reason r = close_reason::peer_closed;
      if (code == "duplicate") {
        r = close_reason::duplicate;
      } else if (code == "shutdown") {
        r = close_reason::peer_left;
      } else if (state_ != state::up && (code == "version" || code == "cluster" ||
                                         code == "secret" || code == "address")) {
        r = close_reason::refused;
      }
      return fail(r, "the peer closed the connection: " + text, false);
    }
    case wire::Body::Heartbeat:
      if (state_ != state::up) return fail(close_reason::protocol, "a Heartbeat before the handshake", true);
      return;
    case wire::Body::NONE:
      return fail(close_reason::protocol, "a frame with no body", true);
    default:
      if (state_ != state::up)
        return fail(close_reason::protocol,
                    std::string("a ") + wire::EnumNameBody(f.body_type()) +
                        " frame before the handshake finished",
                    true);
      events_.on_frame(f);
  }
}

void session::on_hello(const wire::Hello& h) {
  if (h.version() != protocol_version)
    return fail(close_reason::version,
                "the peer speaks protocol version " + std::to_string(h.version()) +
                    ", this node speaks " + std::to_string(protocol_version),
                true);
  const std::string cluster = h.cluster() ? h.cluster()->str() : std::string();
  if (cluster != self_.cluster)
    return fail(close_reason::cluster,
                "the peer is in cluster '" + cluster + "', this node in '" + self_.cluster + "'",
                true);
  if (!h.nonce() || h.nonce()->size() != nonce_size)
    return fail(close_reason::protocol, "the Hello has no challenge of 32 bytes", true);
  if (!h.address() || h.address()->size() == 0)
    return fail(close_reason::protocol, "the Hello names no address", true);
  peer_.node = h.node() ? h.node()->str() : std::string();
  peer_.address = h.address()->str();
  peer_.incarnation = h.incarnation();
  std::copy(h.nonce()->begin(), h.nonce()->end(), peer_nonce_.begin());
  if (peer_.address == self_.address)
    return fail(close_reason::address, "the peer claims this node's own address " + peer_.address,
                true);
  session_events::verdict v = events_.on_hello(peer_);
  if (!v.accept) return fail(v.reason, std::move(v.detail), true);
  const mac proof = prove(self_.secret, self_.address, peer_.address, peer_nonce_, nonce_);
  state_ = state::auth_sent;
  events_.write(encode_frame([&](flatbuffers::FlatBufferBuilder& b) {
    auto auth = wire::CreateAuth(b, b.CreateVector(proof.data(), proof.size()));
    return std::pair(wire::Body::Auth, auth.Union());
  }));
}

void session::on_auth(const wire::Auth& a) {
  const mac expected = prove(self_.secret, peer_.address, self_.address, nonce_, peer_nonce_);
  const auto* m = a.mac();
  if (!m || !proof_matches(expected, {m->data(), m->size()}))
    return fail(close_reason::secret,
                "the peer's proof of the cluster secret is wrong (a different secret_file?)", true);
  state_ = state::up;
  events_.on_up();
}

void session::close(close_reason reason, std::string detail) {
  fail(reason, std::move(detail), true);
}

void session::fail(close_reason reason, std::string detail, bool tell_peer) {
  if (state_ == state::closed) return;
  state_ = state::closed;
  reason_ = reason;
  detail_ = std::move(detail);
  if (!tell_peer) return;
  const std::string text = std::string(to_string(reason)) + ": " + detail_;
  events_.write(encode_frame([&](flatbuffers::FlatBufferBuilder& b) {
    auto d = wire::CreateDisconnect(b, b.CreateString(text));
    return std::pair(wire::Body::Disconnect, d.Union());
  }));
}

}  // namespace troupe::remote
