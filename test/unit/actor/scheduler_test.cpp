#include <atomic>
#include <thread>

#include <catch2/catch.hpp>

#include "probe.hpp"

using namespace troupe;
using namespace troupe::testing;

TEST_CASE("send_once delivers after its delay, not before", "[scheduler]") {
  actor_system sys(small_config());
  probe p(sys);
  const auto t0 = std::chrono::steady_clock::now();
  timer_handle h = sys.scheduler().send_once(50ms, p.self, num(7));
  REQUIRE(p.expect_num() == 7);
  REQUIRE(std::chrono::steady_clock::now() - t0 >= 50ms);
  REQUIRE_FALSE(h.pending());
  REQUIRE_FALSE(h.cancel());  // already fired
  REQUIRE(p.silent_for(100ms));
}

TEST_CASE("send_repeatedly keeps sending until cancelled, then never again", "[scheduler]") {
  actor_system sys(small_config());
  probe p(sys);
  timer_handle h = sys.scheduler().send_repeatedly(1ms, 5ms, p.self, num(1));
  for (int i = 0; i < 5; ++i) REQUIRE(p.expect_num() == 1);
  REQUIRE(h.pending());
  REQUIRE(h.cancel());
  REQUIRE_FALSE(h.pending());
  // Whatever was sent before cancel() returned may still be queued; nothing after.
  while (p.got.take(20ms)) {
  }
  REQUIRE(p.silent_for(100ms));
  REQUIRE_FALSE(h.cancel());
}

TEST_CASE("request_once sets the sender, so the reply goes back to it", "[scheduler]") {
  actor_system sys(small_config());
  probe replies(sys);
  pid echo = sys.root().spawn(share(props::from_fn([](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) {
      std::int64_t v = n->n() + 1;
      ctx.respond<test::Num>([&](auto& b) { return test::CreateNum(b, v); });
    }
  })));
  timer_handle h = sys.scheduler().request_once(10ms, echo, num(41), replies.self);
  REQUIRE(replies.expect_num() == 42);
}

TEST_CASE("request_repeatedly from an actor answers to the actor", "[scheduler]") {
  inbox<std::int64_t> got;
  actor_system sys(small_config());
  pid echo = sys.root().spawn(share(props::from_fn([](context& ctx) {
    if (ctx.message<test::Num>()) ctx.respond(ctx.current());
  })));
  pid asker = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<system::Started>())
      ctx.scheduler().request_repeatedly(1ms, 5ms, echo, num(9));
    else if (auto* n = ctx.message<test::Num>())
      got.put(n->n());
  })));
  REQUIRE(got.take_n(3).size() == 3);
  stop_and_wait(sys, asker);
}

TEST_CASE("cancelling is safe from any thread and wins or loses cleanly", "[scheduler]") {
  // Many timers due about now, cancelled from two threads while the loop
  // fires them: each is either delivered or reported cancelled, never both
  // and never lost.
  std::atomic<int> received{0};
  std::atomic<int> cancelled{0};
  actor_system sys(small_config());
  pid counter = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Num>()) received.fetch_add(1, std::memory_order_relaxed);
  })));
  constexpr int n = 4000;
  std::vector<timer_handle> hs;
  hs.reserve(n);
  for (int i = 0; i < n; ++i)
    hs.push_back(sys.scheduler().send_once(std::chrono::microseconds(i % 2000), counter, num(i)));
  auto cancel_half = [&](int from) {
    for (int i = from; i < n; i += 2)
      if (hs[i].cancel()) cancelled.fetch_add(1, std::memory_order_relaxed);
  };
  std::thread a(cancel_half, 0);
  std::thread b(cancel_half, 1);
  a.join();
  b.join();
  REQUIRE(eventually([&] { return received.load() + cancelled.load() == n; }));
  std::this_thread::sleep_for(50ms);
  REQUIRE(received.load() + cancelled.load() == n);
}

TEST_CASE("a repeating timer cancelled from another thread sends nothing afterwards",
          "[scheduler]") {
  std::atomic<int> received{0};
  actor_system sys(small_config());
  pid counter = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Num>()) received.fetch_add(1, std::memory_order_relaxed);
  })));
  for (int round = 0; round < 50; ++round) {
    timer_handle h = sys.scheduler().send_repeatedly(0ms, std::chrono::microseconds(100), counter,
                                                     num(round));
    std::this_thread::sleep_for(std::chrono::microseconds(300 + 97 * round % 500));
    h.cancel();
    // Let what was sent before the cancel arrive, then nothing more may.
    std::this_thread::sleep_for(5ms);
    const int settled = received.load();
    std::this_thread::sleep_for(5ms);
    REQUIRE(received.load() == settled);
  }
}

TEST_CASE("a repeating timer can cancel itself from its own callback", "[scheduler]") {
  event_loop loop;
  loop.start_thread();
  std::atomic<int> fired{0};
  timer_handle h;
  std::atomic<bool> armed{false};
  std::atomic<bool> cancelled{false};
  h = loop.arm_repeating(1ms, 1ms, [&] {
    if (fired.fetch_add(1) == 2) {
      while (!armed.load()) std::this_thread::yield();
      cancelled.store(h.cancel());  // Catch's assertions belong to the test thread
    }
    return true;
  });
  armed.store(true);
  REQUIRE(eventually([&] { return fired.load() >= 3; }));
  std::this_thread::sleep_for(30ms);
  REQUIRE(cancelled.load());
  REQUIRE(fired.load() == 3);
  REQUIRE(loop.pending_timers() == 0);
  loop.stop();
}

TEST_CASE("an actor's timers are cancelled and released when it stops", "[scheduler]") {
  inbox<int> started;
  actor_system sys(small_config());
  probe p(sys);
  pid owner = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<system::Started>()) {
      ctx.scheduler().send_once(1h, p.self, num(1));
      ctx.scheduler().send_repeatedly(1h, 1h, p.self, num(2));
      ctx.scheduler().send_repeatedly(1ms, 1ms, p.self, num(3));
      started.put(1);
    }
  })));
  REQUIRE(started.take());
  REQUIRE(p.expect_num() == 3);
  REQUIRE(sys.loop().pending_timers() == 3);
  stop_and_wait(sys, owner);
  REQUIRE(eventually([&] { return sys.loop().pending_timers() == 0; }));
  while (p.got.take(20ms)) {
  }
  REQUIRE(p.silent_for(50ms));
}

TEST_CASE("a repeating timer ends by itself when its target stops", "[scheduler]") {
  actor_system sys(small_config());
  auto target = std::make_unique<probe>(sys);
  timer_handle h = sys.scheduler().send_repeatedly(1ms, 1ms, target->self, num(5));
  REQUIRE(target->expect_num() == 5);
  target.reset();  // stops the probe's actor
  REQUIRE(eventually([&] { return !h.pending(); }));
  REQUIRE(sys.loop().pending_timers() == 0);
}

TEST_CASE("a send_once to nobody is a dead letter", "[scheduler]") {
  actor_system sys(small_config());
  sys.scheduler().send_once(1ms, pid(), num(1));
  REQUIRE(eventually([&] { return sys.stats().dead_letters_total() == 1; }));
}

TEST_CASE("cancelled timers do not pile up on the loop", "[scheduler]") {
  actor_system sys(small_config());
  probe p(sys);
  std::vector<timer_handle> hs;
  for (int i = 0; i < 20000; ++i) hs.push_back(sys.scheduler().send_once(1h, p.self, num(i)));
  REQUIRE(eventually([&] { return sys.loop().pending_timers() == 20000; }));
  for (auto& h : hs) REQUIRE(h.cancel());
  // Swept within about a second, long before their deadline.
  const bool swept = eventually([&] { return sys.loop().pending_timers() == 0; }, 3000ms);
  const std::size_t left = sys.loop().pending_timers();
  CAPTURE(left);
  REQUIRE(swept);
}
