#pragma once
// TLS 1.3 for node-to-node links, from OpenSSL. A node proves that it is a
// member either with the cluster secret, used as a TLS 1.3 external
// pre-shared key (with an ephemeral key exchange, so a secret that leaks
// later does not open recorded traffic), or with a certificate signed by the
// cluster's CA (mutual TLS). Authentication, integrity and confidentiality
// all come from the TLS handshake and records; the node's identity (name,
// incarnation, protocol version) is exchanged afterwards, inside the
// channel, by the session.
//
// A channel works on memory only: the transport feeds it the bytes read
// from the socket and writes out what it produces. It is not thread-safe:
// the connection holds one lock around every call, reads and writes alike.
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include <openssl/types.h>

#include "remote/crypto.hpp"

namespace troupe::remote {

// How this node proves membership, and what it accepts from peers.
struct credentials {
  // Cluster secrets: the first is offered when dialing, every one is
  // accepted, so that a secret can be rotated by reloads without downtime.
  std::vector<std::string> secrets;
  // Mutual TLS instead, when all three are set: this node's certificate
  // chain and key (PEM), and the CA that signs every member's certificate.
  std::string cert_file, key_file, ca_file;
  bool certificates() const noexcept { return !cert_file.empty(); }
};

class tls_context {
 public:
  // Null with `error` set when the certificate files cannot be used.
  static std::unique_ptr<tls_context> make(const credentials& c, std::string& error);
  ~tls_context();
  tls_context(const tls_context&) = delete;
  tls_context& operator=(const tls_context&) = delete;

  bool certificates() const noexcept { return certificates_; }
  // Any thread: the secrets offered and accepted by handshakes from now on
  // (connections up already stay up).
  void set_secrets(const std::vector<std::string>& secrets);

  // A secret as TLS uses it: the key, and the identity that names it in a
  // handshake (derived from the secret, so it says nothing of it).
  struct psk {
    std::string identity;
    key256 key;
  };
  std::shared_ptr<const std::vector<psk>> keys() const;
  SSL_CTX* native() const noexcept { return ctx_; }

 private:
  tls_context() = default;
  SSL_CTX* ctx_ = nullptr;
  bool certificates_ = false;
  mutable std::mutex mu_;
  std::shared_ptr<const std::vector<psk>> keys_;
};

class tls_channel {
 public:
  tls_channel(tls_context& ctx, bool client);
  ~tls_channel();
  tls_channel(const tls_channel&) = delete;
  tls_channel& operator=(const tls_channel&) = delete;

  enum class status {
    open,         // alive (established() tells whether the handshake finished)
    established,  // the handshake finished: both sides are authenticated
    closed,       // the peer closed the channel (close_notify)
    failed,       // error() says why
  };

  // Bytes read from the socket.
  void received(std::span<const std::uint8_t> cipher);
  // Moves the handshake on (the client's first call writes its hello).
  status handshake();
  bool established() const noexcept { return established_; }
  // Decrypts into `room`: > 0 bytes, 0 when nothing whole is buffered,
  // < 0 when the channel closed or failed (status() says which).
  long read(std::span<std::uint8_t> room);
  // Encrypts `plain` (after the handshake).
  bool write(std::span<const std::uint8_t> plain);
  // Says goodbye (close_notify), best effort.
  void shutdown();
  // What the channel wants written to the socket, in order; the caller
  // takes it (swap it out) and writes it.
  std::vector<std::uint8_t>& output() noexcept { return out_; }

  status state() const noexcept { return state_; }
  const std::string& error() const noexcept { return error_; }
  // The peer offered a key that is none of this node's secrets.
  bool unknown_key() const noexcept { return unknown_key_; }
  // With certificates: whether the peer's certificate names `node`.
  bool certificate_names(const std::string& node) const;
  // The suite agreed on, for the log.
  std::string cipher() const;

 private:
  friend struct tls_callbacks;
  status fail(int rc);

  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;  // owned by ssl_
  std::vector<std::uint8_t> out_;
  std::string offered_identity_;
  std::shared_ptr<const std::vector<tls_context::psk>> keys_;
  bool established_ = false;
  bool unknown_key_ = false;
  status state_ = status::open;
  std::string error_;
};

}  // namespace troupe::remote
