// The PostgreSQL journal against a real server (test/integration/pg.py
// starts one; TROUPE_TEST_PG is its connection string): what the SQLite
// journal promises, across two nodes sharing the database; a conflict in a
// pipeline that fails nobody else; a statement that does fail, failing only
// its own request; a newer schema refused; and an unreachable server named
// as the reason the store is not ready.
#include <catch2/catch.hpp>

#include <libpq-fe.h>

#include <atomic>
#include <cstdlib>
#include <future>
#include <thread>

#include "journal_calls.hpp"
#include "persistence/pg_journal.hpp"

using namespace troupe::persistence;
using namespace troupe::persistence::test;

namespace {

std::string server() {
  const char* c = std::getenv("TROUPE_TEST_PG");
  if (c == nullptr) FAIL("TROUPE_TEST_PG is not set: run this through test/integration/pg_journal_test.py");
  return c;
}

// SQL run as an operator would (one statement; its first value).
std::string sql(const std::string& statement) {
  PGconn* c = PQconnectdb(server().c_str());
  REQUIRE(PQstatus(c) == CONNECTION_OK);
  PGresult* r = PQexec(c, statement.c_str());
  const ExecStatusType s = PQresultStatus(r);
  INFO(PQresultErrorMessage(r));
  CHECK((s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK));
  std::string v = s == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
  PQclear(r);
  PQfinish(c);
  return v;
}

pg_options options(std::string conninfo, unsigned connections = 2) {
  pg_options o;
  o.conninfo = std::move(conninfo);
  o.connections = connections;
  return o;
}

std::unique_ptr<pg_journal> open(pg_options o = {}) {
  if (o.conninfo.empty()) o.conninfo = server();
  auto j = pg_journal::open(std::move(o));
  for (int i = 0; i < 500 && !j->not_ready().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  INFO(j->not_ready());
  REQUIRE(j->not_ready().empty());
  return j;
}

// A fresh id for each test: they share one database.
std::string id(const std::string& name) {
  static std::atomic<int> n{0};
  return "t" + std::to_string(::getpid()) + "-" + std::to_string(n++) + "/" + name;
}

}  // namespace

TEST_CASE("pg: appended events come back in order, numbered from 1 without a gap", "[pg]") {
  auto j = open();
  const std::string alice = id("alice");
  CHECK(append(*j, alice, 0, {ev(1, "open")}).last_seq == 1);
  const outcome o = append(*j, alice, 1, {ev(2, "deposit 10"), ev(2, "deposit 5"), ev(3, "withdraw 3")});
  CHECK(o.status == result::ok);
  CHECK(o.last_seq == 4);
  const read_result r = read(*j, alice);
  REQUIRE(r.status == result::ok);
  REQUIRE(r.events.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) CHECK(r.events[i].seq == i + 1);
  CHECK(text(r.events[3].data) == "withdraw 3");
  CHECK(r.events[3].type == 3);
  CHECK(r.end);
  // Type ids use all 64 bits.
  const std::string wide = id("wide");
  CHECK(append(*j, wide, 0, {ev(0xfedcba9876543210ull, "x")}).status == result::ok);
  CHECK(read(*j, wide).events.at(0).type == 0xfedcba9876543210ull);
}

TEST_CASE("pg: a second writer on another node is refused, and nothing of its append is stored", "[pg]") {
  auto a = open(), b = open();
  const std::string acct = id("acct");
  REQUIRE(append(*a, acct, 0, {ev(1, "a1")}).status == result::ok);
  const outcome o = append(*b, acct, 0, {ev(1, "b1"), ev(1, "b2")});
  CHECK(o.status == result::conflict);
  CHECK(o.last_seq == 1);
  CHECK(o.detail.find("another writer") != std::string::npos);
  CHECK(append(*b, acct, 5, {ev(1, "b")}).status == result::conflict);  // ahead of the journal: refused too
  CHECK(append(*a, acct, 1, {ev(1, "a2")}).status == result::ok);
  const read_result r = read(*b, acct);
  REQUIRE(r.events.size() == 2);
  CHECK(text(r.events[0].data) == "a1");
  CHECK(text(r.events[1].data) == "a2");
}

TEST_CASE("pg: two nodes racing for the same ids: exactly one wins each, whole", "[pg]") {
  auto a = open(), b = open();
  constexpr int ids = 200;
  std::vector<std::string> names;
  for (int i = 0; i < ids; ++i) names.push_back(id("race"));
  std::vector<std::promise<outcome>> pa(ids), pb(ids);
  for (int i = 0; i < ids; ++i) {
    a->append(names[i], 0, {ev(1, "a"), ev(1, "a")}, [&, i](const outcome& o) { pa[i].set_value(o); });
    b->append(names[i], 0, {ev(1, "b"), ev(1, "b"), ev(1, "b")}, [&, i](const outcome& o) { pb[i].set_value(o); });
  }
  int a_won = 0, b_won = 0;
  for (int i = 0; i < ids; ++i) {
    const outcome oa = pa[i].get_future().get(), ob = pb[i].get_future().get();
    INFO(oa.detail << " / " << ob.detail);
    REQUIRE((oa.status == result::ok) != (ob.status == result::ok));
    CHECK((oa.status == result::conflict || ob.status == result::conflict));
    const read_result r = read(*a, names[i]);
    const bool a_wins = oa.status == result::ok;
    (a_wins ? a_won : b_won)++;
    REQUIRE(r.events.size() == (a_wins ? 2u : 3u));
    for (const event& e : r.events) CHECK(text(e.data) == (a_wins ? "a" : "b"));
  }
  CHECK(a_won + b_won == ids);
  // Neither node's conflicts failed the other appends of its pipelines.
  CHECK(a->stats().failed.load() == 0);
  CHECK(b->stats().failed.load() == 0);
}

TEST_CASE("pg: a conflict in a batch fails nobody else's append; appends share commits", "[pg]") {
  auto j = open(options(server(), 1));
  const std::string taken = id("taken");
  REQUIRE(append(*j, taken, 0, {ev(1, "first")}).status == result::ok);
  constexpr int n = 300;
  std::vector<std::promise<outcome>> p(n + 1);
  for (int i = 0; i < n; ++i)
    j->append(id("many"), 0, {ev(1, "x")}, [&, i](const outcome& o) { p[i].set_value(o); });
  j->append(taken, 0, {ev(1, "second")}, [&](const outcome& o) { p[n].set_value(o); });
  // Two appends to one id in the same batch: the first wins, the second is refused.
  const std::string twice = id("twice");
  std::promise<outcome> t1, t2;
  j->append(twice, 0, {ev(1, "one"), ev(1, "two")}, [&](const outcome& o) { t1.set_value(o); });
  j->append(twice, 0, {ev(1, "other")}, [&](const outcome& o) { t2.set_value(o); });
  for (int i = 0; i < n; ++i) CHECK(p[i].get_future().get().status == result::ok);
  CHECK(p[n].get_future().get().status == result::conflict);
  CHECK(t1.get_future().get().status == result::ok);
  CHECK(t2.get_future().get().status == result::conflict);
  CHECK(read(*j, twice).events.size() == 2);
  CHECK(j->stats().resent.load() == 0);  // a conflict is a row count, never a failed pipeline
  CHECK(j->stats().commits.load() < static_cast<std::uint64_t>(n) / 2);  // group commit
}

TEST_CASE("pg: a statement that fails fails its own request only; the rest of its batch is stored", "[pg]") {
  auto j = open(options(server(), 1));
  // A persistence id PostgreSQL cannot store (not UTF-8): its statement fails.
  const std::string bad = id("bad") + "\xff\xfe";
  constexpr int n = 50;
  std::vector<std::promise<outcome>> p(n);
  std::promise<outcome> pbad;
  std::vector<std::string> names;
  for (int i = 0; i < n; ++i) names.push_back(id("good"));
  for (int i = 0; i < n / 2; ++i) j->append(names[i], 0, {ev(1, "g")}, [&, i](const outcome& o) { p[i].set_value(o); });
  j->append(bad, 0, {ev(1, "b")}, [&](const outcome& o) { pbad.set_value(o); });
  for (int i = n / 2; i < n; ++i) j->append(names[i], 0, {ev(1, "g")}, [&, i](const outcome& o) { p[i].set_value(o); });
  const outcome ob = pbad.get_future().get();
  CHECK(ob.status == result::failed);
  CHECK(ob.detail.find("UTF8") != std::string::npos);
  for (int i = 0; i < n; ++i) {
    CHECK(p[i].get_future().get().status == result::ok);
    CHECK(read(*j, names[i]).events.size() == 1);
  }
  CHECK(j->stats().failed.load() == 1);
}

TEST_CASE("pg: recovery reads the newest snapshot, then the events after it, in batches", "[pg]") {
  auto j = open();
  const std::string s = id("snap");
  std::vector<event> many;
  for (int i = 0; i < 10; ++i) many.push_back(ev(1, "e" + std::to_string(i + 1)));
  REQUIRE(append(*j, s, 0, many).status == result::ok);
  CHECK(snap(*j, s, 4, "state@4").status == result::ok);
  CHECK(snap(*j, s, 7, "state@7").status == result::ok);
  CHECK(snap(*j, s, 11, "too far").status == result::rejected);
  read_result r = read(*j, s, 0, true, 2);
  REQUIRE(r.snap);
  CHECK(r.snap->seq == 7);
  CHECK(text(r.snap->data) == "state@7");
  REQUIRE(r.events.size() == 2);
  CHECK(r.events[0].seq == 8);
  CHECK_FALSE(r.end);
  r = read(*j, s, 9, false, 2);
  REQUIRE(r.events.size() == 1);
  CHECK(r.events[0].seq == 10);
  CHECK(r.end);
  // The two newest snapshots stay.
  CHECK(snap(*j, s, 9, "state@9").status == result::ok);
  CHECK(sql("SELECT string_agg(seq::text, ',' ORDER BY seq) FROM troupe_snapshots WHERE persistence_id = '" + s +
            "'") == "7,9");
  // Events up to a snapshot may go; the last one stays, and numbering goes on.
  CHECK(erase(*j, s, 100).status == result::ok);
  r = read(*j, s, 0, false);
  REQUIRE(r.events.size() == 1);
  CHECK(r.events[0].seq == 10);
  CHECK(append(*j, s, 10, {ev(1, "e11")}).last_seq == 11);
}

TEST_CASE("pg: a database whose journal is of a newer schema is refused, and left as it is", "[pg]") {
  sql("CREATE DATABASE troupe_newer");
  std::string info = server();
  info.replace(info.find("dbname=troupe"), 13, "dbname=troupe_newer");
  { open(options(info)); }  // creates the tables
  const std::string other = info;
  PGconn* c = PQconnectdb(other.c_str());
  REQUIRE(PQstatus(c) == CONNECTION_OK);
  PQclear(PQexec(c, "UPDATE troupe_meta SET value = '2' WHERE key = 'schema'"));
  PQfinish(c);
  auto j = pg_journal::open(options(info));
  std::string why;
  for (int i = 0; i < 300; ++i) {
    why = j->not_ready();
    if (why.find("schema") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(why.find("schema version '2'") != std::string::npos);
  CHECK(why.find("newer troupe-node") != std::string::npos);
  CHECK(append(*j, "x/y", 0, {ev(1, "e")}).status == result::failed);
}

TEST_CASE("pg: an unreachable server is why the store is not ready; requests fail at once, saying so", "[pg]") {
  std::vector<std::string> lines;
  std::mutex mu;
  pg_options o;
  o.conninfo = "host=127.0.0.1 port=1 dbname=troupe user=troupe";
  o.on_event = [&](bool warning, const std::string& line) {
    std::lock_guard lock(mu);
    if (warning) lines.push_back(line);
  };
  auto j = pg_journal::open(std::move(o));
  std::string why;
  for (int i = 0; i < 300 && why.find("refused") == std::string::npos; ++i) {
    why = j->not_ready();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  INFO(why);
  CHECK(why.find("Connection refused") != std::string::npos);
  const auto t0 = std::chrono::steady_clock::now();
  const outcome out = append(*j, "x/y", 0, {ev(1, "e")});
  CHECK(out.status == result::failed);
  CHECK(out.detail.find("unreachable") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
  j->stop();
  std::lock_guard lock(mu);
  CHECK(lines.size() == 1);  // one line an outage, however many attempts
}

TEST_CASE("pg: new credentials replace the connections; a database that is not there is named", "[pg]") {
  auto j = open();
  const std::string a = id("rot");
  CHECK(append(*j, a, 0, {ev(1, "e")}).status == result::ok);
  j->set_credentials(server() + " dbname=nonexistent_db", "");
  std::string why;
  for (int i = 0; i < 300 && why.find("nonexistent_db") == std::string::npos; ++i) {
    why = j->not_ready();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(why.find("nonexistent_db") != std::string::npos);
  j->set_credentials(server(), "");
  for (int i = 0; i < 300 && !j->not_ready().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(j->not_ready().empty());
  CHECK(append(*j, a, 1, {ev(1, "e")}).status == result::ok);
}
