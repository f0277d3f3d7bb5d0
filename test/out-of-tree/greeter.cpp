// Answers Greet{name} with Greeting{"hello, <name>"}; logs why an actor
// it watches stopped (a system message, from the SDK's generated header).
#include <string>

#include <troupe/system_generated.h>
#include <troupe/troupe.hpp>
#include "greeter_generated.h"

namespace {

struct Greeter : troupe::Actor {
  void receive(troupe::Context& ctx) override {
    if (auto g = ctx.message<oot::Greet>()) {
      const std::string text = "hello, " + (g->name() ? g->name()->str() : std::string("nobody"));
      ctx.respond<oot::Greeting>([&](auto& b) { return oot::CreateGreetingDirect(b, text.c_str()); });
    } else if (const auto* t = ctx.message<troupe::system::Terminated>()) {
      ctx.log(troupe::level::info, std::string("a watched actor stopped: ") +
                                       troupe::system::EnumNameTerminatedReason(t->reason()));
    }
  }
};

}  // namespace

TROUPE_PLUGIN(greeter, "0.1.0") {
  plugin.kind<Greeter>("oot.greeter");
  plugin.schema(greeter_bfbs);
}
