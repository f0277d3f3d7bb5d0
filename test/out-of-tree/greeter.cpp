// Answers Greet{name} with Greeting{"hello, <name>"}.
#include <string>

#include <troupe/troupe.hpp>
#include "greeter_generated.h"

namespace {

struct Greeter : troupe::Actor {
  void receive(troupe::Context& ctx) override {
    if (auto g = ctx.message<oot::Greet>()) {
      const std::string text = "hello, " + (g->name() ? g->name()->str() : std::string("nobody"));
      ctx.respond<oot::Greeting>([&](auto& b) { return oot::CreateGreetingDirect(b, text.c_str()); });
    }
  }
};

}  // namespace

TROUPE_PLUGIN(greeter, "0.1.0") {
  plugin.kind<Greeter>("oot.greeter");
  plugin.schema(greeter_bfbs);
}
