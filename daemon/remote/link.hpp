#pragma once
// Delivery between two nodes that survives a connection: every message
// (and watch, stop, spawn, ...) a node sends to a peer gets a link sequence
// number, counted per pair of incarnations, and stays in the sender's
// ledger until the peer acknowledges it. When a connection to the same
// incarnation of the peer comes back, the peer says what it has received
// (Welcome.received) and the rest is sent again in order; the receiver's
// window drops what it has seen. What can never be confirmed (the peer
// restarted, or stayed away too long) leaves the ledger as dead letters,
// with reason `unconfirmed`.
//
// Frames carry the first sequence number of their content (Frame.seq, 0 for
// the unsequenced: Hello, Welcome, Heartbeat, Ack, Disconnect) and the
// highest number their sender has received in order (Frame.ack).
//
// Both halves are plain state, no socket or clock: the transport drives
// them and the fuzz target drives them with anything at all.
#include <cstdint>
#include <deque>
#include <utility>

namespace troupe::remote {

// The receiving half: which of the sequenced items arriving from one
// incarnation of a peer are new.
class receive_window {
 public:
  // A connection to `incarnation` came up: a new incarnation starts from 0.
  void attach(std::uint64_t incarnation) noexcept {
    if (incarnation != incarnation_) {
      incarnation_ = incarnation;
      last_ = 0;
    }
  }
  // What Welcome tells a peer of `incarnation` this node has of it.
  std::uint64_t received_from(std::uint64_t incarnation) const noexcept {
    return incarnation == incarnation_ ? last_ : 0;
  }
  // `count` items numbered from `first`: how many at the front were seen
  // already (count when all were). The rest are new and now seen.
  std::uint64_t admit(std::uint64_t first, std::uint64_t count) noexcept {
    if (count == 0 || first == 0) return 0;
    const std::uint64_t end = first + count;  // one past the last
    if (end <= first) return count;           // wrapped: nonsense from the peer
    if (end - 1 <= last_) return count;
    const std::uint64_t seen = last_ >= first ? last_ - first + 1 : 0;
    last_ = end - 1;
    return seen;
  }
  std::uint64_t last() const noexcept { return last_; }
  std::uint64_t incarnation() const noexcept { return incarnation_; }

 private:
  std::uint64_t incarnation_ = 0;
  std::uint64_t last_ = 0;
};

// The sending half: what was sent and not yet acknowledged, in order.
template <class Item>
class send_ledger {
 public:
  // The number the next item gets.
  std::uint64_t next() const noexcept { return next_; }
  std::size_t size() const noexcept { return items_.size(); }
  bool empty() const noexcept { return items_.empty(); }
  // The incarnation of the peer the items were sent to.
  std::uint64_t incarnation() const noexcept { return incarnation_; }
  void set_incarnation(std::uint64_t i) noexcept { incarnation_ = i; }

  // Records `item` as sent with number next(); returns the number.
  std::uint64_t push(Item item) {
    items_.emplace_back(next_, std::move(item));
    return next_++;
  }
  // Everything up to `upto` arrived: `done(item)` for each, oldest first.
  // Acknowledgements of numbers never sent are ignored past what was sent.
  template <class F>
  std::size_t acknowledge(std::uint64_t upto, F&& done) {
    std::size_t n = 0;
    while (!items_.empty() && items_.front().first <= upto) {
      done(items_.front().second);
      items_.pop_front();
      ++n;
    }
    return n;
  }
  // Calls `send(seq, item)` for each item still unacknowledged, in order.
  template <class F>
  void each(F&& send) {
    for (auto& [seq, item] : items_) send(seq, item);
  }
  // Everything goes (it can never be confirmed): `drop(item)` for each.
  template <class F>
  std::size_t clear(F&& drop) {
    const std::size_t n = items_.size();
    for (auto& [seq, item] : items_) drop(item);
    items_.clear();
    return n;
  }

 private:
  std::deque<std::pair<std::uint64_t, Item>> items_;
  std::uint64_t next_ = 1;
  std::uint64_t incarnation_ = 0;
};

}  // namespace troupe::remote
