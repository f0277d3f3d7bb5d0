// Kinds that throw from their constructor, their handler or their
// destructor: each failure stays with its actor.
#include <stdexcept>

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

}  // namespace

TROUPE_PLUGIN(thrower, "1.0.0") {
  plugin.kind<ThrowsInConstructor>("throw.constructor");
  plugin.kind<ThrowsInReceive>("throw.receive");
  plugin.kind<ThrowsInDestructor>("throw.destructor");
  plugin.schema(thrower_bfbs);
}
