#include <catch2/catch.hpp>

#include "probe.hpp"

using namespace troupe;
using namespace troupe::testing;

namespace {

props_ptr echo() {
  return share(props::from_fn([](context& ctx) {
    if (ctx.message<test::Num>()) ctx.respond(ctx.current());
  }));
}

props_ptr doubler() {
  return share(props::from_fn([](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) {
      std::int64_t v = n->n() * 2;
      ctx.respond<test::Num>([&](auto& b) { return test::CreateNum(b, v); });
    }
  }));
}

}  // namespace

TEST_CASE("a request from outside completes its future with the reply", "[request]") {
  actor_system sys(small_config());
  pid d = sys.root().spawn(doubler());
  future f = sys.root().request_future(d, num(21), std::chrono::seconds(5));
  future_result r = f.get_result();
  REQUIRE(r.ok());
  REQUIRE(r.as<test::Num>()->n() == 42);
}

TEST_CASE("a request nobody answers times out; the late reply is a dead letter", "[request]") {
  inbox<pid> held;
  actor_system sys(small_config());
  pid slow = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Num>()) held.put(ctx.sender());  // keep the requester, answer later
  })));
  future f = sys.root().request_future(slow, num(1), std::chrono::milliseconds(50));
  auto t0 = std::chrono::steady_clock::now();
  future_result r = f.get_result();
  REQUIRE(r.status == future_status::timed_out);
  REQUIRE(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(40));
  // Answer now: the future is done, so this is a dead letter.
  pid requester = *held.take();
  sys.root().send(requester, num(2));
  REQUIRE(sys.stats().dead_letters[static_cast<int>(dead_letter_reason::late_reply)] == 1);
}

TEST_CASE("a request to a missing actor fails fast instead of timing out", "[request]") {
  actor_system sys(small_config());
  future f = sys.root().request_future(sys.lookup("$424242"), num(1), std::chrono::seconds(30));
  REQUIRE(f.wait_for(std::chrono::seconds(5)));
  REQUIRE(f.status() == future_status::dead_letter);
}

TEST_CASE("forward keeps the original sender", "[request]") {
  actor_system sys(small_config());
  pid d = sys.root().spawn(doubler());
  pid front = sys.root().spawn(share(props::from_fn([d](context& ctx) {
    if (ctx.message<test::Num>()) ctx.forward(d);
  })));
  future f = sys.root().request_future(front, num(5), std::chrono::seconds(5));
  future_result r = f.get_result();
  REQUIRE(r.ok());
  REQUIRE(r.as<test::Num>()->n() == 10);
}

TEST_CASE("an actor's request gets the reply as an ordinary message", "[request]") {
  actor_system sys(small_config());
  probe pr(sys);
  pid d = sys.root().spawn(doubler());
  sys.root().spawn(share(props::from_fn([&, d](context& ctx) {
    if (ctx.message<system::Started>()) ctx.request(d, num(4));
    else if (ctx.message<test::Num>()) ctx.send(pr.self, ctx.current());
  })));
  REQUIRE(pr.expect_num() == std::optional<std::int64_t>(8));
}

TEST_CASE("reenter_after runs the continuation in the actor, answering the original sender",
          "[request]") {
  actor_system sys(small_config());
  pid d = sys.root().spawn(doubler());
  // Asks the doubler, then answers its own requester with the result + 1.
  pid proxy = sys.root().spawn(share(props::from_fn([d](context& ctx) {
    if (ctx.message<test::Num>()) {
      future f = ctx.request_future(d, ctx.current(), std::chrono::seconds(5));
      ctx.reenter_after(f, [](context& c, const future_result& r) {
        std::int64_t v = r.as<test::Num>()->n() + 1;
        c.respond<test::Num>([&](auto& b) { return test::CreateNum(b, v); });
      });
    }
  })));
  future f = sys.root().request_future(proxy, num(10), std::chrono::seconds(5));
  future_result r = f.get_result();
  REQUIRE(r.ok());
  REQUIRE(r.as<test::Num>()->n() == 21);
}

TEST_CASE("continuations that run at once come before the actor's next message, however many in a row",
          "[request]") {
  // A continuation of a completed future is a system message the actor
  // sends itself; one that schedules another does the same. All of them
  // run before the next user message, which waits in the mailbox already.
  actor_system sys(small_config());
  pid e = sys.root().spawn(echo());
  std::vector<future> done;
  for (int i = 0; i < 3; ++i) {
    done.push_back(sys.root().request_future(e, num(i), std::chrono::seconds(5)));
    REQUIRE(done.back().get_result().ok());
  }
  latch gate;
  inbox<std::string> log;
  pid a = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (auto* t = ctx.message<test::Text>()) {
      if (t->s()->str() == "hold") {
        gate.wait();
        return;
      }
      log.put("go");
      ctx.reenter_after(done[0], [&](context& c, const future_result&) {
        log.put("c1");
        c.reenter_after(done[1], [&](context& c2, const future_result&) {
          log.put("c2");
          c2.reenter_after(done[2], [&](context&, const future_result&) { log.put("c3"); });
        });
      });
    } else if (ctx.message<test::Num>()) {
      log.put("num");
    }
  })));
  sys.root().send(a, text("hold"));
  REQUIRE(gate.wait_for_waiters(1));
  sys.root().send(a, text("go"));
  sys.root().send(a, num(1));
  gate.open();
  REQUIRE(log.take_n(5) == std::vector<std::string>{"go", "c1", "c2", "c3", "num"});
}

TEST_CASE("many concurrent requests each get their own reply", "[request]") {
  actor_system sys(small_config());
  pid e = sys.root().spawn(echo());
  std::vector<future> fs;
  for (int i = 0; i < 1000; ++i) fs.push_back(sys.root().request_future(e, num(i), std::chrono::seconds(10)));
  for (int i = 0; i < 1000; ++i) {
    future_result r = fs[i].get_result();
    REQUIRE(r.ok());
    REQUIRE(r.as<test::Num>()->n() == i);
  }
}

TEST_CASE("receive timeout fires when idle and not while messages flow", "[request]") {
  inbox<std::string> log;
  actor_system sys(small_config());
  pid a = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<system::Started>()) ctx.set_receive_timeout(std::chrono::milliseconds(100));
    else if (ctx.message<system::ReceiveTimeout>()) log.put("timeout");
    else if (ctx.message<test::Num>()) log.put("msg");
  })));
  // Keep it busy for 300 ms: no timeout in between.
  for (int i = 0; i < 10; ++i) {
    sys.root().send(a, num(i));
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  auto seen = log.take_n(10, std::chrono::milliseconds(1000));
  REQUIRE(std::count(seen.begin(), seen.end(), "timeout") == 0);
  // Then idle: it fires.
  auto t = log.take(std::chrono::milliseconds(1000));
  REQUIRE(t);
  REQUIRE(*t == "timeout");
}

TEST_CASE("stop_future completes once the actor and its children have stopped", "[request][stop]") {
  inbox<std::string> log;
  actor_system sys(small_config());
  pid parent = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<system::Started>()) {
      ctx.spawn(share(props::from_fn([&](context& c) {
        if (c.message<system::Stopped>()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          log.put("child:stopped");
        }
      })));
    } else if (ctx.message<system::Stopped>()) {
      log.put("parent:stopped");
    }
  })));
  future f = sys.root().stop_future(parent, std::chrono::seconds(5));
  REQUIRE(f.wait_for(std::chrono::seconds(5)));
  REQUIRE(f.status() == future_status::completed);
  // Completed only after both had stopped: the log holds both already.
  REQUIRE(log.size() == 2);
  // An actor sends its Terminated before it marks itself dead (so that
  // whoever sees it dead finds its Terminated sent): soon after, not before.
  REQUIRE(eventually([&] { return parent.get()->dead(); }));
}

TEST_CASE("stop_future on an actor already gone completes at once; a stuck stop times out",
          "[request][stop]") {
  actor_system sys(small_config());
  pid a = sys.root().spawn(echo());
  REQUIRE(sys.root().stop_future(a, std::chrono::seconds(5)).get_result().status ==
          future_status::completed);
  REQUIRE(sys.root().stop_future(a, std::chrono::seconds(5)).get_result().status ==
          future_status::completed);
  std::atomic<bool> release{false};
  pid stuck = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<system::Stopping>())
      while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  })));
  future f = sys.root().stop_future(stuck, std::chrono::milliseconds(100));
  REQUIRE(f.get_result().status == future_status::timed_out);
  release = true;
}
