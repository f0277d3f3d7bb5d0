#include <catch2/catch.hpp>

#include "probe.hpp"

using namespace troupe;
using namespace troupe::testing;

TEST_CASE("become replaces the behaviour; stacked behaviours unbecome to the previous", "[behavior]") {
  inbox<std::string> log;
  actor_system sys(small_config());
  struct switcher : actor {
    inbox<std::string>& log;
    explicit switcher(inbox<std::string>& l) : log(l) {}
    void receive(context& ctx) override {
      if (auto* t = ctx.message<test::Text>()) {
        log.put("base:" + t->s()->str());
        if (t->s()->str() == "angry") {
          ctx.become([this](context& c) {
            if (auto* x = c.message<test::Text>()) {
              log.put("angry:" + x->s()->str());
              if (x->s()->str() == "stack")
                c.become_stacked([this](context& c2) {
                  if (auto* y = c2.message<test::Text>()) {
                    log.put("stacked:" + y->s()->str());
                    if (y->s()->str() == "pop") c2.unbecome();
                  }
                });
            }
          });
        }
      }
    }
  };
  pid a = sys.root().spawn(share(props::from([&] { return std::unique_ptr<actor>(new switcher(log)); })));
  for (const char* s : {"hi", "angry", "hi", "stack", "x", "pop", "y"})
    sys.root().send(a, text(s));
  REQUIRE(log.take_n(7) == std::vector<std::string>{"base:hi", "base:angry", "angry:hi", "angry:stack",
                                                    "stacked:x", "stacked:pop", "angry:y"});
}

TEST_CASE("stashed messages are replayed in order before newer ones", "[behavior]") {
  inbox<std::string> log;
  actor_system sys(small_config());
  // Stashes everything until "open", then replays.
  struct door : actor {
    inbox<std::string>& log;
    bool open = false;
    explicit door(inbox<std::string>& l) : log(l) {}
    void receive(context& ctx) override {
      auto* t = ctx.message<test::Text>();
      if (!t) return;
      std::string s = t->s()->str();
      if (!open && s != "open") {
        ctx.stash();
        return;
      }
      if (s == "open") {
        open = true;
        ctx.unstash_all();
        return;
      }
      log.put(s);
    }
  };
  pid a = sys.root().spawn(share(props::from([&] { return std::unique_ptr<actor>(new door(log)); })));
  for (const char* s : {"1", "2", "3", "open", "4"}) sys.root().send(a, text(s));
  REQUIRE(log.take_n(4) == std::vector<std::string>{"1", "2", "3", "4"});
}

TEST_CASE("a stashed request keeps its sender: answered when it comes back", "[behavior]") {
  actor_system sys(small_config());
  // Stashes numbers until a Text comes, then answers each with its double.
  pid a = sys.root().spawn(share(props::from([] {
    struct gate : actor {
      bool open = false;
      void receive(context& ctx) override {
        if (ctx.message<test::Text>()) {
          open = true;
          ctx.unstash_all();
        } else if (auto* n = ctx.message<test::Num>()) {
          if (!open) return ctx.stash();
          const auto v = n->n() * 2;
          ctx.respond<test::Num>([&](auto& b) { return test::CreateNum(b, v); });
        }
      }
    };
    return std::unique_ptr<actor>(new gate);
  })));
  future f1 = sys.root().request_future(a, num(1), std::chrono::seconds(5));
  future f2 = sys.root().request_future(a, num(2), std::chrono::seconds(5));
  sys.root().send(a, text("open"));
  future_result r1 = f1.get_result(), r2 = f2.get_result();
  REQUIRE(r1.ok());
  REQUIRE(r2.ok());
  CHECK(r1.as<test::Num>()->n() == 2);
  CHECK(r2.as<test::Num>()->n() == 4);
}

TEST_CASE("held user messages wait in order until released; system messages go on meanwhile", "[behavior]") {
  inbox<std::string> log;
  actor_system sys(small_config());
  // Holds its user messages on "hold", as a persistent actor does while an
  // event it stores is on its way to disk.
  struct waiter : actor {
    inbox<std::string>& log;
    explicit waiter(inbox<std::string>& l) : log(l) {}
    void receive(context& ctx) override {
      if (ctx.message<system::Stopped>()) log.put("stopped");
      auto* t = ctx.message<test::Text>();
      if (!t) return;
      log.put(t->s()->str());
      if (t->s()->str() == "hold") ctx.hold_user_messages();
    }
  };
  pid a = sys.root().spawn(share(props::from([&] { return std::unique_ptr<actor>(new waiter(log)); })));
  // What an answer from another thread does: a continuation, a system message.
  const auto release = [&] {
    auto* m = new system_message(system_kind::continuation);
    m->fn = [&log](context& c) {
      log.put(c.holding_user_messages() ? "released" : "not held");
      c.release_user_messages();
    };
    a.get()->send_system(m);
  };
  sys.root().send(a, text("hold"));
  REQUIRE(log.take() == "hold");
  for (const char* s : {"1", "2", "3"}) sys.root().send(a, text(s));
  CHECK_FALSE(log.take(100ms));  // held
  release();
  REQUIRE(log.take_n(4) == std::vector<std::string>{"released", "1", "2", "3"});
  // Held again, then stopped: the stop (a system message) is not held.
  sys.root().send(a, text("hold"));
  REQUIRE(log.take() == "hold");
  sys.root().send(a, text("never"));
  sys.root().stop(a);
  CHECK(log.take() == "stopped");
  CHECK_FALSE(log.take(50ms));
}

TEST_CASE("a restart releases what the old instance held, and counts as a new incarnation", "[behavior]") {
  inbox<std::string> log;
  actor_system sys(small_config());
  struct waiter : actor {
    inbox<std::string>& log;
    explicit waiter(inbox<std::string>& l) : log(l) {}
    void receive(context& ctx) override {
      if (ctx.message<system::Started>()) log.put("started " + std::to_string(ctx.incarnation()));
      auto* t = ctx.message<test::Text>();
      if (!t) return;
      log.put(t->s()->str());
      if (t->s()->str() == "hold") ctx.hold_user_messages();
    }
  };
  pid a = sys.root().spawn(share(props::from([&] { return std::unique_ptr<actor>(new waiter(log)); })));
  REQUIRE(log.take() == "started 0");
  sys.root().send(a, text("hold"));
  sys.root().send(a, text("after"));
  REQUIRE(log.take() == "hold");
  // The answer it waited for fails it: its supervisor restarts it.
  auto* m = new system_message(system_kind::continuation);
  m->fn = [](context&) { throw std::runtime_error("the store failed"); };
  a.get()->send_system(m);
  REQUIRE(log.take_n(2) == std::vector<std::string>{"started 1", "after"});
}
