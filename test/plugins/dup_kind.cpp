// Registers "counter", which the counter plugin already has: refused whole.
#include <troupe/troupe.hpp>

namespace {
struct Nothing : troupe::Actor {
  void receive(troupe::Context&) override {}
};
}  // namespace

TROUPE_PLUGIN(dup_kind, "1.0.0") {
  plugin.kind<Nothing>("dup.fine");
  plugin.kind<Nothing>("counter");
}
