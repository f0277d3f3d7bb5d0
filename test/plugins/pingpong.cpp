// The ping-pong workload of troupe-bench with both players in a plugin: a
// player answers Num(n) with Num(n - 1) to its partner, and at 1 tells its
// parent Done. It learns its partner from the first ball's sender.
#include <troupe/troupe.hpp>
#include "test_messages_generated.h"

namespace {

struct Player : troupe::Actor {
  troupe::Pid partner;
  bool introduced = false;

  void receive(troupe::Context& ctx) override {
    auto num = ctx.message<troupe::test::Num>();
    if (num == nullptr) return;
    if (!partner) partner = ctx.sender();
    const int64_t v = num->n();
    if (v <= 1) {
      ctx.send<troupe::test::Done>(ctx.parent(), [](auto& b) { return troupe::test::CreateDone(b, 1); });
      return;
    }
    auto fill = [v](auto& b) { return troupe::test::CreateNum(b, v - 1); };
    if (!introduced) {
      // The first ball goes as a request, so that the partner learns who we are.
      introduced = true;
      ctx.request<troupe::test::Num>(partner, fill);
    } else {
      ctx.send<troupe::test::Num>(partner, fill);
    }
  }
};

}  // namespace

TROUPE_PLUGIN(pingpong, "1.0.0") { plugin.kind<Player>("bench.player"); }
