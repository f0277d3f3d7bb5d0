// gate: behaviours, stash and unhandled messages through the C++ SDK. A
// door starts closed: knocks (requests) are stashed; Open becomes `open`
// and puts them back, in order, and each is answered Entered. Peek stacks
// a `peeking` behaviour that Unpeek takes off; Close goes back to closed;
// Break throws, and the restarted door is closed again. Paint is declared
// and handled nowhere: a dead letter with reason unhandled. The relay asks
// doors on its askers' behalf.
#include <cstdio>

#include <troupe/system_generated.h>
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

// A relay: asks a door for its asker (Relay), and answers it in its own
// turn once the door has (ABI 1.8: a request with a reply handler, and a
// message sent with another sender).
struct Relayer : troupe::Actor {
  void receive(troupe::Context& ctx) override {
    if (const auto* s = ctx.message<SpawnOn>()) return spawn_on(ctx, *s);
    const auto* r = ctx.message<gate::Relay>();
    if (r == nullptr) return;
    // A PID's text, or the name of an actor of this node.
    const std::string_view to = r->to() ? r->to()->string_view() : std::string_view();
    const troupe::Pid door = to.find('/') != std::string_view::npos ? ctx.resolve(to) : ctx.lookup(to);
    const int n = r->n();
    if (r->direct()) {
      ctx.send_as<Knock>(door, ctx.sender(), [&](auto& b) { return CreateKnock(b, n); });
      return;
    }
    ctx.request<Knock>(
        door, [&](auto& b) { return CreateKnock(b, n); },
        [](troupe::Context& c, const troupe::Reply& reply) {
          const auto* e = reply.as<Entered>();
          const int got = e != nullptr ? e->n() : -1;
          const int status = static_cast<int>(reply.result());
          c.respond<Relayed>([&](auto& b) { return CreateRelayed(b, got, status); });
        },
        std::chrono::milliseconds(r->timeout_ms() > 0 ? r->timeout_ms() : 5000));
  }

  void spawn_on(troupe::Context& ctx, const SpawnOn& s) {
    const std::string name = s.name() ? s.name()->str() : std::string();
    ctx.spawn_remote(
        s.address() ? s.address()->string_view() : std::string_view(), s.kind() ? s.kind()->c_str() : "",
        name.empty() ? nullptr : name.c_str(),
        [](troupe::Context& c, const troupe::Spawned& r) {
          const std::string text = r.ok() ? r.pid.to_string() : std::string(r.error);
          c.respond<SpawnedOn>([&](auto& b) { return CreateSpawnedOnDirect(b, r.status, text.c_str()); });
        },
        std::chrono::seconds(2));
  }
};

// Props (ABI 1.9): a keeper, whose kind has props of its own (and so a
// decider for its children), spawns children with props of theirs.
struct Keeper : troupe::Actor {
  void receive(troupe::Context& ctx) override {
    const auto* s = ctx.message<SpawnWith>();
    if (s == nullptr) return;
    const std::string kind = s->kind() ? s->kind()->str() : std::string();
    const std::string name = s->name() ? s->name()->str() : std::string();
    int status = TROUPE_OK;
    std::string text;
    try {
      troupe::Props props;
      props.mailbox(static_cast<troupe::Mailbox>(s->mailbox()), s->capacity())
          .throughput(s->throughput())
          .supervise(static_cast<troupe::Supervision>(s->supervision()));
      const char* n = name.empty() ? nullptr : name.c_str();
      text = (s->with_props() ? ctx.spawn(kind.c_str(), n, props) : ctx.spawn(kind.c_str(), n)).to_string();
    } catch (const troupe::Error& e) {
      status = e.status();
      text = e.what();
    }
    ctx.respond<SpawnedOn>([&](auto& b) { return CreateSpawnedOnDirect(b, status, text.c_str()); });
  }
};

struct Fragile : troupe::Actor {
  int seen = 0;
  void receive(troupe::Context& ctx) override {
    ++seen;
    if (const auto* f = ctx.message<Fail>()) throw std::runtime_error(f->reason() ? f->reason()->str() : "no reason");
    if (ctx.message<Count>()) ctx.respond<Counted>([&](auto& b) { return CreateCounted(b, seen); });
  }
};

// An actor driven by requests it answers with SpawnedOn: a status and a
// text, or the status and words of the troupe::Error that refused it.
struct Answering : troupe::Actor {
  static std::string str(const flatbuffers::String* s) { return s != nullptr ? s->str() : std::string(); }

  static void answer(troupe::Context& ctx, int status, const std::string& text) {
    ctx.respond<SpawnedOn>([&](auto& b) { return CreateSpawnedOnDirect(b, status, text.c_str()); });
  }

  void receive(troupe::Context& ctx) override {
    try {
      handle(ctx);
    } catch (const troupe::Error& e) {
      answer(ctx, e.status(), e.what());
    }
  }

  virtual void handle(troupe::Context& ctx) = 0;
};

// Routers (ABI 1.9), driven by name.
struct Dispatcher : Answering {
  void handle(troupe::Context& ctx) override {
    if (const auto* m = ctx.message<MakePool>()) {
      const std::string name = str(m->name());
      const troupe::Pid r = ctx.spawn_pool(str(m->kind()).c_str(), m->size(), static_cast<troupe::Routing>(m->routing()),
                                           name.empty() ? nullptr : name.c_str());
      return answer(ctx, 0, r.to_string());
    }
    if (const auto* m = ctx.message<MakeGroup>()) {
      std::vector<troupe::Pid> routees;
      const std::string names = str(m->names());
      for (std::size_t at = 0; at < names.size();) {
        const std::size_t end = std::min(names.find(',', at), names.size());
        routees.push_back(ctx.lookup(std::string_view(names).substr(at, end - at)));
        at = end + 1;
      }
      const std::string name = str(m->name());
      const troupe::Pid r = ctx.spawn_group(routees, static_cast<troupe::Routing>(m->routing()),
                                            name.empty() ? nullptr : name.c_str());
      return answer(ctx, 0, r.to_string());
    }
    if (const auto* m = ctx.message<Manage>()) {
      const troupe::Pid router = ctx.lookup(str(m->router()));
      const troupe::Pid routee = ctx.lookup(str(m->routee()));
      switch (m->op()) {
        case TROUPE_ROUTER_ADD: ctx.add_routee(router, routee); break;
        case TROUPE_ROUTER_REMOVE: ctx.remove_routee(router, routee); break;
        default: ctx.resize_pool(router, m->change()); break;
      }
      return answer(ctx, 0, "");
    }
    if (const auto* m = ctx.message<Blast>()) {
      ctx.broadcast<Tick>(ctx.lookup(str(m->router())), [](auto& b) { return CreateTick(b); });
      return answer(ctx, 0, "");
    }
    if (const auto* m = ctx.message<Keyed>()) {
      const troupe::Pid router = ctx.lookup(str(m->router()));
      for (int i = 0; i < m->n(); ++i)
        ctx.send_keyed<Tick>(router, str(m->key()), [](auto& b) { return CreateTick(b); });
      return answer(ctx, 0, "");
    }
    if (const auto* m = ctx.message<ListRoutees>()) {
      ctx.routees(ctx.lookup(str(m->router())), [](troupe::Context& c, bool answered, std::span<const troupe::Pid> all) {
        std::string text;
        for (const troupe::Pid& p : all) text.append(text.empty() ? "" : ",").append(p.to_string());
        c.respond<SpawnedOn>([&](auto& b) { return CreateSpawnedOnDirect(b, answered ? 0 : -7, text.c_str()); });
      });
    }
  }
};

// The EventStream and pipe_to (ABI 1.10): a listener writes down what it
// hears, a line each, in the words of c_gate.c's.
struct Listener : Answering {
  std::string heard;
  int lines = 0;

  static std::string hex(std::uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
  }
  void note(const std::string& line) {
    heard += line + "\n";
    ++lines;
  }
  void handle(troupe::Context& ctx) override {
    if (const auto* m = ctx.message<Listen>()) {
      std::vector<troupe::type_id> types;
      const std::string names = str(m->names());
      for (std::size_t at = 0; at < names.size();) {
        const std::size_t end = std::min(names.find(',', at), names.size());
        types.push_back(troupe::hash_type_name(std::string_view(names).substr(at, end - at)));
        at = end + 1;
      }
      // A list of one type goes through the typed form, as a plugin writes it.
      const troupe::EventSubscription s = names == "troupe.system.DeadLetterEvent"
                                              ? ctx.subscribe_events<troupe::system::DeadLetterEvent>()
                                              : ctx.subscribe_event_types(types);
      return answer(ctx, 0, std::to_string(s.id));
    }
    if (const auto* m = ctx.message<Unlisten>()) {
      ctx.unsubscribe_events(troupe::EventSubscription{m->id()});
      return answer(ctx, 0, "");
    }
    if (const auto* m = ctx.message<Shout>()) {
      const int n = m->n();
      if (m->name() == nullptr || m->name()->size() == 0) {
        ctx.publish_event<Announce>([&](auto& b) { return CreateAnnounce(b, n); });
      } else {  // an empty table of any type: what the node refuses
        const std::uint8_t empty[12] = {8, 0, 0, 0, 4, 0, 4, 0, 4, 0, 0, 0};
        const int st = troupe::detail::host->event_publish(ctx.raw(), troupe::hash_type_name(m->name()->string_view()),
                                                           empty, sizeof empty, 0);
        if (st != TROUPE_OK) return answer(ctx, st, troupe::detail::host->last_error());
      }
      return answer(ctx, 0, "");
    }
    if (ctx.message<Heard>()) return answer(ctx, lines, heard);
    if (const auto* m = ctx.message<Pipe>()) {
      const int n = m->n();
      ctx.pipe_to<Knock>(ctx.lookup(str(m->to())), [&](auto& b) { return CreateKnock(b, n); },
                         ctx.lookup(str(m->target())), std::chrono::milliseconds(m->timeout_ms()));
      return answer(ctx, 0, "");
    }
    // What was heard: an announcement, a piped reply, or a node event.
    const std::string from = ctx.sender() ? ctx.sender().to_string() : "none";
    if (const auto* a = ctx.message<Announce>()) return note("announce n=" + std::to_string(a->n()));
    if (const auto* e = ctx.message<Entered>()) return note("reply n=" + std::to_string(e->n()) + " from=" + from);
    if (const auto* k = ctx.message<Knock>()) return note("reply n=" + std::to_string(k->n()) + " from=" + from);
    if (const auto* d = ctx.message<troupe::system::DeadLetterEvent>()) {
      // Its fields through the generated header, its PIDs through event().
      const auto e = ctx.event();
      return note("dead_letter who=" + (e && e->who ? e->who.to_string() : "none") + " type=" + hex(d->message_type()) +
                  " reason=" + std::to_string(static_cast<int>(d->reason())));
    }
    const auto e = ctx.event();
    if (!e) return;
    const std::string who = e->who ? e->who.to_string() : "none";
    switch (e->type) {
      case troupe::actor_failed_event_type: return note("failed who=" + who + " text=" + std::string(e->text));
      case troupe::supervision_event_type:
        return note("supervision who=" + who + " reason=" + std::to_string(e->reason) + " text=" + std::string(e->text));
      case troupe::dead_letter_response_type:
        return note("dead_letter_response who=" + who + " reason=" + std::to_string(e->reason) + " from=" + from);
      case troupe::request_timed_out_type:
        return note("timed_out who=" + who + " type=" + hex(e->message_type) + " from=" + from);
      default: return;
    }
  }
};

// The keeper's decider: the reason says what to do.
troupe::Directive by_reason(const troupe::Pid&, std::string_view reason) {
  if (reason.find("resume") != std::string_view::npos) return troupe::Directive::resume;
  if (reason.find("stop") != std::string_view::npos) return troupe::Directive::stop;
  if (reason.find("throw") != std::string_view::npos) throw std::runtime_error("the decider threw");
  return troupe::Directive::restart;
}

}  // namespace

TROUPE_PLUGIN(gate, "1.0.0") {
  plugin.schema(gate_bfbs);
  plugin.kind<Door>("gate.door");
  plugin.kind<Relayer>("gate.relay");
  plugin.kind<Keeper>("gate.keeper", troupe::Props()
                                         .mailbox(troupe::Mailbox::drop_oldest, 64)
                                         .throughput(7)
                                         .supervise(troupe::Supervision::all_for_one)
                                         .restarts(3, std::chrono::seconds(10))
                                         .backoff(std::chrono::milliseconds(5), std::chrono::milliseconds(50))
                                         .decide(&by_reason));
  plugin.kind<Fragile>("gate.fragile");
  plugin.kind<Dispatcher>("gate.dispatcher");
  plugin.kind<Listener>("gate.listener");
}
