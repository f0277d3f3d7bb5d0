#include <atomic>

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
