// Grain kinds for the grain tests and benchmarks, built like a user's
// plugin: a counter grain, a grain whose constructor fails, a counter that
// reports when each activation starts and ends (for the chaos test's
// checker), and a plain actor that calls grains through the SDK
// (Context::grain).
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <fcntl.h>
#include <unistd.h>
#include <stdexcept>
#include <string>
#include <vector>
#include <algorithm>

#include <troupe/troupe.hpp>
#include "grain_messages_generated.h"

namespace {

struct Counter : troupe::Actor {
  std::int64_t value = 0;
  std::string identity, self;
  explicit Counter(troupe::Context& ctx) : identity(ctx.identity()), self(ctx.self().to_string()) {}

  void answer(troupe::Context& ctx) {
    ctx.respond<grains::Value>([&](auto& b) {
      return grains::CreateValueDirect(b, value, identity.c_str(), self.c_str());
    });
  }
  void receive(troupe::Context& ctx) override {
    if (auto a = ctx.message<grains::Add>()) {
      value += a->by();
      answer(ctx);
    } else if (ctx.message<grains::Get>()) {
      answer(ctx);
    } else if (ctx.message<grains::Passivate>()) {
      answer(ctx);
      ctx.passivate();
    } else if (const auto* t = ctx.message<grains::Tick>()) {
      // Its own timer: ticks that must not keep it active.
      ctx.send_every<grains::Get>(std::chrono::milliseconds(t->every_ms()), std::chrono::milliseconds(t->every_ms()),
                                  ctx.self(), [](auto& b) { return grains::CreateGet(b); });
      answer(ctx);
    }
  }
};

// A counter whose activations say when they start and end, on the
// system's monotonic clock, in the file named by TROUPE_GRAIN_LOG: one
// line each, written with O_APPEND ("<ns> start|stop <identity> <pid>"),
// for a checker outside the node. An activation on a node killed with
// kill -9 writes no end: it ended at the kill.
struct Reporting : Counter {
  explicit Reporting(troupe::Context& ctx) : Counter(ctx) { report("start"); }
  ~Reporting() override { report("stop"); }
  void report(const char* what) const {
    const char* path = std::getenv("TROUPE_GRAIN_LOG");
    if (path == nullptr) return;
    timespec t{};
    clock_gettime(CLOCK_MONOTONIC, &t);
    const std::string line = std::to_string(static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec) + " " +
                             what + " " + identity + " " + self + "\n";
    const int fd = ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    [[maybe_unused]] const ssize_t n = ::write(fd, line.data(), line.size());
    ::close(fd);
  }
};

struct Broken : troupe::Actor {
  Broken() { throw std::runtime_error("broken on purpose"); }
  void receive(troupe::Context&) override {}
};

struct Caller : troupe::Actor {
  void receive(troupe::Context& ctx) override {
    const auto* c = ctx.message<grains::CallGrain>();
    if (c == nullptr) return;
    const std::int64_t by = c->by();
    const auto timeout = std::chrono::milliseconds(c->timeout_ms() > 0 ? c->timeout_ms() : 5000);
    ctx.grain(c->kind() ? c->kind()->string_view() : "", c->identity() ? c->identity()->string_view() : "")
        .request<grains::Add>([&](auto& b) { return grains::CreateAdd(b, by); },
                              [](troupe::Context& ctx, const troupe::Reply& r) {
                                if (const auto* v = r.as<grains::Value>()) {
                                  ctx.respond<grains::Value>([&](auto& b) {
                                    return grains::CreateValueDirect(b, v->value(), v->identity()->c_str(),
                                                                     v->pid()->c_str());
                                  });
                                  return;
                                }
                                const std::string why = r.error();
                                ctx.respond<grains::CallFailed>([&](auto& b) {
                                  return grains::CreateCallFailedDirect(b, why.c_str(), static_cast<int>(r.result()));
                                });
                              },
                              timeout);
  }
};

// The benchmark's caller: see Drive in grain_messages.fbs.
struct Driver : troupe::Actor {
  using clock = std::chrono::steady_clock;
  std::string kind, prefix;
  std::int64_t identities = 1, calls = 0, window = 1, sent = 0, done = 0, errors = 0;
  std::string first_error;
  troupe::Pid plain;
  std::vector<double> us;
  clock::time_point start;

  void receive(troupe::Context& ctx) override {
    if (const auto* d = ctx.message<grains::Drive>()) {
      kind = d->kind() ? d->kind()->str() : "";
      prefix = d->prefix() ? d->prefix()->str() : "";
      identities = std::max<std::int64_t>(1, d->identities());
      calls = d->calls();
      window = std::max<std::int64_t>(1, d->window());
      plain = d->plain() && d->plain()->size() ? ctx.resolve(d->plain()->string_view()) : troupe::Pid();
      sent = done = errors = 0;
      first_error.clear();
      us.clear();
      us.reserve(static_cast<std::size_t>(calls));
      start = clock::now();
      asker = ctx.sender();
      for (std::int64_t i = 0; i < window && sent < calls; ++i) next(ctx);
    } else if (ctx.message<grains::Value>() && plain) {
      // A plain request's reply: the oldest in flight (one link keeps order).
      finish_one(ctx, sent_at[static_cast<std::size_t>(done % window)], true, {});
    }
  }

  void next(troupe::Context& ctx) {
    const auto t0 = clock::now();
    if (plain) {
      sent_at.resize(static_cast<std::size_t>(window));
      sent_at[static_cast<std::size_t>(sent % window)] = t0;
      ++sent;
      ctx.request<grains::Add>(plain, [](auto& b) { return grains::CreateAdd(b, 1); });
      return;
    }
    const std::string id = prefix + std::to_string(sent % identities);
    ++sent;
    ctx.grain(kind, id).request<grains::Add>([](auto& b) { return grains::CreateAdd(b, 1); },
                                             [this, t0](troupe::Context& c, const troupe::Reply& r) {
                                               finish_one(c, t0, r.ok(), r.ok() ? std::string() : r.error());
                                             },
                                             std::chrono::seconds(30));
  }

  void finish_one(troupe::Context& ctx, clock::time_point t0, bool ok, const std::string& why) {
    us.push_back(std::chrono::duration<double, std::micro>(clock::now() - t0).count());
    ++done;
    if (!ok && errors++ == 0) first_error = why;
    if (sent < calls) next(ctx);
    if (done < calls) return;
    const double seconds = std::chrono::duration<double>(clock::now() - start).count();
    std::sort(us.begin(), us.end());
    const double p50 = us[us.size() / 2], p99 = us[std::min(us.size() - 1, us.size() * 99 / 100)];
    const auto report = [&](auto& b) {
      return grains::CreateReportDirect(b, calls, errors, seconds, p50, p99, first_error.c_str());
    };
    if (plain) ctx.send<grains::Report>(asker, report);
    else ctx.respond<grains::Report>(report);
  }

  troupe::Pid asker;
  std::vector<clock::time_point> sent_at;
};

}  // namespace

TROUPE_PLUGIN(grains, "1.0.0") {
  plugin.schema(grains_bfbs);
  plugin.grain<Counter>("grains.counter");
  plugin.grain<Broken>("grains.broken");
  // The same counter, passivated after one second without messages.
  plugin.grain<Counter>("grains.brief", std::chrono::seconds(1));
  plugin.grain<Reporting>("grains.chaos");
  plugin.kind<Caller>("grains.caller");
  plugin.kind<Driver>("grains.driver");
}
