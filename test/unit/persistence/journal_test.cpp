// The SQLite journal as a persistent actor uses it: appends that are
// stored together or not at all, numbered without gaps; a second writer
// refused; snapshots and what recovery reads; a reopened database; group
// commit; and acknowledgements that never come before the sync that makes
// them durable (a VFS watches the write-ahead log), nor after a storage
// failure that lost them.
#include <catch2/catch.hpp>

#include <sqlite3.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "persistence/sqlite_journal.hpp"
#include "journal_calls.hpp"
#include "sync_vfs.hpp"

using namespace troupe::persistence;
using namespace troupe::persistence::test;

namespace {

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    char tmpl[] = "/tmp/troupe-journal-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
  std::string db() const { return (path / "state.db").string(); }
};

std::unique_ptr<sqlite_journal> open_at(const std::string& path, sqlite_options o = {}) {
  o.path = path;
  std::string error;
  auto j = sqlite_journal::open(std::move(o), error);
  INFO(error);
  REQUIRE(j);
  return j;
}

}  // namespace

TEST_CASE("appended events come back in order, numbered from 1 without a gap", "[persistence]") {
  temp_dir d;
  auto j = open_at(d.db());
  CHECK(append(*j, "bank/alice", 0, {ev(1, "open")}).last_seq == 1);
  const outcome o = append(*j, "bank/alice", 1, {ev(2, "deposit 10"), ev(2, "deposit 5"), ev(3, "withdraw 3")});
  CHECK(o.status == result::ok);
  CHECK(o.last_seq == 4);
  CHECK(append(*j, "bank/bob", 0, {ev(1, "open")}).last_seq == 1);  // ids are independent
  const read_result r = read(*j, "bank/alice");
  REQUIRE(r.status == result::ok);
  CHECK_FALSE(r.snap);
  CHECK(r.end);
  REQUIRE(r.events.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) CHECK(r.events[i].seq == i + 1);
  CHECK(r.events[0].type == 1);
  CHECK(text(r.events[2].data) == "deposit 5");
  CHECK(text(r.events[3].data) == "withdraw 3");
}

TEST_CASE("a second writer is refused, and nothing of its append is stored", "[persistence]") {
  temp_dir d;
  auto j = open_at(d.db());
  REQUIRE(append(*j, "bank/alice", 0, {ev(1, "a")}).status == result::ok);
  // Two writers that both recovered up to event 1: the first wins.
  REQUIRE(append(*j, "bank/alice", 1, {ev(2, "first")}).status == result::ok);
  const outcome second = append(*j, "bank/alice", 1, {ev(2, "second"), ev(2, "second again")});
  CHECK(second.status == result::conflict);
  CHECK(second.last_seq == 2);
  CHECK(second.detail.find("expected 1") != std::string::npos);
  // A fresh writer that believes there is nothing: refused too.
  CHECK(append(*j, "bank/alice", 0, {ev(1, "again")}).status == result::conflict);
  const read_result r = read(*j, "bank/alice");
  REQUIRE(r.events.size() == 2);
  CHECK(text(r.events[1].data) == "first");
  CHECK(j->stats().conflict == 2);
}

TEST_CASE("an event too large, or an empty append, is refused; the journal goes on", "[persistence]") {
  temp_dir d;
  sqlite_options o;
  o.max_event_bytes = 64;
  auto j = open_at(d.db(), o);
  const outcome big = append(*j, "x", 0, {ev(1, "small"), ev(1, std::string(65, 'x'))});
  CHECK(big.status == result::rejected);
  CHECK(big.detail == "an event of 65 bytes (at most 64)");
  CHECK(append(*j, "x", 0, {}).status == result::rejected);
  CHECK(append(*j, "x", 0, {ev(1, std::string(64, 'y'))}).status == result::ok);
  CHECK(read(*j, "x").events.size() == 1);
}

TEST_CASE("recovery reads the newest snapshot, then the events after it", "[persistence]") {
  temp_dir d;
  auto j = open_at(d.db());
  for (std::uint64_t i = 0; i < 10; ++i) REQUIRE(append(*j, "acct", i, {ev(2, "e" + std::to_string(i + 1))}).status == result::ok);
  CHECK(snap(*j, "acct", 4, "balance as of 4").status == result::ok);
  CHECK(snap(*j, "acct", 8, "balance as of 8").status == result::ok);
  // Not beyond the last event.
  CHECK(snap(*j, "acct", 11, "the future").status == result::rejected);
  const read_result r = read(*j, "acct");
  REQUIRE(r.snap);
  CHECK(r.snap->seq == 8);
  CHECK(r.snap->type == 7);
  CHECK(text(r.snap->data) == "balance as of 8");
  REQUIRE(r.events.size() == 2);
  CHECK(r.events[0].seq == 9);
  CHECK(text(r.events[1].data) == "e10");
  // Without the snapshot: every event.
  CHECK(read(*j, "acct", 0, false).events.size() == 10);
}

TEST_CASE("events before a snapshot may go; the numbering goes on where it was", "[persistence]") {
  temp_dir d;
  auto j = open_at(d.db());
  REQUIRE(append(*j, "acct", 0, {ev(1, "a"), ev(1, "b"), ev(1, "c")}).status == result::ok);
  REQUIRE(snap(*j, "acct", 3, "s").status == result::ok);
  // Up to 3 asked; the last one stays.
  CHECK(erase(*j, "acct", 3).status == result::ok);
  const read_result all = read(*j, "acct", 0, false);
  REQUIRE(all.events.size() == 1);
  CHECK(all.events[0].seq == 3);
  CHECK(append(*j, "acct", 3, {ev(1, "d")}).last_seq == 4);
  CHECK(append(*j, "acct", 0, {ev(1, "from nothing")}).status == result::conflict);
}

TEST_CASE("older snapshots are pruned: the two newest stay", "[persistence]") {
  temp_dir d;
  auto j = open_at(d.db());
  REQUIRE(append(*j, "s", 0, {ev(1, "a"), ev(1, "b"), ev(1, "c"), ev(1, "d")}).status == result::ok);
  for (std::uint64_t s = 1; s <= 4; ++s) REQUIRE(snap(*j, "s", s, "as of " + std::to_string(s)).status == result::ok);
  j.reset();
  // Read straight from the file.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(d.db().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT group_concat(seq) FROM (SELECT seq FROM snapshots ORDER BY seq)", -1, &q,
                             nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(q) == SQLITE_ROW);
  CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(q, 0))) == "3,4");
  sqlite3_finalize(q);
  sqlite3_close(db);
}

TEST_CASE("a reopened database has every acknowledged event, and the writers go on from there", "[persistence]") {
  temp_dir d;
  {
    auto j = open_at(d.db());
    for (std::uint64_t i = 0; i < 100; ++i) REQUIRE(append(*j, "p", i, {ev(1, std::to_string(i + 1))}).status == result::ok);
  }
  auto j = open_at(d.db());
  CHECK(append(*j, "p", 0, {ev(1, "stale")}).status == result::conflict);
  CHECK(append(*j, "p", 100, {ev(1, "101")}).last_seq == 101);
  const read_result r = read(*j, "p", 0, false, 1000);
  REQUIRE(r.events.size() == 101);
  CHECK(text(r.events[100].data) == "101");
}

TEST_CASE("the log is sorted into place as it grows; reads, writers and deletions see both parts", "[persistence]") {
  temp_dir d;
  sqlite_options o;
  o.compact_rows = 7;
  o.compact_step = GENERATE(std::size_t{8192}, std::size_t{3});  // the whole log at once, or its oldest 3 rows
  const std::vector<std::string> ids{"a", "b", "c"};
  {
    auto j = open_at(d.db(), o);
    // Interleaved, one append per commit: 30 rows. The whole log moves
    // after the 7th, 14th, 21st and 28th, leaving b's and c's tenth; 3 rows
    // move whenever it holds 7, from the 7th on.
    for (std::uint64_t round = 1; round <= 10; ++round)
      for (const std::string& id : ids)
        REQUIRE(append(*j, id, round - 1, {ev(round, id + std::to_string(round))}).status == result::ok);
    CHECK(j->stats().compactions == (o.compact_step > 7 ? 4 : 8));
    for (const std::string& id : ids) {
      const read_result r = read(*j, id);
      REQUIRE(r.events.size() == 10);
      for (std::uint64_t k = 0; k < 10; ++k) {
        CHECK(r.events[k].seq == k + 1);
        CHECK(text(r.events[k].data) == id + std::to_string(k + 1));
      }
    }
    // Across the two parts, and in pieces.
    const read_result part = read(*j, "c", 8, false, 1);
    REQUIRE(part.events.size() == 1);
    CHECK(part.events[0].seq == 9);
    CHECK_FALSE(part.end);
    const read_result rest = read(*j, "c", 9, false, 5);
    REQUIRE(rest.events.size() == 1);
    CHECK(rest.events[0].seq == 10);
    CHECK(rest.end);
    // A second writer is refused whether the last event is sorted or not.
    CHECK(append(*j, "a", 5, {ev(1, "late")}).status == result::conflict);
    CHECK(append(*j, "c", 9, {ev(1, "late")}).status == result::conflict);
    // Deletions reach rows in either part.
    for (std::uint64_t k = 0; k < 3; ++k) REQUIRE(append(*j, "d", k, {ev(1, "d" + std::to_string(k + 1))}).status == result::ok);
    CHECK(erase(*j, "d", 2).status == result::ok);
    CHECK(erase(*j, "c", 9).status == result::ok);
    const read_result dr = read(*j, "d");
    REQUIRE(dr.events.size() == 1);
    CHECK(dr.events[0].seq == 3);
    const read_result cr = read(*j, "c");
    REQUIRE(cr.events.size() == 1);
    CHECK(text(cr.events[0].data) == "c10");
    // A crash now would leave rows in the log: the database and its WAL as
    // they are, copied aside while the writer is idle.
    for (const char* suffix : {"", "-wal"})
      std::filesystem::copy_file(d.db() + suffix, d.db() + "-crashed" + suffix);
  }
  // Closed cleanly, the log is empty: every event is in the sorted table.
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(d.db().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    sqlite3_stmt* q = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, "SELECT (SELECT count(*) FROM log), (SELECT count(*) FROM events)", -1, &q,
                               nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(q) == SQLITE_ROW);
    CHECK(sqlite3_column_int(q, 0) == 0);
    CHECK(sqlite3_column_int(q, 1) == 22);  // a 1-10, b 1-10, c 10 and d 3 (the others deleted)
    sqlite3_finalize(q);
    sqlite3_close(db);
  }
  // Reopened, after the crash or the clean close: the same events, and the
  // writers go on (after the crash, the log's index is built from the log).
  o.compact_rows = 1000;
  for (const std::string& path : {d.db() + "-crashed", d.db()}) {
    INFO(path);
    auto j = open_at(path, o);
    CHECK(append(*j, "b", 9, {ev(1, "late")}).status == result::conflict);
    CHECK(append(*j, "b", 10, {ev(11, "b11")}).last_seq == 11);
    CHECK(append(*j, "d", 3, {ev(1, "d4")}).last_seq == 4);
    const read_result b = read(*j, "b");
    REQUIRE(b.events.size() == 11);
    for (std::uint64_t k = 0; k < 11; ++k) CHECK(b.events[k].seq == k + 1);
    CHECK(text(b.events[10].data) == "b11");
    const read_result dd = read(*j, "d");
    REQUIRE(dd.events.size() == 2);
    CHECK(dd.events[0].seq == 3);
    CHECK(dd.events[1].seq == 4);
  }
}

TEST_CASE("a journal written by a newer Troupe is refused, and left as it is", "[persistence]") {
  temp_dir d;
  { auto j = open_at(d.db()); }
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(d.db().c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "UPDATE troupe_meta SET value = '3' WHERE key = 'schema'", nullptr, nullptr, nullptr) ==
            SQLITE_OK);
    sqlite3_close(db);
  }
  sqlite_options o;
  o.path = d.db();
  std::string error;
  CHECK(sqlite_journal::open(o, error) == nullptr);
  CHECK(error.find("written by a newer Troupe (journal schema 3; this node reads up to 2)") != std::string::npos);
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(d.db().c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT value FROM troupe_meta WHERE key = 'schema'", -1, &q, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(q) == SQLITE_ROW);
  CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(q, 0))) == "3");
  sqlite3_finalize(q);
  sqlite3_close(db);
}

TEST_CASE("recovery reads a long journal in batches, to the end", "[persistence]") {
  temp_dir d;
  sqlite_options o;
  o.read_batch = 1000;
  auto j = open_at(d.db(), o);
  std::vector<event> many;
  for (int i = 0; i < 2500; ++i) many.push_back(ev(1, std::to_string(i + 1)));
  REQUIRE(append(*j, "long", 0, std::move(many)).last_seq == 2500);
  std::uint64_t after = 0, batches = 0;
  for (bool end = false; !end; ++batches) {
    const read_result r = read(*j, "long", after, after == 0);
    REQUIRE(r.status == result::ok);
    for (const event& e : r.events) REQUIRE(e.seq == ++after);
    end = r.end;
  }
  CHECK(after == 2500);
  CHECK(batches == 3);
}

TEST_CASE("concurrent appends share commits (group commit), and every one is answered", "[persistence]") {
  temp_dir d;
  auto j = open_at(d.db());
  constexpr int threads = 4, per_thread = 250, rounds = 5;
  std::atomic<int> ok{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      // Each of its ids with one append in flight at a time, all ids at once.
      for (int round = 0; round < rounds; ++round) {
        std::vector<std::promise<outcome>> ps(per_thread);
        for (int i = 0; i < per_thread; ++i)
          j->append("id-" + std::to_string(t) + "-" + std::to_string(i), static_cast<std::uint64_t>(round),
                    {ev(1, "x")}, [&ps, i](const outcome& o) { ps[static_cast<std::size_t>(i)].set_value(o); });
        for (auto& p : ps)
          if (p.get_future().get().status == result::ok) ++ok;
      }
    });
  for (auto& t : ts) t.join();
  CHECK(ok == threads * per_thread * rounds);
  CHECK(j->stats().events == static_cast<std::uint64_t>(threads * per_thread * rounds));
  INFO(j->stats().commits << " commits");
  CHECK(j->stats().commits < j->stats().events / 10);
}

TEST_CASE("no append is acknowledged before the sync that covers it", "[persistence]") {
  static test::sync_watch watch;
  test::register_sync_vfs("troupe-sync-watch", &watch);
  temp_dir d;
  // Each event is a distinct string; each acknowledgement checks that the
  // WAL write that first carried it was synced before.
  const auto run = [&](const std::string& synchronous) {
    sqlite_options o;
    o.vfs = "troupe-sync-watch";
    o.synchronous = synchronous;
    auto j = open_at(d.db() + "-" + synchronous, o);
    constexpr int n = 400;
    std::vector<std::string> markers;
    for (int i = 0; i < n; ++i) markers.push_back("event-" + synchronous + "-" + std::to_string(1000 + i) + ";");
    watch.watch_for(markers);
    std::atomic<int> early{0}, acks{0};
    std::vector<std::promise<void>> ps(n);
    for (int i = 0; i < n; ++i)
      j->append("a" + std::to_string(i % 40), static_cast<std::uint64_t>(i / 40), {ev(1, markers[static_cast<std::size_t>(i)])},
                [&, i](const outcome& o) {
                  if (o.status == result::ok) {
                    ++acks;
                    if (!watch.durable(static_cast<std::size_t>(i))) ++early;
                  }
                  ps[static_cast<std::size_t>(i)].set_value();
                });
    // (Appends to one id go in order: each waits for the one before in the queue.)
    for (auto& p : ps) p.get_future().get();
    return std::make_pair(acks.load(), early.load());
  };
  const std::int64_t syncs_before = watch.syncs.load();
  const auto [acks, early] = run("full");
  CHECK(acks == 400);
  CHECK(early == 0);
  CHECK(watch.syncs.load() > syncs_before);
  // The check can fail: with synchronous=normal, SQLite does not sync the
  // log at each commit, and the acknowledgements come first.
  const auto [acks_normal, early_normal] = run("normal");
  CHECK(acks_normal == 400);
  CHECK(early_normal > 0);
}

TEST_CASE("a storage failure fails the appends of its batch; none of them is stored", "[persistence]") {
  static test::sync_watch watch;
  test::register_sync_vfs("troupe-sync-watch", &watch);
  temp_dir d;
  sqlite_options o;
  o.vfs = "troupe-sync-watch";
  auto j = open_at(d.db(), o);
  REQUIRE(append(*j, "f", 0, {ev(1, "before")}).status == result::ok);
  watch.fail_writes = true;
  const outcome bad = append(*j, "f", 1, {ev(1, "lost")});
  watch.fail_writes = false;
  CHECK(bad.status == result::failed);
  CHECK(bad.detail.find("the journal " + d.db()) == 0);
  CHECK(j->stats().failed == 1);
  // The store works again: the writer still expects event 1 to be the last.
  CHECK(append(*j, "f", 1, {ev(1, "after")}).last_seq == 2);
  const read_result r = read(*j, "f", 0, false);
  REQUIRE(r.events.size() == 2);
  CHECK(text(r.events[1].data) == "after");
}

TEST_CASE("a stopped journal refuses what comes after, and a bad setting is named", "[persistence]") {
  temp_dir d;
  auto j = open_at(d.db());
  j->stop();
  CHECK(append(*j, "z", 0, {ev(1, "late")}).status == result::failed);
  CHECK(read(*j, "z").detail == "the journal is stopped");
  sqlite_options o;
  o.path = d.db() + "-2";
  o.synchronous = "sometimes";
  std::string error;
  CHECK_FALSE(sqlite_journal::open(o, error));
  CHECK(error.find("synchronous must be off, normal, full or extra, not 'sometimes'") != std::string::npos);
  o.synchronous = "full";
  o.path = (d.path / "no-such-dir" / "x.db").string();
  CHECK_FALSE(sqlite_journal::open(o, error));
  CHECK(error.find("the journal " + o.path + ": ") == 0);
}
