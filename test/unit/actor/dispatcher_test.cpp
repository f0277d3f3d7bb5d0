#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <thread>

#include "actor/dispatcher.hpp"
#include "probe.hpp"

using namespace troupe;
using namespace troupe::testing;

namespace {

struct counting_task final : schedulable {
  std::atomic<int>* counter;
  std::uint32_t run() noexcept override {
    counter->fetch_add(1);
    return 0;
  }
};

}  // namespace

TEST_CASE("the dispatcher runs everything scheduled from outside and stops cleanly", "[dispatcher]") {
  std::atomic<int> ran{0};
  std::vector<counting_task> tasks(10'000);
  {
    dispatcher d(dispatcher_options{.threads = 2});
    REQUIRE(d.threads() == 2);
    REQUIRE_FALSE(d.on_worker());
    for (auto& t : tasks) {
      t.counter = &ran;
      d.schedule(&t);
    }
    for (int i = 0; i < 5000 && ran.load() < 10'000; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    d.stop();
  }
  REQUIRE(ran.load() == 10'000);
}

TEST_CASE("a pool sized 0 gets one worker per core", "[dispatcher]") {
  dispatcher d;
  REQUIRE(d.threads() == std::max(1u, std::thread::hardware_concurrency()));
}

TEST_CASE("an actor blocked in its handler does not stall the others", "[dispatcher]") {
  latch gate;
  actor_system sys(small_config(2));
  probe pr(sys);
  pid blocker = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Num>()) gate.wait();
  })));
  pid worker = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) ctx.send(pr.self, num(n->n()));
  })));
  sys.root().send(blocker, num(0));
  REQUIRE(gate.wait_for_waiters(1));
  for (int i = 0; i < 100; ++i) sys.root().send(worker, num(i));
  for (int i = 0; i < 100; ++i) REQUIRE(pr.expect_num(std::chrono::milliseconds(2000)) == i);
  gate.open();
}

TEST_CASE("the actor a blocked handler just messaged is taken over by another worker",
          "[dispatcher]") {
  // The message lands in the blocked worker's run-next slot; another worker
  // must notice the stall and run it.
  latch gate;
  actor_system sys(small_config(2));
  probe pr(sys);
  pid target = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Num>()) ctx.send(pr.self, num(1));
  })));
  pid blocker = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Num>()) {
      ctx.send(target, num(0));
      gate.wait();
    }
  })));
  sys.root().send(blocker, num(0));
  REQUIRE(gate.wait_for_waiters(1));
  REQUIRE(pr.expect_num(std::chrono::milliseconds(3000)) == 1);
  gate.open();
}

TEST_CASE("ping-pong between two actors stays on one worker and never parks it", "[dispatcher]") {
  inbox<int> done;
  actor_system sys(small_config(2));
  struct player : actor {
    pid partner;
    inbox<int>* done;
    void receive(context& ctx) override {
      if (auto* n = ctx.message<test::Num>()) {
        if (n->n() > 1) {
          std::int64_t next = n->n() - 1;
          ctx.send<test::Num>(partner, [&](auto& b) { return test::CreateNum(b, next); });
        } else {
          done->put(1);
        }
      } else if (auto* t = ctx.message<test::Text>()) {
        partner = ctx.system().lookup(t->s()->str());
      }
    }
  };
  auto make = share(props::from([&] {
    auto p = std::make_unique<player>();
    p->done = &done;
    return std::unique_ptr<actor>(std::move(p));
  }));
  pid a = sys.root().spawn(make), b = sys.root().spawn(make);
  sys.root().send(a, text(b.id()));
  sys.root().send(b, text(a.id()));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto parks_before = sys.dispatcher().parks();
  sys.root().send(a, num(200'000));
  REQUIRE(done.take(std::chrono::seconds(30)));
  // One hand-off per message would mean 200,000 parks; staying on the
  // worker's run-next slot means almost none.
  REQUIRE(sys.dispatcher().parks() - parks_before < 100);
}

TEST_CASE("work pushed from outside while workers go idle is never stranded", "[dispatcher]") {
  // Pushes race the workers' pops: a pop that meets a push between its
  // exchange and its link must not leave the queue looking empty. Each
  // round pushes a few tasks from several threads at once, then waits
  // without pushing more, so stranded work would stay stranded.
  dispatcher d(dispatcher_options{.threads = 2});
  constexpr int producers = 3, rounds = 300;
  std::vector<counting_task> tasks(producers * rounds);
  std::atomic<int> ran{0};
  for (int r = 0; r < rounds; ++r) {
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p)
      threads.emplace_back([&, p] {
        counting_task& t = tasks[r * producers + p];
        t.counter = &ran;
        ready.fetch_add(1);
        while (ready.load() < producers) cpu_relax();
        d.schedule(&t);
      });
    for (auto& t : threads) t.join();
    const int expected = (r + 1) * producers;
    REQUIRE(eventually([&] { return ran.load() == expected; }, std::chrono::milliseconds(1000)));
    if (r % 10 == 0) std::this_thread::sleep_for(std::chrono::microseconds(300));
  }
  d.stop();
}

namespace {

// Records the thread it ran on, and optionally defers a call.
struct where_task final : schedulable {
  std::atomic<std::thread::id> ran_on{};
  std::atomic<std::thread::id> deferred_on{};
  std::atomic<bool> ran{false};
  std::atomic<bool> deferred{false};  // after_run accepted the call
  bool defer = false;
  std::uint32_t run() noexcept override {
    if (defer) {
      deferred.store(dispatcher::after_run([](void* self) {
        static_cast<where_task*>(self)->deferred_on.store(std::this_thread::get_id());
      }, this));
    }
    ran_on.store(std::this_thread::get_id());
    ran.store(true);
    return 0;
  }
};

}  // namespace

TEST_CASE("a holder runs the first mailbox it schedules itself when the hold ends", "[dispatcher]") {
  dispatcher d(dispatcher_options{.threads = 2});
  const auto me = std::this_thread::get_id();
  where_task first, second;
  first.defer = true;
  const auto runs_before = d.held_runs();
  {
    dispatcher::hold hold(d);
    d.schedule(&first);
    d.schedule(&second);  // only the first is held: this one goes to a worker
    REQUIRE_FALSE(first.ran.load());
  }
  // Spinning workers or not, the held one ran here as the hold ended.
  REQUIRE(first.ran.load());
  REQUIRE(first.ran_on.load() == me);
  REQUIRE(d.held_runs() == runs_before + 1);
  // What the turn deferred ran on the holder too, once the turn ended.
  REQUIRE(first.deferred.load());
  REQUIRE(first.deferred_on.load() == me);
  REQUIRE(eventually([&] { return second.ran.load(); }));
  REQUIRE(second.ran_on.load() != me);
  d.stop();
}

namespace {

// Where each message was handled.
struct handled {
  std::int64_t n;
  std::thread::id on;
};

// An actor that reports each Num it handles, after taking `takes`.
pid spawn_reporter(actor_system& sys, inbox<handled>& out, std::chrono::microseconds takes = {}) {
  return sys.root().spawn(share(props::from_fn([&out, takes](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) {
      if (takes.count() != 0) std::this_thread::sleep_for(takes);
      out.put({n->n(), std::this_thread::get_id()});
    }
  })));
}

// Sends `n` inside a hold until a turn of it was held here; false if none
// was. A send finds the mailbox still scheduled when the worker that ran
// the last turn has reported but not yet ended its turn: on a loaded
// machine the reporter's wake-up can take that worker's core each time. So
// a retry first gives the worker time to end its turn.
bool held_here(actor_system& sys, pid who, inbox<handled>& out, std::int64_t n) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    if (attempt != 0) std::this_thread::sleep_for(std::chrono::milliseconds(std::min(attempt, 10)));
    {
      dispatcher::hold hold(sys.dispatcher());
      sys.root().send(who, num(n));
    }
    auto h = out.take();
    if (!h) return false;
    if (h->on == std::this_thread::get_id()) return true;
  }
  return false;
}

system_config held_config(dispatcher_options o) {
  system_config c = small_config(2);
  o.threads = 2;
  c.dispatcher = o;
  return c;
}

}  // namespace

TEST_CASE("a burst read at once is handled on the holder, one budget per turn", "[dispatcher]") {
  dispatcher_options o;
  o.held_turn = std::chrono::seconds(10);  // the time bound is another test's,
  o.held_slow = std::chrono::seconds(10);  // and so is a slow handler
  actor_system sys(held_config(o));
  inbox<handled> out;
  pid a = spawn_reporter(sys, out);
  REQUIRE(held_here(sys, a, out, 0));
  const auto runs_before = sys.dispatcher().held_runs();
  constexpr int burst = 1000;  // more than three budgets of 300
  {
    dispatcher::hold hold(sys.dispatcher());
    for (int i = 1; i <= burst; ++i) sys.root().send(a, num(i));
  }
  auto got = out.take_n(burst);
  REQUIRE(got.size() == burst);
  for (int i = 0; i < burst; ++i) {
    REQUIRE(got[i].n == i + 1);
    REQUIRE(got[i].on == std::this_thread::get_id());
  }
  // A turn per budget, so that what each sent could leave in between.
  REQUIRE(sys.dispatcher().held_runs() >= runs_before + 4);
}

TEST_CASE("a held turn ends when its time is up; the workers go on in order", "[dispatcher]") {
  dispatcher_options o;
  o.held_turn = std::chrono::milliseconds(2);
  o.held_slow = std::chrono::seconds(10);  // no handler counts as slow here
  actor_system sys(held_config(o));
  inbox<handled> out;
  pid a = spawn_reporter(sys, out, std::chrono::microseconds(200));
  REQUIRE(held_here(sys, a, out, 0));
  constexpr int burst = 50;  // 10 ms of handling, five times the turn
  {
    dispatcher::hold hold(sys.dispatcher());
    for (int i = 1; i <= burst; ++i) sys.root().send(a, num(i));
  }
  auto got = out.take_n(burst);
  REQUIRE(got.size() == burst);
  int here = 0;
  for (int i = 0; i < burst; ++i) {
    REQUIRE(got[i].n == i + 1);
    if (got[i].on == std::this_thread::get_id()) ++here;
  }
  REQUIRE(got[0].on == std::this_thread::get_id());
  REQUIRE(here < burst);
}

TEST_CASE("an actor whose held message ran long goes to the workers; the others stay held", "[dispatcher]") {
  dispatcher_options o;
  o.held_off = std::chrono::seconds(60);  // longer than the test
  actor_system sys(held_config(o));
  inbox<handled> slow_out, quick_out;
  pid slow = spawn_reporter(sys, slow_out, std::chrono::milliseconds(2));
  pid quick = spawn_reporter(sys, quick_out);
  // Its first held message runs here, and takes four times held_slow.
  REQUIRE(held_here(sys, slow, slow_out, 0));
  for (int i = 1; i <= 5; ++i) {
    {
      dispatcher::hold hold(sys.dispatcher());
      sys.root().send(slow, num(i));
    }
    auto h = slow_out.take();
    REQUIRE(h);
    REQUIRE(h->n == i);
    REQUIRE(h->on != std::this_thread::get_id());
  }
  // Another actor is still held. (A fresh one if this thread lost its core
  // during the quick turn, which would count as slow for 60 s here.)
  bool quick_held = held_here(sys, quick, quick_out, 0);
  for (int i = 0; i < 5 && !quick_held; ++i)
    quick_held = held_here(sys, spawn_reporter(sys, quick_out), quick_out, 0);
  REQUIRE(quick_held);
}

TEST_CASE("a held actor turn counts its messages and may block like a worker's", "[dispatcher]") {
  actor_system sys(small_config(2));
  probe pr(sys);
  std::atomic<bool> on_worker{false};
  pid echo = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) {
      on_worker.store(ctx.system().dispatcher().on_worker());
      ctx.send(pr.self, num(n->n()));
    }
  })));
  sys.root().send(echo, num(0));
  REQUIRE(pr.expect_num() == 0);
  const auto processed_before = sys.dispatcher().processed();
  {
    dispatcher::hold hold(sys.dispatcher());
    for (int i = 1; i <= 3; ++i) sys.root().send(echo, num(i));
  }
  for (int i = 1; i <= 3; ++i) REQUIRE(pr.expect_num() == i);
  // Wherever the turn ran, it counts, and its handler was told it may wait
  // (bounded) for a full mailbox as a worker's may.
  REQUIRE(eventually([&] { return sys.dispatcher().processed() >= processed_before + 3; }));
  REQUIRE(on_worker.load());
}
