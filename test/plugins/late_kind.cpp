// Keeps its registrar and tries to register a kind after init, from an
// actor's handler: the node refuses that kind and goes on.
#include <troupe/troupe.hpp>

namespace {

troupe_registrar* kept = nullptr;
int late_status = 1;

struct Late : troupe::Actor {
  void receive(troupe::Context& ctx) override {
    troupe_kind_def def{};
    def.size = sizeof def;
    def.name = "late.sneaky";
    def.create = [](void*, troupe_ctx*) -> void* { return nullptr; };
    def.receive = [](void*, troupe_ctx*, const troupe_message*) { return 0; };
    def.destroy = [](void*) { return 0; };
    late_status = troupe::detail::host->register_kind(kept, &def);
    ctx.respond_bytes(ctx.type(), ctx.bytes());  // the answer says the attempt was made
  }
};

}  // namespace

TROUPE_PLUGIN(late_kind, "1.0.0") {
  plugin.kind<Late>("late.kind");
  kept = plugin.registrar();
}
