#pragma once
// The protocol of one node-to-node connection inside its channel (TLS, or
// plaintext when the operator asked for it), apart from the socket: it cuts
// the byte stream into verified frames, runs the identity exchange (Hello
// both ways, then Welcome both ways) and passes the frames of a welcomed
// peer on. Until then only small frames are read. The transport feeds it
// the channel's plaintext; the fuzz target feeds it anything at all.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "remote/frame.hpp"

namespace troupe::remote {

// Who this node is to its peers.
struct identity {
  std::string cluster;
  std::string node;
  std::string address;  // advertised: the first half of this node's PIDs
  // This start of the node (its generation): a new one is a new peer, whose
  // actors are not the old one's. 0: a random one.
  std::uint64_t incarnation = 0;
  std::size_t max_frame = default_max_frame;
};

// Why a connection ends. The first group are handshake failures.
enum class close_reason : std::uint8_t {
  version,            // no protocol version both sides speak
  cluster,            // the peer is in another cluster
  secret,             // the peer holds none of this node's cluster secrets
  certificate,        // the peer's certificate is not valid, or names another node
  tls,                // the TLS handshake failed otherwise (or the peer does not speak TLS)
  address,            // the peer is this node, or not the node that was dialed
  handshake_timeout,  // the handshake did not finish in time
  limit,              // too many connections in total, or from the peer's address
  refused,            // the peer refused this node's handshake
  duplicate,          // another connection to the same peer is kept instead
  protocol,           // a frame that is oversized, malformed or out of place
  heartbeat_timeout,  // the peer went quiet
  peer_closed,        // the peer closed, or said goodbye for a reason of its own
  peer_left,          // the peer said it is stopping
  io_error,           // the socket failed
  shutdown,           // this node is stopping
};
inline constexpr std::size_t close_reason_count = 16;
const char* to_string(close_reason r) noexcept;
bool is_handshake_failure(close_reason r) noexcept;

// What the peer said in its Hello.
struct peer_hello {
  std::string node;
  std::string address;
  std::uint64_t incarnation = 0;
};

class session_events {
 public:
  // Queues frame bytes (length prefix included) for the socket; the bytes
  // are only valid during the call.
  virtual void write(std::span<const std::uint8_t> frame) = 0;
  // The peer's Hello passed the version and cluster checks: accept it, or
  // refuse it with a reason (address, duplicate) and words for the log.
  struct verdict {
    bool accept = true;
    close_reason reason = close_reason::duplicate;
    std::string detail;
    // Accepted: what this node has received in order from this incarnation
    // of the peer (Welcome.received; see link.hpp).
    std::uint64_t received = 0;
  };
  virtual verdict on_hello(const peer_hello& hello) = 0;
  // Both sides welcomed each other: frames may flow. `received`: what the
  // peer has of this node's items (its Welcome.received).
  virtual void on_up(std::uint64_t received) = 0;
  // A frame from the welcomed peer (Batch, Watch, Terminated, ...).
  virtual void on_frame(const wire::Frame& frame) = 0;
  // The peer has received this node's items up to `ack` in order.
  virtual void on_ack(std::uint64_t ack) = 0;

 protected:
  ~session_events() = default;
};

class session {
 public:
  enum class state : std::uint8_t { hello_sent, welcome_sent, up, closed };

  session(const identity& self, session_events& events);
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  // Sends this node's Hello (once the channel is established).
  void start();

  // Room for bytes from the channel, then how many arrived. process()
  // handles every whole frame; it returns false once the session is closed.
  // commit() is both.
  std::span<std::uint8_t> prepare(std::size_t hint) { return reader_.prepare(hint); }
  void received(std::size_t n) noexcept { reader_.commit(n); }
  bool process();
  bool commit(std::size_t n) {
    received(n);
    return process();
  }

  // While held, process() leaves whole frames waiting in the buffer
  // (back-pressure: the transport stops reading the socket as well).
  void hold(bool on) noexcept { held_ = on; }
  bool held() const noexcept { return held_; }
  // Ends the session from this side, telling the peer why (once).
  void close(close_reason reason, std::string detail);

  state current() const noexcept { return state_; }
  bool up() const noexcept { return state_ == state::up; }
  const peer_hello& peer() const noexcept { return peer_; }
  // The protocol version agreed on (valid once up).
  std::uint16_t version() const noexcept { return version_; }
  // Why it closed (valid once closed) and the words that go with it.
  close_reason reason() const noexcept { return reason_; }
  const std::string& detail() const noexcept { return detail_; }
  // True when a frame arrived since the last call (heartbeat checks).
  bool take_activity() noexcept { return std::exchange(activity_, false); }

  // For the fuzz target only: skip the handshake as if it had succeeded.
  void assume_up_for_fuzzing() noexcept {
    state_ = state::up;
    reader_.set_max_frame(self_.max_frame);
  }

 private:
  void handle(const wire::Frame& f);
  void on_hello(const wire::Hello& h);
  void on_welcome(const wire::Welcome& w);
  void fail(close_reason reason, std::string detail, bool tell_peer);

  const identity& self_;
  session_events& events_;
  frame_reader reader_;
  peer_hello peer_;
  std::uint16_t version_ = 0;
  state state_ = state::hello_sent;
  close_reason reason_ = close_reason::peer_closed;
  std::string detail_;
  bool activity_ = false;
  bool held_ = false;
};

}  // namespace troupe::remote
