#include <catch2/catch.hpp>

#include "probe.hpp"

using namespace troupe;
using namespace troupe::testing;

namespace {

// Records lifecycle events as strings "<who>:<event>".
struct recorder {
  inbox<std::string> log;

  props_ptr props_for(const std::string& who, std::function<void(context&)> extra = {}) {
    return share(props::from_fn([this, who, extra](context& ctx) {
      if (ctx.message<system::Started>()) log.put(who + ":started");
      else if (ctx.message<system::Stopping>()) log.put(who + ":stopping");
      else if (ctx.message<system::Stopped>()) log.put(who + ":stopped");
      else if (ctx.message<system::Restarting>()) log.put(who + ":restarting");
      else if (auto* n = ctx.message<test::Num>()) log.put(who + ":" + std::to_string(n->n()));
      if (extra) extra(ctx);
    }));
  }
};

}  // namespace

TEST_CASE("an actor sees Started, then its messages, then Stopping and Stopped", "[lifecycle]") {
  recorder r;
  actor_system sys(small_config());
  pid a = sys.root().spawn(r.props_for("a"));
  sys.root().send(a, num(1));
  sys.root().send(a, num(2));
  REQUIRE(r.log.take_n(3) == std::vector<std::string>{"a:started", "a:1", "a:2"});
  sys.root().stop(a);
  REQUIRE(r.log.take_n(2) == std::vector<std::string>{"a:stopping", "a:stopped"});
  // Stopped is delivered just before the actor leaves the registry.
  REQUIRE(eventually([&] { return sys.actor_count() == 0; }));
}

TEST_CASE("Stop overtakes queued messages; Poison comes after them", "[lifecycle]") {
  latch gate;
  recorder r;
  actor_system sys(small_config());

  SECTION("stop") {
    pid a = sys.root().spawn(r.props_for("a", [&](context& ctx) {
      if (ctx.message<test::Num>() && ctx.message<test::Num>()->n() == 0) gate.wait();
    }));
    sys.root().send(a, num(0));
    REQUIRE(gate.wait_for_waiters(1));
    for (int i = 1; i <= 5; ++i) sys.root().send(a, num(i));
    sys.root().stop(a);
    gate.open();
    REQUIRE(r.log.take_n(4) == std::vector<std::string>{"a:started", "a:0", "a:stopping", "a:stopped"});
    // The five queued messages became dead letters.
    REQUIRE(eventually([&] { return sys.stats().dead_letters_total() >= 5; }));
    REQUIRE(sys.stats().dead_letters[static_cast<int>(dead_letter_reason::stopped)] == 5);
  }
  SECTION("poison") {
    pid a = sys.root().spawn(r.props_for("a", [&](context& ctx) {
      if (ctx.message<test::Num>() && ctx.message<test::Num>()->n() == 0) gate.wait();
    }));
    sys.root().send(a, num(0));
    REQUIRE(gate.wait_for_waiters(1));
    for (int i = 1; i <= 3; ++i) sys.root().send(a, num(i));
    sys.root().poison(a);
    sys.root().send(a, num(99));  // after the pill: never handled
    gate.open();
    REQUIRE(r.log.take_n(7) == std::vector<std::string>{"a:started", "a:0", "a:1", "a:2", "a:3",
                                                         "a:stopping", "a:stopped"});
  }
}

TEST_CASE("children stop before their parent reports Stopped", "[lifecycle]") {
  recorder r;
  actor_system sys(small_config());
  auto grandchild = r.props_for("grandchild");
  auto child = r.props_for("child", [&](context& ctx) {
    if (ctx.message<system::Started>()) ctx.spawn(grandchild);
  });
  inbox<int> ready;
  pid parent = sys.root().spawn(r.props_for("parent", [&](context& ctx) {
    if (ctx.message<system::Started>()) {
      ctx.spawn(child);
      ctx.spawn(child);
      ready.put(1);
    }
  }));
  REQUIRE(ready.take());
  // parent + 2 children + 2 grandchildren started.
  auto started = r.log.take_n(5);
  REQUIRE(started.size() == 5);
  sys.root().stop(parent);
  auto events = r.log.take_n(10);
  REQUIRE(events.size() == 10);
  REQUIRE(events.back() == "parent:stopped");
  auto pos = [&](const std::string& e, std::size_t from = 0) {
    for (std::size_t i = from; i < events.size(); ++i)
      if (events[i] == e) return i;
    return events.size();
  };
  std::size_t first_child_stopped = pos("child:stopped");
  std::size_t second_child_stopped = pos("child:stopped", first_child_stopped + 1);
  REQUIRE(second_child_stopped < events.size());
  // Every grandchild stopped before the children finished.
  std::size_t g1 = pos("grandchild:stopped");
  std::size_t g2 = pos("grandchild:stopped", g1 + 1);
  REQUIRE(g2 < second_child_stopped);
  REQUIRE(pos("parent:stopping") < first_child_stopped);
  // Stopped is delivered just before the actor leaves the registry.
  REQUIRE(eventually([&] { return sys.actor_count() == 0; }));
}

TEST_CASE("watchers get Terminated with a reason", "[lifecycle][watch]") {
  inbox<std::pair<std::string, system::TerminatedReason>> got;
  actor_system sys(small_config());
  auto watcher_of = [&](std::function<pid()> target) {
    return share(props::from_fn([&, target](context& ctx) {
      if (ctx.message<system::Started>()) ctx.watch(target());
      else if (auto* t = ctx.message<system::Terminated>())
        got.put({t->who()->id()->str(), t->reason()});
    }));
  };

  SECTION("when the watched actor stops") {
    pid a = sys.root().spawn(share(props::from_fn([](context&) {})));
    sys.root().spawn(watcher_of([a] { return a; }));
    std::this_thread::sleep_for(20ms);
    sys.root().stop(a);
    auto t = got.take();
    REQUIRE(t);
    REQUIRE(t->first == a.id());
    REQUIRE(t->second == system::TerminatedReason::Stopped);
  }
  SECTION("when it had already stopped") {
    pid a = sys.root().spawn(share(props::from_fn([](context&) {})));
    sys.root().stop(a);
    while (!a.get()->dead()) std::this_thread::sleep_for(1ms);
    sys.root().spawn(watcher_of([a] { return a; }));
    auto t = got.take();
    REQUIRE(t);
    REQUIRE(t->second == system::TerminatedReason::Stopped);
  }
  SECTION("when there is no such actor") {
    sys.root().spawn(watcher_of([&] { return sys.lookup("$123456789"); }));
    auto t = got.take();
    REQUIRE(t);
    REQUIRE(t->second == system::TerminatedReason::NotFound);
  }
}

TEST_CASE("unwatch means no Terminated", "[lifecycle][watch]") {
  actor_system sys(small_config());
  probe pr(sys);
  pid a = sys.root().spawn(share(props::from_fn([](context&) {})));
  pid w = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<system::Started>()) {
      ctx.watch(a);
      ctx.unwatch(a);
      ctx.send(pr.self, num(1));
    } else if (ctx.message<system::Terminated>()) {
      ctx.send(pr.self, num(2));
    }
  })));
  REQUIRE(pr.expect_num() == std::optional<std::int64_t>(1));
  sys.root().stop(a);
  REQUIRE(pr.silent_for(100ms));
}

TEST_CASE("shutdown stops every actor, joins its threads and reports a clean stop", "[lifecycle]") {
  recorder r;
  auto sys = std::make_unique<actor_system>(small_config());
  for (int i = 0; i < 50; ++i) {
    pid p = sys->root().spawn(r.props_for("x", [&](context& ctx) {
      if (ctx.message<system::Started>()) ctx.spawn(r.props_for("y"));
    }));
    sys->root().send(p, num(i));
  }
  REQUIRE(sys->shutdown(std::chrono::seconds(10)));
  REQUIRE(sys->actor_count() == 0);
  std::size_t stopped = 0;
  while (auto e = r.log.take(0ms))
    if (e->ends_with(":stopped")) ++stopped;
  REQUIRE(stopped == 100);
  sys.reset();
}

TEST_CASE("a message to a stopped actor is a counted dead letter on the EventStream", "[lifecycle]") {
  inbox<dead_letter_reason> seen;
  actor_system sys(small_config());
  sys.events().subscribe([&](const event& e) {
    if (auto* d = std::get_if<dead_letter_event>(&e)) seen.put(d->reason);
  });
  // A throwing subscriber does not keep the others from the event.
  sys.events().subscribe([](const event&) { throw std::runtime_error("bad subscriber"); });
  pid a = sys.root().spawn(share(props::from_fn([](context&) {})));
  sys.root().stop(a);
  while (!a.get()->dead()) std::this_thread::sleep_for(1ms);
  sys.root().send(a, num(1));
  auto reason = seen.take();
  REQUIRE(reason);
  REQUIRE(*reason == dead_letter_reason::stopped);
  REQUIRE(sys.stats().dead_letters[static_cast<int>(dead_letter_reason::stopped)] == 1);
  REQUIRE(sys.events().handler_failures() >= 1);
}
