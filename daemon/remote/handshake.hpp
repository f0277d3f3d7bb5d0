#pragma once
// The proof of the cluster secret that each side of a connection gives the
// other: an HMAC-SHA256 over both addresses and both nonces, so a proof
// answers one challenge on one connection in one direction and cannot be
// replayed or reflected.
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace troupe::remote {

inline constexpr std::size_t nonce_size = 32;
inline constexpr std::size_t mac_size = 32;

using nonce = std::array<std::uint8_t, nonce_size>;
using mac = std::array<std::uint8_t, mac_size>;

// Random bytes from the system's cryptographic generator.
nonce random_nonce();
std::uint64_t random_u64();

// HMAC-SHA256(secret, "troupe-auth-1" | prover | 0 | verifier | 0 |
// verifier_nonce | prover_nonce).
mac prove(std::string_view secret, std::string_view prover_address,
          std::string_view verifier_address, std::span<const std::uint8_t> verifier_nonce,
          std::span<const std::uint8_t> prover_nonce);

// Constant-time comparison of a received proof with the expected one.
bool proof_matches(const mac& expected, std::span<const std::uint8_t> received) noexcept;

}  // namespace troupe::remote
