#pragma once
// Small CPU-level helpers shared by the lock-free parts of the runtime.
#include <cstddef>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

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

#if defined(__x86_64__) || defined(__i386__)
// Whether the CPU has PREFETCHW. The compiler emits it only when built for
// such CPUs, and a build for any x86-64 would get a read prefetch instead:
// the line then comes shared, and the write that follows waits for the
// other core again to own it. Read once, at start-up (false until then:
// the read prefetch, which every CPU has).
inline const bool cpu_has_prefetchw = [] {
  unsigned a, b, c, d;
  return __get_cpuid(0x80000001, &a, &b, &c, &d) != 0 && (c & bit_PRFCHW) != 0;
}();
#endif

// Starts fetching the line at `p` to write it: a line last written on
// another core arrives owned, so the write finds it ready. `p` may be any
// address (a prefetch never faults).
inline void prefetch_for_write(const void* p) noexcept {
#if defined(__x86_64__) || defined(__i386__)
  if (cpu_has_prefetchw) {
    asm volatile("prefetchw (%0)" : : "r"(p));
    return;
  }
#endif
  __builtin_prefetch(p, 1);
}

}  // namespace troupe
