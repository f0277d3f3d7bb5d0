// Persistent actors on the SQLite journal, as their authors expect (as in
// Akka Persistence): state back after a restart; a message that arrives
// while an event is being stored, or while the actor recovers, waits for
// it; a second writer and a failed store stop the actor with the reason; a
// refused event is an answer and the actor goes on; a snapshot shortens
// recovery.
#include <catch2/catch.hpp>

#include <stdlib.h>

#include <filesystem>
#include <future>
#include <mutex>

#include "../actor/probe.hpp"
#include "persistence/actor_journal.hpp"
#include "persistence/sqlite_journal.hpp"
#include "sync_vfs.hpp"

using namespace troupe;
using namespace troupe::testing;
using troupe::persistence::actor_journal;
using troupe::persistence::sqlite_journal;
using troupe::persistence::sqlite_options;

namespace {

constexpr type_id deposited = 101, balance_snapshot = 102;

std::vector<std::uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }
std::int64_t number(const recovered& r) {
  return std::stoll(std::string(reinterpret_cast<const char*>(r.data), r.size));
}

// A bank account: Num deposits (negative: withdraws), Text "balance" tells.
// Each deposit is an event; every `snapshot_every` events, a snapshot.
struct account : actor {
  inbox<std::string>& log;
  std::string id;
  unsigned snapshot_every;
  std::int64_t balance = 0;
  std::uint64_t seq = 0;

  account(inbox<std::string>& l, std::string i, unsigned every) : log(l), id(std::move(i)), snapshot_every(every) {}

  void receive(context& ctx) override {
    journal_service& j = *ctx.system().journal();
    if (ctx.message<system::Started>()) {
      j.recover(
          ctx, id,
          [this](context&, const recovered& r) {
            if (r.snapshot) log.put("from snapshot " + std::to_string(r.seq));
            balance = r.snapshot ? number(r) : balance + number(r);
            seq = r.seq;
          },
          [this](context&, const persist_result& r) {
            log.put("recovered " + std::to_string(balance) + " at " + std::to_string(r.last_seq));
          });
    } else if (ctx.message<system::Stopped>()) {
      log.put("stopped");
    } else if (auto* n = ctx.message<test::Num>()) {
      const std::int64_t by = n->n();
      j.persist(ctx, id, seq, {event_bytes{deposited, bytes_of(std::to_string(by))}},
                [this, by](context& c, const persist_result& r) {
                  if (r.status != persist_status::ok) {
                    log.put(std::string("refused: ") + to_string(r.status) + ": " + r.detail);
                    return;
                  }
                  seq = r.last_seq;
                  balance += by;
                  log.put("deposited " + std::to_string(by) + " -> " + std::to_string(balance));
                  // The deposit's sender gets the answer, once it is durable.
                  if (c.sender()) c.respond(text("balance " + std::to_string(balance)));
                  if (snapshot_every != 0 && seq % snapshot_every == 0)
                    c.system().journal()->snapshot(c, id, seq,
                                                   event_bytes{balance_snapshot, bytes_of(std::to_string(balance))}, {});
                });
    } else if (auto* t = ctx.message<test::Text>()) {
      if (t->s()->str() == "balance") log.put("balance " + std::to_string(balance));
    }
  }
};

struct bank {
  std::filesystem::path dir;
  std::unique_ptr<sqlite_journal> store;
  std::vector<std::string> warnings;
  std::mutex mu;
  std::unique_ptr<actor_journal> service;
  std::unique_ptr<actor_system> sys;

  explicit bank(sqlite_options o = {}) {
    char tmpl[] = "/tmp/troupe-bank-XXXXXX";
    dir = mkdtemp(tmpl);
    o.path = (dir / "state.db").string();
    std::string error;
    store = sqlite_journal::open(o, error);
    REQUIRE(store);
    actor_journal::hooks h;
    h.warn = [this](const std::string& line) {
      std::lock_guard lock(mu);
      warnings.push_back(line);
    };
    service = std::make_unique<actor_journal>(*store, h);
    sys = std::make_unique<actor_system>(small_config());
    sys->set_journal(service.get());
  }
  ~bank() {
    sys.reset();
    store->stop();
    std::filesystem::remove_all(dir);
  }
  pid open(inbox<std::string>& log, const std::string& id, unsigned snapshot_every = 0) {
    return sys->root().spawn(
        share(props::from([&log, id, snapshot_every] { return std::unique_ptr<actor>(new account(log, id, snapshot_every)); })));
  }
  std::string warning(std::size_t i) {
    std::lock_guard lock(mu);
    return i < warnings.size() ? warnings[i] : "";
  }
};

}  // namespace

TEST_CASE("a persistent actor gets its state back when it starts again", "[persistence][actor]") {
  inbox<std::string> log;  // outlives the actors, which write to it until they stop
  bank b;
  pid a = b.open(log, "bank/alice");
  REQUIRE(log.take() == "recovered 0 at 0");
  for (int n : {10, 5, -3}) b.sys->root().send(a, num(n));
  REQUIRE(log.take_n(3) == std::vector<std::string>{"deposited 10 -> 10", "deposited 5 -> 15", "deposited -3 -> 12"});
  b.sys->root().stop(a);
  REQUIRE(log.take() == "stopped");
  pid again = b.open(log, "bank/alice");
  CHECK(log.take() == "recovered 12 at 3");
  b.sys->root().send(again, num(1));
  CHECK(log.take() == "deposited 1 -> 13");
}

TEST_CASE("a message that comes while an event is stored waits for it", "[persistence][actor]") {
  inbox<std::string> log;  // outlives the actors, which write to it until they stop
  bank b;
  pid a = b.open(log, "bank/bob");
  REQUIRE(log.take() == "recovered 0 at 0");
  // Sent together: "balance" is not handled before the deposit is durable
  // and applied.
  for (int i = 0; i < 50; ++i) b.sys->root().send(a, num(2));
  b.sys->root().send(a, text("balance"));
  const auto got = log.take_n(51);
  REQUIRE(got.size() == 51);
  CHECK(got[49] == "deposited 2 -> 100");
  CHECK(got[50] == "balance 100");
}

TEST_CASE("messages that come during recovery wait for it", "[persistence][actor]") {
  inbox<std::string> log;
  bank b;
  {
    // A long journal, written straight to the store.
    std::vector<persistence::event> many;
    for (int i = 0; i < 20000; ++i) many.push_back({0, deposited, bytes_of("1")});
    std::promise<persistence::outcome> p;
    b.store->append("bank/carol", 0, std::move(many), [&](const persistence::outcome& o) { p.set_value(o); });
    REQUIRE(p.get_future().get().last_seq == 20000);
  }
  pid a = b.open(log, "bank/carol");
  b.sys->root().send(a, text("balance"));
  b.sys->root().send(a, num(5));
  CHECK(log.take_n(3) == std::vector<std::string>{"recovered 20000 at 20000", "balance 20000", "deposited 5 -> 20005"});
  CHECK(b.service->stats().recovered_events == 20000);
}

TEST_CASE("a second writer of one persistence id is stopped, and the log says why", "[persistence][actor]") {
  inbox<std::string> first_log, second_log;
  bank b;
  pid first = b.open(first_log, "bank/dave");
  pid second = b.open(second_log, "bank/dave");
  REQUIRE(first_log.take() == "recovered 0 at 0");
  REQUIRE(second_log.take() == "recovered 0 at 0");
  b.sys->root().send(first, num(7));
  REQUIRE(first_log.take() == "deposited 7 -> 7");
  // The second believes the journal is empty: refused, and stopped.
  b.sys->root().send(second, num(100));
  CHECK(second_log.take() == "stopped");
  CHECK(b.warning(0).find("(bank/dave) stopped: persist_conflict: another writer appended to bank/dave") !=
        std::string::npos);
  // The first goes on; the journal has its event only.
  b.sys->root().send(first, num(1));
  CHECK(first_log.take() == "deposited 1 -> 8");
}

TEST_CASE("a store that fails stops the actor with persist_failed; the next one recovers what was durable",
          "[persistence][actor]") {
  static persistence::test::sync_watch watch;
  persistence::test::register_sync_vfs("troupe-sync-watch", &watch);
  sqlite_options o;
  o.vfs = "troupe-sync-watch";
  inbox<std::string> log;
  bank b(o);
  pid a = b.open(log, "bank/erin");
  REQUIRE(log.take() == "recovered 0 at 0");
  b.sys->root().send(a, num(3));
  REQUIRE(log.take() == "deposited 3 -> 3");
  watch.fail_writes = true;
  b.sys->root().send(a, num(4));
  CHECK(log.take() == "stopped");
  watch.fail_writes = false;
  CHECK(b.warning(0).find("stopped: persist_failed: the journal ") != std::string::npos);
  b.open(log, "bank/erin");
  CHECK(log.take() == "recovered 3 at 1");
}

TEST_CASE("a refused event is an answer, and the actor goes on", "[persistence][actor]") {
  sqlite_options o;
  o.max_event_bytes = 3;
  inbox<std::string> log;
  bank b(o);
  pid a = b.open(log, "bank/frank");
  REQUIRE(log.take() == "recovered 0 at 0");
  b.sys->root().send(a, num(1000));  // "1000": four bytes
  CHECK(log.take() == "refused: rejected: an event of 4 bytes (at most 3)");
  b.sys->root().send(a, num(999));
  CHECK(log.take() == "deposited 999 -> 999");
}

TEST_CASE("recovery starts from the newest snapshot", "[persistence][actor]") {
  inbox<std::string> log;  // outlives the actors, which write to it until they stop
  bank b;
  pid a = b.open(log, "bank/grace", 4);
  REQUIRE(log.take() == "recovered 0 at 0");
  for (int i = 1; i <= 10; ++i) b.sys->root().send(a, num(i));
  REQUIRE(log.take_n(10).back() == "deposited 10 -> 55");
  b.sys->root().stop(a);
  REQUIRE(log.take() == "stopped");
  b.open(log, "bank/grace", 4);
  // Snapshots at 4 and 8 (the newest): then events 9 and 10.
  CHECK(log.take_n(2) == std::vector<std::string>{"from snapshot 8", "recovered 55 at 10"});
}

TEST_CASE("the answer to a request comes once its event is durable, to the one who asked", "[persistence][actor]") {
  inbox<std::string> log;  // outlives the actors, which write to it until they stop
  bank b;
  pid a = b.open(log, "bank/heidi");
  REQUIRE(log.take() == "recovered 0 at 0");
  b.sys->root().send(a, num(1));  // a plain send first: no answer
  future f = b.sys->root().request_future(a, num(41), std::chrono::seconds(5));
  const future_result r = f.get_result();
  REQUIRE(r.ok());
  REQUIRE(r.as<test::Text>() != nullptr);
  CHECK(r.as<test::Text>()->s()->str() == "balance 42");
  CHECK(b.store->stats().events == 2);
}
