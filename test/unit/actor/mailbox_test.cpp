#include <catch2/catch.hpp>

#include <thread>

#include "actor/clock.hpp"
#include "actor/dispatcher.hpp"
#include "probe.hpp"

using namespace troupe;
using namespace troupe::testing;

namespace {

// An actor with a bounded mailbox that blocks on `gate` when it gets 0 and
// reports every number; returned once it is blocked on 0.
struct gated {
  latch gate;
  inbox<std::int64_t> seen;
  pid actor;

  gated(actor_system& sys, mailbox_kind kind, std::uint32_t capacity) {
    props p = props::from_fn([this](context& ctx) {
      if (auto* n = ctx.message<test::Num>()) {
        if (n->n() == 0) gate.wait();
        seen.put(n->n());
      }
    });
    p.mailbox = {kind, capacity, 300};
    actor = sys.root().spawn(share(p));
    sys.root().send(actor, num(0));
    REQUIRE(gate.wait_for_waiters(1));
  }
  ~gated() { gate.open(); }
};

}  // namespace

TEST_CASE("system messages overtake queued user messages", "[mailbox]") {
  latch gate;
  inbox<std::string> log;
  actor_system sys(small_config());
  pid other = sys.root().spawn(share(props::from_fn([](context&) {})));
  pid a = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<system::Started>()) {
      ctx.watch(other);
    } else if (auto* n = ctx.message<test::Num>()) {
      if (n->n() == 0) gate.wait();
      log.put(std::to_string(n->n()));
    } else if (ctx.message<system::Terminated>()) {
      log.put("terminated");
    }
  })));
  sys.root().send(a, num(0));
  REQUIRE(gate.wait_for_waiters(1));
  sys.root().send(a, num(1));
  sys.root().send(a, num(2));
  sys.root().stop(other);  // Terminated reaches `a` through its system queue
  while (!other.get()->dead()) std::this_thread::sleep_for(1ms);
  gate.open();
  REQUIRE(log.take_n(4) == std::vector<std::string>{"0", "terminated", "1", "2"});
}

TEST_CASE("bounded mailbox dropping the newest counts every drop", "[mailbox]") {
  actor_system sys(small_config());
  gated g(sys, mailbox_kind::bounded_drop_newest, 5);
  for (int i = 1; i <= 20; ++i) sys.root().send(g.actor, num(i));
  g.gate.open();
  auto got = g.seen.take_n(6);
  REQUIRE(got == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5});
  REQUIRE(g.seen.take(100ms) == std::nullopt);
  REQUIRE(sys.stats().mailbox_dropped == 15);
  REQUIRE(sys.stats().dead_letters[static_cast<int>(dead_letter_reason::mailbox_full)] == 15);
}

TEST_CASE("bounded mailbox dropping the oldest keeps the newest", "[mailbox]") {
  actor_system sys(small_config());
  gated g(sys, mailbox_kind::bounded_drop_oldest, 5);
  for (int i = 1; i <= 20; ++i) sys.root().send(g.actor, num(i));
  g.gate.open();
  auto got = g.seen.take_n(6);
  REQUIRE(got == std::vector<std::int64_t>{0, 16, 17, 18, 19, 20});
  REQUIRE(sys.stats().mailbox_dropped == 15);
}

TEST_CASE("bounded mailbox with back-pressure holds the sender, loses nothing", "[mailbox]") {
  actor_system sys(small_config());
  gated g(sys, mailbox_kind::bounded_block, 4);
  std::atomic<int> sent{0};
  std::thread producer([&] {
    for (int i = 1; i <= 50; ++i) {
      sys.root().send(g.actor, num(i));
      sent.store(i);
    }
  });
  std::this_thread::sleep_for(100ms);
  // Four fit; the producer waits on the fifth.
  REQUIRE(sent.load() == 4);
  g.gate.open();
  producer.join();
  auto got = g.seen.take_n(51);
  REQUIRE(got.size() == 51);
  for (int i = 0; i <= 50; ++i) REQUIRE(got[i] == i);
  REQUIRE(sys.stats().mailbox_dropped == 0);
}

TEST_CASE("the event loop never waits for room: a full back-pressure mailbox drops what it sends",
          "[mailbox]") {
  actor_system sys(small_config());
  gated g(sys, mailbox_kind::bounded_block, 4);
  for (int i = 1; i <= 4; ++i) sys.root().send(g.actor, num(i));
  inbox<int> done;
  sys.loop().post([&] {
    sys.root().send(g.actor, num(5));  // as a remote delivery or a timer would
    done.put(1);
  });
  REQUIRE(done.take(std::chrono::seconds(2)));
  REQUIRE(sys.stats().mailbox_dropped == 1);
  REQUIRE(sys.stats().dead_letters[static_cast<int>(dead_letter_reason::mailbox_full)] == 1);
  g.gate.open();
  REQUIRE(g.seen.take_n(5) == std::vector<std::int64_t>{0, 1, 2, 3, 4});
  REQUIRE(g.seen.take(100ms) == std::nullopt);
}

TEST_CASE("a thread that must not wait (no_waiting_for_room) gets a full back-pressure mailbox's refusal",
          "[mailbox]") {
  actor_system sys(small_config());
  gated g(sys, mailbox_kind::bounded_block, 4);
  for (int i = 1; i <= 4; ++i) sys.root().send(g.actor, num(i));  // full now
  inbox<int> done;
  std::thread server([&] {  // as the admin API's thread
    {
      no_waiting_for_room here;
      sys.root().send(g.actor, num(5));
    }
    done.put(1);
  });
  REQUIRE(done.take(std::chrono::seconds(2)));  // it did not wait for the gate
  server.join();
  REQUIRE(sys.stats().mailbox_dropped == 1);
  REQUIRE(sys.stats().dead_letters[static_cast<int>(dead_letter_reason::mailbox_full)] == 1);
  g.gate.open();
  REQUIRE(g.seen.take_n(5) == std::vector<std::int64_t>{0, 1, 2, 3, 4});
  REQUIRE(g.seen.take(100ms) == std::nullopt);
}

TEST_CASE("an actor's turn held on the event loop waits for room as a worker's turn would",
          "[mailbox]") {
  actor_system sys(small_config());
  gated g(sys, mailbox_kind::bounded_block, 4);
  for (int i = 1; i <= 4; ++i) sys.root().send(g.actor, num(i));  // full now
  std::atomic<bool> ran_on_loop{false};
  inbox<int> pinged;
  pid relay = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Text>()) pinged.put(1);
    if (auto* n = ctx.message<test::Num>()) {
      ran_on_loop.store(ctx.system().loop().on_loop_thread());
      ctx.send(g.actor, num(n->n()));
    }
  })));
  sys.root().send(relay, text("ping"));
  REQUIRE(pinged.take());
  std::this_thread::sleep_for(20ms);  // its mailbox is idle again: the hold takes it
  sys.loop().post([&] {
    dispatcher::hold hold(sys.dispatcher());
    sys.root().send(relay, num(5));  // as a message read from another node
  });
  std::this_thread::sleep_for(30ms);  // the held turn waits for room meanwhile
  g.gate.open();
  REQUIRE(g.seen.take_n(6) == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5});
  REQUIRE(ran_on_loop.load());
  REQUIRE(sys.stats().mailbox_dropped == 0);
}

TEST_CASE("a mailbox run yields after its throughput batch", "[mailbox]") {
  // One worker: the only way `b` runs before `a` drained is a yield.
  inbox<std::string> log;
  latch gate;
  actor_system sys(small_config(1));
  props pa = props::from_fn([&](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) {
      if (n->n() == 0) gate.wait();
      log.put(std::string("a").append(std::to_string(n->n())));
    }
  });
  pa.mailbox.throughput = 10;
  pid a = sys.root().spawn(share(pa));
  pid b = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Num>()) log.put("b");
  })));
  sys.root().send(a, num(0));
  REQUIRE(gate.wait_for_waiters(1));
  for (int i = 1; i <= 100; ++i) sys.root().send(a, num(i));
  sys.root().send(b, num(1));
  gate.open();
  auto got = log.take_n(102);
  REQUIRE(got.size() == 102);
  auto b_at = std::find(got.begin(), got.end(), "b") - got.begin();
  REQUIRE(b_at < 101);  // before the last of a's messages
  REQUIRE(b_at >= 10);  // but not before a's first batch
}

TEST_CASE("per-sender order holds under many concurrent senders", "[mailbox]") {
  actor_system sys(small_config());
  constexpr int senders = 8, per_sender = 5'000;
  std::vector<std::int64_t> last(senders, -1);
  std::atomic<bool> in_order{true};
  inbox<int> done;
  std::atomic<int> total{0};
  pid sink = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) {
      int s = static_cast<int>(n->n() / per_sender);
      std::int64_t k = n->n() % per_sender;
      if (k != last[s] + 1) in_order = false;
      last[s] = k;
      if (++total == senders * per_sender) done.put(1);
    }
  })));
  std::vector<std::thread> threads;
  for (int s = 0; s < senders; ++s)
    threads.emplace_back([&, s] {
      for (int k = 0; k < per_sender; ++k) sys.root().send(sink, num(std::int64_t{s} * per_sender + k));
    });
  for (auto& t : threads) t.join();
  REQUIRE(done.take());
  REQUIRE(in_order);
}

TEST_CASE("mailbox depth counts what waits and returns to zero once drained", "[mailbox]") {
  latch gate;
  inbox<std::int64_t> seen;
  actor_system sys(small_config());
  pid a = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) {
      if (n->n() == 0) gate.wait();
      seen.put(n->n());
    }
  })));
  auto* cell = dynamic_cast<context*>(a.get());
  REQUIRE(cell != nullptr);
  sys.root().send(a, num(0));
  REQUIRE(gate.wait_for_waiters(1));
  for (int i = 1; i <= 100; ++i) sys.root().send(a, num(i));
  CHECK(cell->mailbox_depth() == 100);

  // Several senders at once may lose counts; the figure is right again once
  // the actor has drained its mailbox.
  std::vector<std::thread> senders;
  for (int t = 0; t < 4; ++t)
    senders.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) sys.root().send(a, num(1000 + i));
    });
  for (auto& t : senders) t.join();
  CHECK(cell->mailbox_depth() <= 4100);
  gate.open();
  REQUIRE(seen.take_n(4101).size() == 4101);
  // The last message's handler has run; the run then finds the queue empty.
  for (int i = 0; i < 500 && cell->mailbox_depth() != 0; ++i) std::this_thread::sleep_for(1ms);
  CHECK(cell->mailbox_depth() == 0);
  sys.root().send(a, num(1));
  REQUIRE(seen.take() == std::optional<std::int64_t>(1));
  for (int i = 0; i < 500 && cell->mailbox_depth() != 0; ++i) std::this_thread::sleep_for(1ms);
  CHECK(cell->mailbox_depth() == 0);
}

TEST_CASE("a bounded mailbox reports the messages in its queue", "[mailbox]") {
  actor_system sys(small_config());
  gated g(sys, mailbox_kind::bounded_drop_newest, 10);
  for (int i = 1; i <= 7; ++i) sys.root().send(g.actor, num(i));
  CHECK(dynamic_cast<context*>(g.actor.get())->mailbox_depth() == 7);
  g.gate.open();
  REQUIRE(g.seen.take_n(8).size() == 8);  // nothing left to touch `g` once it is gone
}

TEST_CASE("a drop-newest mailbox holds its bound against many senders at once", "[mailbox]") {
  actor_system sys(small_config());
  constexpr std::uint32_t capacity = 1000;
  gated g(sys, mailbox_kind::bounded_drop_newest, capacity);
  auto* cell = dynamic_cast<context*>(g.actor.get());
  constexpr int senders = 4, each = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < senders; ++t)
    threads.emplace_back([&] {
      for (int i = 1; i <= each; ++i) sys.root().send(g.actor, num(i));
    });
  for (auto& t : threads) t.join();
  // Senders racing at the bound may each add one.
  const std::size_t depth = cell->mailbox_depth();
  CHECK(depth >= capacity);
  CHECK(depth <= capacity + senders);
  CHECK(cell->pressure() >= 100);
  const std::uint64_t dropped = sys.stats().mailbox_dropped.load();
  CHECK(dropped == senders * each - depth);
  g.gate.open();
  REQUIRE(g.seen.take_n(depth + 1).size() == depth + 1);
  REQUIRE(g.seen.take(100ms) == std::nullopt);
  CHECK(sys.stats().dead_letters[static_cast<int>(dead_letter_reason::mailbox_full)] == dropped);
}

TEST_CASE("pressure says how full a mailbox is", "[mailbox]") {
  actor_system sys(small_config());
  SECTION("drop newest") {
    gated g(sys, mailbox_kind::bounded_drop_newest, 200);
    for (int i = 1; i <= 150; ++i) sys.root().send(g.actor, num(i));
    CHECK(g.actor.get()->pressure() == 75);
    g.gate.open();
    REQUIRE(g.seen.take_n(151).size() == 151);
  }
  SECTION("drop oldest") {
    gated g(sys, mailbox_kind::bounded_drop_oldest, 10);
    for (int i = 1; i <= 5; ++i) sys.root().send(g.actor, num(i));
    CHECK(g.actor.get()->pressure() == 50);
    g.gate.open();
    REQUIRE(g.seen.take_n(6).size() == 6);
  }
  SECTION("unbounded: against the reference depth") {
    gated g(sys, mailbox_kind::unbounded, 0);
    const int n = process::unbounded_reference / 4;
    for (int i = 1; i <= n; ++i) sys.root().send(g.actor, num(i));
    CHECK(g.actor.get()->pressure() == 25);
    g.gate.open();
    REQUIRE(g.seen.take_n(n + 1).size() == static_cast<std::size_t>(n + 1));
  }
}

namespace {
message kilobyte(std::int64_t n) {
  return make_message<test::Text>([&](flatbuffers::FlatBufferBuilder& b) {
    return test::CreateText(b, b.CreateString(std::string(1000, static_cast<char>('a' + n % 26))));
  });
}
}  // namespace

TEST_CASE("the queued-message budget refuses what goes past it, counts it, and frees up again",
          "[mailbox][budget]") {
  actor_system sys(small_config());
  inbox<int> seen;
  latch gate;
  pid a = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Num>()) gate.wait();
    if (ctx.message<test::Text>()) seen.put(1);
  })));
  sys.root().send(a, num(0));
  REQUIRE(gate.wait_for_waiters(1));

  // Counted per thread and settled in steps: measured from where it is now.
  const std::int64_t before = queued_message_bytes();
  constexpr std::uint64_t allowance = 1 << 20;
  sys.set_queue_budget(static_cast<std::uint64_t>(before + static_cast<std::int64_t>(allowance)));
  constexpr int sent = 5000;  // about 5 MB
  for (int i = 0; i < sent; ++i) sys.root().send(a, kilobyte(i));
  const std::uint64_t refused =
      sys.stats().dead_letters[static_cast<int>(dead_letter_reason::over_budget)].load();
  const std::uint64_t queued = sent - refused;
  const std::int64_t message_bytes = queued_message_bytes() - before;
  // This thread settles every queued_bytes_step; nothing else sends.
  CHECK(message_bytes <= static_cast<std::int64_t>(allowance) + queued_bytes_step);
  CHECK(message_bytes >= static_cast<std::int64_t>(allowance));
  // Each holds a 2 KiB block (64 bytes of envelope, about 1 KB of payload).
  CHECK(queued * 2048 <= allowance + 3 * queued_bytes_step);
  CHECK(queued * 2048 >= allowance - 2 * queued_bytes_step);
  CHECK(sys.queue_pressure() >= 93);
  // System messages still pass: the actor can be watched and stopped.
  CHECK(sys.stats().mailbox_dropped == 0);

  gate.open();
  REQUIRE(seen.take_n(queued).size() == queued);
  // Drained: a send gets through again.
  for (int i = 0; i < 2000 && sys.queue_pressure() >= 90; ++i) std::this_thread::sleep_for(1ms);
  sys.root().send(a, kilobyte(1));
  REQUIRE(seen.take() == std::optional<int>(1));
  CHECK(sys.stats().dead_letters[static_cast<int>(dead_letter_reason::over_budget)] == refused);
  sys.set_queue_budget(0);
}

TEST_CASE("queued bytes return to where they were once mailboxes drain or their actors go",
          "[mailbox][budget]") {
  const std::int64_t before = queued_message_bytes();
  {
    actor_system sys(small_config());
    latch gate;
    pid a = sys.root().spawn(share(props::from_fn([&](context& ctx) {
      if (ctx.message<test::Num>()) gate.wait();
    })));
    sys.root().send(a, num(0));
    REQUIRE(gate.wait_for_waiters(1));
    for (int i = 0; i < 3000; ++i) sys.root().send(a, kilobyte(i));
    CHECK(queued_message_bytes() - before >= 3000 * 1000 - queued_bytes_step);
    sys.root().stop(a);
    gate.open();
    // The stopped actor's queue becomes dead letters; the system goes.
  }
  // Every thread of that system has ended and handed its count over; this
  // one keeps less than a step.
  const std::int64_t after = queued_message_bytes() - before;
  CHECK(after < 2 * queued_bytes_step);
  CHECK(after > -2 * queued_bytes_step);
}

// A turn's messages in a row to one actor are pushed together (see
// context::send_user); what a user sees must not change.
TEST_CASE("actors sending many messages in a row, to one target and then another, keep each sender's order",
          "[mailbox]") {
  actor_system sys(small_config());
  constexpr int senders = 4, per_sender = 3'000;
  std::vector<std::int64_t> last(senders, -1);
  std::atomic<bool> in_order{true};
  std::atomic<int> total{0}, others{0};
  inbox<int> done;
  pid sink = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) {
      const int s = static_cast<int>(n->n() / per_sender);
      const std::int64_t k = n->n() % per_sender;
      if (k != last[s] + 1) in_order = false;
      last[s] = k;
      if (++total == senders * per_sender) done.put(1);
    }
  })));
  pid other = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Num>()) ++others;
  })));
  std::vector<pid> ss;
  for (int s = 0; s < senders; ++s)
    ss.push_back(sys.root().spawn(share(props::from_fn([&, s](context& ctx) {
      if (ctx.message<test::Text>()) {
        // Runs of different lengths, broken by a message to another actor.
        for (int k = 0; k < per_sender; ++k) {
          ctx.send<test::Num>(sink, [&](auto& b) { return test::CreateNum(b, std::int64_t{s} * per_sender + k); });
          if (k % (97 + s) == 0) ctx.send<test::Num>(other, [](auto& b) { return test::CreateNum(b, 0); });
        }
      }
    }))));
  for (const pid& s : ss) sys.root().send(s, text("go"));
  REQUIRE(done.take());
  CHECK(in_order);
  int expected_others = 0;
  for (int s = 0; s < senders; ++s)
    for (int k = 0; k < per_sender; ++k) expected_others += k % (97 + s) == 0;
  for (int i = 0; i < 500 && others != expected_others; ++i) std::this_thread::sleep_for(1ms);
  CHECK(others == expected_others);
}

TEST_CASE("a turn that sends several messages to an actor and then waits for its reply gets it", "[mailbox]") {
  actor_system sys(small_config());
  pid echo = sys.root().spawn(share(props::from_fn([](context& ctx) {
    if (auto* n = ctx.message<test::Num>(); n != nullptr && n->n() < 0)
      ctx.respond<test::Num>([&](auto& b) { return test::CreateNum(b, n->n()); });
  })));
  inbox<std::int64_t> got;
  pid asker = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Text>()) {
      for (int k = 0; k < 10; ++k) ctx.send<test::Num>(echo, [&](auto& b) { return test::CreateNum(b, k); });
      // The request follows nine messages held back to go together: the
      // wait must not hold it back with them.
      future f = ctx.request_future(echo, num(-7), std::chrono::seconds(5));
      const future_result r = f.get_result();
      const auto* n = r.as<test::Num>();
      got.put(n != nullptr ? n->n() : 0);
    }
  })));
  sys.root().send(asker, text("go"));
  REQUIRE(got.take() == std::optional<std::int64_t>(-7));
}

TEST_CASE("what a handler sends before it replies reaches its targets before the reply reaches the asker",
          "[mailbox]") {
  actor_system sys(small_config());
  std::atomic<int> seen{0};
  pid counter = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) {
      if (n->n() > 0) ++seen;
      else ctx.respond<test::Num>([&](auto& b) { return test::CreateNum(b, seen.load()); });
    }
  })));
  pid relay = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Text>()) {
      for (int k = 1; k <= 5; ++k) ctx.send<test::Num>(counter, [&](auto& b) { return test::CreateNum(b, k); });
      ctx.respond<test::Text>([](auto& b) { return test::CreateTextDirect(b, "done"); });
    }
  })));
  for (int round = 1; round <= 50; ++round) {
    REQUIRE(sys.root().request_future(relay, text("go"), std::chrono::seconds(5)).get_result().ok());
    // The five are in the counter's mailbox already: a question asked now
    // comes after them.
    const future_result r = sys.root().request_future(counter, num(0), std::chrono::seconds(5)).get_result();
    const auto* n = r.as<test::Num>();
    REQUIRE(n != nullptr);
    REQUIRE(n->n() == 5 * round);
  }
}

namespace {
// About a microsecond of work for one message.
void busy_microsecond() {
  const std::int64_t until = steady_ns() + 1000;
  while (steady_ns() < until) {
  }
}
}  // namespace

TEST_CASE("messages a handler sends in a row point the receiver eight messages ahead", "[mailbox]") {
  // The receiver prefetches the envelope its current one points to: the
  // pointer must be the address of the message eight places later.
  latch gate;
  constexpr int total = 300;
  std::vector<const envelope*> at(total, nullptr), ahead(total, nullptr);
  inbox<int> done;
  actor_system sys(small_config());
  pid receiver = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Text>()) gate.wait();
    if (auto* n = ctx.message<test::Num>()) {
      const auto i = static_cast<std::size_t>(n->n());
      at[i] = &ctx.envelope();
      ahead[i] = ctx.envelope().ahead();
      if (i + 1 == total) done.put(1);
    }
  })));
  pid sender = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Text>())
      for (int i = 0; i < total; ++i) ctx.send<test::Num>(receiver, [i](auto& b) { return test::CreateNum(b, i); });
  })));
  sys.root().send(receiver, text("hold"));
  REQUIRE(gate.wait_for_waiters(1));
  sys.root().send(sender, text("go"));
  // All of them wait in the mailbox before the first is handled: no block
  // is freed, and none reused, while the addresses are taken.
  for (int i = 0; i < 1000 && dynamic_cast<context*>(receiver.get())->mailbox_depth() < total; ++i)
    std::this_thread::sleep_for(1ms);
  gate.open();
  REQUIRE(done.take());
  int pointing = 0;
  for (int i = 0; i < total; ++i) {
    if (ahead[i] == nullptr) continue;
    INFO("message " << i);
    REQUIRE(i + 8 < total);
    CHECK(ahead[i] == at[i + 8]);
    ++pointing;
  }
  // Chains of 256 (each after one message pushed alone): all but the last
  // eight of each point ahead.
  CHECK(pointing >= total - 2 * 9);
}

TEST_CASE("a handler flooding an actor that runs on another worker waits while the backlog is large, and loses nothing",
          "[mailbox]") {
  actor_system sys(small_config());
  constexpr std::int64_t total = 1'000'000;
  std::int64_t next = 0;
  std::size_t most = 0;
  bool in_order = true;
  inbox<int> started;
  inbox<std::size_t> done;
  pid slow = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Text>()) {
      // Running when the flood begins: stays in this turn until it comes.
      started.put(1);
      const std::int64_t until = steady_ns() + 10'000'000'000;
      while (ctx.mailbox_depth() == 0 && steady_ns() < until) {
      }
    } else if (auto* n = ctx.message<test::Num>()) {
      if (n->n() != next) in_order = false;
      next = n->n() + 1;
      most = std::max(most, ctx.mailbox_depth());
      busy_microsecond();  // the sender is many times faster
      if (next == total) done.put(most);
    }
  })));
  pid flood = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Text>())
      for (std::int64_t i = 0; i < total; ++i)
        ctx.send<test::Num>(slow, [i](auto& b) { return test::CreateNum(b, i); });
  })));
  sys.root().send(slow, text("warm up"));
  REQUIRE(started.take());
  sys.root().send(flood, text("go"));
  const auto deepest = done.take(60s);
  REQUIRE(deepest);
  CHECK(in_order);
  // Unpaced, the backlog grows to nearly all of it.
  CHECK(*deepest < static_cast<std::size_t>(total / 4));
}

TEST_CASE("a receiver flooded by many handlers keeps its worker: its backlog stays bounded and nothing is lost",
          "[mailbox]") {
  // Two workers, 40 senders in the shared queue, each sending 25,000 in
  // one handler. Were the receiver queued behind its senders after a turn,
  // it would wait there for several of their floods at a time, and its
  // backlog would reach most of the million.
  actor_system sys(small_config(2));
  static constexpr int senders = 40;
  static constexpr std::int64_t each = 25'000;
  std::vector<std::int64_t> next(senders, 0);
  std::int64_t left = senders * each;
  std::size_t deepest = 0;
  bool in_order = true;
  inbox<std::size_t> done;
  pid sink = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) {
      const auto s = static_cast<std::size_t>(n->n() / each);
      if (n->n() % each != next[s]) in_order = false;
      next[s] = n->n() % each + 1;
      deepest = std::max(deepest, ctx.mailbox_depth());
      if (--left == 0) done.put(deepest);
    }
  })));
  std::vector<pid> floods;
  for (int s = 0; s < senders; ++s)
    floods.push_back(sys.root().spawn(share(props::from_fn([&, s](context& ctx) {
      if (ctx.message<test::Text>())
        for (std::int64_t i = 0; i < each; ++i)
          ctx.send<test::Num>(sink, [s, i](auto& b) { return test::CreateNum(b, s * each + i); });
    }))));
  for (const pid& f : floods) sys.root().send(f, text("go"));
  const auto most = done.take(120s);
  REQUIRE(most);
  CHECK(in_order);
  CHECK(*most < static_cast<std::size_t>(senders * each / 4));
}

TEST_CASE("an idle actor flooded by a handler is drained by a free worker while the handler still sends",
          "[mailbox]") {
  actor_system sys(small_config());
  constexpr std::int64_t total = 400'000;
  std::atomic<bool> sending{false};
  std::int64_t next = 0, during = 0;
  bool in_order = true;
  inbox<std::int64_t> done;
  pid slow = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) {
      if (n->n() != next) in_order = false;
      next = n->n() + 1;
      if (sending.load()) ++during;
      busy_microsecond();
      if (next == total) done.put(during);
    }
  })));
  pid flood = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Text>()) {
      sending = true;
      for (std::int64_t i = 0; i < total; ++i)
        ctx.send<test::Num>(slow, [i](auto& b) { return test::CreateNum(b, i); });
      sending = false;
    }
  })));
  sys.root().send(flood, text("go"));
  const auto taken_during = done.take(60s);
  REQUIRE(taken_during);
  CHECK(in_order);
  // Left next on the sender's worker, it would get none before the end.
  CHECK(*taken_during > 0);
}
