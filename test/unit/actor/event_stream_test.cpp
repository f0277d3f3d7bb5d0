#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "probe.hpp"

using namespace troupe;
using namespace troupe::testing;

namespace {

std::optional<std::int64_t> num_of(const event& e) {
  if (auto* m = std::get_if<message>(&e))
    if (auto* n = m->as<test::Num>()) return n->n();
  return std::nullopt;
}

}  // namespace

TEST_CASE("callbacks get published messages until they unsubscribe", "[events]") {
  inbox<std::int64_t> got;
  actor_system sys(small_config());
  auto id = sys.events().subscribe([&](const event& e) {
    if (auto n = num_of(e)) got.put(*n);
  });
  sys.events().publish(num(1));
  sys.events().publish(num(2));
  REQUIRE(got.take_n(2) == std::vector<std::int64_t>{1, 2});
  sys.events().unsubscribe(id);
  sys.events().publish(num(3));
  REQUIRE_FALSE(got.take(20ms));
  REQUIRE_FALSE(sys.events().has_subscribers());
}

TEST_CASE("a predicate picks the events a subscriber sees", "[events]") {
  inbox<dead_letter_reason> got;
  actor_system sys(small_config());
  sys.events().subscribe(
      [&](const event& e) { got.put(std::get<dead_letter_event>(e).reason); },
      [](const event& e) {
        auto* d = std::get_if<dead_letter_event>(&e);
        return d != nullptr && d->reason == dead_letter_reason::stopped;
      });
  pid a = sys.root().spawn(share(props::from_fn([](context&) {})));
  stop_and_wait(sys, a);
  sys.root().send(sys.lookup("$999999"), num(1));  // not_found: filtered out
  sys.events().publish(num(2));                     // not a dead letter: filtered out
  sys.root().send(a, num(3));                       // stopped: seen
  REQUIRE(got.take() == dead_letter_reason::stopped);
  REQUIRE_FALSE(got.take(50ms));
}

TEST_CASE("actors get runtime events as messages through their mailbox", "[events]") {
  actor_system sys(small_config());
  probe sub(sys);
  sys.events().subscribe(sub.self, [](const event& e) {
    return !std::holds_alternative<message>(e);
  });
  pid gone = sys.root().spawn(share(props::from_fn([](context&) {})));
  stop_and_wait(sys, gone);
  sys.root().send(gone, num(1));
  message m = sub.expect();
  auto* d = m.as<system::DeadLetterEvent>();
  REQUIRE(d != nullptr);
  REQUIRE(d->reason() == system::DeadLetterReason::Stopped);
  REQUIRE(d->message_type() == type_id_of<test::Num>());
  REQUIRE(d->target()->id()->str() == gone.id());

  pid failing = sys.root().spawn(share(props::from_fn([](context& ctx) {
    if (ctx.message<test::Num>()) throw std::runtime_error("bad number");
  })));
  sys.root().send(failing, num(2));
  message f = sub.expect();
  REQUIRE(f.as<system::ActorFailedEvent>() != nullptr);
  REQUIRE(f.as<system::ActorFailedEvent>()->reason()->str() == "bad number");
  REQUIRE(f.as<system::ActorFailedEvent>()->who()->id()->str() == failing.id());
  message s = sub.expect();
  REQUIRE(s.as<system::SupervisionEvent>() != nullptr);
  REQUIRE(s.as<system::SupervisionEvent>()->directive() == system::Directive::Restart);
  REQUIRE(s.as<system::SupervisionEvent>()->child()->id()->str() == failing.id());
}

TEST_CASE("a throwing subscriber is counted and the others still get the event", "[events]") {
  inbox<std::int64_t> before, after;
  actor_system sys(small_config());
  sys.events().subscribe([&](const event& e) { before.put(*num_of(e)); });
  sys.events().subscribe([](const event&) { throw std::runtime_error("subscriber bug"); });
  sys.events().subscribe([&](const event& e) { after.put(*num_of(e)); });
  for (int i = 0; i < 3; ++i) sys.events().publish(num(i));
  REQUIRE(before.take_n(3).size() == 3);
  REQUIRE(after.take_n(3) == std::vector<std::int64_t>{0, 1, 2});
  REQUIRE(sys.events().handler_failures() == 3);
}

TEST_CASE("a slow actor subscriber does not hold up publishing or the others", "[events]") {
  latch hold;
  inbox<std::int64_t> slow_got, fast_got;
  actor_system sys(small_config());
  pid slow = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) {
      if (n->n() == 0) hold.wait();
      slow_got.put(n->n());
    }
  })));
  sys.events().subscribe(slow);
  sys.events().subscribe([&](const event& e) { fast_got.put(*num_of(e)); });
  sys.events().publish(num(0));
  REQUIRE(hold.wait_for_waiters(1));
  // The slow subscriber is stuck in its handler; publishing goes on.
  for (int i = 1; i < 1000; ++i) sys.events().publish(num(i));
  REQUIRE(fast_got.take_n(1000).size() == 1000);
  REQUIRE(slow_got.size() == 0);
  hold.open();
  auto all = slow_got.take_n(1000);
  REQUIRE(all.size() == 1000);
  for (int i = 0; i < 1000; ++i) REQUIRE(all[i] == i);
  stop_and_wait(sys, slow);
}

TEST_CASE("a stopped actor subscriber is dropped, and may unsubscribe itself", "[events]") {
  std::atomic<std::uint64_t> id{0};
  std::atomic<int> calls{0};
  actor_system sys(small_config());
  auto sub = std::make_unique<probe>(sys);
  sys.events().subscribe(sub->self);
  sys.events().publish(num(1));
  REQUIRE(sub->expect_num() == 1);
  sub.reset();
  sys.events().publish(num(2));
  REQUIRE(sys.events().subscriber_count() == 0);

  id = sys.events().subscribe([&](const event&) {
    calls.fetch_add(1);
    sys.events().unsubscribe(id.load());
  });
  sys.events().publish(num(3));
  sys.events().publish(num(4));
  REQUIRE(calls.load() == 1);
}

TEST_CASE("an event that cannot be delivered does not go round", "[events]") {
  // The subscriber's mailbox holds one message: dead letters of events are
  // counted, never published again.
  latch hold;
  actor_system sys(small_config());
  props p = props::from_fn([&](context& ctx) {
    if (ctx.message<system::DeadLetterEvent>()) hold.wait();
  });
  p.mailbox.kind = mailbox_kind::bounded_drop_newest;
  p.mailbox.capacity = 1;
  pid sub = sys.root().spawn(share(std::move(p)));
  sys.events().subscribe(sub);
  for (int i = 0; i < 10; ++i) sys.root().send(sys.lookup("$888888"), num(i));
  REQUIRE(hold.wait_for_waiters(1));
  REQUIRE(sys.stats().dead_letters[static_cast<int>(dead_letter_reason::not_found)] == 10);
  REQUIRE(eventually([&] {
    return sys.stats().dead_letters[static_cast<int>(dead_letter_reason::mailbox_full)] >= 1;
  }));
  hold.open();
  stop_and_wait(sys, sub);
}

TEST_CASE("thousands of subscribers come and go; each live one gets every event, in the order they came",
          "[events]") {
  actor_system sys(small_config());
  constexpr int n = 3000;
  std::vector<std::vector<std::int64_t>> seen(n);
  std::vector<std::uint64_t> ids(n);
  std::vector<int> order;  // subscriber indexes, in the order one event reached them
  int event_no = 0;
  const auto subscribe = [&](int i) {
    ids[i] = sys.events().subscribe([&, i](const event& e) {
      if (auto v = num_of(e)) {
        seen[i].push_back(*v);
        if (*v == event_no) order.push_back(i);
      }
    });
  };
  for (int i = 0; i < n; ++i) subscribe(i);
  REQUIRE(sys.events().subscriber_count() == n);
  sys.events().publish(num(++event_no));
  // Most leave (the list is compacted on the way), a few come back.
  for (int i = 0; i < n; ++i)
    if (i % 10 != 0) sys.events().unsubscribe(ids[i]);
  sys.events().unsubscribe(ids[1]);  // twice: no effect
  REQUIRE(sys.events().subscriber_count() == n / 10);
  sys.events().publish(num(++event_no));
  for (int i = 1; i < n; i += 10) subscribe(i);
  REQUIRE(sys.events().subscriber_count() == 2 * n / 10);
  order.clear();
  sys.events().publish(num(++event_no));

  for (int i = 0; i < n; ++i) {
    INFO("subscriber " << i);
    if (i % 10 == 0) REQUIRE(seen[i] == std::vector<std::int64_t>{1, 2, 3});
    else if (i % 10 == 1) REQUIRE(seen[i] == std::vector<std::int64_t>{1, 3});
    else REQUIRE(seen[i] == std::vector<std::int64_t>{1});
  }
  // Those that stayed first, in their order, then those that came back.
  std::vector<int> expected;
  for (int i = 0; i < n; i += 10) expected.push_back(i);
  for (int i = 1; i < n; i += 10) expected.push_back(i);
  REQUIRE(order == expected);
}

TEST_CASE("a subscriber added during a publish gets the events after it", "[events]") {
  actor_system sys(small_config());
  std::vector<std::int64_t> late;
  int added = 0;
  sys.events().subscribe([&](const event& e) {
    // Enough subscribers from inside the callback to outgrow the list's room.
    if (num_of(e) == 1)
      for (; added < 100; ++added)
        sys.events().subscribe([&](const event& x) {
          if (auto v = num_of(x)) late.push_back(*v);
        });
  });
  sys.events().publish(num(1));
  sys.events().publish(num(2));
  REQUIRE(sys.events().subscriber_count() == 101);
  // Each of the 100 got event 2; none, or all, of event 1 is allowed.
  REQUIRE(std::count(late.begin(), late.end(), 2) == 100);
  REQUIRE(std::count(late.begin(), late.end(), 1) % 100 == 0);
}

TEST_CASE("publishers on several threads while subscribers come and go", "[events]") {
  actor_system sys(small_config());
  std::atomic<bool> done{false};
  std::atomic<std::int64_t> steady_got{0};
  sys.events().subscribe([&](const event& e) {
    if (num_of(e)) steady_got.fetch_add(1);
  });
  std::vector<std::thread> publishers;
  std::atomic<std::int64_t> published{0};
  for (int t = 0; t < 2; ++t)
    publishers.emplace_back([&] {
      while (!done.load()) {
        sys.events().publish(num(1));
        published.fetch_add(1);
      }
    });
  std::atomic<std::int64_t> churn_got{0};
  for (int round = 0; round < 200; ++round) {
    std::vector<std::uint64_t> ids;
    for (int i = 0; i < 50; ++i)
      ids.push_back(sys.events().subscribe([&](const event&) { churn_got.fetch_add(1); }));
    for (std::uint64_t id : ids) sys.events().unsubscribe(id);
  }
  done = true;
  for (auto& t : publishers) t.join();
  REQUIRE(sys.events().subscriber_count() == 1);
  // The one that stayed throughout got every event.
  REQUIRE(steady_got.load() == published.load());
}

TEST_CASE("an actor subscribed to some types gets those only, in order with every other subscriber",
          "[events]") {
  actor_system sys(small_config());
  std::vector<std::string> order;  // who got the event, in order
  std::mutex mu;
  const auto note = [&](std::string who) {
    std::lock_guard lock(mu);
    order.push_back(std::move(who));
  };
  sys.events().subscribe([&](const event& e) {
    if (num_of(e)) note("first");
  });
  probe nums(sys), texts(sys), both(sys);
  const std::uint64_t num_id = sys.events().subscribe(nums.self, std::vector<type_id>{type_id_of<test::Num>()});
  sys.events().subscribe(texts.self, std::vector<type_id>{type_id_of<test::Text>()});
  // Twice the same type is once.
  sys.events().subscribe(both.self,
                         std::vector<type_id>{type_id_of<test::Text>(), type_id_of<test::Num>(), type_id_of<test::Num>()});
  sys.events().subscribe([&](const event& e) {
    if (num_of(e)) note("last");
  });
  REQUIRE(sys.events().subscriber_count() == 5);

  sys.events().publish(num(7));
  sys.events().publish(text("hi"));
  const auto text_of = [](probe& p) {
    message m = p.expect();
    const auto* t = m.as<test::Text>();
    return t != nullptr && t->s() != nullptr ? t->s()->str() : std::string("(no Text)");
  };
  REQUIRE(nums.expect_num() == 7);
  REQUIRE(both.expect_num() == 7);
  REQUIRE(text_of(both) == "hi");
  REQUIRE(text_of(texts) == "hi");
  REQUIRE(order == std::vector<std::string>{"first", "last"});
  REQUIRE(nums.silent_for(20ms));
  REQUIRE(texts.silent_for(1ms));

  sys.events().unsubscribe(num_id);
  REQUIRE(sys.events().subscriber_count() == 4);
  sys.events().publish(num(8));
  REQUIRE(both.expect_num() == 8);
  REQUIRE(nums.silent_for(20ms));
}

TEST_CASE("typed and untyped subscribers interleaved get an event in the order they subscribed", "[events]") {
  // Stopped actors subscribed to Num between callbacks: publishing drops
  // each one as it comes to it, so the count a callback sees tells how
  // many of them came before it.
  actor_system sys(small_config());
  constexpr int n = 5;
  std::vector<std::size_t> seen(n + 1, 0);
  for (int i = 0; i <= n; ++i) {
    sys.events().subscribe([&, i](const event& e) {
      if (num_of(e)) seen[i] = sys.events().subscriber_count();
    });
    if (i == n) break;
    pid gone = sys.root().spawn(share(props::from_fn([](context&) {})));
    stop_and_wait(sys, gone);
    sys.events().subscribe(gone, std::vector<type_id>{type_id_of<test::Num>()});
  }
  REQUIRE(sys.events().subscriber_count() == 2 * n + 1);
  sys.events().publish(num(1));
  for (int i = 0; i <= n; ++i) {
    INFO("callback " << i);
    REQUIRE(seen[i] == static_cast<std::size_t>(2 * n + 1 - i));
  }
  REQUIRE(sys.events().subscriber_count() == n + 1);
}
