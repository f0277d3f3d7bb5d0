#pragma once
// Blocks of whole cache lines in size classes, with a free list per thread
// and batches of 64 blocks moving between threads through a shared pool (one
// short lock per batch, none per block): envelopes, actor cells and timers
// are allocated on one thread and often freed on another. Builds with
// AddressSanitizer bypass the pool so that every misuse is still caught.
#include <cstddef>
#include <cstdint>

namespace troupe {

namespace block_pool {
void* allocate(std::size_t bytes, std::uint8_t& size_class);
void deallocate(void* p, std::uint8_t size_class) noexcept;
std::uint8_t size_class_of(std::size_t bytes) noexcept;
}  // namespace block_pool

// Gives a class its allocation from the pool.
struct pooled {
  static void* operator new(std::size_t bytes) {
    std::uint8_t c;
    return block_pool::allocate(bytes, c);
  }
  static void operator delete(void* p, std::size_t bytes) noexcept {
    block_pool::deallocate(p, block_pool::size_class_of(bytes));
  }
};

}  // namespace troupe
