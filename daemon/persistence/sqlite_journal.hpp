#pragma once
// The journal in one SQLite database (the node's state_dir): WAL mode, and
// synchronous=FULL unless told otherwise, so that a commit is synced to
// disk before anything it holds is acknowledged.
//
// One writer thread owns every write. It takes all the requests that
// queued while it was busy, stores them in one transaction, commits (one
// sync for the lot: group commit), and only then answers them. It also
// runs the WAL checkpoints, between batches, so that no commit pays for
// one. Reads go through a connection of their own, on a reader thread.
//
// Appends go to a log table in the order they come (its rowid), so that a
// commit of a thousand actors' events writes the few pages at the log's
// end, not a page per actor in a table ordered by id: SQLite's WAL holds
// whole pages, and one page per 100-byte event was most of what a commit
// wrote. Once the log holds `compact_rows` rows, the writer moves its
// oldest `compact_step` rows, sorted, into the table ordered by (id, seq),
// one transaction between batches, where each actor's events are together
// for recovery. Where each id's log rows are is kept
// in memory (rebuilt from the log at open), beside each id's last sequence
// number, which the writer reads once and then keeps: it checks an
// append's expected number without a query, so a refused append costs the
// others in its batch nothing.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "persistence/journal.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace troupe::persistence {

struct sqlite_options {
  std::string path;                    // the database file (created if missing)
  std::string synchronous = "full";    // off, normal, full or extra (SQLite's meaning)
  std::size_t max_batch_events = 8192;  // events per transaction, at most
  std::size_t max_event_bytes = 1 << 20;
  std::uint32_t checkpoint_pages = 4096;  // WAL pages after which the writer checkpoints
  std::size_t read_batch = 4096;          // events per read, at most
  std::size_t compact_rows = 65536;       // log rows after which the writer sorts the oldest into place,
  std::size_t compact_step = 65536;        // this many at a time
  std::string vfs;                        // SQLite VFS by name (tests); empty: the default
  // Called by the writer after each commit: events stored, how long the
  // batch took from its first request's arrival (seconds).
  std::function<void(std::size_t events, double seconds)> on_batch;
  // Called by the writer when moving the log into the sorted table failed
  // (why); it tries again after another compact_rows appends.
  std::function<void(const std::string& why)> on_sort_failed;
};

struct sqlite_stats : append_counts {
  std::atomic<std::uint64_t> events{0};                                  // events stored
  std::atomic<std::uint64_t> commits{0};                                 // transactions (syncs)
  std::atomic<std::uint64_t> checkpoints{0};
  std::atomic<std::uint64_t> compactions{0}, compaction_failures{0};
};

class sqlite_journal final : public journal {
 public:
  // Opens (creating) the database; null with `error` set when it cannot.
  static std::unique_ptr<sqlite_journal> open(sqlite_options o, std::string& error);
  ~sqlite_journal() override;

  void append(std::string id, std::uint64_t expected, std::vector<event> events, done_fn done) override;
  void save_snapshot(std::string id, snapshot s, done_fn done) override;
  void delete_events(std::string id, std::uint64_t to_seq, done_fn done) override;
  void read(std::string id, std::uint64_t after, bool with_snapshot, std::size_t max_events,
            read_fn done) override;
  void stop() override;

  const sqlite_stats& stats() const noexcept { return stats_; }
  const append_counts& appends() const noexcept override { return stats_; }
  const sqlite_options& options() const noexcept { return opts_; }

 private:
  struct write_req;
  struct read_req;
  explicit sqlite_journal(sqlite_options o);
  bool init(std::string& error);
  void submit(write_req&& r);
  void writer_main();
  void reader_main();
  // Runs one batch in one transaction; the outcomes go to the requests.
  void write_batch(std::deque<write_req>& batch);
  void do_read(read_req& r);
  // The id's last sequence number (cached), or nullopt on a storage error.
  std::optional<std::uint64_t> head(const std::string& id, std::string& error);
  void checkpoint_if_due();
  void answerer_main();
  // Moves the log into the table ordered by id once it holds compact_rows.
  void compact_if_due();
  bool sort_log(std::int64_t upto, std::string& error);
  std::int64_t newest_log_row() const;
  bool check_schema(std::string& error);
  bool load_log_index(std::string& error);

  sqlite_options opts_;
  sqlite3* wdb_ = nullptr;  // the writer's connection
  sqlite3* rdb_ = nullptr;  // the reader's
  sqlite3_stmt *insert_ = nullptr, *head_ = nullptr, *snap_put_ = nullptr, *snap_prune_ = nullptr,
               *delete_ = nullptr, *log_delete_ = nullptr, *compact_move_ = nullptr, *compact_clear_ = nullptr;
  sqlite3_stmt *snap_get_ = nullptr, *events_get_ = nullptr, *log_get_ = nullptr;
  std::unordered_map<std::string, std::uint64_t> heads_;  // writer thread only

  // An id's rows in the log, in sequence order.
  struct log_row {
    std::uint64_t seq;
    std::int64_t rowid;
  };
  // Changed by the writer only, under index_mu_, which it holds from each
  // COMMIT until the index says what that commit did; the reader copies
  // an id's rows under it when its read transaction begins, so that the
  // rows it looks up are those of its snapshot.
  std::mutex index_mu_;
  std::unordered_map<std::string, std::vector<log_row>> log_index_;
  std::size_t log_rows_ = 0;      // writer thread only
  std::size_t next_sort_at_ = 0;  // writer thread only: after a failed sort, not before this many rows
  std::atomic<int> wal_pages_{0};                         // set by the WAL hook (writer thread)

  std::mutex mu_;
  std::condition_variable wake_writer_, wake_reader_;
  std::deque<write_req> writes_;
  std::deque<read_req> reads_;
  bool stopping_ = false;
  std::thread writer_, reader_, answerer_;

  // Committed (or failed) batches whose requests are still to be answered.
  struct answered {
    std::deque<write_req> batch;
    std::vector<outcome> outs;
  };
  std::mutex answer_mu_;
  std::condition_variable wake_answerer_;
  std::deque<answered> answers_;
  bool writer_done_ = false;
  sqlite_stats stats_;
};

}  // namespace troupe::persistence
