// Kinds that talk to actors of other nodes, for the remote tests: each is
// told a PID as text ("address/id") and resolves it like any plugin would.
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include <troupe/troupe.hpp>
#include "system_generated.h"
#include "test_messages_generated.h"

namespace {

using namespace troupe::test;

// Relay{to, n}: asks `to` with Num(n) and answers the asker with the reply,
// or with Failed{reason} when the request became a dead letter.
struct Relayer : troupe::Actor {
  troupe::Pid asker;
  void receive(troupe::Context& ctx) override {
    if (auto r = ctx.message<Relay>()) {
      troupe::Pid to = ctx.resolve(r->to() ? r->to()->string_view() : std::string_view());
      if (!to) throw std::runtime_error("cannot resolve " + (r->to() ? r->to()->str() : ""));
      asker = ctx.sender();
      ctx.request<Num>(to, [&](auto& b) { return CreateNum(b, r->n()); });
    } else if (auto n = ctx.message<Num>()) {
      if (asker) ctx.send<Num>(asker, [&](auto& b) { return CreateNum(b, n->n()); });
      asker = troupe::Pid();
    } else if (auto d = ctx.message<troupe::system::DeadLetterResponse>()) {
      const std::string why = troupe::system::EnumNameDeadLetterReason(d->reason());
      if (asker) ctx.send<Failed>(asker, [&](auto& b) { return CreateFailedDirect(b, why.c_str()); });
      asker = troupe::Pid();
    }
  }
};

// Burst{to, count}: sends Num(1..count) to `to`, then answers Done(count).
struct Sender : troupe::Actor {
  void receive(troupe::Context& ctx) override {
    if (auto r = ctx.message<Burst>()) {
      troupe::Pid to = ctx.resolve(r->to() ? r->to()->string_view() : std::string_view());
      if (!to) throw std::runtime_error("cannot resolve " + (r->to() ? r->to()->str() : ""));
      for (int64_t i = 1; i <= r->count(); ++i)
        ctx.send<Num>(to, [&](auto& b) { return CreateNum(b, i); });
      ctx.respond<Done>([&](auto& b) { return CreateDone(b, r->count()); });
    }
  }
};

// Counts Num messages, how many did not follow the one before (n != last +
// 1: a gap or worse) and how many went backwards (n <= last: a duplicate or
// a reordering); Num(-ms) makes it sleep that long instead (a stall, for
// floods to pile up behind); watches what WatchPid names and notes each
// Terminated. Ask: Stats.
struct Sink : troupe::Actor {
  int64_t received = 0, out_of_order = 0, last = 0, backwards = 0;
  std::string terminated;
  void receive(troupe::Context& ctx) override {
    if (auto n = ctx.message<Num>()) {
      if (n->n() < 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(-n->n()));
        return;
      }
      ++received;
      if (n->n() != last + 1) ++out_of_order;
      if (n->n() <= last) ++backwards;
      last = n->n();
    } else if (auto w = ctx.message<WatchPid>()) {
      troupe::Pid who = ctx.resolve(w->pid() ? w->pid()->string_view() : std::string_view());
      if (!who) throw std::runtime_error("cannot resolve " + (w->pid() ? w->pid()->str() : ""));
      ctx.watch(who);
      ctx.respond<Done>([](auto& b) { return CreateDone(b, 1); });
    } else if (ctx.type() == troupe::terminated_type) {
      auto t = flatbuffers::GetRoot<troupe::system::Terminated>(ctx.bytes().data());
      if (!terminated.empty()) terminated += ",";
      terminated += (t->who() && t->who()->id() ? t->who()->id()->str() : std::string("?")) + ":" +
                    troupe::system::EnumNameTerminatedReason(t->reason());
    } else if (ctx.message<Ask>()) {
      ctx.respond<Stats>([&](auto& b) {
        return CreateStats(b, received, out_of_order, last, b.CreateString(terminated), backwards);
      });
    }
  }
};

}  // namespace

TROUPE_PLUGIN(remote_probe, "1.0.0") {
  plugin.kind<Relayer>("probe.relay");
  plugin.kind<Sender>("probe.sender");
  plugin.kind<Sink>("probe.sink");
}
