#include "remote/handshake.hpp"

#include <stdexcept>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

namespace troupe::remote {

nonce random_nonce() {
  nonce n;
  if (RAND_bytes(n.data(), static_cast<int>(n.size())) != 1)
    throw std::runtime_error("the system's random generator failed");
  return n;
}

std::uint64_t random_u64() {
  std::uint64_t v = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&v), sizeof v) != 1)
    throw std::runtime_error("the system's random generator failed");
  return v;
}

mac prove(std::string_view secret, std::string_view prover_address,
          std::string_view verifier_address, std::span<const std::uint8_t> verifier_nonce,
          std::span<const std::uint8_t> prover_nonce) {
  std::string input = "troupe-auth-1";
  input.reserve(input.size() + prover_address.size() + verifier_address.size() + 2 +
                verifier_nonce.size() + prover_nonce.size());
  input.append(prover_address);
  input.push_back('\0');
  input.append(verifier_address);
  input.push_back('\0');
  input.append(reinterpret_cast<const char*>(verifier_nonce.data()), verifier_nonce.size());
  input.append(reinterpret_cast<const char*>(prover_nonce.data()), prover_nonce.size());
  mac out{};
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
            reinterpret_cast<const unsigned char*>(input.data()), input.size(), out.data(), &len) ||
      len != out.size())
    throw std::runtime_error("HMAC-SHA256 failed");
  return out;
}

bool proof_matches(const mac& expected, std::span<const std::uint8_t> received) noexcept {
  return received.size() == expected.size() &&
         CRYPTO_memcmp(expected.data(), received.data(), expected.size()) == 0;
}

}  // namespace troupe::remote
