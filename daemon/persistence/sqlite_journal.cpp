#include "persistence/sqlite_journal.hpp"

#include <pthread.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <utility>

namespace troupe::persistence {

const char* to_string(result r) noexcept {
  switch (r) {
    case result::ok: return "ok";
    case result::conflict: return "conflict";
    case result::rejected: return "rejected";
    case result::failed: return "failed";
  }
  return "?";
}

namespace {

using clock = std::chrono::steady_clock;

// Ids whose last sequence number the writer keeps; beyond this it starts
// over (each is read again once, when next written).
constexpr std::size_t max_cached_heads = 200000;

constexpr long schema_version = 2;

const char* const schema = R"sql(
CREATE TABLE IF NOT EXISTS troupe_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO troupe_meta (key, value) VALUES ('schema', '2');
UPDATE troupe_meta SET value = '2' WHERE key = 'schema';
-- Appends, in the order they came (rowid): see sqlite_journal.hpp.
CREATE TABLE IF NOT EXISTS log (
  id TEXT NOT NULL, seq INTEGER NOT NULL, type INTEGER NOT NULL, data BLOB NOT NULL);
-- The log, moved here sorted every compact_rows rows.
CREATE TABLE IF NOT EXISTS events (
  id TEXT NOT NULL, seq INTEGER NOT NULL, type INTEGER NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY (id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
  id TEXT NOT NULL, seq INTEGER NOT NULL, type INTEGER NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY (id, seq)) WITHOUT ROWID;
)sql";

// A prepared statement's bindings and steps, reset whatever happens.
class stmt_use {
 public:
  explicit stmt_use(sqlite3_stmt* s) noexcept : s_(s) {}
  ~stmt_use() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  stmt_use(const stmt_use&) = delete;
  stmt_use& operator=(const stmt_use&) = delete;
  stmt_use& text(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  stmt_use& u64(int i, std::uint64_t v) {
    sqlite3_bind_int64(s_, i, static_cast<sqlite3_int64>(v));
    return *this;
  }
  stmt_use& blob(int i, const bytes& v) {
    // An empty vector's data() may be null, which SQLite stores as NULL.
    static const std::uint8_t none = 0;
    sqlite3_bind_blob(s_, i, v.empty() ? &none : v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  int step() { return sqlite3_step(s_); }
  std::uint64_t u64_at(int col) const { return static_cast<std::uint64_t>(sqlite3_column_int64(s_, col)); }
  bytes blob_at(int col) const {
    const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(s_, col));
    return p ? bytes(p, p + sqlite3_column_bytes(s_, col)) : bytes();
  }

 private:
  sqlite3_stmt* s_;
};

bool exec(sqlite3* db, const char* sql, std::string& error) {
  char* msg = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &msg) == SQLITE_OK) return true;
  error = msg ? msg : sqlite3_errmsg(db);
  sqlite3_free(msg);
  return false;
}

bool prepare(sqlite3* db, const char* sql, sqlite3_stmt** out, std::string& error) {
  if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, nullptr) == SQLITE_OK) return true;
  error = sqlite3_errmsg(db);
  return false;
}

int on_wal(void* arg, sqlite3*, const char*, int pages) {
  static_cast<std::atomic<int>*>(arg)->store(pages, std::memory_order_relaxed);
  return SQLITE_OK;
}

void name_thread(std::thread& t, const char* name) { pthread_setname_np(t.native_handle(), name); }

}  // namespace

enum class write_kind : std::uint8_t { append, snapshot, erase };

struct sqlite_journal::write_req {
  write_kind kind = write_kind::append;
  std::string id;
  std::uint64_t seq = 0;  // append: the expected last; erase: up to this
  std::vector<event> events;
  snapshot snap;
  done_fn done;
  clock::time_point arrived;
  std::size_t weight() const noexcept { return kind == write_kind::append ? std::max<std::size_t>(events.size(), 1) : 1; }
};

struct sqlite_journal::read_req {
  std::string id;
  std::uint64_t after = 0;
  bool with_snapshot = false;
  std::size_t max_events = 0;
  read_fn done;
};

sqlite_journal::sqlite_journal(sqlite_options o) : opts_(std::move(o)) {}

std::unique_ptr<sqlite_journal> sqlite_journal::open(sqlite_options o, std::string& error) {
  std::unique_ptr<sqlite_journal> j(new sqlite_journal(std::move(o)));
  if (!j->init(error)) {
    error = "the journal " + j->opts_.path + ": " + error;
    return nullptr;
  }
  j->writer_ = std::thread([p = j.get()] { p->writer_main(); });
  name_thread(j->writer_, "troupe-journal");
  j->reader_ = std::thread([p = j.get()] { p->reader_main(); });
  name_thread(j->reader_, "troupe-recovery");
  j->answerer_ = std::thread([p = j.get()] { p->answerer_main(); });
  name_thread(j->answerer_, "troupe-journal-a");
  return j;
}

bool sqlite_journal::init(std::string& error) {
  static const char* const levels[] = {"off", "normal", "full", "extra"};
  if (std::find(std::begin(levels), std::end(levels), opts_.synchronous) == std::end(levels)) {
    error = "synchronous must be off, normal, full or extra, not '" + opts_.synchronous + "'";
    return false;
  }
  const char* vfs = opts_.vfs.empty() ? nullptr : opts_.vfs.c_str();
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(opts_.path.c_str(), &wdb_, flags, vfs) != SQLITE_OK) {
    error = wdb_ ? sqlite3_errmsg(wdb_) : "out of memory";
    return false;
  }
  // WAL: readers do not block the writer, and a commit appends to one file.
  sqlite3_stmt* mode = nullptr;
  if (!prepare(wdb_, "PRAGMA journal_mode=WAL", &mode, error)) return false;
  const bool wal = sqlite3_step(mode) == SQLITE_ROW &&
                   std::string(reinterpret_cast<const char*>(sqlite3_column_text(mode, 0))) == "wal";
  sqlite3_finalize(mode);
  if (!wal) {
    error = "cannot use write-ahead logging (" + std::string(sqlite3_errmsg(wdb_)) + ")";
    return false;
  }
  // The page cache: 64 MiB rather than SQLite's 2 MiB, so that the pages an
  // append touches are read from disk (the OS's cache) less often.
  const std::string pragmas = "PRAGMA synchronous=" + opts_.synchronous +
                              "; PRAGMA wal_autocheckpoint=0; PRAGMA busy_timeout=5000; PRAGMA cache_size=-65536;";
  if (!exec(wdb_, pragmas.c_str(), error) || !check_schema(error) || !exec(wdb_, schema, error)) return false;
  sqlite3_wal_hook(wdb_, on_wal, &wal_pages_);
  if (!prepare(wdb_, "INSERT INTO log (id, seq, type, data) VALUES (?, ?, ?, ?)", &insert_, error) ||
      !prepare(wdb_, "DELETE FROM log WHERE rowid = ?", &log_delete_, error) ||
      !prepare(wdb_,
               "INSERT INTO events (id, seq, type, data) "
               "SELECT id, seq, type, data FROM log WHERE rowid <= ? ORDER BY id, seq",
               &compact_move_, error) ||
      !prepare(wdb_, "DELETE FROM log WHERE rowid <= ?", &compact_clear_, error) ||
      !prepare(wdb_, "SELECT max(seq) FROM events WHERE id = ?", &head_, error) ||
      !prepare(wdb_, "INSERT OR REPLACE INTO snapshots (id, seq, type, data) VALUES (?, ?, ?, ?)", &snap_put_,
               error) ||
      !prepare(wdb_,
               "DELETE FROM snapshots WHERE id = ?1 AND seq < "
               "(SELECT seq FROM snapshots WHERE id = ?1 ORDER BY seq DESC LIMIT 1 OFFSET 1)",
               &snap_prune_, error) ||
      !prepare(wdb_, "DELETE FROM events WHERE id = ? AND seq <= ?", &delete_, error) || !load_log_index(error))
    return false;
  if (sqlite3_open_v2(opts_.path.c_str(), &rdb_, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, vfs) != SQLITE_OK) {
    error = rdb_ ? sqlite3_errmsg(rdb_) : "out of memory";
    return false;
  }
  return exec(rdb_, "PRAGMA busy_timeout=5000;", error) &&
         prepare(rdb_, "SELECT seq, type, data FROM snapshots WHERE id = ? ORDER BY seq DESC LIMIT 1", &snap_get_,
                 error) &&
         prepare(rdb_, "SELECT seq, type, data FROM events WHERE id = ? AND seq > ? ORDER BY seq LIMIT ?",
                 &events_get_, error) &&
         prepare(rdb_, "SELECT id, seq, type, data FROM log WHERE rowid = ?", &log_get_, error);
}

// A journal written by a newer Troupe (a later schema) is refused rather
// than read without what this one does not know about.
bool sqlite_journal::check_schema(std::string& error) {
  if (!exec(wdb_, "CREATE TABLE IF NOT EXISTS troupe_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
            error))
    return false;
  sqlite3_stmt* q = nullptr;
  if (!prepare(wdb_, "SELECT value FROM troupe_meta WHERE key = 'schema'", &q, error)) return false;
  long version = 0;
  if (sqlite3_step(q) == SQLITE_ROW) {
    const auto* v = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
    version = v != nullptr ? std::strtol(v, nullptr, 10) : 0;
  }
  sqlite3_finalize(q);
  if (version > schema_version) {
    error = "it was written by a newer Troupe (journal schema " + std::to_string(version) + "; this node reads up to " +
            std::to_string(schema_version) + ")";
    return false;
  }
  return true;
}

bool sqlite_journal::load_log_index(std::string& error) {
  sqlite3_stmt* q = nullptr;
  if (!prepare(wdb_, "SELECT rowid, id, seq FROM log ORDER BY rowid", &q, error)) return false;
  int rc;
  while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
    const auto* id = reinterpret_cast<const char*>(sqlite3_column_text(q, 1));
    log_index_[std::string(id, static_cast<std::size_t>(sqlite3_column_bytes(q, 1)))].push_back(
        {static_cast<std::uint64_t>(sqlite3_column_int64(q, 2)), sqlite3_column_int64(q, 0)});
    ++log_rows_;
  }
  if (rc != SQLITE_DONE) error = sqlite3_errmsg(wdb_);
  sqlite3_finalize(q);
  return rc == SQLITE_DONE;
}

sqlite_journal::~sqlite_journal() {
  stop();
  // A clean close leaves every event in the sorted table and the log
  // empty, so that the file reads the same to a node that knows no log.
  if (wdb_ != nullptr && log_rows_ > 0) {
    std::string ignored;
    sort_log(newest_log_row(), ignored);
  }
  for (sqlite3_stmt* s : {insert_, head_, snap_put_, snap_prune_, delete_, log_delete_, compact_move_, compact_clear_,
                          snap_get_, events_get_, log_get_})
    sqlite3_finalize(s);
  if (rdb_) sqlite3_close(rdb_);
  if (wdb_) {
    // Everything is in the database file; the WAL can go.
    sqlite3_wal_checkpoint_v2(wdb_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
    sqlite3_close(wdb_);
  }
}

void sqlite_journal::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_writer_.notify_all();
  wake_reader_.notify_all();
  if (writer_.joinable()) writer_.join();
  {
    std::lock_guard lock(answer_mu_);
    writer_done_ = true;
  }
  wake_answerer_.notify_all();
  if (answerer_.joinable()) answerer_.join();
  if (reader_.joinable()) reader_.join();
}

// ---------------------------------------------------------------- requests

void sqlite_journal::submit(write_req&& r) {
  r.arrived = clock::now();
  bool first = false;
  {
    std::unique_lock lock(mu_);
    if (!stopping_) {
      first = writes_.empty();
      writes_.push_back(std::move(r));
      lock.unlock();
      if (first) wake_writer_.notify_one();
      return;
    }
  }
  r.done({result::failed, 0, "the journal is stopped"});
}

void sqlite_journal::append(std::string id, std::uint64_t expected, std::vector<event> events, done_fn done) {
  write_req r;
  r.kind = write_kind::append;
  r.id = std::move(id);
  r.seq = expected;
  r.events = std::move(events);
  r.done = std::move(done);
  submit(std::move(r));
}

void sqlite_journal::save_snapshot(std::string id, snapshot s, done_fn done) {
  write_req r;
  r.kind = write_kind::snapshot;
  r.id = std::move(id);
  r.snap = std::move(s);
  r.done = std::move(done);
  submit(std::move(r));
}

void sqlite_journal::delete_events(std::string id, std::uint64_t to_seq, done_fn done) {
  write_req r;
  r.kind = write_kind::erase;
  r.id = std::move(id);
  r.seq = to_seq;
  r.done = std::move(done);
  submit(std::move(r));
}

void sqlite_journal::read(std::string id, std::uint64_t after, bool with_snapshot, std::size_t max_events,
                          read_fn done) {
  read_req r{std::move(id), after, with_snapshot, max_events, std::move(done)};
  {
    std::unique_lock lock(mu_);
    if (!stopping_) {
      reads_.push_back(std::move(r));
      lock.unlock();
      wake_reader_.notify_one();
      return;
    }
  }
  read_result out;
  out.status = result::failed;
  out.detail = "the journal is stopped";
  r.done(std::move(out));
}

// ---------------------------------------------------------------- the writer

void sqlite_journal::writer_main() {
  for (;;) {
    std::deque<write_req> batch;
    {
      std::unique_lock lock(mu_);
      wake_writer_.wait(lock, [&] { return stopping_ || !writes_.empty(); });
      if (writes_.empty()) return;  // stopping, and nothing left
      // Everything that queued meanwhile, up to the batch limit: one
      // transaction, one sync.
      std::size_t n = 0;
      while (!writes_.empty() && (batch.empty() || n + writes_.front().weight() <= opts_.max_batch_events)) {
        n += writes_.front().weight();
        batch.push_back(std::move(writes_.front()));
        writes_.pop_front();
      }
    }
    write_batch(batch);
    compact_if_due();
    checkpoint_if_due();
  }
}

std::optional<std::uint64_t> sqlite_journal::head(const std::string& id, std::string& error) {
  if (const auto it = heads_.find(id); it != heads_.end()) return it->second;
  // Rows in the log are newer than the id's rows in the sorted table.
  if (const auto it = log_index_.find(id); it != log_index_.end() && !it->second.empty())
    return heads_.emplace(id, it->second.back().seq).first->second;
  stmt_use q(head_);
  q.text(1, id);
  if (q.step() != SQLITE_ROW) {
    error = sqlite3_errmsg(wdb_);
    return std::nullopt;
  }
  const std::uint64_t h = q.u64_at(0);  // max() of no row is NULL: 0
  heads_.emplace(id, h);
  return h;
}

void sqlite_journal::write_batch(std::deque<write_req>& batch) {
  if (heads_.size() > max_cached_heads) heads_.clear();
  std::vector<outcome> outs(batch.size());
  // The cached heads this batch changed, as they were: restored if it
  // does not commit.
  std::vector<std::pair<std::string, std::uint64_t>> undo;
  // What the batch does to the log's index, applied once it commits.
  struct added {
    const std::string* id;
    log_row row;
  };
  std::vector<added> adds;
  std::vector<std::pair<const std::string*, std::uint64_t>> erased;  // id, up to seq
  std::string error;
  std::size_t stored = 0;
  bool ok = exec(wdb_, "BEGIN IMMEDIATE", error);
  for (std::size_t i = 0; ok && i < batch.size(); ++i) {
    write_req& r = batch[i];
    outcome& o = outs[i];
    const std::optional<std::uint64_t> h = head(r.id, error);
    if (!h) {
      ok = false;
      break;
    }
    o.last_seq = *h;
    switch (r.kind) {
      case write_kind::append: {
        if (r.events.empty()) {
          o = {result::rejected, *h, "an append of no event"};
          break;
        }
        const auto big = std::find_if(r.events.begin(), r.events.end(),
                                      [&](const event& e) { return e.data.size() > opts_.max_event_bytes; });
        if (big != r.events.end()) {
          o = {result::rejected, *h,
               "an event of " + std::to_string(big->data.size()) + " bytes (at most " +
                   std::to_string(opts_.max_event_bytes) + ")"};
          break;
        }
        if (*h != r.seq) {
          o = {result::conflict, *h,
               "another writer appended to " + r.id + ": its last event is " + std::to_string(*h) +
                   ", this writer expected " + std::to_string(r.seq)};
          break;
        }
        std::uint64_t seq = *h;
        for (event& e : r.events) {
          e.seq = ++seq;
          stmt_use q(insert_);
          q.text(1, r.id).u64(2, e.seq).u64(3, e.type).blob(4, e.data);
          if (q.step() != SQLITE_DONE) {
            error = sqlite3_errmsg(wdb_);
            ok = false;
            break;
          }
          adds.push_back({&r.id, {e.seq, sqlite3_last_insert_rowid(wdb_)}});
        }
        if (!ok) break;
        undo.emplace_back(r.id, *h);
        heads_[r.id] = seq;
        stored += r.events.size();
        o.last_seq = seq;
        break;
      }
      case write_kind::snapshot: {
        if (r.snap.seq == 0 || r.snap.seq > *h) {
          o = {result::rejected, *h,
               "a snapshot as of event " + std::to_string(r.snap.seq) + " of " + r.id + ", whose last is " +
                   std::to_string(*h)};
          break;
        }
        {
          stmt_use q(snap_put_);
          q.text(1, r.id).u64(2, r.snap.seq).u64(3, r.snap.type).blob(4, r.snap.data);
          ok = q.step() == SQLITE_DONE;
        }
        // The two newest stay: one to recover from, one in case it will not.
        if (ok) {
          stmt_use q(snap_prune_);
          q.text(1, r.id);
          ok = q.step() == SQLITE_DONE;
        }
        if (!ok) error = sqlite3_errmsg(wdb_);
        break;
      }
      case write_kind::erase: {
        // The last event stays: it is where the numbering goes on.
        const std::uint64_t to = std::min(r.seq, *h > 0 ? *h - 1 : 0);
        if (to == 0) break;
        {
          stmt_use q(delete_);
          q.text(1, r.id).u64(2, to);
          ok = q.step() == SQLITE_DONE;
        }
        // And its rows still in the log: those committed, and those of
        // this batch.
        std::vector<std::int64_t> rows;
        if (const auto it = log_index_.find(r.id); it != log_index_.end())
          for (const log_row& l : it->second)
            if (l.seq <= to) rows.push_back(l.rowid);
        for (const added& a : adds)
          if (*a.id == r.id && a.row.seq <= to) rows.push_back(a.row.rowid);
        for (std::size_t k = 0; ok && k < rows.size(); ++k) {
          stmt_use q(log_delete_);
          q.u64(1, static_cast<std::uint64_t>(rows[k]));
          ok = q.step() == SQLITE_DONE;
        }
        if (!ok) error = sqlite3_errmsg(wdb_);
        if (ok) erased.emplace_back(&r.id, to);
        break;
      }
    }
  }
  if (ok) {
    std::lock_guard index(index_mu_);
    ok = exec(wdb_, "COMMIT", error);
    if (ok) {
      for (const added& a : adds) log_index_[*a.id].push_back(a.row);
      log_rows_ += adds.size();
      for (const auto& [id, to] : erased) {
        const auto it = log_index_.find(*id);
        if (it == log_index_.end()) continue;
        std::vector<log_row>& rows = it->second;
        const auto end = std::find_if(rows.begin(), rows.end(), [to = to](const log_row& l) { return l.seq > to; });
        log_rows_ -= static_cast<std::size_t>(end - rows.begin());
        rows.erase(rows.begin(), end);
        if (rows.empty()) log_index_.erase(it);
      }
    }
  }
  if (!ok) {
    std::string ignored;
    exec(wdb_, "ROLLBACK", ignored);
    for (auto it = undo.rbegin(); it != undo.rend(); ++it) heads_[it->first] = it->second;
    // What the store said, for every request of the batch: none of it is stored.
    for (outcome& o : outs)
      if (o.status == result::ok) o = {result::failed, o.last_seq, "the journal " + opts_.path + ": " + error};
    stored = 0;
  } else {
    stats_.commits.fetch_add(1, std::memory_order_relaxed);
    stats_.events.fetch_add(stored, std::memory_order_relaxed);
    if (opts_.on_batch)
      opts_.on_batch(stored, std::chrono::duration<double>(clock::now() - batch.front().arrived).count());
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].kind == write_kind::append) stats_.count(outs[i].status);
  }
  // The answers run on a thread of their own, while this one stores the
  // next batch: each is an actor's continuation to send.
  bool first;
  {
    std::lock_guard lock(answer_mu_);
    first = answers_.empty();
    answers_.push_back({std::move(batch), std::move(outs)});
  }
  if (first) wake_answerer_.notify_one();
}

void sqlite_journal::compact_if_due() {
  if (log_rows_ < std::max<std::size_t>(opts_.compact_rows, 1) || log_rows_ < next_sort_at_) return;
  // The oldest compact_step rows move, sorted: all committed (the writer is
  // between batches), and each id's older than its rows left in the log,
  // newer than its rows already sorted. A step at a time, so that the
  // appends waiting meanwhile wait for a small transaction.
  std::int64_t upto = newest_log_row();
  if (log_rows_ > opts_.compact_step) {
    std::vector<std::int64_t> all;
    all.reserve(log_rows_);
    for (const auto& [id, rows] : log_index_)
      for (const log_row& l : rows) all.push_back(l.rowid);
    const auto nth = all.begin() + static_cast<std::ptrdiff_t>(std::max<std::size_t>(opts_.compact_step, 1) - 1);
    std::nth_element(all.begin(), nth, all.end());
    upto = *nth;
  }
  std::string error;
  if (sort_log(upto, error)) {
    stats_.compactions.fetch_add(1, std::memory_order_relaxed);
    next_sort_at_ = 0;
    return;
  }
  // The log stays as it is and is read where it is. Not again before
  // another compact_rows appends: a sort that fails (a full disk) must not
  // hold up every batch.
  stats_.compaction_failures.fetch_add(1, std::memory_order_relaxed);
  next_sort_at_ = log_rows_ + std::max<std::size_t>(opts_.compact_rows, 1);
  if (opts_.on_sort_failed) opts_.on_sort_failed(error);
}

std::int64_t sqlite_journal::newest_log_row() const {
  std::int64_t upto = 0;
  for (const auto& [id, rows] : log_index_)
    if (!rows.empty()) upto = std::max(upto, rows.back().rowid);
  return upto;
}

// Moves the log's rows up to `upto`, sorted, into the events table, and
// the index with them; one transaction.
bool sqlite_journal::sort_log(std::int64_t upto, std::string& error) {
  stmt_use move(compact_move_), clear(compact_clear_);
  move.u64(1, static_cast<std::uint64_t>(upto));
  clear.u64(1, static_cast<std::uint64_t>(upto));
  bool ok = exec(wdb_, "BEGIN IMMEDIATE", error);
  if (ok && !(move.step() == SQLITE_DONE && clear.step() == SQLITE_DONE)) {
    error = sqlite3_errmsg(wdb_);
    ok = false;
  }
  if (ok) {
    std::lock_guard index(index_mu_);
    ok = exec(wdb_, "COMMIT", error);
    if (ok) {
      for (auto it = log_index_.begin(); it != log_index_.end();) {
        std::vector<log_row>& rows = it->second;
        const auto end = std::find_if(rows.begin(), rows.end(), [upto](const log_row& l) { return l.rowid > upto; });
        log_rows_ -= static_cast<std::size_t>(end - rows.begin());
        rows.erase(rows.begin(), end);
        it = rows.empty() ? log_index_.erase(it) : std::next(it);
      }
    }
  }
  if (!ok) {
    std::string ignored;
    exec(wdb_, "ROLLBACK", ignored);
  }
  return ok;
}

void sqlite_journal::checkpoint_if_due() {
  if (wal_pages_.load(std::memory_order_relaxed) < static_cast<int>(opts_.checkpoint_pages)) return;
  // Passive: copies what no reader still needs; the WAL is written from its
  // start again once all of it was copied.
  if (sqlite3_wal_checkpoint_v2(wdb_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr) == SQLITE_OK) {
    stats_.checkpoints.fetch_add(1, std::memory_order_relaxed);
    wal_pages_.store(0, std::memory_order_relaxed);
  }
}

void sqlite_journal::answerer_main() {
  for (;;) {
    answered a;
    {
      std::unique_lock lock(answer_mu_);
      wake_answerer_.wait(lock, [&] { return writer_done_ || !answers_.empty(); });
      if (answers_.empty()) return;  // the writer is done, and so is this
      a = std::move(answers_.front());
      answers_.pop_front();
    }
    for (std::size_t i = 0; i < a.batch.size(); ++i) a.batch[i].done(a.outs[i]);
  }
}

// ---------------------------------------------------------------- the reader

void sqlite_journal::reader_main() {
  for (;;) {
    read_req r;
    {
      std::unique_lock lock(mu_);
      wake_reader_.wait(lock, [&] { return stopping_ || !reads_.empty(); });
      if (reads_.empty()) return;
      r = std::move(reads_.front());
      reads_.pop_front();
    }
    do_read(r);
  }
}

void sqlite_journal::do_read(read_req& r) {
  read_result out;
  std::string error;
  const std::size_t limit = r.max_events == 0 ? opts_.read_batch : std::min(r.max_events, opts_.read_batch);
  // One read transaction: the snapshot and the events after it agree. It
  // begins (its first read) under the index's lock, so that the id's log
  // rows copied there are those this transaction sees.
  std::vector<log_row> tail;
  bool ok;
  {
    std::lock_guard index(index_mu_);
    ok = exec(rdb_, "BEGIN; SELECT count(*) FROM troupe_meta;", error);
    if (const auto it = log_index_.find(r.id); ok && it != log_index_.end())
      for (const log_row& l : it->second)
        if (l.seq > r.after) tail.push_back(l);
  }
  std::uint64_t after = r.after;
  if (ok && r.with_snapshot) {
    stmt_use q(snap_get_);
    q.text(1, r.id);
    const int rc = q.step();
    if (rc == SQLITE_ROW) {
      out.snap = snapshot{q.u64_at(0), q.u64_at(1), q.blob_at(2)};
      after = std::max(after, out.snap->seq);
    } else if (rc != SQLITE_DONE) {
      ok = false;
      error = sqlite3_errmsg(rdb_);
    }
  }
  if (ok) {
    stmt_use q(events_get_);
    q.text(1, r.id).u64(2, after).u64(3, limit);
    out.events.reserve(std::min<std::size_t>(limit, 256));
    int rc;
    while ((rc = q.step()) == SQLITE_ROW) out.events.push_back(event{q.u64_at(0), q.u64_at(1), q.blob_at(2)});
    if (rc != SQLITE_DONE) {
      ok = false;
      error = sqlite3_errmsg(rdb_);
    }
  }
  // Then the newer events, from the log.
  if (ok && out.events.size() < limit) {
    const std::uint64_t from = out.events.empty() ? after : out.events.back().seq;
    for (const log_row& l : tail) {
      if (l.seq <= from) continue;
      if (out.events.size() == limit) break;
      stmt_use q(log_get_);
      q.u64(1, static_cast<std::uint64_t>(l.rowid));
      const int rc = q.step();
      const auto* id = rc == SQLITE_ROW ? reinterpret_cast<const char*>(sqlite3_column_text(log_get_, 0)) : nullptr;
      if (rc != SQLITE_ROW || id == nullptr || r.id != id || q.u64_at(1) != l.seq) {
        ok = false;
        error = rc == SQLITE_ROW || rc == SQLITE_DONE ? "the log's row " + std::to_string(l.rowid) + " is not event " +
                                                            std::to_string(l.seq) + " of " + r.id
                                                      : sqlite3_errmsg(rdb_);
        break;
      }
      out.events.push_back(event{l.seq, q.u64_at(2), q.blob_at(3)});
    }
  }
  std::string ignored;
  exec(rdb_, ok ? "COMMIT" : "ROLLBACK", ignored);
  if (!ok) {
    out = {};
    out.status = result::failed;
    out.detail = "the journal " + opts_.path + ": " + error;
  } else {
    out.end = out.events.size() < limit;
  }
  r.done(std::move(out));
}

}  // namespace troupe::persistence
