#include "actor/message.hpp"

#include <algorithm>
#include <cstring>
#include <new>
#include <vector>

#include "actor/block_pool.hpp"
#include "actor/process.hpp"

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

namespace {

// Most messages are a few dozen bytes: two overlapping fixed-size copies,
// inlined, instead of a call through the C library's dispatch.
inline void copy_bytes(std::uint8_t* to, const void* from_v, std::size_t n) noexcept {
  const auto* from = static_cast<const std::uint8_t*>(from_v);
  if (n >= 16 && n <= 64) {
    if (n <= 32) {
      std::memcpy(to, from, 16);
      std::memcpy(to + n - 16, from + n - 16, 16);
    } else {
      std::memcpy(to, from, 32);
      std::memcpy(to + n - 32, from + n - 32, 32);
    }
  } else if (n != 0) {
    std::memcpy(to, from, n);
  }
}

}  // namespace

envelope* make_envelope(type_id type, const void* bytes, std::size_t size) {
  envelope* e = envelope_pool::allocate(size);
  e->type = type;
  e->size = static_cast<std::uint32_t>(size);
  copy_bytes(e->inline_bytes(), bytes, size);
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
    fresh->flags &= static_cast<std::uint8_t>(~envelope::from_timer);
    return fresh;
  }
  if (e->sender != nullptr) {
    e->sender->release();
    e->sender = nullptr;
  }
  // A new delivery: a timer's message passed on is no timer's any more,
  // and what was queued after it then is not what follows it now.
  e->flags &= static_cast<std::uint8_t>(~envelope::from_timer);
  e->set_ahead(nullptr);
  return e;
}

namespace {
// Owns the calling thread's builder; constructed only on first use, so the
// hot path (thread_builder, inline) reads a plain thread-local pointer with
// no guard.
struct builder_holder {
  flatbuffers::FlatBufferBuilder builder{256};
};
}  // namespace

namespace detail {
constinit thread_local flatbuffers::FlatBufferBuilder* tls_builder = nullptr;

flatbuffers::FlatBufferBuilder& first_builder() noexcept {
  thread_local builder_holder holder;
  tls_builder = &holder.builder;
  return holder.builder;
}
}  // namespace detail

}  // namespace troupe
