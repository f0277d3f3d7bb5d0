#include <mutex>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "actor/middleware.hpp"
#include "probe.hpp"

using namespace troupe;
using namespace troupe::testing;

namespace {

// Records what happens, in order, from any thread.
struct journal {
  std::mutex mu;
  std::vector<std::string> lines;
  void add(std::string s) {
    std::lock_guard lock(mu);
    lines.push_back(std::move(s));
  }
  std::vector<std::string> all() {
    std::lock_guard lock(mu);
    return lines;
  }
};

receive_middleware around(journal& j, std::string name) {
  return [&j, name](context& ctx, const receive_next& next) {
    if (!ctx.message<test::Num>()) return next(ctx);
    j.add(name + ">");
    next(ctx);
    j.add("<" + name);
  };
}

}  // namespace

TEST_CASE("receive middleware runs in the order added, around the handler", "[middleware]") {
  journal j;
  inbox<int> done;
  actor_system sys(small_config());
  props p = props::from_fn([&](context& ctx) {
    if (ctx.message<test::Num>()) {
      j.add("handler");
      done.put(1);
    }
  });
  p.receive_hooks.push_back(around(j, "outer"));
  p.receive_hooks.push_back(around(j, "inner"));
  pid a = sys.root().spawn(share(std::move(p)));
  sys.root().send(a, num(1));
  REQUIRE(done.take());
  REQUIRE(eventually([&] { return j.all().size() == 5; }));
  REQUIRE(j.all() == std::vector<std::string>{"outer>", "inner>", "handler", "<inner", "<outer"});
}

TEST_CASE("a receive middleware that does not call next swallows the message", "[middleware]") {
  inbox<std::int64_t> got;
  actor_system sys(small_config());
  props p = props::from_fn([&](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) got.put(n->n());
  });
  p.receive_hooks.push_back([](context& ctx, const receive_next& next) {
    if (auto* n = ctx.message<test::Num>(); n && n->n() % 2 == 1) return;  // odd ones dropped
    next(ctx);
  });
  pid a = sys.root().spawn(share(std::move(p)));
  for (int i = 0; i < 6; ++i) sys.root().send(a, num(i));
  REQUIRE(got.take_n(3) == std::vector<std::int64_t>{0, 2, 4});
  REQUIRE_FALSE(got.take(50ms));
}

TEST_CASE("send middleware sees every outgoing message in order and can add headers",
          "[middleware]") {
  inbox<std::string> seen;
  journal j;
  actor_system sys(small_config());
  pid receiver = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Num>())
      seen.put(std::string(ctx.header("trace")) + "/" + std::string(ctx.header("via")));
  })));
  props p = props::from_fn([&](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) {
      if (n->n() == 1) ctx.send(receiver, num(10));
      if (n->n() == 2) ctx.forward(receiver);
    }
  });
  p.send_hooks.push_back(middleware::stamp_header("trace", "t-1"));
  p.send_hooks.push_back([&](context&, const pid& to, envelope* e, const send_next& next) {
    // Runs second: the first one's header is already there.
    j.add(std::string(e->hdrs ? e->hdrs->get("trace") : ""));
    set_header(e, "via", "second");
    next(to, e);
  });
  pid sender = sys.root().spawn(share(std::move(p)));
  sys.root().send(sender, num(1));
  REQUIRE(seen.take() == std::string("t-1/second"));
  sys.root().send(sender, num(2));  // forward goes through the chain too
  REQUIRE(seen.take() == std::string("t-1/second"));
  REQUIRE(j.all() == std::vector<std::string>{"t-1", "t-1"});
}

TEST_CASE("send middleware wraps respond and can redirect a message", "[middleware]") {
  actor_system sys(small_config());
  probe tap(sys);
  props p = props::from_fn([](context& ctx) {
    if (ctx.message<test::Num>()) ctx.respond(ctx.current());
  });
  p.send_hooks.push_back([&](context&, const pid& to, envelope* e, const send_next& next) {
    // A copy of every reply goes to the tap as well.
    tap.sys->root().send(tap.self, message::share(e));
    next(to, e);
  });
  pid echo = sys.root().spawn(share(std::move(p)));
  future f = sys.root().request_future(echo, num(5), 5s);
  REQUIRE(f.get_result().as<test::Num>()->n() == 5);
  REQUIRE(tap.expect_num() == 5);
}

TEST_CASE("spawn middleware wraps the spawn in order and may refuse it", "[middleware]") {
  journal j;
  actor_system sys(small_config());
  props p = props::from_fn([](context&) {});
  p.kind = "acme.worker";
  p.spawn_hooks.push_back(middleware::log_spawn([&](std::string_view line) { j.add(std::string(line)); }));
  p.spawn_hooks.push_back([&](spawn_request& r, const spawn_next& next) {
    if (r.name && *r.name == "forbidden") return spawn_result{pid(), spawn_error::invalid_name};
    return next(r);
  });
  props_ptr shared = share(std::move(p));
  pid a = sys.root().spawn(shared);
  REQUIRE(a);
  spawn_result refused = sys.root().spawn_named(shared, "forbidden");
  REQUIRE(refused.error == spawn_error::invalid_name);
  REQUIRE(sys.lookup("forbidden") == sys.dead_letters());
  auto lines = j.all();
  REQUIRE(lines.size() == 2);
  REQUIRE(lines[0] == "spawned " + a.to_string() + " (acme.worker)");
  REQUIRE(lines[1] == "spawn of acme.worker refused: invalid name");
}

TEST_CASE("the metrics middleware counts messages, failures and handler time", "[middleware]") {
  inbox<int> handled;
  actor_system sys(small_config());
  auto m = std::make_shared<middleware::receive_metrics>();
  props p = props::from_fn([&](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) {
      handled.put(1);
      if (n->n() < 0) throw std::runtime_error("negative");
    }
  });
  p.receive_hooks.push_back(middleware::count_receive(m));
  pid a = sys.root().spawn(share(std::move(p)));
  // Started arrives through the chain too.
  REQUIRE(eventually([&] { return m->messages.load() == 1; }));
  for (int i = 0; i < 10; ++i) sys.root().send(a, num(i));
  sys.root().send(a, num(-1));
  REQUIRE(handled.take_n(11).size() == 11);
  // The failure restarts the actor: Restarting and Started pass through as well.
  REQUIRE(eventually([&] { return m->failures.load() == 1 && m->messages.load() >= 12; }));
  REQUIRE(m->handler_nanoseconds.load() > 0);
}

TEST_CASE("the timing middleware files each handler's time in its bucket", "[middleware]") {
  inbox<int> handled;
  actor_system sys(small_config());
  auto h = std::make_shared<middleware::latency_histogram>();
  props p = props::from_fn([&](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) {
      if (n->n() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(n->n()));
      handled.put(1);
      if (n->n() < 0) throw std::runtime_error("negative");
    }
  });
  p.receive_hooks.push_back(middleware::time_receive(h));
  pid a = sys.root().spawn(share(std::move(p)));
  REQUIRE(eventually([&] { return h->read().count == 1; }));  // Started
  sys.root().send(a, num(20));
  sys.root().send(a, num(-1));
  REQUIRE(handled.take_n(2).size() == 2);
  // Started, 20 ms, the failure, then Restarting and Started again.
  REQUIRE(eventually([&] { return h->read().count >= 5; }));
  auto s = h->read();
  // 20 ms lands in the (10 ms, 50 ms] bucket, and nowhere else that long.
  const auto& bounds = middleware::latency_histogram::bounds_ns;
  std::size_t slow = 0;
  for (std::size_t b = 0; b < bounds.size(); ++b)
    if (bounds[b] > 10'000'000) slow += s.buckets[b];
  CHECK(slow == 1);
  CHECK(s.buckets[9] == 1);  // bounds_ns[9] is 50 ms
  CHECK(s.sum_ns >= 20'000'000);
  std::uint64_t total = 0;
  for (auto n : s.buckets) total += n;
  CHECK(total == s.count);
}

TEST_CASE("the logging middleware writes one line per message and logs failures", "[middleware]") {
  journal j;
  actor_system sys(small_config());
  props p = props::from_fn([](context& ctx) {
    if (auto* n = ctx.message<test::Num>(); n && n->n() == 2) throw std::runtime_error("boom");
  });
  p.kind = "acme.logged";
  p.receive_hooks.push_back(middleware::log_receive([&](std::string_view l) { j.add(std::string(l)); }));
  pid a = sys.root().spawn(share(std::move(p)));
  sys.root().send(a, num(1));
  sys.root().send(a, num(2));
  REQUIRE(eventually([&] {
    for (const auto& l : j.all())
      if (l.find("failed: boom") != std::string::npos) return true;
    return false;
  }));
  char type[32];
  std::snprintf(type, sizeof type, "type=%016llx",
                static_cast<unsigned long long>(type_id_of<test::Num>()));
  bool handled_line = false;
  for (const auto& l : j.all())
    if (l.find(a.to_string() + " (acme.logged) " + type + " handled in ") == 0) handled_line = true;
  REQUIRE(handled_line);
}
