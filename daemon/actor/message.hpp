#pragma once
// Messages: a type id plus immutable payload bytes (a FlatBuffers table),
// an optional sender and optional headers. An envelope and its payload are
// one allocation from a per-thread pool; a local send moves the envelope
// pointer, it never copies or re-encodes the bytes.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <flatbuffers/flatbuffers.h>

#include "actor/block_pool.hpp"
#include "actor/mpsc_queue.hpp"
#include "actor/type_id.hpp"

namespace troupe {

class process;

// Small key/value metadata carried beside a message (trace ids, auth, ...).
// Immutable once attached; shared by reference count.
class headers {
 public:
  using entry = std::pair<std::string, std::string>;

  static headers* make(std::vector<entry> entries);
  void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept;

  std::string_view get(std::string_view key) const noexcept;
  const std::vector<entry>& entries() const noexcept { return entries_; }

 private:
  explicit headers(std::vector<entry> e) : entries_(std::move(e)) {}
  std::atomic<std::uint32_t> refs_{1};
  std::vector<entry> entries_;
};

// One message on its way to one receiver. The first 8 bytes are the
// intrusive mailbox link. The payload normally follows the header in the same
// block; a broadcast copy instead points at the payload of a shared original.
struct alignas(64) envelope : mpsc_node {
  const std::uint8_t* data = nullptr;
  type_id type = 0;
  process* sender = nullptr;    // owned reference or null
  headers* hdrs = nullptr;      // owned reference or null
  envelope* shared = nullptr;   // owned reference to the payload owner, or null
  std::atomic<std::uint32_t> refs{1};
  std::uint32_t size = 0;
  std::uint8_t size_class = 0;
  // Bytes built by a FlatBuffers builder in this process (or verified once)
  // are `trusted`: receivers that verify what comes from outside skip them.
  std::uint8_t flags = 0;
  static constexpr std::uint8_t trusted = 1;
  // Sent by a timer (scheduler.hpp): no sign of activity for a grain.
  static constexpr std::uint8_t from_timer = 2;
  // An envelope queued some places later in the same mailbox, if the sender
  // knew it (a handler's batch, context::send_user), so that the receiver
  // can fetch it early (a message written on another core is a cache miss,
  // and a queue is a chain: one miss at a time otherwise). Packed into the
  // header's last bytes: an envelope's address shifted right by 6 (blocks
  // are cache-line aligned), 48 bits; 0 for none.
  std::uint16_t ahead_lo = 0;
  std::uint32_t ahead_hi = 0;
  void set_ahead(const envelope* e) noexcept {
    const std::uint64_t a = reinterpret_cast<std::uintptr_t>(e) >> 6;
    ahead_lo = static_cast<std::uint16_t>(a);
    ahead_hi = static_cast<std::uint32_t>(a >> 16);
  }
  const envelope* ahead() const noexcept {
    return reinterpret_cast<const envelope*>(((std::uint64_t{ahead_hi} << 16) | ahead_lo) << 6);
  }

  std::uint8_t* inline_bytes() noexcept {
    return reinterpret_cast<std::uint8_t*>(this + 1);
  }
  std::span<const std::uint8_t> bytes() const noexcept { return {data, size}; }

  template <class T>
  bool is() const noexcept { return type == type_id_of<T>(); }

  // The FlatBuffers root if the type matches. Local messages were built by
  // trusted code or verified on entry, so no verification happens here.
  template <class T>
  const T* as() const noexcept {
    return is<T>() ? flatbuffers::GetRoot<T>(data) : nullptr;
  }

  void retain() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
  // Drops one reference; the last one returns the block to the pool. A sole
  // owner skips the atomic read-modify-write.
  void release() noexcept {
    if (refs.load(std::memory_order_acquire) == 1 ||
        refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
      destroy();
  }

 private:
  void destroy() noexcept;
};
static_assert(sizeof(envelope) == 64, "envelope header must stay one cache line");

namespace envelope_pool {
envelope* allocate(std::size_t payload_size);
void deallocate(envelope* e) noexcept;
}  // namespace envelope_pool

// Makes an envelope holding a copy of `bytes` (network, gateway, plugins).
envelope* make_envelope(type_id type, const void* bytes, std::size_t size);
// Makes an envelope sharing `original`'s payload (broadcast, pub-sub).
envelope* share_envelope(envelope* original);

// Sets one header on `e` (replacing a header of the same key). Headers are
// shared between copies of a message, so this gives `e` a new set.
void set_header(envelope* e, std::string_view key, std::string_view value);

class message;
// Turns a message handed to a send into an envelope for one new delivery:
// the same envelope if the caller owned it alone (its old sender dropped),
// otherwise a new envelope sharing the payload. A message just received is
// still the current one, so resending it never disturbs its own envelope.
envelope* for_delivery(message m);

// The FlatBufferBuilder of the calling thread, cleared. Building into a
// reused builder and copying the finished bytes once into the envelope avoids
// a fresh heap buffer per message. Not re-entrant: finish one message before
// building the next.
namespace detail {
extern constinit thread_local flatbuffers::FlatBufferBuilder* tls_builder;
flatbuffers::FlatBufferBuilder& first_builder() noexcept;
}  // namespace detail
inline flatbuffers::FlatBufferBuilder& thread_builder() noexcept {
  flatbuffers::FlatBufferBuilder* b = detail::tls_builder;
  if (b == nullptr) [[unlikely]]
    b = &detail::first_builder();
  b->Clear();
  return *b;
}

// Builds a T with `fill(builder) -> flatbuffers::Offset<T>` into an envelope.
template <class T, class F>
envelope* build(F&& fill) {
  flatbuffers::FlatBufferBuilder& b = thread_builder();
  flatbuffers::Offset<T> root = fill(b);
  b.Finish(root);
  envelope* e = make_envelope(type_id_of<T>(), b.GetBufferPointer(), b.GetSize());
  e->flags = envelope::trusted;
  return e;
}

// A counted handle on an envelope, for code that keeps a message beyond the
// call that received it.
class message {
 public:
  message() noexcept = default;
  // Takes over one reference.
  static message adopt(envelope* e) noexcept { message m; m.e_ = e; return m; }
  static message share(envelope* e) noexcept { e->retain(); return adopt(e); }

  message(const message& o) noexcept : e_(o.e_) { if (e_) e_->retain(); }
  message(message&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  message& operator=(message o) noexcept { std::swap(e_, o.e_); return *this; }
  ~message() { if (e_) e_->release(); }

  explicit operator bool() const noexcept { return e_ != nullptr; }
  envelope* get() const noexcept { return e_; }
  envelope* operator->() const noexcept { return e_; }
  // Gives up the reference to the caller.
  envelope* release() noexcept { return std::exchange(e_, nullptr); }

  template <class T>
  const T* as() const noexcept { return e_ ? e_->as<T>() : nullptr; }

 private:
  envelope* e_ = nullptr;
};

// Builds a T into a message handle.
template <class T, class F>
message make_message(F&& fill) {
  return message::adopt(build<T>(std::forward<F>(fill)));
}

}  // namespace troupe
