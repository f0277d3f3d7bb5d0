#pragma once
// The few primitives the transport needs from OpenSSL outside TLS itself:
// random numbers and keys derived from the cluster secret, each under a
// label of its own so that no two uses ever share a key.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace troupe::remote {

using key256 = std::array<std::uint8_t, 32>;

// Random bytes from the system's cryptographic generator.
std::uint64_t random_u64();

// HKDF-SHA256(secret, salt "troupe", info `label`): 32 bytes.
key256 derive_key(std::string_view secret, std::string_view label);

// Lower-case hex of `n` bytes.
std::string hex(const std::uint8_t* data, std::size_t n);

}  // namespace troupe::remote
