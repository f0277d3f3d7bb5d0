// connection: an actor that stands for a connection to a far service, in
// two behaviours. Disconnected (its first), it keeps every Query aside
// (stash) while its handshake runs (a timer, here); Connected, it becomes
// `connected` and puts the kept queries back (unstash_all), which it then
// answers in the order they came, before anything newer. Drop loses the
// connection: back to `disconnected`, and a new handshake.
#include <chrono>
#include <string>

#include <troupe/troupe.hpp>
#include "connection_generated.h"

namespace {

using namespace connection;
constexpr auto handshake = std::chrono::milliseconds(100);

struct Link : troupe::Actor {
  int answered = 0, connections = 0, waiting = 0;

  void started(troupe::Context& ctx) override { connect(ctx); }

  void connect(troupe::Context& ctx) {
    ctx.send_after<Connected>(handshake, ctx.self(), [](auto& b) { return CreateConnected(b); });
  }

  // Disconnected: the kind's receive.
  void receive(troupe::Context& ctx) override {
    if (ctx.message<Query>()) {
      ++waiting;
      ctx.stash();
    } else if (ctx.message<Connected>()) {
      ++connections;
      ctx.become<&Link::connected>();
      ctx.unstash_all();
      waiting = 0;
    } else if (ctx.message<Status>()) {
      status(ctx, false);
    }
  }

  void connected(troupe::Context& ctx) {
    if (const auto* q = ctx.message<Query>()) {
      const int order = ++answered;
      const std::string text = "answer to " + (q->text() ? q->text()->str() : std::string());
      ctx.respond<Answer>([&](auto& b) { return CreateAnswerDirect(b, text.c_str(), order, connections); });
    } else if (ctx.message<Drop>()) {
      ctx.become<&Link::disconnected>();
      connect(ctx);
    } else if (ctx.message<Status>()) {
      status(ctx, true);
    }
  }

  void disconnected(troupe::Context& ctx) { receive(ctx); }

  void status(troupe::Context& ctx, bool up) {
    ctx.respond<State>([&](auto& b) { return CreateState(b, up, waiting, connections); });
  }
};

}  // namespace

TROUPE_PLUGIN(connection, "1.0.0") {
  plugin.kind<Link>("connection.link");
  plugin.schema(connection_bfbs);
}
