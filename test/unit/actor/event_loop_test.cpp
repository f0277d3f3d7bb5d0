#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include "actor/event_loop.hpp"
#include "probe.hpp"

using namespace troupe;
using namespace troupe::testing;
using namespace std::chrono_literals;

TEST_CASE("posted work runs on the loop thread, in order", "[loop]") {
  event_loop loop;
  loop.start_thread();
  inbox<int> seen;
  std::atomic<bool> on_loop{true};
  for (int i = 0; i < 100; ++i)
    loop.post([&, i] {
      if (!loop.on_loop_thread()) on_loop = false;
      seen.put(i);
    });
  auto got = seen.take_n(100);
  REQUIRE(got.size() == 100);
  for (int i = 0; i < 100; ++i) REQUIRE(got[i] == i);
  REQUIRE(on_loop);
  loop.stop();
}

TEST_CASE("timers fire in deadline order, not arming order", "[loop]") {
  event_loop loop;
  loop.start_thread();
  inbox<int> fired;
  std::vector<timer_handle> hs;
  hs.push_back(loop.arm(60ms, [&] { fired.put(3); }));
  hs.push_back(loop.arm(20ms, [&] { fired.put(1); }));
  hs.push_back(loop.arm(40ms, [&] { fired.put(2); }));
  REQUIRE(fired.take_n(3) == std::vector<int>{1, 2, 3});
  loop.stop();
}

TEST_CASE("a timer armed earlier than the loop's next wake-up still fires on time", "[loop]") {
  event_loop loop;
  loop.start_thread();
  inbox<int> fired;
  auto late = loop.arm(10s, [&] { fired.put(2); });
  std::this_thread::sleep_for(20ms);
  auto t0 = std::chrono::steady_clock::now();
  auto soon = loop.arm(20ms, [&] { fired.put(1); });
  REQUIRE(fired.take(2000ms) == 1);
  REQUIRE(std::chrono::steady_clock::now() - t0 < 1s);
  REQUIRE(late.cancel());
  loop.stop();
}

TEST_CASE("a cancelled timer never fires, even when cancel races the deadline", "[loop]") {
  event_loop loop;
  loop.start_thread();
  std::atomic<int> fired_after_cancel{0};
  std::atomic<int> fired{0};
  constexpr int n = 2000;
  std::vector<std::unique_ptr<std::atomic<bool>>> cancelled;
  std::vector<timer_handle> handles;
  for (int i = 0; i < n; ++i) cancelled.push_back(std::make_unique<std::atomic<bool>>(false));
  for (int i = 0; i < n; ++i) {
    auto* flag = cancelled[i].get();
    handles.push_back(loop.arm(std::chrono::microseconds(i % 3000), [&, flag] {
      fired.fetch_add(1);
      if (flag->load()) fired_after_cancel.fetch_add(1);
    }));
  }
  int cancelled_count = 0;
  std::thread other([&] {
    for (int i = 0; i < n; i += 2)
      if (handles[i].cancel()) cancelled[i]->store(true);
  });
  for (int i = 1; i < n; i += 2)
    if (handles[i].cancel()) {
      cancelled[i]->store(true);
      ++cancelled_count;
    }
  other.join();
  std::this_thread::sleep_for(50ms);
  loop.stop();
  REQUIRE(fired_after_cancel.load() == 0);
  int total_cancelled = 0;
  for (auto& c : cancelled) total_cancelled += c->load();
  REQUIRE(fired.load() + total_cancelled == n);
}

TEST_CASE("stopping the loop with timers pending leaks nothing and closes cleanly", "[loop]") {
  auto loop = std::make_unique<event_loop>();
  loop->start_thread();
  std::vector<timer_handle> hs;
  for (int i = 0; i < 1000; ++i) hs.push_back(loop->arm(1h, [] {}));
  REQUIRE(loop->pending_timers() == 1000);
  loop->stop();
  loop.reset();  // asserts uv_loop_close() == 0; sanitizers check the rest
}

TEST_CASE("a timer whose callback throws does not take the loop down", "[loop]") {
  event_loop loop;
  loop.start_thread();
  inbox<int> seen;
  auto once = loop.arm(1ms, [] { throw std::runtime_error("one-shot"); });
  auto repeating = loop.arm_repeating(1ms, 1ms, []() -> bool { throw std::runtime_error("repeating"); });
  auto after = loop.arm(20ms, [&] { seen.put(1); });
  REQUIRE(seen.take() == std::optional<int>(1));
  // Each threw once; the repeating one is not run again.
  CHECK_FALSE(once.pending());
  CHECK_FALSE(repeating.pending());
  loop.stop();
}

TEST_CASE("a busy-polling loop runs posts and timers, polls only after work, and stops", "[loop]") {
  event_loop loop;
  loop.busy_poll(300us);
  loop.start_thread();
  inbox<int> seen;
  std::thread poster([&] {
    for (int i = 0; i < 1000; ++i) loop.post([&seen, i] { seen.put(i); });
  });
  auto got = seen.take_n(1000);
  poster.join();
  REQUIRE(got.size() == 1000);
  for (int i = 0; i < 1000; ++i) REQUIRE(got[i] == i);
  // Timers fire in deadline order while the loop polls.
  inbox<int> fired;
  auto later = loop.arm(30ms, [&] { fired.put(2); });
  auto sooner = loop.arm(10ms, [&] { fired.put(1); });
  REQUIRE(fired.take_n(2) == std::vector<int>{1, 2});
  REQUIRE(loop.polled_ns() > 0);
  // Without work it sleeps: polling stops growing but for the odd window.
  std::this_thread::sleep_for(50ms);
  const std::int64_t before = loop.polled_ns();
  std::this_thread::sleep_for(300ms);
  REQUIRE(loop.polled_ns() - before < std::chrono::nanoseconds(30ms).count());
  loop.stop();
}

TEST_CASE("a busy-polling loop stops polling in time for its next timer", "[loop]") {
  event_loop loop;
  loop.busy_poll(100ms);
  loop.start_thread();
  inbox<int> fired;
  for (int round = 0; round < 5; ++round) {
    // Work first, so that a polling window is open when the timer is armed.
    loop.post([] {});
    const auto t0 = std::chrono::steady_clock::now();
    auto t = loop.arm(2ms, [&] { fired.put(round); });
    REQUIRE(fired.take(2000ms) == round);
    // Late by a whole window (100 ms) if polling ignored the timer.
    REQUIRE(std::chrono::steady_clock::now() - t0 < 50ms);
  }
  loop.stop();
}
