// The block pool (block_pool.hpp): size classes, per-thread caches, and a
// shared pool of magazines (arrays of free blocks) carved from aligned
// slabs.
#include "actor/block_pool.hpp"
#include "actor/cpu.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <iterator>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define TROUPE_POOL_DISABLED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TROUPE_POOL_DISABLED 1
#endif
#endif

namespace troupe {

namespace {

using block_pool::class_sizes;
using block_pool::oversize_class;
constexpr std::size_t class_count = std::size(class_sizes);
constexpr std::size_t batch = 64;
// Blocks are carved from slabs of this size, mapped at an address that is a
// multiple of it: a block's slab is its address rounded down.
constexpr std::size_t slab_bytes = 256 << 10;

constexpr std::size_t block_size(std::size_t c) noexcept { return class_sizes[c]; }
constexpr std::size_t blocks_per_slab(std::size_t c) noexcept { return slab_bytes / block_size(c); }
static_assert(blocks_per_slab(class_count - 1) >= batch);

// The class of each size in whole cache lines, 1 to 64 of them: a lookup
// instead of a search on every allocation.
constexpr std::size_t line = 64;
constexpr std::size_t largest = class_sizes[class_count - 1];
static_assert(largest % line == 0);
struct class_table {
  std::uint8_t of_lines[largest / line + 1] = {};
  constexpr class_table() {
    std::size_t c = 0;
    for (std::size_t lines = 0; lines <= largest / line; ++lines) {
      while (lines * line > block_size(c)) ++c;
      of_lines[lines] = static_cast<std::uint8_t>(c);
    }
  }
};
constexpr class_table classes;
static_assert(classes.of_lines[1] == 0 && classes.of_lines[2] == 1 && classes.of_lines[3] == 2 &&
              classes.of_lines[7] == 5 && classes.of_lines[largest / line] == class_count - 1);

std::uint8_t class_for(std::size_t total) noexcept {
  if (total > largest) [[unlikely]]
    return oversize_class;
  return classes.of_lines[(total + line - 1) / line];
}

// Free blocks move between threads in magazines: arrays of up to `batch`
// pointers, not lists threaded through the blocks. Taking a block from an
// array reads no block: a block freed on another core (the receiver of a
// fan-in frees what its senders allocate) is not fetched until it is
// written, and the write does not stall. Walking a list would wait for
// each block's line in turn.
struct magazine {
  std::uint32_t count = 0;
  void* blocks[batch];
};

char* slab_of(const void* p) noexcept {
  return reinterpret_cast<char*>(reinterpret_cast<std::uintptr_t>(p) & ~(slab_bytes - 1));
}

class shared_pool {
 public:
  // Copies the last magazine given into `out` and returns how many blocks
  // it held (up to `batch`); 0 if there is none.
  std::uint32_t take(std::size_t c, void** out) {
    std::lock_guard lock(mu_[c]);
    std::vector<magazine>& m = full_[c];
    if (m.empty()) return 0;
    const std::uint32_t n = m.back().count;
    std::copy_n(m.back().blocks, n, out);
    m.pop_back();
    idle_[c] -= n;
    return n;
  }
  void give(std::size_t c, void* const* blocks, std::uint32_t n) {
    std::lock_guard lock(mu_[c]);
    put(c, blocks, n);
  }
  // A fresh slab, all of it the caller's: a thread that allocates much (the
  // sender of a flood) carves it `batch` blocks at a time without a lock.
  char* fresh_slab() { return static_cast<char*>(map_slab()); }

  // Unmaps every slab whose blocks all wait in the pool; see release_idle().
  std::size_t release(std::size_t c) {
    std::vector<magazine> taken;
    {
      std::lock_guard lock(mu_[c]);
      if (idle_[c] < blocks_per_slab(c)) return 0;
      taken.swap(full_[c]);
      idle_[c] = 0;
    }
    // Free blocks per slab, then the slabs that are free whole.
    std::unordered_map<char*, std::uint32_t> free_in;
    for (const magazine& m : taken)
      for (std::uint32_t i = 0; i < m.count; ++i) ++free_in[slab_of(m.blocks[i])];
    for (auto it = free_in.begin(); it != free_in.end();) {
      if (it->second == blocks_per_slab(c)) {
        ++it;
      } else {
        it = free_in.erase(it);
      }
    }
    // The blocks of other slabs go back, repacked.
    std::vector<void*> kept;
    for (const magazine& m : taken)
      for (std::uint32_t i = 0; i < m.count; ++i)
        if (free_in.count(slab_of(m.blocks[i])) == 0) kept.push_back(m.blocks[i]);
    std::size_t released = 0;
    for (const auto& [slab, n] : free_in) {
      unmap_slab(slab);
      released += slab_bytes;
    }
    {
      std::lock_guard lock(mu_[c]);
      for (std::size_t i = 0; i < kept.size(); i += batch)
        put(c, kept.data() + i, static_cast<std::uint32_t>(std::min(batch, kept.size() - i)));
    }
    return released;
  }

  std::size_t idle_bytes() {
    std::size_t n = 0;
    for (std::size_t c = 0; c < class_count; ++c) {
      std::lock_guard lock(mu_[c]);
      n += idle_[c] * block_size(c);
    }
    return n;
  }
  std::size_t mapped_bytes() const noexcept { return mapped_.load(std::memory_order_relaxed); }

 private:
  // Slabs are mapped `slabs_per_map` at a time: each mapping (and the unmap
  // of its unaligned ends) costs every thread of the process a TLB flush.
  static constexpr std::size_t slabs_per_map = 16;

  // Under mu_[c].
  void put(std::size_t c, void* const* blocks, std::uint32_t n) {
    magazine& m = full_[c].emplace_back();
    m.count = n;
    std::copy_n(blocks, n, m.blocks);
    idle_[c] += n;
  }

  void* map_slab() {
    std::lock_guard lock(map_mu_);
    if (unused_.empty()) {
      // One slab more than needed, then the ends cut off: aligned slabs.
      const std::size_t bytes = (slabs_per_map + 1) * slab_bytes;
      void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      char* start = static_cast<char*>(p);
      char* aligned = slab_of(start + slab_bytes - 1);
      if (aligned != start) ::munmap(start, static_cast<std::size_t>(aligned - start));
      char* end = aligned + slabs_per_map * slab_bytes;
      if (end != start + bytes) ::munmap(end, static_cast<std::size_t>(start + bytes - end));
      for (std::size_t i = slabs_per_map; i-- > 0;) unused_.push_back(aligned + i * slab_bytes);
    }
    char* slab = unused_.back();
    unused_.pop_back();
    mapped_.fetch_add(slab_bytes, std::memory_order_relaxed);
    return slab;
  }
  void unmap_slab(char* slab) noexcept {
    ::munmap(slab, slab_bytes);
    mapped_.fetch_sub(slab_bytes, std::memory_order_relaxed);
  }

  std::mutex map_mu_;
  std::vector<char*> unused_;  // mapped, not yet carved (under map_mu_)
  std::mutex mu_[class_count];
  std::vector<magazine> full_[class_count];  // under mu_
  std::size_t idle_[class_count] = {};       // blocks in full_, under mu_
  std::atomic<std::size_t> mapped_{0};
};

shared_pool& pool() {
  // Never destroyed: thread caches may return blocks during static destruction.
  static shared_pool* p = new shared_pool;
  return *p;
}

// Returns a thread's blocks to the shared pool when the thread ends.
struct cache_flusher {
  bool armed = false;
  ~cache_flusher();
};
thread_local cache_flusher flusher;

// Each class keeps up to two magazines' worth of free blocks in an array,
// the most recently freed on top (still in this core's cache). Trivially
// destructible, so that reaching it costs no guard check on the hot path;
// `flusher` is touched on the slow path only. The common cases (a block
// off the top, a block onto it) are a few instructions each; what touches
// the shared pool or the flusher is out of line, so that the fast paths
// save and restore no registers.
struct thread_cache {
  struct stack {
    std::uint32_t count = 0;
    void* blocks[2 * batch] = {};
  };
  // What is left of the last slab this thread mapped for a class.
  struct carving {
    char* next = nullptr;
    char* end = nullptr;
  };
  static constexpr std::uint32_t prefetch_ahead = 8;
  stack lists[class_count];
  carving fresh[class_count];

  // The slow paths are tail calls: the fast ones keep nothing across them.
  void* allocate(std::size_t c) {
    stack& l = lists[c];
    if (l.count == 0) [[unlikely]]
      return refill_and_take(c);
    const std::uint32_t n = --l.count;
    // The block taken `prefetch_ahead` allocations from now, its first two
    // lines, for writing: a block freed on another core (fan-in) would
    // otherwise come only as the caller writes it, a line at a time, each
    // a round trip between cores. Below the bottom, the index wraps to a
    // stale entry: a wasted prefetch, never a fault.
    const char* later = static_cast<const char*>(l.blocks[(n - prefetch_ahead) % (2 * batch)]);
    prefetch_for_write(later);
    if (c != 0) prefetch_for_write(later + 64);
    return l.blocks[n];
  }

  void deallocate(std::size_t c, void* p) {
    stack& l = lists[c];
    // Empty (the thread's first free: arm the flusher) or full, in one test.
    if (l.count - 1 >= 2 * batch - 1) [[unlikely]]
      return make_room_and_put(c, p);
    l.blocks[l.count++] = p;
  }

  [[gnu::noinline]] void* refill_and_take(std::size_t c) {
    arm();
    stack& l = lists[c];
    l.count = pool().take(c, l.blocks);
    if (l.count == 0) carve(c);
    return l.blocks[--l.count];
  }

  // A full array hands its older half to the shared pool (the sender of a
  // fan-in allocates where the receiver frees, and the blocks must flow
  // back); the top half, freed last, stays.
  [[gnu::noinline]] void make_room_and_put(std::size_t c, void* p) {
    arm();
    stack& l = lists[c];
    if (l.count >= 2 * batch) {
      pool().give(c, l.blocks, batch);
      std::copy(l.blocks + batch, l.blocks + l.count, l.blocks);
      l.count -= batch;
    }
    l.blocks[l.count++] = p;
  }

  // Up to `batch` blocks from this thread's slab (a fresh one if it is used
  // up), highest address first: they are taken from the top, so they go
  // out in address order (what a reader of many in a row can prefetch).
  void carve(std::size_t c) {
    carving& f = fresh[c];
    const std::size_t size = block_size(c);
    if (f.next == f.end) {
      f.next = pool().fresh_slab();
      f.end = f.next + blocks_per_slab(c) * size;
    }
    const auto k = static_cast<std::uint32_t>(std::min<std::size_t>(batch, static_cast<std::size_t>(f.end - f.next) / size));
    stack& l = lists[c];
    for (std::uint32_t i = 0; i < k; ++i) l.blocks[i] = f.next + (k - 1 - i) * size;
    f.next += k * size;
    l.count = k;
  }

  // The thread's blocks go back to the shared pool when it ends.
  [[gnu::noinline]] static void arm() noexcept { flusher.armed = true; }
};

constinit thread_local thread_cache cache;

cache_flusher::~cache_flusher() {
  for (std::size_t c = 0; c < class_count; ++c) {
    thread_cache::stack& l = cache.lists[c];
    for (std::uint32_t i = 0; i < l.count; i += batch)
      pool().give(c, l.blocks + i, std::min<std::uint32_t>(batch, l.count - i));
    l.count = 0;
    // What is left of its slab too, so that the slab can be released.
    while (cache.fresh[c].next != cache.fresh[c].end) {
      cache.carve(c);
      pool().give(c, l.blocks, l.count);
      l.count = 0;
    }
  }
}

}  // namespace

namespace block_pool {

void* allocate(std::size_t bytes, std::uint8_t& size_class) {
  size_class = class_for(bytes);
#ifdef TROUPE_POOL_DISABLED
  return ::operator new(bytes, std::align_val_t{64});
#else
  if (size_class == oversize_class) return ::operator new(bytes, std::align_val_t{64});
  return cache.allocate(size_class);
#endif
}

void deallocate(void* p, std::uint8_t size_class) noexcept {
#ifdef TROUPE_POOL_DISABLED
  (void)size_class;
  ::operator delete(p, std::align_val_t{64});
#else
  if (size_class == oversize_class)
    ::operator delete(p, std::align_val_t{64});
  else
    cache.deallocate(size_class, p);
#endif
}

std::uint8_t size_class_of(std::size_t bytes) noexcept { return class_for(bytes); }

bool enabled() noexcept {
#ifdef TROUPE_POOL_DISABLED
  return false;
#else
  return true;
#endif
}

std::size_t release_idle() {
#ifdef TROUPE_POOL_DISABLED
  return 0;
#else
  std::size_t released = 0;
  for (std::size_t c = 0; c < class_count; ++c) released += pool().release(c);
  return released;
#endif
}

pool_stats stats() {
#ifdef TROUPE_POOL_DISABLED
  return {};
#else
  return {pool().mapped_bytes(), pool().idle_bytes()};
#endif
}

}  // namespace block_pool

}  // namespace troupe
