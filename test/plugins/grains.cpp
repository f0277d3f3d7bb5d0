// Grain kinds for the grain tests and benchmarks, built like a user's
// plugin: a counter grain, a grain whose constructor fails, and a plain
// actor that calls grains through the SDK (Context::grain).
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>

#include <troupe/troupe.hpp>
#include "grain_messages_generated.h"

namespace {

struct Counter : troupe::Actor {
  std::int64_t value = 0;
  std::string identity, self;
  explicit Counter(troupe::Context& ctx) : identity(ctx.identity()), self(ctx.self().to_string()) {}

  void answer(troupe::Context& ctx) {
    ctx.respond<grains::Value>([&](auto& b) {
      return grains::CreateValueDirect(b, value, identity.c_str(), self.c_str());
    });
  }
  void receive(troupe::Context& ctx) override {
    if (auto a = ctx.message<grains::Add>()) {
      value += a->by();
      answer(ctx);
    } else if (ctx.message<grains::Get>()) {
      answer(ctx);
    } else if (ctx.message<grains::Passivate>()) {
      answer(ctx);
      ctx.passivate();
    } else if (const auto* t = ctx.message<grains::Tick>()) {
      // Its own timer: ticks that must not keep it active.
      ctx.send_every<grains::Get>(std::chrono::milliseconds(t->every_ms()), std::chrono::milliseconds(t->every_ms()),
                                  ctx.self(), [](auto& b) { return grains::CreateGet(b); });
      answer(ctx);
    }
  }
};

struct Broken : troupe::Actor {
  Broken() { throw std::runtime_error("broken on purpose"); }
  void receive(troupe::Context&) override {}
};

struct Caller : troupe::Actor {
  void receive(troupe::Context& ctx) override {
    const auto* c = ctx.message<grains::CallGrain>();
    if (c == nullptr) return;
    const std::int64_t by = c->by();
    const auto timeout = std::chrono::milliseconds(c->timeout_ms() > 0 ? c->timeout_ms() : 5000);
    ctx.grain(c->kind() ? c->kind()->string_view() : "", c->identity() ? c->identity()->string_view() : "")
        .request<grains::Add>([&](auto& b) { return grains::CreateAdd(b, by); },
                              [](troupe::Context& ctx, const troupe::Reply& r) {
                                if (const auto* v = r.as<grains::Value>()) {
                                  ctx.respond<grains::Value>([&](auto& b) {
                                    return grains::CreateValueDirect(b, v->value(), v->identity()->c_str(),
                                                                     v->pid()->c_str());
                                  });
                                  return;
                                }
                                const std::string why = r.error();
                                ctx.respond<grains::CallFailed>([&](auto& b) {
                                  return grains::CreateCallFailedDirect(b, why.c_str(), static_cast<int>(r.result()));
                                });
                              },
                              timeout);
  }
};

}  // namespace

TROUPE_PLUGIN(grains, "1.0.0") {
  plugin.schema(grains_bfbs);
  plugin.grain<Counter>("grains.counter");
  plugin.grain<Broken>("grains.broken");
  // The same counter, passivated after one second without messages.
  plugin.grain<Counter>("grains.brief", std::chrono::seconds(1));
  plugin.kind<Caller>("grains.caller");
}
