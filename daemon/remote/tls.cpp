#include "remote/tls.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace troupe::remote {

namespace {

// TLS_AES_128_GCM_SHA256: the suite a pre-shared key is bound to (its hash
// must be the handshake's; every TLS 1.3 implementation has this one).
constexpr unsigned char psk_suite[2] = {0x13, 0x01};

std::string openssl_error(const char* what) {
  std::string s = what;
  unsigned long e;
  bool first = true;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    s += first ? ": " : "; ";
    s += buf;
    first = false;
  }
  return s;
}

// The write side of a channel: records are appended to its output vector,
// so that the transport writes them without another copy out of a BIO.
int out_write(BIO* b, const char* data, std::size_t len, std::size_t* written) {
  auto* v = static_cast<std::vector<std::uint8_t>*>(BIO_get_data(b));
  v->insert(v->end(), data, data + len);
  *written = len;
  return 1;
}

long out_ctrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

int out_create(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

BIO_METHOD* out_method() {
  static BIO_METHOD* m = [] {
    BIO_METHOD* method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "troupe-out");
    BIO_meth_set_write_ex(method, out_write);
    BIO_meth_set_ctrl(method, out_ctrl);
    BIO_meth_set_create(method, out_create);
    return method;
  }();
  return m;
}

SSL_SESSION* psk_session(SSL* ssl, const key256& key) {
  const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, psk_suite);
  SSL_SESSION* s = cipher ? SSL_SESSION_new() : nullptr;
  if (!s) return nullptr;
  if (!SSL_SESSION_set1_master_key(s, key.data(), key.size()) || !SSL_SESSION_set_cipher(s, cipher) ||
      !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
    SSL_SESSION_free(s);
    return nullptr;
  }
  return s;
}

}  // namespace

// OpenSSL's callbacks, with access to the channel behind an SSL.
struct tls_callbacks {
  static tls_channel& of(SSL* ssl) { return *static_cast<tls_channel*>(SSL_get_app_data(ssl)); }

  // Dialing: offer the first secret.
  static int use_session(SSL* ssl, const EVP_MD* md, const unsigned char** id, std::size_t* idlen,
                         SSL_SESSION** sess) {
    tls_channel& ch = of(ssl);
    *sess = nullptr;
    if (!ch.keys_ || ch.keys_->empty()) return 1;
    const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, psk_suite);
    if (md != nullptr && (!cipher || SSL_CIPHER_get_handshake_digest(cipher) != md)) return 1;
    const tls_context::psk& k = ch.keys_->front();
    ch.offered_identity_ = k.identity;
    *sess = psk_session(ssl, k.key);
    *id = reinterpret_cast<const unsigned char*>(ch.offered_identity_.data());
    *idlen = ch.offered_identity_.size();
    return *sess ? 1 : 0;
  }

  // Accepting: any secret of ours, found by the identity the peer offers.
  static int find_session(SSL* ssl, const unsigned char* id, std::size_t len, SSL_SESSION** sess) {
    tls_channel& ch = of(ssl);
    *sess = nullptr;
    const std::string_view offered(reinterpret_cast<const char*>(id), len);
    if (ch.keys_)
      for (const tls_context::psk& k : *ch.keys_)
        if (k.identity == offered) {
          *sess = psk_session(ssl, k.key);
          return *sess ? 1 : 0;
        }
    ch.unknown_key_ = true;
    return 1;  // no key: the handshake fails
  }
};

// ---------------------------------------------------------------------------

std::unique_ptr<tls_context> tls_context::make(const credentials& c, std::string& error) {
  std::unique_ptr<tls_context> t(new tls_context);
  t->ctx_ = SSL_CTX_new(TLS_method());
  if (!t->ctx_) {
    error = openssl_error("cannot make a TLS context");
    return nullptr;
  }
  SSL_CTX* ctx = t->ctx_;
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  // Links are long-lived and authenticated afresh on every connection: no
  // tickets, no resumption, so no 0-RTT data (replayable) either.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_max_early_data(ctx, 0);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
  // Bounds what an unauthenticated peer can make this node hold.
  SSL_CTX_set_max_cert_list(ctx, 64 << 10);
  if (c.certificates()) {
    t->certificates_ = true;
    if (SSL_CTX_use_certificate_chain_file(ctx, c.cert_file.c_str()) != 1) {
      error = openssl_error(("cannot use the certificate " + c.cert_file).c_str());
      return nullptr;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, c.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
      error = openssl_error(("cannot use the key " + c.key_file).c_str());
      return nullptr;
    }
    if (SSL_CTX_load_verify_locations(ctx, c.ca_file.c_str(), nullptr) != 1) {
      error = openssl_error(("cannot use the CA file " + c.ca_file).c_str());
      return nullptr;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  } else {
    // The suites a key bound to SHA-256 can be used with.
    SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256");
    SSL_CTX_set_psk_use_session_callback(ctx, tls_callbacks::use_session);
    SSL_CTX_set_psk_find_session_callback(ctx, tls_callbacks::find_session);
  }
  t->set_secrets(c.secrets);
  ERR_clear_error();
  return t;
}

tls_context::~tls_context() { SSL_CTX_free(ctx_); }

void tls_context::set_secrets(const std::vector<std::string>& secrets) {
  auto keys = std::make_shared<std::vector<psk>>();
  for (const std::string& s : secrets) {
    const key256 id = derive_key(s, "troupe tls 1.3 psk identity v1");
    keys->push_back({"troupe-" + hex(id.data(), 8), derive_key(s, "troupe tls 1.3 psk v1")});
  }
  std::lock_guard lock(mu_);
  keys_ = std::move(keys);
}

std::shared_ptr<const std::vector<tls_context::psk>> tls_context::keys() const {
  std::lock_guard lock(mu_);
  return keys_;
}

// ---------------------------------------------------------------------------

tls_channel::tls_channel(tls_context& ctx, bool client) : keys_(ctx.keys()) {
  ssl_ = SSL_new(ctx.native());
  in_ = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(in_, -1);  // empty means "wait for more", not end of stream
  BIO* out = BIO_new(out_method());
  BIO_set_data(out, &out_);
  SSL_set_bio(ssl_, in_, out);
  SSL_set_app_data(ssl_, this);
  if (client) SSL_set_connect_state(ssl_);
  else SSL_set_accept_state(ssl_);
}

tls_channel::~tls_channel() { SSL_free(ssl_); }

void tls_channel::received(std::span<const std::uint8_t> cipher) {
  if (!cipher.empty()) BIO_write(in_, cipher.data(), static_cast<int>(cipher.size()));
}

tls_channel::status tls_channel::handshake() {
  if (established_ || state_ != status::open) return state_;
  ERR_clear_error();
  const int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    established_ = true;
    return status::established;
  }
  return fail(rc);
}

tls_channel::status tls_channel::fail(int rc) {
  const int e = SSL_get_error(ssl_, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return state_;
  if (e == SSL_ERROR_ZERO_RETURN) {
    state_ = status::closed;
    error_ = "the peer closed the TLS channel";
    return state_;
  }
  state_ = status::failed;
  if (e == SSL_ERROR_SSL) {
    // openssl_error() empties the queue, as every later call expects.
    error_ = openssl_error("TLS");
    if (!established_ && SSL_get_verify_result(ssl_) != X509_V_OK)
      error_ += std::string(" (certificate: ") +
                X509_verify_cert_error_string(SSL_get_verify_result(ssl_)) + ")";
  } else {
    error_ = "TLS error " + std::to_string(e);
  }
  ERR_clear_error();
  return state_;
}

long tls_channel::read(std::span<std::uint8_t> room) {
  if (state_ != status::open) return -1;
  // Nothing buffered, decrypted or not: spare OpenSSL a call that can only
  // say "want more". (The error queue is kept empty by fail(), so no
  // ERR_clear_error here: in OpenSSL 3 it costs as much as a record.)
  if (SSL_pending(ssl_) == 0 && BIO_ctrl_pending(in_) == 0) return 0;
  std::size_t got = 0;
  const int rc = SSL_read_ex(ssl_, room.data(), room.size(), &got);
  if (rc == 1) return static_cast<long>(got);
  return fail(rc) == status::open ? 0 : -1;
}

bool tls_channel::write(std::span<const std::uint8_t> plain) {
  if (!established_ || state_ != status::open) return false;
  std::size_t done = 0;
  while (done < plain.size()) {
    std::size_t n = 0;
    // Memory never pushes back: a write either takes everything or fails.
    if (SSL_write_ex(ssl_, plain.data() + done, plain.size() - done, &n) != 1) {
      fail(0);
      if (state_ == status::open) {
        state_ = status::failed;
        error_ = "TLS write failed";
      }
      return false;
    }
    done += n;
  }
  return true;
}

void tls_channel::shutdown() {
  if (established_ && state_ == status::open) SSL_shutdown(ssl_);
  ERR_clear_error();
}

bool tls_channel::certificate_names(const std::string& node) const {
  X509* cert = SSL_get0_peer_certificate(ssl_);
  return cert != nullptr && X509_check_host(cert, node.data(), node.size(), 0, nullptr) == 1;
}

std::string tls_channel::cipher() const {
  const SSL_CIPHER* c = SSL_get_current_cipher(ssl_);
  return c ? SSL_CIPHER_get_name(c) : "none";
}

}  // namespace troupe::remote
