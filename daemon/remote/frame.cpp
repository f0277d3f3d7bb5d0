#include "remote/frame.hpp"

#include <cstring>

#include "actor/message.hpp"

namespace troupe::remote {

namespace {

constexpr std::size_t prefix = sizeof(flatbuffers::uoffset_t);
// FlatBuffers reads 8-byte scalars in place: a frame (its length prefix)
// starts 8-aligned, and every frame we write is a multiple of 8 long.
constexpr std::size_t frame_align = 8;

std::size_t read_length(const std::uint8_t* p) noexcept {
  return flatbuffers::ReadScalar<flatbuffers::uoffset_t>(p);
}

}  // namespace

bool verify_frame(const std::uint8_t* data, std::size_t size, std::size_t max_frame) noexcept {
  flatbuffers::Verifier::Options opts;
  opts.max_depth = 8;  // Frame > Batch > Envelope > Header and their vectors
  // The smallest table is 4 bytes plus a field: a frame of n bytes cannot
  // honestly hold more than n / 8 of them.
  opts.max_tables = static_cast<flatbuffers::uoffset_t>(max_frame / 8);
  opts.check_alignment = true;
  opts.check_nested_flatbuffers = false;
  flatbuffers::Verifier v(data, size, opts);
  return wire::VerifySizePrefixedFrameBuffer(v);
}

bool batch_indexes_valid(const wire::Batch& b) noexcept {
  // The Verifier checks a vector's length field for alignment, not its
  // elements: 8-byte type ids must not be read from a 4-aligned address.
  if (b.types() && reinterpret_cast<std::uintptr_t>(b.types()->Data()) % alignof(std::uint64_t) != 0)
    return false;
  const auto* envs = b.envelopes();
  if (!envs) return true;
  const std::uint32_t nt = b.targets() ? b.targets()->size() : 0;
  const std::uint32_t ns = b.senders() ? b.senders()->size() : 0;
  const std::uint32_t ny = b.types() ? b.types()->size() : 0;
  for (const wire::Envelope* e : *envs)
    if (e->target() >= nt || e->sender() > ns || e->type() >= ny) return false;
  return true;
}

frame_reader::frame_reader(std::size_t max_frame) : buf_(64 << 10), max_frame_(max_frame) {}

std::span<std::uint8_t> frame_reader::prepare(std::size_t hint) {
  const std::size_t kept = end_ - begin_;
  std::size_t want = hint;
  if (kept >= prefix) {
    const std::size_t len = read_length(buf_.data() + begin_);
    if (len <= max_frame_ && prefix + len > kept) want = std::max(want, prefix + len - kept);
  }
  if (buf_.size() - end_ < want) {
    // Move what is buffered to the (aligned) front, then grow if need be.
    if (begin_ > 0) {
      std::memmove(buf_.data(), buf_.data() + begin_, kept);
      begin_ = 0;
      end_ = kept;
    }
    if (buf_.size() - end_ < want) buf_.resize(std::max(buf_.size() * 2, end_ + want));
  }
  return {buf_.data() + end_, buf_.size() - end_};
}

frame_reader::status frame_reader::next(const wire::Frame*& frame) {
  const std::size_t have = end_ - begin_;
  if (have < prefix) return status::need_more;
  const std::size_t len = read_length(buf_.data() + begin_);
  if (len > max_frame_) {
    announced_ = len;
    return status::oversized;
  }
  if (have < prefix + len) return status::need_more;
  if (begin_ % frame_align != 0) {
    // Frames we write keep the next one aligned; a peer's frame of another
    // length did not: move the rest to the front.
    std::memmove(buf_.data(), buf_.data() + begin_, have);
    begin_ = 0;
    end_ = have;
  }
  const std::uint8_t* data = buf_.data() + begin_;
  begin_ += prefix + len;
  if (begin_ == end_) begin_ = end_ = 0;  // all consumed: reuse the front
  if (len == 0 || !verify_frame(data, prefix + len, max_frame_)) return status::invalid;
  frame = wire::GetSizePrefixedFrame(data);
  return status::frame;
}

flatbuffers::FlatBufferBuilder& control_builder() noexcept {
  thread_local flatbuffers::FlatBufferBuilder b(256);
  return b;
}

// ---- batch_encoder ----

template <class K>
std::uint32_t batch_encoder::index_table<K>::find(K k) const noexcept {
  if (map.empty()) {
    for (std::uint32_t i = 0; i < keys.size(); ++i)
      if (keys[i] == k) return i;
    return UINT32_MAX;
  }
  auto it = map.find(k);
  return it == map.end() ? UINT32_MAX : it->second;
}

template <class K>
std::uint32_t batch_encoder::index_table<K>::insert(K k) {
  const auto i = static_cast<std::uint32_t>(keys.size());
  keys.push_back(k);
  constexpr std::size_t linear = 16;
  if (keys.size() > linear) {
    if (map.empty())
      for (std::uint32_t j = 0; j < keys.size(); ++j) map.emplace(keys[j], j);
    else
      map.emplace(k, i);
  }
  return i;
}

std::uint8_t* frame_allocator::allocate(std::size_t size) {
  if (size == spare_size_)
    if (std::uint8_t* p = spare_.exchange(nullptr, std::memory_order_acquire)) return p;
  return new std::uint8_t[size];
}

void frame_allocator::deallocate(std::uint8_t* p, std::size_t size) {
  std::uint8_t* none = nullptr;
  if (size == spare_size_ && spare_.compare_exchange_strong(none, p, std::memory_order_release,
                                                            std::memory_order_relaxed))
    return;
  delete[] p;
}

namespace {
constexpr std::size_t frame_start_size = 64 << 10;
}

batch_encoder::batch_encoder(std::size_t max_frame)
    : alloc_(frame_start_size), b_(frame_start_size, &alloc_), max_frame_(max_frame) {}

bool batch_encoder::knows_target(const process* p) const noexcept {
  return targets_.find(p) != UINT32_MAX;
}

bool batch_encoder::knows_sender(const process* p) const noexcept {
  return senders_.find(p) != UINT32_MAX;
}

void batch_encoder::reset() {
  b_.Clear();
  targets_.clear();
  senders_.clear();
  types_.clear();
  target_ids_.clear();
  sender_pids_.clear();
  sender_generations_.clear();
  envelopes_.clear();
  finished_ = false;
}

bool batch_encoder::add(const process* target, std::string_view target_id, const process* sender,
                        std::string_view sender_pid, std::uint64_t sender_generation, std::uint64_t type,
                        const headers* hdrs,
                        std::span<const std::uint8_t> payload) {
  if (finished_) reset();
  // Room for this envelope, the tables written at the end and the frame.
  std::size_t need = payload.size() + target_id.size() + sender_pid.size() + 128 +
                     8 * (targets_.keys.size() + 2 * senders_.keys.size() + types_.keys.size() +
                          envelopes_.size());
  if (hdrs)
    for (const auto& [k, v] : hdrs->entries()) need += k.size() + v.size() + 24;
  if (b_.GetSize() + need > max_frame_) return false;

  std::uint32_t t = targets_.find(target);
  if (t == UINT32_MAX) {
    t = targets_.insert(target);
    target_ids_.push_back(b_.CreateString(target_id.data(), target_id.size()));
  }
  std::uint32_t s = 0;
  if (sender) {
    s = senders_.find(sender);
    if (s == UINT32_MAX) {
      s = senders_.insert(sender);
      sender_pids_.push_back(b_.CreateString(sender_pid.data(), sender_pid.size()));
      sender_generations_.push_back(sender_generation);
    }
    ++s;
  }
  std::uint32_t ty = types_.find(type);
  if (ty == UINT32_MAX) ty = types_.insert(type);

  flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<wire::Header>>> h;
  if (hdrs && !hdrs->entries().empty()) {
    std::vector<flatbuffers::Offset<wire::Header>> hs;
    hs.reserve(hdrs->entries().size());
    for (const auto& [k, v] : hdrs->entries())
      hs.push_back(wire::CreateHeader(b_, b_.CreateString(k), b_.CreateString(v)));
    h = b_.CreateVector(hs);
  }
  auto bytes = b_.CreateVector(payload.data(), payload.size());
  wire::EnvelopeBuilder eb(b_);
  eb.add_payload(bytes);
  if (!h.IsNull()) eb.add_headers(h);
  eb.add_type(ty);
  if (s != 0) eb.add_sender(s);
  eb.add_target(t);
  envelopes_.push_back(eb.Finish());
  return true;
}

std::span<const std::uint8_t> batch_encoder::finish(std::uint64_t seq, std::uint64_t ack) {
  auto types = b_.CreateVector(types_.keys);
  auto targets = b_.CreateVector(target_ids_);
  auto senders = b_.CreateVector(sender_pids_);
  auto generations = sender_generations_.empty() ? 0 : b_.CreateVector(sender_generations_);
  auto envs = b_.CreateVector(envelopes_);
  auto batch = wire::CreateBatch(b_, targets, senders, types, envs, generations);
  b_.FinishSizePrefixed(wire::CreateFrame(b_, wire::Body::Batch, batch.Union(), seq, ack));
  finished_ = true;
  return {b_.GetBufferPointer(), b_.GetSize()};
}

flatbuffers::DetachedBuffer batch_encoder::release() {
  flatbuffers::DetachedBuffer out = b_.Release();
  reset();
  return out;
}

}  // namespace troupe::remote
