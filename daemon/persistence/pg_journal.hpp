#pragma once
// The journal in PostgreSQL, shared by every node that names the same
// database: a grain's events follow it to whichever node activates it.
//
// - libpq in non-blocking pipeline mode, on a libuv loop (the node's, or
//   one of its own; its sockets watched with uv_poll), over a small pool
//   of connections. An
//   id always goes to the same connection, so that its requests are
//   carried out in the order they were made.
// - Requests waiting on a connection go out together as one pipeline and
//   one implicit transaction (one commit, one WAL flush); their appends go
//   as one statement over arrays, which stores an append's events only if
//   the id's last sequence number is the one its writer expects: another
//   writer is a row saying nothing was written, not an error, so one
//   actor's conflict never fails another's append.
//   When a statement does fail (say a deadlock), the transaction is lost
//   for all: each of its requests is sent again alone, and only the one
//   that fails alone is answered `failed`.
// - An answer comes after the commit. A connection lost with a batch in
//   flight answers it `failed` (it may or may not be stored: the actor
//   stops, and its next activation reads what is there), then reconnects
//   with backoff; meanwhile its requests fail at once.
// - Tables troupe_meta (schema version), troupe_heads (each id's last
//   sequence number), troupe_events and troupe_snapshots, created on
//   first use under an advisory lock. A newer schema is refused.
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "persistence/journal.hpp"

namespace troupe {
class event_loop;
}  // namespace troupe

namespace troupe::persistence {

struct pg_options {
  // The libuv loop its sockets are watched on (the node's); null: a loop
  // and a thread of its own. With the node's, stop() must be called from
  // another thread to finish what was asked (on the loop, it fails it).
  event_loop* loop = nullptr;
  std::string conninfo;  // a libpq connection string or URI
  std::string password;  // empty: libpq's own (PGPASSWORD, ~/.pgpass) or none
  unsigned connections = 2;
  std::size_t max_event_bytes = 1 << 20;
  std::size_t max_batch = 512;               // requests per pipeline sync, at most
  std::size_t max_batch_bytes = 8 << 20;     // and bytes of events and snapshots
  std::size_t read_batch = 4096;             // events per read, at most
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds max_backoff{2000};  // between attempts to reconnect
  // A line for the node's log: a connection lost, the store back, a schema
  // refused. Called on the store's thread.
  std::function<void(bool warning, const std::string& line)> on_event;
  // After each commit: events stored, seconds from the batch's first
  // request to its commit.
  std::function<void(std::size_t events, double seconds)> on_batch;
};

struct pg_stats : append_counts {
  std::atomic<std::uint64_t> events{0};      // events stored
  std::atomic<std::uint64_t> commits{0};     // pipelines committed
  std::atomic<std::uint64_t> resent{0};      // requests sent again alone after their batch failed
  std::atomic<std::uint64_t> connects{0};    // connections made (schema checked, statements prepared)
  std::atomic<std::uint64_t> losses{0};      // connections lost, or attempts that failed
  std::atomic<std::uint32_t> up{0};          // connections ready now
};

class pg_journal final : public journal {
 public:
  // Starts its loop and begins connecting; requests made before a
  // connection is ready wait for it (or fail with its error).
  static std::unique_ptr<pg_journal> open(pg_options o);
  ~pg_journal() override;

  void append(std::string id, std::uint64_t expected, std::vector<event> events, done_fn done) override;
  void save_snapshot(std::string id, snapshot s, done_fn done) override;
  void delete_events(std::string id, std::uint64_t to_seq, done_fn done) override;
  void read(std::string id, std::uint64_t after, bool with_snapshot, std::size_t max_events,
            read_fn done) override;
  void stop() override;
  const append_counts& appends() const noexcept override { return stats_; }
  bool shared() const noexcept override { return true; }

  // Any thread. Empty while every connection is ready; otherwise why one is
  // not (the last error PostgreSQL or libpq gave, or "connecting").
  std::string not_ready() const;
  // Any thread: connections made from now on use these; the ready ones are
  // replaced once they are idle. What `systemctl reload` re-read.
  void set_credentials(std::string conninfo, std::string password);

  const pg_stats& stats() const noexcept { return stats_; }

  struct impl;

 private:
  explicit pg_journal(std::unique_ptr<impl> i);
  std::unique_ptr<impl> impl_;
  pg_stats& stats_;
};

// Checks a connection string's syntax (libpq's own parser): empty when it
// is fine, else why not.
std::string pg_conninfo_error(const std::string& conninfo);

}  // namespace troupe::persistence
