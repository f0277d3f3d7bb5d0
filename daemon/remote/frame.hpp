#pragma once
// Frames on a node-to-node connection: a 4-byte little-endian length, then
// one troupe.wire.Frame (schemas/wire.fbs). The reader cuts the stream into
// frames and verifies each before anything reads it; the batch encoder
// packs queued messages into as few frames as the cap allows.
#include <atomic>
#include <cstdint>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <flatbuffers/flatbuffers.h>

#include "wire_generated.h"

namespace troupe {
class headers;
class process;
}

namespace troupe::remote {

// The protocol versions this node speaks (Hello and Welcome agree on one).
inline constexpr std::uint16_t protocol_version = 2;
inline constexpr std::uint16_t oldest_protocol_version = 2;
// Frames before the peer is up (Hello, Welcome, Disconnect) are small: an
// unauthenticated or unwelcome peer cannot make this node buffer more.
inline constexpr std::size_t handshake_max_frame = std::size_t{16} << 10;
inline constexpr std::size_t default_max_frame = std::size_t{4} << 20;
inline constexpr std::size_t min_max_frame = std::size_t{64} << 10;

// Verifies one frame (with its length prefix) against wire.fbs, with
// size, depth and table limits derived from the frame cap.
bool verify_frame(const std::uint8_t* data, std::size_t size, std::size_t max_frame) noexcept;

// Whether every envelope's target, sender and type index points into the
// batch's tables, and the type ids are aligned (the Verifier checks
// structure, not meaning, and not the alignment of vector elements).
bool batch_indexes_valid(const wire::Batch& b) noexcept;

// Accumulates what a socket delivers and hands out whole, verified frames.
class frame_reader {
 public:
  explicit frame_reader(std::size_t max_frame);

  // Room for the next read: at least `hint` bytes, more when a frame in
  // progress needs it.
  std::span<std::uint8_t> prepare(std::size_t hint);
  // `n` bytes arrived in the room prepare() gave.
  void commit(std::size_t n) noexcept { end_ += n; }

  enum class status {
    frame,      // `frame` is valid until the next prepare() or next()
    need_more,  // no whole frame buffered yet
    oversized,  // the length prefix exceeds the cap: close the connection
    invalid,    // the frame does not verify: close the connection
  };
  status next(const wire::Frame*& frame);

  // The length the last oversized frame announced.
  std::size_t announced() const noexcept { return announced_; }
  std::size_t buffered() const noexcept { return end_ - begin_; }
  std::size_t max_frame() const noexcept { return max_frame_; }
  void set_max_frame(std::size_t n) noexcept { max_frame_ = n; }

 private:
  std::vector<std::uint8_t> buf_;
  std::size_t begin_ = 0;  // first unread byte
  std::size_t end_ = 0;    // one past the last byte read
  std::size_t max_frame_;
  std::size_t announced_ = 0;
};

// Frame memory for a batch_encoder: keeps one freed buffer of `size`, the
// size a frame starts at, so that a frame per write costs no malloc and free
// of 64 KiB each. Any thread may free (the frame is written and dropped by
// whichever thread flushes).
class frame_allocator final : public flatbuffers::Allocator {
 public:
  explicit frame_allocator(std::size_t size) : spare_size_(size) {}
  frame_allocator(const frame_allocator&) = delete;
  frame_allocator& operator=(const frame_allocator&) = delete;
  ~frame_allocator() override { delete[] spare_.load(std::memory_order_acquire); }
  std::uint8_t* allocate(std::size_t size) override;
  void deallocate(std::uint8_t* p, std::size_t size) override;

 private:
  std::atomic<std::uint8_t*> spare_{nullptr};
  const std::size_t spare_size_;
};

// Packs envelopes into Batch frames. Targets, senders and types are keyed by
// identity (process pointer, type id) and written once per frame.
class batch_encoder {
 public:
  explicit batch_encoder(std::size_t max_frame);

  // Adds one envelope. False when it does not fit in the current frame
  // (finish it and add again), or, on an empty frame, when it can never fit.
  bool add(const process* target, std::string_view target_id, const process* sender,
           std::string_view sender_pid, std::uint64_t sender_generation, std::uint64_t type, const headers* hdrs,
           std::span<const std::uint8_t> payload);
  // The target id and sender PID strings are needed only the first time a
  // process appears in a frame; these tell whether they will be used.
  bool knows_target(const process* p) const noexcept;
  bool knows_sender(const process* p) const noexcept;

  std::size_t count() const noexcept { return envelopes_.size(); }
  // Finishes the frame, its envelopes numbered from `seq` (0: unnumbered),
  // acknowledging `ack`: its bytes, length prefix included, stay valid
  // until the next add() or reset().
  std::span<const std::uint8_t> finish(std::uint64_t seq = 0, std::uint64_t ack = 0);
  // Takes the finished frame's memory (the encoder starts afresh).
  flatbuffers::DetachedBuffer release();
  void reset();

 private:
  template <class K>
  struct index_table {
    std::vector<K> keys;
    std::unordered_map<K, std::uint32_t> map;  // used once keys outgrows a linear scan
    std::uint32_t find(K k) const noexcept;    // UINT32_MAX when absent
    std::uint32_t insert(K k);
    void clear() noexcept { keys.clear(); map.clear(); }
  };

  frame_allocator alloc_;  // outlives b_ and the frames released from it
  flatbuffers::FlatBufferBuilder b_;
  std::size_t max_frame_;
  index_table<const process*> targets_, senders_;
  index_table<std::uint64_t> types_;
  std::vector<flatbuffers::Offset<flatbuffers::String>> target_ids_, sender_pids_;
  std::vector<std::uint64_t> sender_generations_;
  std::vector<flatbuffers::Offset<wire::Envelope>> envelopes_;
  bool finished_ = false;
};

// Builds one control frame (everything but Batch), length prefix included.
// The bytes are valid until the next call on the same thread.
flatbuffers::FlatBufferBuilder& control_builder() noexcept;

// `seq`: the item's link sequence number (0: not an item); `ack`: the
// highest number received in order from the other side.
template <class F>
std::span<const std::uint8_t> encode_frame(std::uint64_t seq, std::uint64_t ack, F&& fill) {
  flatbuffers::FlatBufferBuilder& b = control_builder();
  b.Clear();
  auto [kind, body] = fill(b);
  b.FinishSizePrefixed(wire::CreateFrame(b, kind, body, seq, ack));
  return {b.GetBufferPointer(), b.GetSize()};
}

template <class F>
std::span<const std::uint8_t> encode_frame(F&& fill) {
  return encode_frame(0, 0, std::forward<F>(fill));
}

}  // namespace troupe::remote
