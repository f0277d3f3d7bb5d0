// Workloads of troupe-bench run by a plugin's actors. Ping-pong: a player
// answers Num(n) with Num(n - 1) to its partner, and at 1 tells its parent
// Done; it learns its partner from the first ball's sender. Round robin
// through the SDK's router: a driver spawns a pool of counters and the
// senders; told to go (Text), it tells each sender how many to push
// (Num, with the router as its sender); each counter tells the actor named
// bench-rr-collector Done once it has its share.
#include <vector>

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

constexpr int rr_senders = 4, rr_routees = 4;
constexpr std::int64_t rr_each = 500'000, rr_share = rr_senders * rr_each / rr_routees;

struct Counter : troupe::Actor {
  std::int64_t left = rr_share;
  troupe::Pid collector;
  void started(troupe::Context& ctx) override { collector = ctx.lookup("bench-rr-collector"); }
  void receive(troupe::Context& ctx) override {
    if (ctx.message<troupe::test::Num>() != nullptr && --left == 0)
      ctx.send<troupe::test::Done>(collector, [](auto& b) { return troupe::test::CreateDone(b, 1); });
  }
};

struct Sender : troupe::Actor {
  void receive(troupe::Context& ctx) override {
    const auto* n = ctx.message<troupe::test::Num>();
    if (n == nullptr) return;
    const troupe::Pid router = ctx.sender();
    for (std::int64_t i = 0; i < n->n(); ++i)
      ctx.send<troupe::test::Num>(router, [i](auto& b) { return troupe::test::CreateNum(b, i); });
  }
};

struct Driver : troupe::Actor {
  troupe::Pid router;
  std::vector<troupe::Pid> senders;
  void started(troupe::Context& ctx) override {
    router = ctx.spawn_pool("bench.rr_counter", rr_routees, troupe::Routing::round_robin);
    for (int i = 0; i < rr_senders; ++i) senders.push_back(ctx.spawn("bench.rr_sender"));
  }
  void receive(troupe::Context& ctx) override {
    if (ctx.message<troupe::test::Text>() == nullptr) return;
    for (const troupe::Pid& s : senders)
      ctx.send_as<troupe::test::Num>(s, router, [](auto& b) { return troupe::test::CreateNum(b, rr_each); });
  }
};

}  // namespace

TROUPE_PLUGIN(pingpong, "1.0.0") {
  plugin.kind<Player>("bench.player");
  plugin.kind<Counter>("bench.rr_counter");
  plugin.kind<Sender>("bench.rr_sender");
  plugin.kind<Driver>("bench.rr_driver");
}
