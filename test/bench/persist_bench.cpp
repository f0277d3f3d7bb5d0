#include "persist_bench.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "actor/actor_system.hpp"
#include "persistence/actor_journal.hpp"
#include "persistence/pg_journal.hpp"
#include "persistence/sqlite_journal.hpp"
#include "system_generated.h"
#include "test_messages_generated.h"

namespace troupe::bench {

namespace {

using clock = std::chrono::steady_clock;
constexpr std::size_t event_bytes_n = 100;
constexpr type_id event_type = 1;

double seconds_since(clock::time_point t0) { return std::chrono::duration<double>(clock::now() - t0).count(); }

// A folder for one workload, removed with it.
struct scratch {
  std::filesystem::path path;
  scratch() {
    std::string tmpl = persist_state_dir() + "/troupe-persist-bench-XXXXXX";
    path = mkdtemp(tmpl.data());
  }
  ~scratch() { std::filesystem::remove_all(path); }
  std::string db() const { return (path / "state.db").string(); }
};

// The journal (SQLite in a scratch folder, or the PostgreSQL server of
// TROUPE_BENCH_PG) and an actor system with it.
struct world {
  scratch dir;
  std::unique_ptr<persistence::journal> store;
  std::function<std::pair<std::uint64_t, std::uint64_t>()> commits_and_events;
  std::unique_ptr<persistence::actor_journal> service;
  std::unique_ptr<actor_system> sys;
  explicit world(bool postgres = false) {
    if (postgres) {
      persistence::pg_options o;
      o.conninfo = persist_pg_server();
      if (const char* c = std::getenv("TROUPE_BENCH_PG_CONNECTIONS")) o.connections = std::atoi(c);
      auto pg = persistence::pg_journal::open(o);
      for (int i = 0; i < 1000 && !pg->not_ready().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (!pg->not_ready().empty()) {
        std::fprintf(stderr, "persist bench: PostgreSQL: %s\n", pg->not_ready().c_str());
        std::exit(1);
      }
      commits_and_events = [p = pg.get()] { return std::pair{p->stats().commits.load(), p->stats().events.load()}; };
      store = std::move(pg);
    } else {
      persistence::sqlite_options o;
      o.path = dir.db();
      std::string error;
      auto sq = persistence::sqlite_journal::open(o, error);
      if (!sq) {
        std::fprintf(stderr, "persist bench: %s\n", error.c_str());
        std::exit(1);
      }
      commits_and_events = [p = sq.get()] { return std::pair{p->stats().commits.load(), p->stats().events.load()}; };
      store = std::move(sq);
    }
    service = std::make_unique<persistence::actor_journal>(*store);
    system_config cfg;
    sys = std::make_unique<actor_system>(cfg);
    sys->set_journal(service.get());
  }
  ~world() {
    sys.reset();
    store->stop();
  }
};

// Persists one event after another until `until`; counts them, and keeps
// each persist's time from the call to its answer.
struct writer : actor {
  std::string id;
  clock::time_point until;
  std::uint64_t seq = 0;
  std::vector<double>* latencies;
  std::function<void(std::uint64_t)> finished;
  clock::time_point sent;

  void next(context& ctx) {
    if (clock::now() >= until) {
      finished(seq);
      return;
    }
    sent = clock::now();
    ctx.system().journal()->persist(ctx, id, seq, {event_bytes{event_type, std::vector<std::uint8_t>(event_bytes_n, 'e')}},
                                    [this](context& c, const persist_result& r) {
                                      if (latencies) latencies->push_back(seconds_since(sent) * 1e6);
                                      seq = r.last_seq;
                                      next(c);
                                    });
  }
  void receive(context& ctx) override {
    if (ctx.message<system::Started>()) next(ctx);
  }
};

struct result_sink {
  std::mutex mu;
  std::condition_variable cv;
  std::uint64_t events = 0;
  std::size_t done = 0;
  void add(std::uint64_t n) {
    std::lock_guard lock(mu);
    events += n;
    ++done;
    cv.notify_all();
  }
  void wait(std::size_t n) {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return done == n; });
  }
};

struct run_result {
  double rate = 0, per_sync = 0, p99 = 0;
};

run_result run_writers(std::size_t actors, double seconds, bool postgres = false) {
  world w(postgres);
  // Ids of their own: a server's database outlives one run.
  const std::string prefix = "bench-" + std::to_string(::getpid()) + "-" +
                             std::to_string(clock::now().time_since_epoch().count()) + "/";
  result_sink sink;
  std::vector<std::vector<double>> latencies(actors);
  const clock::time_point t0 = clock::now();
  const clock::time_point until = t0 + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds));
  for (std::size_t i = 0; i < actors; ++i)
    w.sys->root().spawn(share(props::from([&, i] {
      auto a = std::make_unique<writer>();
      a->id = prefix + std::to_string(i);
      a->until = until;
      a->latencies = &latencies[i];
      a->finished = [&sink](std::uint64_t n) { sink.add(n); };
      return std::unique_ptr<actor>(std::move(a));
    })));
  sink.wait(actors);
  const double took = seconds_since(t0);
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  run_result r;
  r.rate = static_cast<double>(sink.events) / took;
  const auto [commits, events] = w.commits_and_events();
  r.per_sync = commits ? static_cast<double>(events) / static_cast<double>(commits) : 0;
  r.p99 = all.empty() ? 0 : all[all.size() * 99 / 100];
  return r;
}

// Takes what it recovers, and says when it is through.
struct reader : actor {
  std::promise<std::uint64_t>* done;
  std::uint64_t events = 0;
  void receive(context& ctx) override {
    if (!ctx.message<system::Started>()) return;
    ctx.system().journal()->recover(
        ctx, "bench/long", [this](context&, const recovered& r) { events += r.size == event_bytes_n ? 1 : 0; },
        [this](context&, const persist_result&) { done->set_value(events); });
  }
};

}  // namespace

std::string persist_state_dir() {
  const char* d = std::getenv("TROUPE_BENCH_STATE_DIR");
  return d != nullptr && *d != '\0' ? d : "/var/tmp";
}

std::string file_system_of(const std::string& dir) {
  struct statfs s {};
  if (statfs(dir.c_str(), &s) != 0) return "unknown";
  switch (static_cast<unsigned long>(s.f_type)) {
    case 0xEF53: return "ext4";
    case 0x01021994: return "tmpfs";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x794c7630: return "overlayfs";
    case 0x2FC12FC1: return "zfs";
    default: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(s.f_type));
      return buf;
    }
  }
}

double persist_fsync_baseline_us() {
  scratch dir;
  const std::string path = (dir.path / "f").string();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return 0;
  std::vector<double> us;
  const std::vector<char> data(event_bytes_n, 'e');
  for (int i = 0; i < 300; ++i) {
    const clock::time_point t0 = clock::now();
    if (::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size()) || ::fdatasync(fd) != 0) break;
    us.push_back(seconds_since(t0) * 1e6);
  }
  ::close(fd);
  if (us.empty()) return 0;
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

double persist_1actor() { return run_writers(1, 2.0).rate; }

std::vector<double> persist_1000actors() {
  const run_result r = run_writers(1000, 3.0);
  return {r.rate, r.per_sync, r.p99};
}

std::string persist_pg_server() {
  for (const char* name : {"TROUPE_BENCH_PG", "TROUPE_TEST_PG"})
    if (const char* v = std::getenv(name)) return v;
  return {};
}

std::vector<double> persist_pg_1000actors() {
  const run_result r = run_writers(1000, 3.0, true);
  return {r.rate, r.per_sync, r.p99};
}

double recover_1m_events() {
  world w;
  constexpr std::uint64_t total = 1'000'000, chunk = 8192;
  for (std::uint64_t at = 0; at < total; at += chunk) {
    std::vector<persistence::event> batch;
    const std::uint64_t n = std::min(chunk, total - at);
    for (std::uint64_t i = 0; i < n; ++i) batch.push_back({0, event_type, std::vector<std::uint8_t>(event_bytes_n, 'e')});
    std::promise<void> p;
    w.store->append("bench/long", at, std::move(batch), [&](const persistence::outcome&) { p.set_value(); });
    p.get_future().get();
  }
  std::promise<std::uint64_t> done;
  const clock::time_point t0 = clock::now();
  w.sys->root().spawn(share(props::from([&] {
    auto a = std::make_unique<reader>();
    a->done = &done;
    return std::unique_ptr<actor>(std::move(a));
  })));
  const std::uint64_t got = done.get_future().get();
  const double took = seconds_since(t0);
  return got == total ? static_cast<double>(total) / took : 0;
}

}  // namespace troupe::bench
