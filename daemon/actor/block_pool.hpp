#pragma once
// Blocks of whole cache lines in size classes, with a free list per thread
// and batches of 64 blocks moving between threads through a shared pool (one
// short lock per batch, none per block): envelopes, actor cells and timers
// are allocated on one thread and often freed on another. Builds with
// AddressSanitizer bypass the pool so that every misuse is still caught.
// Blocks come from slabs mapped from the system; release_idle() hands back
// the slabs whose every block is free in the shared pool.
#include <cstddef>
#include <cstdint>

namespace troupe {

namespace block_pool {
// Blocks of whole cache lines: 64 fits a timer or an envelope without
// payload (wake tokens), 192 an actor cell, the rest envelopes. Larger
// requests are the oversize class, allocated on their own.
inline constexpr std::size_t class_sizes[] = {64, 128, 192, 256, 384, 512, 1024, 2048, 4096};
inline constexpr std::uint8_t oversize_class = 0xff;
// The memory a block of `size_class` takes; `requested` for the oversize class.
inline std::size_t block_bytes(std::uint8_t size_class, std::size_t requested) noexcept {
  return size_class == oversize_class ? requested : class_sizes[size_class];
}

void* allocate(std::size_t bytes, std::uint8_t& size_class);
void deallocate(void* p, std::uint8_t size_class) noexcept;
std::uint8_t size_class_of(std::size_t bytes) noexcept;

// Unmaps the slabs whose blocks are all free in the shared pool (blocks in
// threads' own caches keep theirs) and returns how many bytes went back to
// the system. Walks every free block: for housekeeping, off the hot paths.
std::size_t release_idle();
// False in AddressSanitizer builds, where every block is allocated on its own.
bool enabled() noexcept;

struct pool_stats {
  std::size_t mapped_bytes = 0;  // slabs held from the system
  std::size_t idle_bytes = 0;    // of which free, waiting in the shared pool
};
pool_stats stats();
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
