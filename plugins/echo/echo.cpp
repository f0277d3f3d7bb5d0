// echo: replies to every message with the same message.
#include <troupe/troupe.hpp>

namespace {

struct Echo : troupe::Actor {
  void receive(troupe::Context& ctx) override { ctx.respond_bytes(ctx.type(), ctx.bytes()); }
};

}  // namespace

TROUPE_PLUGIN(echo, "1.0.0") { plugin.kind<Echo>("echo"); }
