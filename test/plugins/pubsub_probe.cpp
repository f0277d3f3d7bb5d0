// Pub-sub kinds for the pub-sub tests and benchmarks, built like a user's
// plugin: a listener that subscribes when told and keeps every Tick it
// gets, the same as a grain, and Blast: publish a run of Ticks.
#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include <troupe/troupe.hpp>
#include "pubsub_messages_generated.h"

namespace {

namespace pp = pubsub_probe;

struct Listener : troupe::Actor {
  std::vector<std::string> publishers;
  std::vector<std::uint64_t> numbers;
  std::string who;

  explicit Listener(troupe::Context& ctx) {
    who = ctx.identity().empty() ? ctx.self().to_string() : std::string(ctx.identity());
  }

  void joined(troupe::Context& ctx, const troupe::Subscribed& s) {
    ctx.respond<pp::Joined>([&](auto& b) { return pp::CreateJoined(b, s.ok(), s.subscribers); });
  }

  void receive(troupe::Context& ctx) override {
    if (const auto* t = ctx.message<pp::Tick>()) {
      publishers.push_back(t->publisher() ? t->publisher()->str() : std::string());
      numbers.push_back(t->n());
    } else if (const auto* j = ctx.message<pp::Join>()) {
      ctx.subscribe(j->topic()->string_view(),
                    [this](troupe::Context& c, const troupe::Subscribed& s) { joined(c, s); });
    } else if (const auto* f = ctx.message<pp::JoinFor>()) {
      ctx.subscribe_actor(f->topic()->string_view(), ctx.resolve(f->who()->string_view()),
                          [this](troupe::Context& c, const troupe::Subscribed& s) { joined(c, s); });
    } else if (const auto* l = ctx.message<pp::Leave>()) {
      ctx.unsubscribe(l->topic()->string_view(),
                      [this](troupe::Context& c, const troupe::Subscribed& s) { joined(c, s); });
    } else if (ctx.message<pp::Seen>()) {
      answer_log(ctx);
    } else if (ctx.message<pp::Passivate>()) {
      answer_log(ctx);
      ctx.passivate();
    } else if (const auto* b = ctx.message<pp::Blast>()) {
      blast(ctx, b);
    }
  }

  void answer_log(troupe::Context& ctx) {
    ctx.respond<pp::Log>([&](auto& b) {
      std::vector<flatbuffers::Offset<flatbuffers::String>> p;
      for (const std::string& s : publishers) p.push_back(b.CreateString(s));
      return pp::CreateLog(b, b.CreateVector(p), b.CreateVector(numbers), b.CreateString(who));
    });
  }

  void blast(troupe::Context& ctx, const pp::Blast* b) {
    const std::string topic = b->topic()->str(), publisher = b->publisher() ? b->publisher()->str() : "";
    std::uint64_t refused = 0;
    const std::uint64_t last = b->from() + b->count();
    for (std::uint64_t n = b->from(); n < last; ++n) {
      const auto tick = [&](auto& fb) { return pp::CreateTickDirect(fb, publisher.c_str(), n); };
      try {
        if (b->report() && n + 1 == last) {
          ctx.publish_reported<pp::Tick>(topic, tick, [refused](troupe::Context& c, const troupe::Report& r) {
            std::vector<std::string> who, why;
            for (const auto& f : r.failures) {
              who.push_back(f.subscriber);
              static const char* names[] = {"stopped", "node_lost", "mailbox_full", "unreachable"};
              why.push_back(f.reason >= 0 && f.reason < 4 ? names[f.reason] : "?");
            }
            c.respond<pp::Blasted>([&](auto& fb) {
              std::vector<flatbuffers::Offset<flatbuffers::String>> w, y;
              for (const auto& s : who) w.push_back(fb.CreateString(s));
              for (const auto& s : why) y.push_back(fb.CreateString(s));
              return pp::CreateBlasted(fb, r.ok(), r.delivered, fb.CreateVector(w), fb.CreateVector(y), refused);
            });
          });
        } else {
          ctx.publish<pp::Tick>(topic, tick);
        }
      } catch (const troupe::Error& e) {
        if (e.status() != TROUPE_ERR_BUSY) throw;
        ++refused;
      }
    }
    if (!b->report())
      ctx.respond<pp::Blasted>([&](auto& fb) { return pp::CreateBlasted(fb, true, 0, 0, 0, refused); });
  }
};

// A subscriber that takes 5 ms over each Tick: its mailbox fills.
struct Slow : Listener {
  using Listener::Listener;
  void receive(troupe::Context& ctx) override {
    if (ctx.message<pp::Tick>()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    Listener::receive(ctx);
  }
};

std::int64_t monotonic_ns() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

// Counts deliveries in its handler, for the benchmark.
struct Counter : troupe::Actor {
  std::uint64_t count = 0;
  std::int64_t first = 0, last = 0;
  std::vector<std::uint64_t> numbers;
  std::vector<std::int64_t> latencies;

  void receive(troupe::Context& ctx) override {
    if (const auto* t = ctx.message<pp::Tick>()) {
      const std::int64_t now = monotonic_ns();
      if (count++ == 0) first = now;
      last = now;
      if (t->sent_ns() != 0) {
        numbers.push_back(t->n());
        latencies.push_back(now - t->sent_ns());
      }
    } else if (const auto* j = ctx.message<pp::Join>()) {
      ctx.subscribe(j->topic()->string_view(), [](troupe::Context& c, const troupe::Subscribed& s) {
        c.respond<pp::Joined>([&](auto& b) { return pp::CreateJoined(b, s.ok(), s.subscribers); });
      });
    } else if (ctx.message<pp::Counts>()) {
      ctx.respond<pp::Counted>([&](auto& b) {
        return pp::CreateCountedDirect(b, count, first, last, &numbers, &latencies);
      });
    } else if (ctx.message<pp::Reset>()) {
      count = 0;
      first = last = 0;
      numbers.clear();
      latencies.clear();
      ctx.respond<pp::Counted>([&](auto& b) { return pp::CreateCounted(b); });
    }
  }
};

// Publishes a run of Ticks for the benchmark: flat out in chunks (a chunk
// a turn, waiting a millisecond when the node says it is busy), or at a
// rate, one timer tick a millisecond.
struct Driver : troupe::Actor {
  std::string topic;
  std::uint64_t total = 0, sent = 0, rate = 0, busy = 0;
  bool stamp = false;
  std::int64_t began = 0;
  troupe::Pid asker;
  troupe::Timer timer{};

  void receive(troupe::Context& ctx) override {
    if (const auto* d = ctx.message<pp::Drive>()) {
      topic = d->topic()->str();
      total = d->count();
      rate = d->rate();
      stamp = d->stamp();
      sent = busy = 0;
      asker = ctx.sender();
      began = monotonic_ns();
      if (rate != 0)
        timer = ctx.send_every<pp::Continue>(std::chrono::milliseconds(1), std::chrono::milliseconds(1), ctx.self(),
                                             [](auto& b) { return pp::CreateContinue(b); });
      else
        ctx.send<pp::Continue>(ctx.self(), [](auto& b) { return pp::CreateContinue(b); });
    } else if (ctx.message<pp::Continue>()) {
      if (sent >= total) return;
      // At a rate: what is due by now; flat out: a chunk.
      std::uint64_t due = rate != 0 ? (static_cast<std::uint64_t>(monotonic_ns() - began) * rate) / 1000000000 + 1
                                    : sent + 4096;
      if (due > total) due = total;
      while (sent < due) {
        try {
          const std::int64_t at = stamp ? monotonic_ns() : 0;
          ctx.publish<pp::Tick>(topic, [&](auto& b) { return pp::CreateTick(b, 0, sent, at); });
          ++sent;
        } catch (const troupe::Error& e) {
          if (e.status() != TROUPE_ERR_BUSY) throw;
          ++busy;
          break;
        }
      }
      if (sent >= total) {
        if (rate != 0) ctx.cancel(timer);
        const double seconds = static_cast<double>(monotonic_ns() - began) / 1e9;
        ctx.send<pp::Driven>(asker, [&](auto& b) { return pp::CreateDriven(b, sent, busy, seconds); });
      } else if (rate == 0) {
        if (sent < due) ctx.send_after<pp::Continue>(std::chrono::milliseconds(1), ctx.self(),
                                                     [](auto& b) { return pp::CreateContinue(b); });
        else ctx.send<pp::Continue>(ctx.self(), [](auto& b) { return pp::CreateContinue(b); });
      }
    }
  }
};

}  // namespace

TROUPE_PLUGIN(pubsub_probe, "1.0.0") {
  plugin.schema(pubsub_probe_bfbs);
  plugin.kind<Listener>("pubsub.listener");
  plugin.grain<Listener>("pubsub.grain");
  plugin.kind<Counter>("pubsub.counter");
  plugin.kind<Slow>("pubsub.slow");
  plugin.kind<Driver>("pubsub.driver");
}
