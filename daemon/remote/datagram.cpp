#include "remote/datagram.hpp"

#include <cstring>
#include <memory>
#include <stdexcept>

#include <openssl/evp.h>
#include <openssl/rand.h>

namespace troupe::remote {

namespace {

constexpr std::uint8_t version = 1;
constexpr std::size_t nonce_size = 12, tag_size = 16;
// Senders whose windows are kept; past it the least recently used goes
// (a sender that authenticated: only members can take a place).
constexpr std::size_t max_windows = 4096;

using cipher_ctx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

void put64(std::vector<std::uint8_t>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

std::uint64_t get64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

bool gcm(bool encrypt, const key256& key, const std::uint8_t* nonce, std::span<const std::uint8_t> aad,
         std::span<const std::uint8_t> in, std::uint8_t* out, std::uint8_t* tag) {
  cipher_ctx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int n = 0;
  if (!ctx || (encrypt ? EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nonce)
                       : EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nonce)) != 1)
    return false;
  if ((encrypt ? EVP_EncryptUpdate(ctx.get(), nullptr, &n, aad.data(), static_cast<int>(aad.size()))
               : EVP_DecryptUpdate(ctx.get(), nullptr, &n, aad.data(), static_cast<int>(aad.size()))) != 1)
    return false;
  if (!in.empty() && (encrypt ? EVP_EncryptUpdate(ctx.get(), out, &n, in.data(), static_cast<int>(in.size()))
                              : EVP_DecryptUpdate(ctx.get(), out, &n, in.data(), static_cast<int>(in.size()))) != 1)
    return false;
  if (encrypt) {
    return EVP_EncryptFinal_ex(ctx.get(), out + in.size(), &n) == 1 &&
           EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, tag_size, tag) == 1;
  }
  return EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, tag_size, tag) == 1 &&
         EVP_DecryptFinal_ex(ctx.get(), out + in.size(), &n) == 1;
}

}  // namespace

const char* datagram_seal::to_string(verdict v) noexcept {
  switch (v) {
    case verdict::ok: return "ok";
    case verdict::malformed: return "malformed";
    case verdict::wrong_cluster: return "cluster";
    case verdict::unauthenticated: return "key";
    case verdict::replayed: return "replayed";
    case verdict::stale: return "stale";
  }
  return "malformed";
}

datagram_seal::datagram_seal(std::string cluster, const std::vector<std::string>& secrets)
    : cluster_(std::move(cluster)) {
  if (cluster_.size() > 255) throw std::invalid_argument("a cluster name longer than 255 bytes");
  set_secrets(secrets);
}

void datagram_seal::set_secrets(const std::vector<std::string>& secrets) {
  if (secrets.empty()) throw std::invalid_argument("datagrams need a cluster secret");
  keys_.clear();
  for (const std::string& s : secrets) keys_.push_back(derive_key(s, "troupe cluster datagram v1"));
}

std::size_t datagram_seal::overhead(std::size_t name_size) const noexcept {
  return 2 + 1 + 1 + cluster_.size() + 1 + name_size + 8 + 8 + nonce_size + tag_size;
}

std::vector<std::uint8_t> datagram_seal::seal(std::string_view name, std::uint64_t generation,
                                              std::span<const std::uint8_t> plain) {
  if (name.size() > 255) throw std::invalid_argument("a node name longer than 255 bytes");
  std::vector<std::uint8_t> out;
  out.reserve(overhead(name.size()) + plain.size());
  out.push_back('T');
  out.push_back('D');
  out.push_back(version);
  out.push_back(static_cast<std::uint8_t>(cluster_.size()));
  out.insert(out.end(), cluster_.begin(), cluster_.end());
  out.push_back(static_cast<std::uint8_t>(name.size()));
  out.insert(out.end(), name.begin(), name.end());
  put64(out, generation);
  put64(out, ++counter_);
  std::uint8_t nonce[nonce_size];
  if (RAND_bytes(nonce, nonce_size) != 1) throw std::runtime_error("the system's random generator failed");
  out.insert(out.end(), nonce, nonce + nonce_size);
  const std::size_t header = out.size();
  out.resize(header + plain.size() + tag_size);
  if (!gcm(true, keys_.front(), nonce, {out.data(), header - nonce_size}, plain, out.data() + header,
           out.data() + header + plain.size()))
    throw std::runtime_error("AES-256-GCM failed");
  return out;
}

datagram_seal::verdict datagram_seal::open(std::span<const std::uint8_t> d, std::vector<std::uint8_t>& plain,
                                           sender& from) {
  // Read the header, checking every length against what is there.
  std::size_t at = 0;
  auto need = [&](std::size_t n) { return d.size() >= at + n; };
  if (!need(4) || d[0] != 'T' || d[1] != 'D' || d[2] != version) return verdict::malformed;
  const std::size_t cluster_size = d[3];
  at = 4;
  if (!need(cluster_size + 1)) return verdict::malformed;
  const std::string_view cluster(reinterpret_cast<const char*>(d.data() + at), cluster_size);
  at += cluster_size;
  const std::size_t name_size = d[at++];
  if (name_size == 0 || !need(name_size + 16 + nonce_size + tag_size)) return verdict::malformed;
  if (cluster != cluster_) return verdict::wrong_cluster;
  sender s;
  s.name.assign(reinterpret_cast<const char*>(d.data() + at), name_size);
  at += name_size;
  s.generation = get64(d.data() + at);
  s.counter = get64(d.data() + at + 8);
  at += 16;
  const std::uint8_t* nonce = d.data() + at;
  const std::span<const std::uint8_t> aad(d.data(), at);
  at += nonce_size;
  const std::size_t body = d.size() - at - tag_size;
  std::uint8_t tag[tag_size];
  std::memcpy(tag, d.data() + d.size() - tag_size, tag_size);
  plain.resize(body);
  bool ok = false;
  for (const key256& k : keys_)
    if (gcm(false, k, nonce, aad, {d.data() + at, body}, plain.data(), tag)) {
      ok = true;
      break;
    }
  if (!ok) {
    plain.clear();
    return verdict::unauthenticated;
  }
  // Authenticated: only now may it touch the windows.
  const auto it = windows_.find(s.name);
  if (it != windows_.end() && s.generation < it->second.generation) {
    plain.clear();
    return verdict::stale;
  }
  if (!take(s)) {
    plain.clear();
    return verdict::replayed;
  }
  from = std::move(s);
  return verdict::ok;
}

bool datagram_seal::take(const sender& s) {
  auto it = windows_.find(s.name);
  if (it == windows_.end() || s.generation > it->second.generation) {
    if (it == windows_.end() && windows_.size() >= max_windows) {
      auto oldest = windows_.begin();
      for (auto w = windows_.begin(); w != windows_.end(); ++w)
        if (w->second.used < oldest->second.used) oldest = w;
      windows_.erase(oldest);
    }
    windows_[s.name] = {s.generation, s.counter, 1, ++uses_};
    return true;
  }
  window& w = it->second;
  w.used = ++uses_;
  if (s.counter > w.highest) {
    const std::uint64_t shift = s.counter - w.highest;
    w.seen = shift >= 64 ? 1 : (w.seen << shift) | 1;
    w.highest = s.counter;
    return true;
  }
  const std::uint64_t back = w.highest - s.counter;
  if (back >= 64) return false;  // too old to tell: refused as a replay
  const std::uint64_t bit = std::uint64_t{1} << back;
  if ((w.seen & bit) != 0) return false;
  w.seen |= bit;
  return true;
}

}  // namespace troupe::remote
