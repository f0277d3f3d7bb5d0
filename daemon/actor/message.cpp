#include "actor/message.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

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

// Blocks of whole cache lines: 64 fits a timer or an envelope without
// payload (wake tokens), 192 an actor cell, the rest envelopes.
constexpr std::size_t class_sizes[] = {64, 128, 192, 256, 384, 512, 1024, 2048, 4096};
constexpr std::size_t class_count = std::size(class_sizes);
constexpr std::size_t batch = 64;
constexpr std::uint8_t oversize_class = 0xff;

constexpr std::size_t block_size(std::size_t c) noexcept { return class_sizes[c]; }

std::uint8_t class_for(std::size_t total) noexcept {
  for (std::size_t c = 0; c < class_count; ++c)
    if (total <= block_size(c)) return static_cast<std::uint8_t>(c);
  return oversize_class;
}

struct free_block {
  free_block* next;
};

// Blocks move between threads in chains of `batch`.
struct chain {
  free_block* head = nullptr;
  std::size_t count = 0;
};

class shared_pool {
 public:
  bool take(std::size_t c, chain& out) {
    std::lock_guard lock(mu_[c]);
    if (chains_[c].empty()) return false;
    out = chains_[c].back();
    chains_[c].pop_back();
    return true;
  }
  void give(std::size_t c, chain in) {
    std::lock_guard lock(mu_[c]);
    chains_[c].push_back(in);
  }
  // Carves a fresh chain out of new memory. Slabs are kept for the life of
  // the process, as an allocator would.
  chain carve(std::size_t c) {
    const std::size_t size = block_size(c);
    const std::size_t n = std::max<std::size_t>(batch, (64 * 1024) / size);
    auto* slab = static_cast<char*>(::operator new(size * n, std::align_val_t{64}));
    {
      std::lock_guard lock(slab_mu_);
      slabs_.push_back(slab);
    }
    chain out;
    for (std::size_t i = 0; i < n; ++i) {
      auto* b = reinterpret_cast<free_block*>(slab + i * size);
      b->next = out.head;
      out.head = b;
    }
    out.count = n;
    return out;
  }

 private:
  std::mutex mu_[class_count];
  std::vector<chain> chains_[class_count];
  std::mutex slab_mu_;
  std::vector<char*> slabs_;
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
