// The block pool (block_pool.hpp): size classes, per-thread caches, and a
// shared pool of chains carved from aligned slabs.
#include "actor/block_pool.hpp"

#include <sys/mman.h>

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

struct free_block {
  free_block* next;
};

// Blocks move between threads in chains of up to `batch`.
struct chain {
  free_block* head = nullptr;
  std::size_t count = 0;
};

char* slab_of(const void* p) noexcept {
  return reinterpret_cast<char*>(reinterpret_cast<std::uintptr_t>(p) & ~(slab_bytes - 1));
}

class shared_pool {
 public:
  bool take(std::size_t c, chain& out) {
    std::lock_guard lock(mu_[c]);
    if (chains_[c].empty()) return false;
    out = chains_[c].back();
    chains_[c].pop_back();
    idle_[c] -= out.count;
    return true;
  }
  void give(std::size_t c, chain in) {
    std::lock_guard lock(mu_[c]);
    idle_[c] += in.count;
    chains_[c].push_back(in);
  }
  // Maps a fresh slab, all of it the caller's: a thread that allocates much
  // (the sender of a flood) then goes to the shared pool, whose lock the
  // freeing thread takes too, once a slab rather than once a batch.
  chain carve(std::size_t c) {
    auto* slab = static_cast<char*>(map_slab());
    const std::size_t size = block_size(c);
    const std::size_t n = blocks_per_slab(c);
    chain out;
    for (std::size_t i = n; i-- > 0;) {
      auto* b = reinterpret_cast<free_block*>(slab + i * size);
      b->next = out.head;
      out.head = b;
    }
    out.count = n;
    return out;
  }

  // Unmaps every slab whose blocks all wait in the pool; see release_idle().
  std::size_t release(std::size_t c) {
    std::vector<chain> taken;
    {
      std::lock_guard lock(mu_[c]);
      if (idle_[c] < blocks_per_slab(c)) return 0;
      taken.swap(chains_[c]);
      idle_[c] = 0;
    }
    // Free blocks per slab, then the slabs that are free whole.
    std::unordered_map<char*, std::uint32_t> free_in;
    for (const chain& x : taken)
      for (free_block* b = x.head; b != nullptr; b = b->next) ++free_in[slab_of(b)];
    std::size_t released = 0;
    for (auto it = free_in.begin(); it != free_in.end();) {
      if (it->second == blocks_per_slab(c)) {
        ++it;
      } else {
        it = free_in.erase(it);
      }
    }
    // The blocks of other slabs go back, rechained.
    std::vector<chain> kept;
    chain cur;
    for (const chain& x : taken) {
      for (free_block* b = x.head; b != nullptr;) {
        free_block* next = b->next;
        if (free_in.count(slab_of(b)) == 0) {
          b->next = cur.head;
          cur.head = b;
          if (++cur.count == batch) {
            kept.push_back(cur);
            cur = chain{};
          }
        }
        b = next;
      }
    }
    if (cur.count != 0) kept.push_back(cur);
    for (const auto& [slab, n] : free_in) {
      unmap_slab(slab);
      released += slab_bytes;
    }
    {
      std::lock_guard lock(mu_[c]);
      for (const chain& x : kept) {
        idle_[c] += x.count;
        chains_[c].push_back(x);
      }
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
  std::vector<chain> chains_[class_count];
  std::size_t idle_[class_count] = {};  // blocks in chains_, under mu_
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

// Trivially destructible, so that reaching it costs no guard check on the
// hot path; `flusher` is touched on the slow path only.
// The common cases (a block from the list, a block onto it) are a few
// instructions each; what touches the shared pool or the flusher is out of
// line, so that the fast paths save and restore no registers.
struct thread_cache {
  chain lists[class_count];

  void* allocate(std::size_t c) {
    chain& l = lists[c];
    if (l.head == nullptr) [[unlikely]]
      refill(c);
    free_block* b = l.head;
    l.head = b->next;
    --l.count;
    return b;
  }

  void deallocate(std::size_t c, void* p) {
    chain& l = lists[c];
    auto* b = static_cast<free_block*>(p);
    if (l.head == nullptr) [[unlikely]]
      arm();
    b->next = l.head;
    l.head = b;
    if (++l.count >= 2 * batch) [[unlikely]]
      spill(c);
  }

  [[gnu::noinline]] void refill(std::size_t c) {
    arm();
    chain& l = lists[c];
    if (!pool().take(c, l)) l = pool().carve(c);
  }

  // Hands a batch to the shared pool: the sender of a fan-in allocates
  // where the receiver frees, and the blocks must flow back.
  [[gnu::noinline]] void spill(std::size_t c) {
    chain& l = lists[c];
    chain out;
    for (std::size_t i = 0; i < batch; ++i) {
      free_block* x = l.head;
      l.head = x->next;
      x->next = out.head;
      out.head = x;
    }
    out.count = batch;
    l.count -= batch;
    pool().give(c, out);
  }

  // The thread's blocks go back to the shared pool when it ends.
  [[gnu::noinline]] static void arm() noexcept { flusher.armed = true; }
};

thread_local thread_cache cache;

cache_flusher::~cache_flusher() {
  for (std::size_t c = 0; c < class_count; ++c) {
    chain& l = cache.lists[c];
    if (l.count != 0) pool().give(c, l);
    l = chain{};
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
