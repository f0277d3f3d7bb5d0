#pragma once
// What persistent actors keep their state through: a journal of events and
// snapshots per persistence id. The node's persistence module provides it
// (actor_system::set_journal); without one, no kind can be persistent.
//
// Every call is made from the actor's own turn, and every answer comes back
// in its own context, as a continuation (never on another thread):
//
// - recover(): the actor's user messages wait while the newest snapshot and
//   then the events after it are handed to `item`, in order; then `done`
//   says how it ended and the messages go on.
// - persist(): the events are appended after `expected` (the last sequence
//   number the actor knows); its user messages wait until `then` runs,
//   which is only once they are durable, or refused. A store that failed,
//   or another writer that appended first, stops the actor instead: its
//   state can no longer be trusted to be the journal's (the log says why).
// - An answer meant for an instance that was restarted since is dropped.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "actor/type_id.hpp"

namespace troupe {

class context;

enum class persist_status : std::uint8_t {
  ok,
  rejected,  // refused (too large, out of range): the actor goes on
  conflict,  // another writer appended first
  failed,    // the store failed: nothing of it is stored
};
const char* to_string(persist_status s) noexcept;

struct persist_result {
  persist_status status = persist_status::ok;
  std::uint64_t last_seq = 0;  // the id's last sequence number after the request
  std::string detail;          // why not, in words
};

// A snapshot or an event, during recovery (valid during the call).
struct recovered {
  bool snapshot = false;
  std::uint64_t seq = 0;
  type_id type = 0;
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
};

struct event_bytes {
  type_id type = 0;
  std::vector<std::uint8_t> data;
};

class journal_service {
 public:
  using item_fn = std::function<void(context&, const recovered&)>;
  using done_fn = std::function<void(context&, const persist_result&)>;

  virtual ~journal_service() = default;
  virtual void recover(context& ctx, std::string id, item_fn item, done_fn done) = 0;
  virtual void persist(context& ctx, std::string id, std::uint64_t expected, std::vector<event_bytes> events,
                       done_fn then) = 0;
  // Stores a snapshot as of event `seq`; `done` (may be empty) says how it
  // went. The actor's messages do not wait for it.
  virtual void snapshot(context& ctx, std::string id, std::uint64_t seq, event_bytes state, done_fn done) = 0;
  // Deletes the events up to `to_seq` (the last one stays); `done` as above.
  virtual void delete_events(context& ctx, std::string id, std::uint64_t to_seq, done_fn done) = 0;
  // Whether every node that names the same store sees the same journals (a
  // grain finds its state wherever it is activated), or this node only.
  virtual bool shared() const noexcept { return false; }
};

}  // namespace troupe
