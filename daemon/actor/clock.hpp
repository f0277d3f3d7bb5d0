#pragma once
// The runtime's monotonic time in nanoseconds (steady_clock, a vDSO read).
#include <chrono>
#include <cstdint>

namespace troupe {

inline std::int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace troupe
