#pragma once
// Datagrams between members (the cluster's probes and gossip), sealed with
// AES-256-GCM under a key derived from the cluster secret (a label of its
// own, never the TLS key). A datagram is
//
//   "TD" | version 1 | cluster (length-prefixed) | sender name (length-prefixed)
//   | generation (8) | counter (8) | nonce (12) | ciphertext | tag (16)
//
// and everything before the ciphertext is authenticated with it. The
// receiver checks the cluster name, tries every accepted secret (so a
// rotation needs no downtime), and keeps a sliding window of counters per
// sender and generation that refuses replays. Nothing of a datagram is
// trusted, or changes any state, before it has authenticated.
#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "remote/crypto.hpp"

namespace troupe::remote {

class datagram_seal {
 public:
  enum class verdict : std::uint8_t { ok, malformed, wrong_cluster, unauthenticated, replayed, stale };
  static constexpr std::size_t verdict_count = 6;
  static const char* to_string(verdict v) noexcept;

  struct sender {
    std::string name;
    std::uint64_t generation = 0;
    std::uint64_t counter = 0;
  };

  // `secrets`: the first seals, every one opens. Throws when there is none.
  datagram_seal(std::string cluster, const std::vector<std::string>& secrets);
  void set_secrets(const std::vector<std::string>& secrets);

  // Seals `plain` from (name, generation); the counter rises every call.
  std::vector<std::uint8_t> seal(std::string_view name, std::uint64_t generation, std::span<const std::uint8_t> plain);
  // Opens a datagram; on ok, `plain` and `from` are filled and the counter is
  // taken (a second copy of it is `replayed`). A newer generation of a name
  // replaces the older's window; datagrams of the older are `stale` then.
  verdict open(std::span<const std::uint8_t> datagram, std::vector<std::uint8_t>& plain, sender& from);

  // The bytes seal() adds around the plaintext, for a name of `name_size`.
  std::size_t overhead(std::size_t name_size) const noexcept;

 private:
  struct window {
    std::uint64_t generation = 0;
    std::uint64_t highest = 0;  // the highest counter taken
    std::uint64_t seen = 0;     // bit i: highest - i was taken
    std::uint64_t used = 0;     // when it was last used (for eviction)
  };
  bool take(const sender& s);

  std::string cluster_;
  std::vector<key256> keys_;
  std::uint64_t counter_ = 0;
  std::map<std::string, window> windows_;  // by sender name
  std::uint64_t uses_ = 0;
};

}  // namespace troupe::remote
