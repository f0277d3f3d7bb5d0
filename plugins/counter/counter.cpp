// counter: keeps a number; Add adds to it, Get answers with Value, Reset
// sets it back to zero. The example of the design document, as written.
#include <troupe/troupe.hpp>
#include "counter_generated.h"            // flatc --cpp --gen-name-strings counter.fbs

struct Counter : troupe::Actor {
  int64_t value = 0;
  void receive(troupe::Context& ctx) override {
    if (auto add = ctx.message<counter::Add>()) value += add->by();
    else if (ctx.message<counter::Get>())
      ctx.respond<counter::Value>([&](auto& b) { return counter::CreateValue(b, value); });
    else if (ctx.message<counter::Reset>()) value = 0;
  }
};

TROUPE_PLUGIN(counter, "1.0.0") {
  plugin.kind<Counter>("counter");
  plugin.schema(counter_bfbs);            // lets the gateway speak JSON for these messages
}
