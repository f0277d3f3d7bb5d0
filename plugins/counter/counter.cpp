// counter: keeps a number; Add adds to it, Add and Get answer with its
// Value, Reset sets it back to zero and answers nothing. A grain
// (`troupectl call counter/c42 counter.Get '{}'`) or a named actor
// (`troupectl spawn counter --name c1`).
#include <troupe/troupe.hpp>
#include "counter_services.h"             // troupe-embed-schema --services: client and server

struct Counter : counter::CounterService<> {
  int64_t value = 0;
  void Add(troupe::Context& ctx, const counter::Add& add, troupe::Responder<counter::Value> respond) override {
    value += add.by();
    answer(ctx, respond);
  }
  void Get(troupe::Context& ctx, const counter::Get&, troupe::Responder<counter::Value> respond) override {
    answer(ctx, respond);
  }
  void Reset(troupe::Context&, const counter::Reset&) override { value = 0; }

  void answer(troupe::Context& ctx, const troupe::Responder<counter::Value>& respond) {
    respond(ctx, [&](auto& b) { return counter::CreateValue(b, value); });
  }
};

// Elsewhere, any actor calls it through the typed client:
//   counter::CounterClient(ctx, "c42").Get([](troupe::Context& ctx, const troupe::TypedReply<counter::Value>& v) {
//     if (v.ok()) ctx.log(troupe::level::info, "c42 is at " + std::to_string(v->value()));
//   });

TROUPE_PLUGIN(counter, "1.0.0") {
  plugin.grain<Counter>(Counter::kind);
  plugin.schema(counter_bfbs);            // lets the gateway speak JSON for these messages
}
