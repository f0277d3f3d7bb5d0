#include "actor/message.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include <sys/mman.h>

#include "actor/block_pool.hpp"
#include "actor/process.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define TROUPE_POOL_DISABLED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TROUPE_POOL_DISABLED 1
#endif
#endif

namespace troupe {

// ---- headers ----

headers* headers::make(std::vector<entry> entries) { return new headers(std::move(entries)); }

void headers::release() noexcept {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

void set_header(envelope* e, std::string_view key, std::string_view value) {
  std::vector<headers::entry> entries;
  if (e->hdrs != nullptr) entries = e->hdrs->entries();
  auto it = std::find_if(entries.begin(), entries.end(),
                         [&](const headers::entry& x) { return x.first == key; });
  if (it != entries.end()) it->second = value;
  else entries.emplace_back(key, value);
  headers* next = headers::make(std::move(entries));
  if (e->hdrs != nullptr) e->hdrs->release();
  e->hdrs = next;
}

std::string_view headers::get(std::string_view key) const noexcept {
  for (const entry& e : entries_)
    if (e.first == key) return e.second;
  return {};
}

// ---- pool ----

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

std::uint8_t class_for(std::size_t total) noexcept {
  for (std::size_t c = 0; c < class_count; ++c)
    if (total <= block_size(c)) return static_cast<std::uint8_t>(c);
  return oversize_class;
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
  // Maps a fresh slab: the first chain is the caller's, the others go to
  // the pool.
  chain carve(std::size_t c) {
    auto* slab = static_cast<char*>(map_slab());
    const std::size_t size = block_size(c);
    const std::size_t n = blocks_per_slab(c);
    chain first;
    std::vector<chain> rest;
    chain cur;
    for (std::size_t i = n; i-- > 0;) {
      auto* b = reinterpret_cast<free_block*>(slab + i * size);
      b->next = cur.head;
      cur.head = b;
      if (++cur.count == batch || i == 0) {
        if (first.head == nullptr) first = cur;
        else rest.push_back(cur);
        cur = chain{};
      }
    }
    for (const chain& x : rest) give(c, x);
    return first;
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
  void* map_slab() {
    // Twice the size, then the ends cut off: an aligned slab.
    void* p = ::mmap(nullptr, 2 * slab_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    char* start = static_cast<char*>(p);
    char* aligned = slab_of(start + slab_bytes - 1);
    if (aligned != start) ::munmap(start, static_cast<std::size_t>(aligned - start));
    char* end = aligned + slab_bytes;
    if (end != start + 2 * slab_bytes)
      ::munmap(end, static_cast<std::size_t>(start + 2 * slab_bytes - end));
    mapped_.fetch_add(slab_bytes, std::memory_order_relaxed);
    return aligned;
  }
  void unmap_slab(char* slab) noexcept {
    ::munmap(slab, slab_bytes);
    mapped_.fetch_sub(slab_bytes, std::memory_order_relaxed);
  }

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
struct thread_cache {
  chain lists[class_count];

  void* allocate(std::size_t c) {
    chain& l = lists[c];
    if (l.head == nullptr) {
      flusher.armed = true;
      if (!pool().take(c, l)) l = pool().carve(c);
    }
    free_block* b = l.head;
    l.head = b->next;
    --l.count;
    return b;
  }

  void deallocate(std::size_t c, void* p) {
    chain& l = lists[c];
    auto* b = static_cast<free_block*>(p);
    if (l.head == nullptr) flusher.armed = true;
    b->next = l.head;
    l.head = b;
    if (++l.count >= 2 * batch) {
      // Hand a batch to the shared pool: the sender of a fan-in allocates
      // where the receiver frees, and the blocks must flow back.
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
  }
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

namespace envelope_pool {

envelope* allocate(std::size_t payload_size) {
  std::uint8_t c;
  void* mem = block_pool::allocate(sizeof(envelope) + payload_size, c);
  auto* e = new (mem) envelope;
  e->size_class = c;
  return e;
}

void deallocate(envelope* e) noexcept {
  std::uint8_t c = e->size_class;
  e->~envelope();
  block_pool::deallocate(e, c);
}

}  // namespace envelope_pool

void envelope::destroy() noexcept {
  if (sender) sender->release();
  if (hdrs) hdrs->release();
  if (shared) shared->release();
  envelope_pool::deallocate(this);
}

envelope* make_envelope(type_id type, const void* bytes, std::size_t size) {
  envelope* e = envelope_pool::allocate(size);
  e->type = type;
  e->size = static_cast<std::uint32_t>(size);
  if (size != 0) std::memcpy(e->inline_bytes(), bytes, size);
  e->data = e->inline_bytes();
  return e;
}

envelope* share_envelope(envelope* original) {
  envelope* e = envelope_pool::allocate(0);
  e->type = original->type;
  e->size = original->size;
  e->flags = original->flags;
  e->data = original->data;
  envelope* owner = original->shared ? original->shared : original;
  owner->retain();
  e->shared = owner;
  if (original->hdrs) {
    original->hdrs->retain();
    e->hdrs = original->hdrs;
  }
  return e;
}

envelope* for_delivery(message m) {
  envelope* e = m.release();
  if (e == nullptr) return nullptr;
  if (e->refs.load(std::memory_order_acquire) != 1) {
    envelope* fresh = share_envelope(e);
    e->release();
    return fresh;
  }
  if (e->sender != nullptr) {
    e->sender->release();
    e->sender = nullptr;
  }
  return e;
}

namespace {
// Owns the calling thread's builder; constructed only on first use, so the
// hot path below reads a plain thread-local pointer with no guard.
struct builder_holder {
  flatbuffers::FlatBufferBuilder builder{256};
};
thread_local flatbuffers::FlatBufferBuilder* tls_builder = nullptr;
}  // namespace

flatbuffers::FlatBufferBuilder& thread_builder() noexcept {
  flatbuffers::FlatBufferBuilder* b = tls_builder;
  if (b == nullptr) {
    thread_local builder_holder holder;
    b = tls_builder = &holder.builder;
  }
  b->Clear();
  return *b;
}

}  // namespace troupe
