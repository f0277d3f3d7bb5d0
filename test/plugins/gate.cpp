// gate: behaviours, stash and unhandled messages through the C++ SDK. A
// door starts closed: knocks (requests) are stashed; Open becomes `open`
// and puts them back, in order, and each is answered Entered. Peek stacks
// a `peeking` behaviour that Unpeek takes off; Close goes back to closed;
// Break throws, and the restarted door is closed again. Paint is declared
// and handled nowhere: a dead letter with reason unhandled.
#include <troupe/troupe.hpp>

#include "gate_messages_generated.h"

namespace {

using namespace gate;

struct Door : troupe::Actor {
  int entered = 0;

  void enter(troupe::Context& ctx, const Knock& k, const char* mode) {
    ++entered;
    ctx.respond<Entered>([&](auto& b) { return CreateEntered(b, k.n(), b.CreateString(mode), entered); });
  }

  // Closed: the kind's receive.
  void receive(troupe::Context& ctx) override {
    if (ctx.message<Knock>()) {
      ctx.stash();
    } else if (ctx.message<Open>()) {
      ctx.become<&Door::open>();
      ctx.unstash_all();
    } else if (ctx.message<Break>()) {
      throw std::runtime_error("the door broke");
    }
  }

  void open(troupe::Context& ctx) {
    if (auto k = ctx.message<Knock>()) {
      enter(ctx, *k, "open");
    } else if (ctx.message<Peek>()) {
      ctx.become_stacked<&Door::peeking>();
    } else if (ctx.message<Close>()) {
      ctx.become<&Door::closed>();
    } else if (ctx.message<Break>()) {
      throw std::runtime_error("the door broke");
    }
  }

  void peeking(troupe::Context& ctx) {
    if (auto k = ctx.message<Knock>()) {
      enter(ctx, *k, "peeking");
    } else if (ctx.message<Unpeek>()) {
      ctx.unbecome();
    }
  }

  void closed(troupe::Context& ctx) { receive(ctx); }
};

}  // namespace

TROUPE_PLUGIN(gate, "1.0.0") {
  plugin.schema(gate_bfbs);
  plugin.kind<Door>("gate.door");
}
