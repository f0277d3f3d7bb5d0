#pragma once
// Thin wrappers over the Linux futex: the cheapest way to park a thread on a
// 32-bit word and to wake it.
#include <atomic>
#include <chrono>
#include <cstdint>

namespace troupe::futex {

// Sleeps while `word` holds `expected`, at most `timeout` (0: no limit).
// Returns on wake, timeout, signal or a changed value; callers re-check.
void wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
          std::chrono::nanoseconds timeout = std::chrono::nanoseconds{0}) noexcept;

// Wakes up to `count` threads sleeping on `word`.
void wake(std::atomic<std::uint32_t>& word, int count = 1) noexcept;

}  // namespace troupe::futex
