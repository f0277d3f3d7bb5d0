#pragma once
// Message type ids: the 64-bit FNV-1a hash of a FlatBuffers table's
// fully-qualified name ("counter.Add"). The same function runs in plugins,
// in the gateway and on the wire, so ids agree everywhere without a registry.
#include <cstdint>
#include <string_view>

namespace troupe {

using type_id = std::uint64_t;

constexpr type_id hash_type_name(std::string_view name) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

// Type id of a generated FlatBuffers table (flatc --gen-name-strings).
template <class T>
constexpr type_id type_id_of() noexcept {
  return hash_type_name(T::GetFullyQualifiedName());
}

}  // namespace troupe
