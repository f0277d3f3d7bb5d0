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
