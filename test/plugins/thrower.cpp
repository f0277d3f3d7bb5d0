// Kinds that throw from their constructor, their handler or their
// destructor (each failure stays with its actor), and kinds that take
// their time.
#include <chrono>
#include <stdexcept>
#include <thread>

#include <troupe/troupe.hpp>
#include "test_messages_generated.h"

namespace {

struct ThrowsInConstructor : troupe::Actor {
  ThrowsInConstructor() { throw std::runtime_error("constructor refuses"); }
  void receive(troupe::Context&) override {}
};

// Throws on a negative number; answers anything else with its count of
// messages, which a restart resets.
struct ThrowsInReceive : troupe::Actor {
  int64_t seen = 0;
  void receive(troupe::Context& ctx) override {
    if (auto n = ctx.message<troupe::test::Num>()) {
      if (n->n() < 0) throw std::runtime_error("negative number " + std::to_string(n->n()));
      ++seen;
      ctx.respond<troupe::test::Num>([&](auto& b) { return troupe::test::CreateNum(b, seen); });
    }
  }
};

struct ThrowsInDestructor : troupe::Actor {
  ~ThrowsInDestructor() noexcept(false) { throw std::runtime_error("destructor complains"); }
  void receive(troupe::Context& ctx) override { ctx.respond_bytes(ctx.type(), ctx.bytes()); }
};

// Answers a Num only once it has been quiet for 20 ms (ABI 1.1).
struct AnswersWhenQuiet : troupe::Actor {
  troupe::Pid asker;
  void receive(troupe::Context& ctx) override {
    if (ctx.message<troupe::test::Num>()) {
      asker = ctx.sender();
      ctx.set_receive_timeout(std::chrono::milliseconds(20));
    } else if (ctx.type() == troupe::receive_timeout_type && asker) {
      ctx.set_receive_timeout(std::chrono::nanoseconds(0));
      ctx.send<troupe::test::Num>(asker, [](auto& b) { return troupe::test::CreateNum(b, 42); });
      asker = troupe::Pid();
    }
  }
};

// Sleeps `n` milliseconds in its handler, then answers: a busy actor for
// the shutdown tests.
struct Sleeps : troupe::Actor {
  void receive(troupe::Context& ctx) override {
    if (auto n = ctx.message<troupe::test::Num>()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(n->n()));
      ctx.respond<troupe::test::Num>([&](auto& b) { return troupe::test::CreateNum(b, n->n()); });
    }
  }
};

}  // namespace

TROUPE_PLUGIN(thrower, "1.0.0") {
  plugin.kind<ThrowsInConstructor>("throw.constructor");
  plugin.kind<ThrowsInReceive>("throw.receive");
  plugin.kind<ThrowsInDestructor>("throw.destructor");
  plugin.kind<AnswersWhenQuiet>("quiet.answer");
  plugin.kind<Sleeps>("sleep.receive");
  plugin.schema(thrower_bfbs);
}
