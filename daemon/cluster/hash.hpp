#pragma once
// The cluster's hashes: FNV-1a over bytes (seeded, so that several fields
// chain into one hash) and a 64-bit finaliser that spreads its bits.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace troupe::cluster {

inline constexpr std::uint64_t fnv_offset = 0xcbf29ce484222325ull;

constexpr std::uint64_t fnv1a(const void* data, std::size_t n, std::uint64_t h = fnv_offset) noexcept {
  const auto* c = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= c[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

constexpr std::uint64_t fnv1a(std::string_view s, std::uint64_t h = fnv_offset) noexcept {
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

// MurmurHash3's 64-bit finaliser: every input bit flips about half the
// output bits, which FNV alone does not give for short, similar inputs.
constexpr std::uint64_t mix(std::uint64_t x) noexcept {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

}  // namespace troupe::cluster
