#include "remote/session.hpp"

#include <utility>

namespace troupe::remote {

const char* to_string(close_reason r) noexcept {
  switch (r) {
    case close_reason::version: return "version";
    case close_reason::cluster: return "cluster";
    case close_reason::secret: return "secret";
    case close_reason::certificate: return "certificate";
    case close_reason::tls: return "tls";
    case close_reason::address: return "address";
    case close_reason::handshake_timeout: return "timeout";
    case close_reason::limit: return "limit";
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
    : self_(self), events_(events), reader_(std::min(self.max_frame, handshake_max_frame)) {}

void session::start() {
  events_.write(encode_frame([&](flatbuffers::FlatBufferBuilder& b) {
    auto cluster = b.CreateString(self_.cluster);
    auto node = b.CreateString(self_.node);
    auto address = b.CreateString(self_.address);
    wire::HelloBuilder hello(b);
    hello.add_version(protocol_version);
    hello.add_min_version(oldest_protocol_version);
    hello.add_cluster(cluster);
    hello.add_node(node);
    hello.add_address(address);
    hello.add_incarnation(self_.incarnation);
    return std::pair(wire::Body::Hello, hello.Finish().Union());
  }));
}

bool session::process() {
  while (state_ != state::closed) {
    if (held_) return true;
    const wire::Frame* f = nullptr;
    switch (reader_.next(f)) {
      case frame_reader::status::need_more:
        return true;
      case frame_reader::status::oversized:
        fail(close_reason::protocol,
             "a frame of " + std::to_string(reader_.announced()) + " bytes exceeds the cap of " +
                 std::to_string(reader_.max_frame()) + (up() ? "" : " before the handshake"),
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
  if (state_ == state::up && f.ack() != 0) events_.on_ack(f.ack());
  switch (f.body_type()) {
    case wire::Body::Hello:
      if (state_ != state::hello_sent) return fail(close_reason::protocol, "a second Hello", true);
      return on_hello(*f.body_as_Hello());
    case wire::Body::Welcome:
      if (state_ != state::welcome_sent) return fail(close_reason::protocol, "Welcome out of place", true);
      return on_welcome(*f.body_as_Welcome());
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
                                         code == "secret" || code == "certificate" || code == "address")) {
        r = close_reason::refused;
      }
      return fail(r, "the peer closed the connection: " + text, false);
    }
    case wire::Body::Heartbeat:
    case wire::Body::Ack:
      if (state_ != state::up)
        return fail(close_reason::protocol,
                    std::string("a ") + wire::EnumNameBody(f.body_type()) + " before the handshake", true);
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
  // The newest version both speak, if it is one both still speak.
  const std::uint16_t peer_max = h.version();
  const std::uint16_t peer_min = h.min_version() == 0 ? peer_max : h.min_version();
  const std::uint16_t agreed = std::min(peer_max, protocol_version);
  if (agreed < std::max(peer_min, oldest_protocol_version)) {
    auto range = [](std::uint16_t lo, std::uint16_t hi) {
      return lo == hi ? std::to_string(hi) : std::to_string(lo) + " to " + std::to_string(hi);
    };
    return fail(close_reason::version,
                "the peer speaks protocol version " + range(peer_min, peer_max) +
                    ", this node speaks " + range(oldest_protocol_version, protocol_version),
                true);
  }
  const std::string cluster = h.cluster() ? h.cluster()->str() : std::string();
  if (cluster != self_.cluster)
    return fail(close_reason::cluster,
                "the peer is in cluster '" + cluster + "', this node in '" + self_.cluster + "'",
                true);
  if (!h.address() || h.address()->size() == 0)
    return fail(close_reason::protocol, "the Hello names no address", true);
  if (!h.node() || h.node()->size() == 0)
    return fail(close_reason::protocol, "the Hello names no node", true);
  peer_.node = h.node()->str();
  peer_.address = h.address()->str();
  peer_.incarnation = h.incarnation();
  // A shared key proves "a member", not which one: a connection to itself
  // (reflected by a relay, or a node given its own address as a seed) is
  // not a peer.
  if (peer_.address == self_.address ||
      (peer_.incarnation == self_.incarnation && peer_.node == self_.node))
    return fail(close_reason::address,
                "the peer is this node itself (" + peer_.node + " at " + peer_.address + ")", true);
  session_events::verdict v = events_.on_hello(peer_);
  if (!v.accept) return fail(v.reason, std::move(v.detail), true);
  version_ = agreed;
  state_ = state::welcome_sent;
  events_.write(encode_frame([&](flatbuffers::FlatBufferBuilder& b) {
    return std::pair(wire::Body::Welcome, wire::CreateWelcome(b, agreed, v.received).Union());
  }));
}

void session::on_welcome(const wire::Welcome& w) {
  if (w.version() != version_)
    return fail(close_reason::version,
                "the peer chose protocol version " + std::to_string(w.version()) + ", this node " +
                    std::to_string(version_),
                true);
  state_ = state::up;
  reader_.set_max_frame(self_.max_frame);
  events_.on_up(w.received());
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
