#pragma once
// The store behind persistent actors. Each persistence id (a grain's is
// "kind/identity") has a journal of events, numbered 1, 2, 3, ... with no
// gap, and snapshots (a state as of some sequence number).
//
// - An append names the sequence number its writer believes is the last
//   one (0 for none): if another writer got there first, it is refused
//   (conflict) and nothing of it is stored. Its events are stored together
//   or not at all.
// - done() of an append runs only once its events are durable as the
//   store's settings define it (SQLite's synchronous=FULL: synced to
//   disk), or once it was refused.
// - Events at or below a snapshot may be deleted; the last event of an id
//   never is, so that its sequence numbers go on where they were.
//
// A journal is used from any thread; its callbacks run on the store's own
// threads and must be short (hand the result to the actor and return).
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace troupe::persistence {

using bytes = std::vector<std::uint8_t>;

// An event or a snapshot: a FlatBuffers message of a type the plugin
// registered (`type` is its type id), as bytes.
struct event {
  std::uint64_t seq = 0;  // set by the journal on append; as stored on read
  std::uint64_t type = 0;
  bytes data;
};

struct snapshot {
  std::uint64_t seq = 0;  // the state as of this event
  std::uint64_t type = 0;
  bytes data;
};

enum class result : std::uint8_t {
  ok,
  conflict,  // another writer appended first: the expected sequence number is not the last
  rejected,  // this request is refused (too large, empty, out of range); the store is fine
  failed,    // the store failed (I/O, disk full, corrupt): nothing of the request is stored
};
const char* to_string(result r) noexcept;

struct outcome {
  result status = result::ok;
  std::uint64_t last_seq = 0;  // the id's last sequence number after the request (as it is, when refused)
  std::string detail;          // why not, in words
};

struct read_result {
  result status = result::ok;
  std::string detail;
  std::optional<snapshot> snap;  // the newest snapshot, when asked for and there is one
  std::vector<event> events;     // in order, after max(after, snap->seq)
  bool end = false;              // no event after these (as of this read)
};

// Appends answered, by outcome; any thread reads them (metrics).
struct append_counts {
  std::atomic<std::uint64_t> ok{0}, conflict{0}, rejected{0}, failed{0};
  void count(result r) noexcept {
    auto& c = r == result::ok ? ok : r == result::conflict ? conflict : r == result::rejected ? rejected : failed;
    c.fetch_add(1, std::memory_order_relaxed);
  }
};

class journal {
 public:
  using done_fn = std::function<void(const outcome&)>;
  using read_fn = std::function<void(read_result&&)>;

  virtual ~journal() = default;

  // Appends `events` (at least one) after sequence number `expected`.
  virtual void append(std::string id, std::uint64_t expected, std::vector<event> events, done_fn done) = 0;
  // Stores a snapshot (its seq at most the id's last); the newest is what
  // recovery starts from.
  virtual void save_snapshot(std::string id, snapshot s, done_fn done) = 0;
  // Deletes the events up to `to_seq` (the last one of the id stays).
  virtual void delete_events(std::string id, std::uint64_t to_seq, done_fn done) = 0;
  // Reads up to `max_events` events after `after`; with `with_snapshot`,
  // the newest snapshot first, and the events after it. Recovery reads
  // batch after batch, one at a time, until `end`.
  virtual void read(std::string id, std::uint64_t after, bool with_snapshot, std::size_t max_events,
                    read_fn done) = 0;
  // Finishes what was asked, then stops: later requests fail.
  virtual void stop() = 0;
  virtual const append_counts& appends() const noexcept = 0;
  // Whether other nodes may share it (journal_service::shared).
  virtual bool shared() const noexcept { return false; }
};

}  // namespace troupe::persistence
