#pragma once
// Message type ids: the 64-bit FNV-1a hash of a FlatBuffers table's
// fully-qualified name ("counter.Add"). The node, plugins, the gateway and
// the wire all compute them the same way, so ids agree without a registry.
#include <cstdint>
#include <string_view>

namespace troupe {

// A message type id.
using type_id = std::uint64_t;

// The type id of the table named `name` (fully qualified, dotted).
constexpr type_id hash_type_name(std::string_view name) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

// The type id of a generated FlatBuffers table (flatc --gen-name-strings).
template <class T>
constexpr type_id type_id_of() noexcept {
  return hash_type_name(T::GetFullyQualifiedName());
}

}  // namespace troupe
