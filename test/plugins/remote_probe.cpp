// Kinds that talk to actors of other nodes, for the remote tests: each is
// told a PID as text ("address/id") and resolves it like any plugin would.
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include <troupe/troupe.hpp>
#include <troupe/cluster_generated.h>
#include <troupe/system_generated.h>
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

// Keeps the sender of the first Num it is asked (answering Num(n)); Burst
// with an empty `to` sends Num(1..count) to the one it kept (a PID from a
// message, with its node's generation), any other `to` to that PID text.
struct Keeper : troupe::Actor {
  troupe::Pid kept;
  void receive(troupe::Context& ctx) override {
    if (auto n = ctx.message<Num>()) {
      if (!kept) kept = ctx.sender();
      ctx.respond<Num>([&](auto& b) { return CreateNum(b, n->n()); });
    } else if (auto r = ctx.message<Burst>()) {
      const std::string_view text = r->to() ? r->to()->string_view() : std::string_view();
      troupe::Pid to = text.empty() ? kept : ctx.resolve(text);
      if (!to) throw std::runtime_error("nothing to send to");
      for (int64_t i = 1; i <= r->count(); ++i) ctx.send<Num>(to, [&](auto& b) { return CreateNum(b, i); });
      ctx.respond<Done>([&](auto& b) { return CreateDone(b, r->count()); });
    }
  }
};

// WatchPid{pid} names where it forwards (answered Done); every Num after
// that is forwarded there with its sender (a request's future on this node
// waits for the far actor's answer itself).
struct Forwarder : troupe::Actor {
  troupe::Pid to;
  void receive(troupe::Context& ctx) override {
    if (auto w = ctx.message<WatchPid>()) {
      to = ctx.resolve(w->pid() ? w->pid()->string_view() : std::string_view());
      if (!to) throw std::runtime_error("cannot resolve " + (w->pid() ? w->pid()->str() : ""));
      ctx.respond<Done>([](auto& b) { return CreateDone(b, 1); });
    } else if (ctx.message<Num>() && to) {
      ctx.forward(to);
    }
  }
};

// Subscribes to the cluster's events when it starts and notes each
// ("joined:b", "suspect:c by a", "dead:c by a", "alive:c", "left:e",
// "topology:3"); Ask answers Text "EVENTS|MEMBERS", MEMBERS being
// name=status of every member the node knows.
struct ClusterWatcher : troupe::Actor {
  std::string events;
  void started(troupe::Context& ctx) override { ctx.subscribe_cluster(); }
  void receive(troupe::Context& ctx) override {
    namespace c = troupe::cluster;
    auto note = [&](const std::string& s) { events += (events.empty() ? "" : ",") + s; };
    auto name = [](const c::MemberInfo* m) { return m && m->name() ? m->name()->str() : std::string("?"); };
    auto by = [](const flatbuffers::String* r) { return " by " + (r ? r->str() : std::string("?")); };
    if (auto j = ctx.message<c::MemberJoined>()) {
      note("joined:" + name(j->member()));
    } else if (auto s = ctx.message<c::MemberSuspect>()) {
      note("suspect:" + name(s->member()) + by(s->reporter()));
    } else if (auto a = ctx.message<c::MemberAlive>()) {
      note("alive:" + name(a->member()));
    } else if (auto d = ctx.message<c::MemberDead>()) {
      note("dead:" + name(d->member()) + by(d->reporter()));
    } else if (auto l = ctx.message<c::MemberLeft>()) {
      note("left:" + name(l->member()));
    } else if (auto t = ctx.message<c::TopologyChanged>()) {
      note("topology:" + std::to_string(t->members() ? t->members()->size() : 0));
    } else if (ctx.message<Ask>()) {
      std::string members;
      const std::vector<std::uint8_t> bytes = ctx.cluster_members();
      if (!bytes.empty()) {
        flatbuffers::Verifier v(bytes.data(), bytes.size());
        if (!v.VerifyBuffer<c::Members>(nullptr)) throw std::runtime_error("the member list does not verify");
        for (const c::MemberInfo* m : *flatbuffers::GetRoot<c::Members>(bytes.data())->members())
          members += (members.empty() ? "" : ",") + name(m) + "=" + c::EnumNameMemberStatus(m->status());
      }
      const std::string text = events + "|" + members;
      ctx.respond<Text>([&](auto& b) { return CreateTextDirect(b, text.c_str()); });
    }
  }
};

}  // namespace

TROUPE_PLUGIN(remote_probe, "1.0.0") {
  plugin.kind<Keeper>("probe.keeper");
  plugin.kind<Forwarder>("probe.forward");
  plugin.kind<ClusterWatcher>("probe.cluster");
  plugin.kind<Relayer>("probe.relay");
  plugin.kind<Sender>("probe.sender");
  plugin.kind<Sink>("probe.sink");
}
