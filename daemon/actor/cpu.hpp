#pragma once
// Small CPU-level helpers shared by the lock-free parts of the runtime.
#include <cstddef>

namespace troupe {

// Two adjacent lines: the adjacent-line prefetcher on x86 pulls pairs, so
// separating hot fields by 128 bytes avoids false sharing in practice.
inline constexpr std::size_t cache_line = 64;
inline constexpr std::size_t false_sharing_range = 128;

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace troupe
