#include <catch2/catch.hpp>

#include <random>

#include "probe.hpp"

using namespace troupe;
using namespace troupe::testing;

namespace {

// A child that counts messages in its state, reports "started" and its
// count, and throws on a negative number.
props_ptr fragile(inbox<std::string>& log, const std::string& name) {
  return share(props::from([&log, name] {
    struct a : actor {
      inbox<std::string>& log;
      std::string name;
      int count = 0;
      a(inbox<std::string>& l, std::string n) : log(l), name(std::move(n)) {}
      void receive(context& ctx) override {
        if (ctx.message<system::Started>()) log.put(name + ":started");
        else if (auto* n = ctx.message<test::Num>()) {
          if (n->n() < 0) throw std::runtime_error("negative");
          ++count;
          log.put(name + ":" + std::to_string(count));
        } else if (ctx.message<system::Stopped>()) log.put(name + ":stopped");
      }
    };
    return std::unique_ptr<actor>(new a(log, name));
  }));
}

// A parent that spawns the given children and hands their PIDs out.
struct family {
  inbox<std::string> log;
  inbox<pid> kids;
  pid parent;
  actor_system& sys;

  // The family's actors write to its inboxes: they go first.
  ~family() { stop_and_wait(sys, parent); }

  family(actor_system& s, std::shared_ptr<const supervisor_strategy> strategy,
         std::vector<std::string> names)
      : sys(s) {
    props p = props::from_fn([this, names](context& ctx) {
      if (ctx.message<system::Started>())
        for (auto& n : names) kids.put(ctx.spawn(fragile(log, n)));
    });
    p.supervisor = std::move(strategy);
    parent = sys.root().spawn(share(p));
  }
};

std::shared_ptr<const supervisor_strategy> strategy(directive d,
                                                    supervisor_strategy::scope scope =
                                                        supervisor_strategy::scope::one_for_one) {
  auto s = std::make_shared<supervisor_strategy>();
  s->applies_to = scope;
  s->decide = [d](const pid&, const std::string&) { return d; };
  return s;
}

}  // namespace

TEST_CASE("one-for-one restart gives the failed child fresh state, siblings untouched",
          "[supervision]") {
  actor_system sys(small_config());
  family f(sys, strategy(directive::restart), {"a", "b"});
  pid a = *f.kids.take(), b = *f.kids.take();
  f.log.take_n(2);  // both started
  sys.root().send(a, num(1));
  sys.root().send(b, num(1));
  f.log.take_n(2);
  sys.root().send(a, num(-1));
  REQUIRE(*f.log.take() == "a:started");  // restarted
  sys.root().send(a, num(1));
  REQUIRE(*f.log.take() == "a:1");  // state was reset
  sys.root().send(b, num(1));
  REQUIRE(*f.log.take() == "b:2");  // b kept its state
  REQUIRE(sys.stats().restarts == 1);
  REQUIRE(sys.stats().failures == 1);
}

TEST_CASE("all-for-one restarts every sibling", "[supervision]") {
  actor_system sys(small_config());
  family f(sys, strategy(directive::restart, supervisor_strategy::scope::all_for_one), {"a", "b"});
  pid a = *f.kids.take(), b = *f.kids.take();
  f.log.take_n(2);
  sys.root().send(b, num(1));
  REQUIRE(*f.log.take() == "b:1");
  sys.root().send(a, num(-1));
  auto restarted = f.log.take_n(2);
  std::sort(restarted.begin(), restarted.end());
  REQUIRE(restarted == std::vector<std::string>{"a:started", "b:started"});
  sys.root().send(b, num(1));
  REQUIRE(*f.log.take() == "b:1");
}

TEST_CASE("resume keeps the actor and its state", "[supervision]") {
  actor_system sys(small_config());
  family f(sys, strategy(directive::resume), {"a"});
  pid a = *f.kids.take();
  f.log.take();
  sys.root().send(a, num(1));
  sys.root().send(a, num(-1));
  sys.root().send(a, num(1));
  REQUIRE(f.log.take_n(2) == std::vector<std::string>{"a:1", "a:2"});
  REQUIRE(sys.stats().restarts == 0);
}

TEST_CASE("the stop directive stops the failed child", "[supervision]") {
  actor_system sys(small_config());
  family f(sys, strategy(directive::stop), {"a"});
  pid a = *f.kids.take();
  f.log.take();
  sys.root().send(a, num(-1));
  REQUIRE(*f.log.take() == "a:stopped");
}

TEST_CASE("escalate fails the supervisor, whose own supervisor decides", "[supervision]") {
  inbox<std::string> log;
  inbox<pid> leaf;
  actor_system sys(small_config());
  // top (restart) -> middle (escalate) -> leaf
  props middle = props::from_fn([&](context& ctx) {
    if (ctx.message<system::Started>()) {
      log.put("middle:started");
      leaf.put(ctx.spawn(fragile(log, "leaf")));
    }
  });
  middle.supervisor = strategy(directive::escalate);
  auto middle_p = share(middle);
  props top = props::from_fn([&](context& ctx) {
    if (ctx.message<system::Started>()) ctx.spawn(middle_p);
  });
  top.supervisor = strategy(directive::restart);
  sys.root().spawn(share(top));
  pid first_leaf = *leaf.take();
  log.take_n(2);
  sys.root().send(first_leaf, num(-1));
  // The middle actor is restarted, so it stops its old leaf and makes a new one.
  auto events = log.take_n(3);
  REQUIRE(std::find(events.begin(), events.end(), "leaf:stopped") != events.end());
  REQUIRE(std::find(events.begin(), events.end(), "middle:started") != events.end());
  REQUIRE(*leaf.take() != first_leaf);
}

TEST_CASE("an escalated failure that the grandparent resumes resumes the child too", "[supervision]") {
  inbox<std::string> log;
  inbox<pid> leaf;
  actor_system sys(small_config());
  // top (resume) -> middle (escalate) -> leaf
  props middle = props::from_fn([&](context& ctx) {
    if (ctx.message<system::Started>()) leaf.put(ctx.spawn(fragile(log, "leaf")));
  });
  middle.supervisor = strategy(directive::escalate);
  auto middle_p = share(middle);
  props top = props::from_fn([&](context& ctx) {
    if (ctx.message<system::Started>()) ctx.spawn(middle_p);
  });
  top.supervisor = strategy(directive::resume);
  pid top_pid = sys.root().spawn(share(top));
  pid the_leaf = *leaf.take();
  REQUIRE(*log.take() == "leaf:started");
  sys.root().send(the_leaf, num(1));
  REQUIRE(*log.take() == "leaf:1");
  sys.root().send(the_leaf, num(-1));  // escalated to top, which resumes middle
  sys.root().send(the_leaf, num(1));
  // The leaf goes on with its state (not restarted, not stuck suspended).
  const auto next = log.take();
  REQUIRE(next);
  CHECK(*next == "leaf:2");
  stop_and_wait(sys, top_pid);
}

TEST_CASE("more restarts than allowed within the window stop the child", "[supervision]") {
  actor_system sys(small_config());
  auto s = std::make_shared<supervisor_strategy>();
  s->max_restarts = 3;
  s->window = std::chrono::seconds(60);
  family f(sys, s, {"a"});
  pid a = *f.kids.take();
  f.log.take();
  for (int i = 0; i < 3; ++i) {
    sys.root().send(a, num(-1));
    REQUIRE(*f.log.take() == "a:started");
  }
  sys.root().send(a, num(-1));
  REQUIRE(*f.log.take() == "a:stopped");
  REQUIRE(sys.stats().restarts == 3);
}

TEST_CASE("backoff grows exponentially, with bounded jitter and a cap", "[supervision]") {
  std::mt19937_64 rng(7);
  backoff b;
  b.initial = std::chrono::milliseconds(10);
  b.max = std::chrono::milliseconds(300);
  b.multiplier = 2;
  b.jitter = 0;
  using std::chrono::milliseconds;
  REQUIRE(b.delay(1, rng) == milliseconds(10));
  REQUIRE(b.delay(2, rng) == milliseconds(20));
  REQUIRE(b.delay(3, rng) == milliseconds(40));
  REQUIRE(b.delay(5, rng) == milliseconds(160));
  REQUIRE(b.delay(6, rng) == milliseconds(300));   // capped
  REQUIRE(b.delay(60, rng) == milliseconds(300));  // no overflow
  b.jitter = 0.2;
  bool varied = false;
  auto first = b.delay(4, rng);
  for (int i = 0; i < 200; ++i) {
    auto d = b.delay(4, rng);
    REQUIRE(d >= milliseconds(64));
    REQUIRE(d <= milliseconds(96));
    varied = varied || d != first;
  }
  REQUIRE(varied);
}

TEST_CASE("restarts really wait for the backoff", "[supervision]") {
  actor_system sys(small_config());
  auto s = std::make_shared<supervisor_strategy>();
  s->backoff.initial = std::chrono::milliseconds(40);
  s->backoff.jitter = 0;
  s->max_restarts = 10;
  s->window = std::chrono::seconds(60);
  family f(sys, s, {"a"});
  pid a = *f.kids.take();
  f.log.take();
  std::vector<double> waits;
  for (int i = 0; i < 3; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    sys.root().send(a, num(-1));
    REQUIRE(*f.log.take() == "a:started");
    waits.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  REQUIRE(waits[0] >= 40);
  REQUIRE(waits[1] >= 80);
  REQUIRE(waits[2] >= 160);
}

TEST_CASE("a root actor that fails is restarted by the guardian", "[supervision]") {
  inbox<std::string> log;
  actor_system sys(small_config());
  pid a = sys.root().spawn(fragile(log, "root"));
  REQUIRE(*log.take() == "root:started");
  sys.root().send(a, num(-1));
  REQUIRE(*log.take() == "root:started");
}

TEST_CASE("a producer that throws fails the spawn, not the system", "[supervision]") {
  inbox<std::string> failures;
  actor_system sys(small_config());
  sys.events().subscribe([&](const event& e) {
    if (auto* f = std::get_if<actor_failed_event>(&e)) failures.put(f->reason);
  });
  auto s = std::make_shared<supervisor_strategy>();
  s->decide = [](const pid&, const std::string&) { return directive::stop; };
  props parent = props::from_fn([](context& ctx) {
    if (ctx.message<system::Started>())
      ctx.spawn(share(props::from([]() -> std::unique_ptr<actor> { throw std::runtime_error("boom"); })));
  });
  parent.supervisor = s;
  sys.root().spawn(share(parent));
  auto reason = failures.take();
  REQUIRE(reason);
  REQUIRE(reason->find("boom") != std::string::npos);
}

TEST_CASE("restarts racing with queued messages never strand the mailbox", "[supervision]") {
  // The child fails on every odd number with the next message already
  // queued; its parent, on another thread, restarts it each time. Each
  // restart must be noticed even when it lands just as the child gives up
  // its suspended mailbox.
  actor_system sys(small_config());
  std::atomic<int> evens{0};
  inbox<pid> kid;
  supervisor_strategy lenient;
  lenient.max_restarts = 1'000'000;
  props parent_props = props::from_fn([&](context& ctx) {
    if (ctx.message<system::Started>())
      kid.put(ctx.spawn(share(props::from_fn([&](context& c) {
        if (auto* n = c.message<test::Num>()) {
          if (n->n() % 2 == 1) throw std::runtime_error("odd");
          evens.fetch_add(1, std::memory_order_relaxed);
        }
      }))));
  });
  parent_props.supervisor = std::make_shared<const supervisor_strategy>(lenient);
  pid parent = sys.root().spawn(share(std::move(parent_props)));
  pid child = *kid.take();
  // Each round queues a failing message and the one behind it, then waits
  // for the second: a stranded mailbox never gets to it.
  constexpr int rounds = 5000;
  for (int i = 0; i < rounds; ++i) {
    sys.root().send(child, num(2 * i + 1));
    sys.root().send(child, num(2 * i));
    REQUIRE(eventually([&] { return evens.load() == i + 1; }, 2000ms));
  }
  stop_and_wait(sys, parent);
}
