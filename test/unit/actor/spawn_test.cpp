#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <set>

#include "probe.hpp"

using namespace troupe;
using namespace troupe::testing;

namespace {
props_ptr idle() { return share(props::from_fn([](context&) {})); }
}  // namespace

TEST_CASE("anonymous actors get unique ids and can be looked up by them", "[spawn]") {
  actor_system sys(small_config());
  std::set<std::string> ids;
  std::vector<pid> pids;
  for (int i = 0; i < 100; ++i) {
    pid p = sys.root().spawn(idle());
    REQUIRE(p);
    REQUIRE(p.id().front() == '$');
    ids.insert(p.id());
    pids.push_back(p);
  }
  REQUIRE(ids.size() == 100);
  REQUIRE(sys.lookup(pids[17].id()) == pids[17]);
  REQUIRE(pids[3].to_string() == "local/" + pids[3].id());
  REQUIRE(sys.actor_count() == 100);
}

TEST_CASE("a named spawn registers the name; a clash is an error, not a crash", "[spawn]") {
  actor_system sys(small_config());
  probe pr(sys);
  auto echo = share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Num>()) ctx.send(pr.self, ctx.current());
  }));
  spawn_result first = sys.root().spawn_named(echo, "greeter");
  REQUIRE(first);
  REQUIRE(first.pid.id() == "greeter");
  spawn_result second = sys.root().spawn_named(echo, "greeter");
  REQUIRE_FALSE(second);
  REQUIRE(second.error == spawn_error::name_taken);
  REQUIRE_FALSE(second.pid);
  // The first one is untouched.
  REQUIRE(sys.lookup("greeter") == first.pid);
  sys.root().send(first.pid, num(3));
  REQUIRE(pr.expect_num() == std::optional<std::int64_t>(3));
}

TEST_CASE("names are free again once their actor stopped", "[spawn]") {
  actor_system sys(small_config());
  probe pr(sys);
  spawn_result a = sys.root().spawn_named(idle(), "once");
  REQUIRE(a);
  auto watcher = share(props::from_fn([&](context& ctx) {
    if (ctx.message<system::Started>()) ctx.watch(a.pid);
    else if (ctx.message<system::Terminated>()) ctx.send(pr.self, num(1));
  }));
  sys.root().spawn(watcher);
  sys.root().stop(a.pid);
  REQUIRE(pr.expect_num() == std::optional<std::int64_t>(1));
  REQUIRE(sys.root().spawn_named(idle(), "once"));
}

TEST_CASE("invalid names are refused", "[spawn]") {
  actor_system sys(small_config());
  REQUIRE(sys.root().spawn_named(idle(), "").error == spawn_error::invalid_name);
  REQUIRE(sys.root().spawn_named(idle(), "$12").error == spawn_error::invalid_name);
  REQUIRE(sys.root().spawn_named(idle(), "a/b").error == spawn_error::invalid_name);
}

TEST_CASE("prefixed spawns carry the prefix and stay unique", "[spawn]") {
  actor_system sys(small_config());
  pid a = sys.root().spawn_prefix(idle(), "worker");
  pid b = sys.root().spawn_prefix(idle(), "worker");
  REQUIRE(a.id().rfind("worker$", 0) == 0);
  REQUIRE(b.id().rfind("worker$", 0) == 0);
  REQUIRE(a.id() != b.id());
  REQUIRE(sys.lookup(a.id()) == a);
}

TEST_CASE("ids are found while thousands of actors come and go in any order", "[spawn]") {
  // Consecutive spawns share registry slots and stops shift their
  // neighbours back: every live actor must stay findable through that.
  actor_system sys(small_config());
  std::vector<pid> live, gone;
  std::mt19937 rng(7);
  for (int round = 0; round < 6; ++round) {
    for (int i = 0; i < 3000; ++i) live.push_back(sys.root().spawn(idle()));
    std::shuffle(live.begin(), live.end(), rng);
    // Stop a random half of what is alive, some long-lived ones included.
    const std::size_t keep = live.size() / 2;
    for (std::size_t i = keep; i < live.size(); ++i) {
      sys.root().stop(live[i]);
      gone.push_back(live[i]);
    }
    live.resize(keep);
    REQUIRE(eventually([&] { return sys.actor_count() == live.size(); }));
    for (const pid& p : live) REQUIRE(sys.lookup(p.id()) == p);
    for (const pid& p : gone) REQUIRE(sys.lookup(p.id()).get()->dead());
  }
}

TEST_CASE("looking up an unknown id gives the dead-letter process", "[spawn]") {
  actor_system sys(small_config());
  pid nobody = sys.lookup("$999999");
  REQUIRE(nobody);
  REQUIRE(nobody.get()->dead());
  sys.root().send(nobody, num(1));
  REQUIRE(sys.stats().dead_letters[static_cast<int>(dead_letter_reason::not_found)] == 1);
}

TEST_CASE("spawning after shutdown is refused", "[spawn]") {
  actor_system sys(small_config());
  sys.shutdown();
  REQUIRE(sys.root().spawn_named(idle(), "late").error == spawn_error::shutting_down);
}

TEST_CASE("spawn by kind answers every refusal with its own error", "[spawn][kinds]") {
  actor_system sys(small_config());
  props quiet = props::from_fn([](context&) {});
  quiet.kind = "test.quiet";
  REQUIRE(sys.kinds().add("test.quiet", share(quiet)));
  CHECK_FALSE(sys.kinds().add("test.quiet", share(quiet)));  // the first one stays
  props refusing = props::from_fn([](context&) {});
  refusing.spawn_hooks.push_back([](spawn_request&, const spawn_next&) { return spawn_result{}; });
  REQUIRE(sys.kinds().add("test.refusing", share(refusing)));
  CHECK(sys.kinds().names() == std::vector<std::string>{"test.quiet", "test.refusing"});

  spawn_result a = sys.root().spawn_kind("test.quiet");
  REQUIRE(a);
  CHECK(a.pid.id()[0] == '$');
  spawn_result named = sys.root().spawn_kind("test.quiet", "q");
  REQUIRE(named);
  CHECK(named.pid.id() == "q");
  CHECK(sys.root().spawn_kind("test.quiet", "q").error == spawn_error::name_taken);
  CHECK(sys.root().spawn_kind("test.quiet", "$7").error == spawn_error::invalid_name);
  CHECK(sys.root().spawn_kind("test.nobody").error == spawn_error::unknown_kind);
  CHECK(sys.root().spawn_kind("test.refusing").error == spawn_error::refused);
  CHECK(sys.root().spawn_kind("test.refusing", "r").error == spawn_error::refused);

  // From an actor: the child is its child (stopping the parent stops it).
  inbox<spawn_error> from_actor;
  pid parent = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<system::Started>()) {
      from_actor.put(ctx.spawn_kind("test.quiet", "child").error);
      from_actor.put(ctx.spawn_kind("test.refusing").error);
      from_actor.put(ctx.spawn_kind("test.nobody").error);
    }
  })));
  CHECK(from_actor.take_n(3) ==
        std::vector<spawn_error>{spawn_error::none, spawn_error::refused, spawn_error::unknown_kind});
  pid child = sys.lookup("child");
  REQUIRE(child);
  stop_and_wait(sys, parent);
  CHECK(eventually([&] { return child.get()->dead(); }));
}
