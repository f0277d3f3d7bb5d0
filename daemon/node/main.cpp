// troupe-node: runs an actor system on the libuv loop of the main thread.
//
// This first cut loads its YAML config, starts the runtime and runs a
// built-in demo workload (a ring of actors passing a token), reporting what
// the runtime does every two seconds until SIGINT or SIGTERM, then stops
// every actor and exits 0.
#include <atomic>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <uv.h>

#include "actor/actor_system.hpp"
#include "node/config.hpp"
#include "plugin/plugin_host.hpp"
#include "demo_generated.h"

namespace {

constexpr int ex_config = 78;
constexpr int ex_usage = 64;

void log_line(const char* level, const std::string& text) {
  std::fprintf(stderr, "%s troupe-node: %s\n", level, text.c_str());
}

// A ring of actors passing tokens around: visible, steady work.
struct ring_member final : troupe::actor {
  std::shared_ptr<troupe::pid> next;
  std::atomic<std::uint64_t>* passes;
  void receive(troupe::context& ctx) override {
    if (auto* t = ctx.message<troupe::demo::Token>()) {
      passes->fetch_add(1, std::memory_order_relaxed);
      std::int64_t hops = t->hops() + 1;
      ctx.send<troupe::demo::Token>(*next, [hops](flatbuffers::FlatBufferBuilder& b) {
        return troupe::demo::CreateToken(b, hops);
      });
    }
  }
};

struct demo {
  std::atomic<std::uint64_t> passes{0};
  std::vector<std::shared_ptr<troupe::pid>> links;
};

void usage() {
  std::fprintf(stderr, "usage: troupe-node --config FILE\n       troupe-node --version\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--version") == 0) {
      std::printf("troupe-node %s\n", TROUPE_VERSION);
      return 0;
    }
    if (std::strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
      config_path = argv[++i];
    } else {
      usage();
      return ex_usage;
    }
  }
  if (config_path.empty()) {
    usage();
    return ex_usage;
  }
  troupe::node::config cfg;
  std::vector<troupe::node::config_error> errors;
  if (!troupe::node::load_config(config_path, cfg, errors)) {
    for (const auto& e : errors) log_line("error", e.to_string());
    return ex_config;
  }

  troupe::event_loop loop;
  troupe::system_config sc;
  sc.address = cfg.name;
  sc.dispatcher.threads = cfg.threads;
  sc.loop = &loop;
  auto sys = std::make_unique<troupe::actor_system>(sc);
  log_line("info", "node '" + cfg.name + "' of cluster '" + cfg.cluster + "' started with " +
                       std::to_string(sys->dispatcher().threads()) + " workers");

  auto plugins = std::make_shared<troupe::plugin::host>(
      *sys, [](troupe::plugin::log_level l, std::string_view line) {
        static const char* const names[] = {"debug", "info", "warning", "error"};
        log_line(names[static_cast<int>(l)], std::string(line));
      });
  for (const std::string& name : cfg.plugins) {
    auto r = plugins->load(std::filesystem::path(cfg.plugin_dir) / (name + ".so"));
    const bool required = std::find(cfg.required_plugins.begin(), cfg.required_plugins.end(),
                                    name) != cfg.required_plugins.end();
    if (!r.ok && required) {
      log_line("error", "required plugin '" + name + "' did not load: stopping");
      sys->shutdown();
      return ex_config;
    }
  }

  // A ring of 1000 actors with 4 tokens going round.
  demo d;
  constexpr int ring_size = 1000;
  std::vector<troupe::pid> members;
  for (int i = 0; i < ring_size; ++i) {
    auto link = std::make_shared<troupe::pid>();
    d.links.push_back(link);
    members.push_back(sys->root().spawn(troupe::share(troupe::props::from([link, &d] {
      auto m = std::make_unique<ring_member>();
      m->next = link;
      m->passes = &d.passes;
      return std::unique_ptr<troupe::actor>(std::move(m));
    }))));
  }
  for (int i = 0; i < ring_size; ++i) *d.links[i] = members[(i + 1) % ring_size];
  for (int t = 0; t < 4; ++t)
    sys->root().send(members[t * ring_size / 4],
                     troupe::make_message<troupe::demo::Token>(
                         [](flatbuffers::FlatBufferBuilder& b) { return troupe::demo::CreateToken(b, 0); }));
  log_line("info", "demo: a ring of " + std::to_string(ring_size) + " actors passing 4 tokens");

  struct state {
    troupe::actor_system* sys;
    demo* d;
    std::uint64_t last = 0;
    std::chrono::steady_clock::time_point last_t = std::chrono::steady_clock::now();
    uv_timer_t report{};
    uv_signal_t sigint{}, sigterm{};
  } st{sys.get(), &d};

  uv_timer_init(loop.uv(), &st.report);
  st.report.data = &st;
  uv_timer_start(&st.report, [](uv_timer_t* h) {
    auto* s = static_cast<state*>(h->data);
    auto now = std::chrono::steady_clock::now();
    std::uint64_t n = s->d->passes.load(std::memory_order_relaxed);
    double secs = std::chrono::duration<double>(now - s->last_t).count();
    char buf[256];
    std::snprintf(buf, sizeof buf, "%zu actors, %.2f M messages/s, %llu dead letters, %zu timers",
                  s->sys->actor_count(), static_cast<double>(n - s->last) / secs / 1e6,
                  static_cast<unsigned long long>(s->sys->stats().dead_letters_total()),
                  s->sys->loop().pending_timers());
    log_line("info", buf);
    s->last = n;
    s->last_t = now;
  }, 2000, 2000);

  auto on_signal = [](uv_signal_t* h, int signum) {
    auto* s = static_cast<state*>(h->data);
    log_line("info", std::string("received ") + (signum == SIGINT ? "SIGINT" : "SIGTERM") +
                         ": stopping every actor");
    // Stop the demo's traffic first, then every actor, then the loop.
    for (auto& l : s->d->links) *l = troupe::pid();
    bool clean = s->sys->shutdown(std::chrono::seconds(10));
    log_line("info", clean ? "all actors stopped" : "some actors had to be stopped by force");
    uv_close(reinterpret_cast<uv_handle_t*>(&s->report), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&s->sigint), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&s->sigterm), nullptr);
    s->sys->loop().stop();
  };
  uv_signal_init(loop.uv(), &st.sigint);
  uv_signal_init(loop.uv(), &st.sigterm);
  st.sigint.data = st.sigterm.data = &st;
  uv_signal_start(&st.sigint, on_signal, SIGINT);
  uv_signal_start(&st.sigterm, on_signal, SIGTERM);

  loop.run();
  sys.reset();
  log_line("info", "stopped");
  return 0;
}
