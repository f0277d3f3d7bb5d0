// troupe-bench: the workloads of the foundation issue, each run several
// times; prints the median as `bench=<name> value=<number> unit=<unit>`.
//
//   troupe-bench [--only PREFIX[,PREFIX...]] [--runs N]   (NAME$: that name only)
//
// TROUPE_BENCH_THREADS, TROUPE_BENCH_SPIN (microseconds) and
// TROUPE_BENCH_RUN_HELD (0/1) override the dispatcher's workers, spin time
// and held turns, for exploring; the printed lines use the node's defaults.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <future>

#include "actor/actor_system.hpp"
#include "actor/router.hpp"
#include "admin_bench.hpp"
#include "persist_bench.hpp"
#include "swim_bench.hpp"

using namespace troupe::bench;
#include "modules/metrics/metrics_server.hpp"
#include "node/overload.hpp"
#include "plugin/plugin_host.hpp"
#include "remote/transport.hpp"
#include "system_generated.h"
#include "test_messages_generated.h"

using namespace troupe;
using clock_type = std::chrono::steady_clock;

namespace {

// The clock stops inside the actor that sees the end; the main thread waits
// on this to collect it.
class finish_line {
 public:
  void cross() {
    end_ = clock_type::now();
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
  }
  clock_type::time_point wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return done_; });
    return end_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  clock_type::time_point end_;
};

double seconds(clock_type::duration d) { return std::chrono::duration<double>(d).count(); }

// The busy-polling window of the *_busypoll workloads, in microseconds.
constexpr int busy_poll_us = 100;

system_config bench_config() {
  system_config cfg;
  cfg.dispatcher.threads = 0;  // one per core, as a node runs
  if (const char* t = std::getenv("TROUPE_BENCH_THREADS")) cfg.dispatcher.threads = static_cast<unsigned>(std::atoi(t));
  if (const char* t = std::getenv("TROUPE_BENCH_SPIN")) cfg.dispatcher.spin = std::chrono::microseconds(std::atoi(t));
  if (const char* t = std::getenv("TROUPE_BENCH_RUN_HELD")) cfg.dispatcher.run_held = std::atoi(t) != 0;
  return cfg;
}

// Counts `expected` Done messages, then crosses the line.
props_ptr collector(std::int64_t expected, finish_line& line) {
  return share(props::from([expected, &line] {
    struct c : actor {
      std::int64_t left;
      finish_line& line;
      c(std::int64_t n, finish_line& l) : left(n), line(l) {}
      void receive(context& ctx) override {
        if (ctx.message<test::Done>() && --left == 0) line.cross();
      }
    };
    return std::unique_ptr<actor>(new c(expected, line));
  }));
}

void send_done(context& ctx, const pid& to) {
  ctx.send<test::Done>(to, [](flatbuffers::FlatBufferBuilder& b) { return test::CreateDone(b, 1); });
}

message num(std::int64_t n) {
  return make_message<test::Num>([&](flatbuffers::FlatBufferBuilder& b) { return test::CreateNum(b, n); });
}

// ---------------------------------------------------------------- ping-pong

// What a node adds when it is watched: its Prometheus endpoint scraped ten
// times a second, and optionally the players' handler-time histogram.
enum class watched { no, scraped, histogram };

// Fetches a URL path over plain HTTP/1.0 and reads the whole answer.
void http_get(int port, const char* path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string req = std::string("GET ") + path + " HTTP/1.0\r\n\r\n";
    if (::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[16384];
      while (::read(fd, buf, sizeof buf) > 0) {
      }
    }
  }
  ::close(fd);
}

double pingpong(int pairs, watched watch = watched::no) {
  const std::int64_t total = 2'000'000;
  const std::int64_t per_pair = total / pairs;
  actor_system sys(bench_config());
  finish_line line;
  pid driver = sys.root().spawn(collector(pairs, line));
  node::kind_histograms histograms({"player"});
  std::unique_ptr<node::metrics_server> exposed;
  std::atomic<bool> scraping{false};
  std::thread scraper;
  if (watch != watched::no) {
    exposed = std::make_unique<node::metrics_server>(
        "127.0.0.1:0", node::http_limits{},
        [runtime = node::runtime_metrics(sys, sys.loop()),
         times = node::histogram_metrics(histograms)](std::vector<prometheus::MetricFamily>& out) {
          runtime(out);
          times(out);
        });
    scraping = true;
    scraper = std::thread([&, port = exposed->port()] {
      while (scraping.load()) {
        http_get(port, "/metrics");
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  }

  struct player : actor {
    std::shared_ptr<pid> partner;
    pid driver;
    void receive(context& ctx) override {
      if (auto* n = ctx.message<test::Num>()) {
        std::int64_t v = n->n();
        if (v > 1)
          ctx.send<test::Num>(*partner, [v](flatbuffers::FlatBufferBuilder& b) {
            return test::CreateNum(b, v - 1);
          });
        else
          send_done(ctx, driver);
      }
    }
  };
  std::vector<pid> firsts;
  std::vector<std::shared_ptr<pid>> slots;
  for (int i = 0; i < pairs; ++i) {
    auto slot_a = std::make_shared<pid>(), slot_b = std::make_shared<pid>();
    auto make = [&](std::shared_ptr<pid> slot) {
      props p = props::from([slot, driver] {
        auto p = std::make_unique<player>();
        p->partner = slot;
        p->driver = driver;
        return std::unique_ptr<actor>(std::move(p));
      });
      p.kind = "player";
      if (watch == watched::histogram) histograms.instrument(p.kind, p);
      return share(std::move(p));
    };
    pid a = sys.root().spawn(make(slot_a));
    pid b = sys.root().spawn(make(slot_b));
    *slot_a = b;
    *slot_b = a;
    firsts.push_back(a);
    slots.push_back(slot_a);
    slots.push_back(slot_b);
  }
  std::vector<message> starts;
  for (int i = 0; i < pairs; ++i) starts.push_back(num(per_pair));
  auto start = clock_type::now();
  for (int i = 0; i < pairs; ++i) sys.root().send(firsts[i], std::move(starts[i]));
  auto end = line.wait();
  scraping = false;
  if (scraper.joinable()) scraper.join();
  exposed.reset();
  sys.shutdown();
  for (auto& s : slots) *s = pid();  // break the pair cycles
  return static_cast<double>(per_pair * pairs) / seconds(end - start);
}

// The same workload with both players in a plugin (test/plugins/pingpong):
// every message crosses the C ABI twice (receive, then send).
double plugin_pingpong() {
  const std::int64_t total = 2'000'000;
  actor_system sys(bench_config());
  auto host = std::make_shared<plugin::host>(sys, [](plugin::log_level, std::string_view) {});
  if (!host->load(std::string(TROUPE_TEST_PLUGINS) + "/pingpong.so").ok) {
    std::fprintf(stderr, "troupe-bench: cannot load the pingpong plugin\n");
    std::exit(1);
  }
  props_ptr player = host->kind("bench.player");
  finish_line line;
  std::atomic<bool> ready{false};
  pid a_pid, b_pid;
  pid driver = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<system::Started>()) {
      a_pid = ctx.spawn(player);
      b_pid = ctx.spawn(player);
      ready.store(true);
    } else if (ctx.message<test::Done>()) {
      line.cross();
    }
  })));
  while (!ready.load()) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  envelope* e = for_delivery(num(total));
  b_pid.get()->retain();
  e->sender = b_pid.get();  // the first ball comes "from" b, so a learns its partner
  auto start = clock_type::now();
  a_pid.get()->send_user(e);
  auto end = line.wait();
  sys.shutdown();
  return static_cast<double>(total) / seconds(end - start);
}

// ---------------------------------------------------------------- the machine

// Two threads pass one cache line back and forth; nanoseconds per round
// trip. Not a workload of ours: the state of the machine the others ran on.
// Every workload with messages between cores moves with it, and on a
// virtual machine it can change several times over from minute to minute.
double cross_core_rtt() {
  constexpr int trips = 1'000'000;
  alignas(64) std::atomic<int> ball{0};
  std::thread other([&] {
    for (int i = 0; i < trips; ++i) {
      while (ball.load(std::memory_order_acquire) != 1) {
      }
      ball.store(0, std::memory_order_release);
    }
  });
  const auto start = clock_type::now();
  for (int i = 0; i < trips; ++i) {
    ball.store(1, std::memory_order_release);
    while (ball.load(std::memory_order_acquire) != 0) {
    }
  }
  const auto end = clock_type::now();
  other.join();
  return seconds(end - start) * 1e9 / trips;
}

// ---------------------------------------------------------------- fan-in

// `senders` actors each send `each` Num messages to `target` as fast as they
// can; returns messages per second until `line` is crossed. Shuts `sys` down.
double push_from_senders(actor_system& sys, const pid& target, int senders, std::int64_t each,
                         finish_line& line) {
  auto sender = share(props::from_fn([target, each](context& ctx) {
    if (ctx.message<test::Text>()) {
      for (std::int64_t i = 0; i < each; ++i)
        ctx.send<test::Num>(target, [i](flatbuffers::FlatBufferBuilder& b) { return test::CreateNum(b, i); });
    }
  }));
  std::vector<pid> ss;
  std::vector<message> gos;
  for (int i = 0; i < senders; ++i) {
    ss.push_back(sys.root().spawn(sender));
    gos.push_back(make_message<test::Text>(
        [](flatbuffers::FlatBufferBuilder& b) { return test::CreateTextDirect(b, "go"); }));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto start = clock_type::now();
  for (int i = 0; i < senders; ++i) sys.root().send(ss[i], std::move(gos[i]));
  auto end = line.wait();
  sys.shutdown();
  return static_cast<double>(senders * each) / seconds(end - start);
}

double fanin() {
  constexpr int senders = 100;
  constexpr std::int64_t each = 30'000;
  actor_system sys(bench_config());
  finish_line line;
  pid sink = sys.root().spawn(share(props::from([&line] {
    struct sink : actor {
      std::int64_t left = senders * each;
      finish_line& line;
      explicit sink(finish_line& l) : line(l) {}
      void receive(context& ctx) override {
        if (ctx.message<test::Num>() && --left == 0) line.cross();
      }
    };
    return std::unique_ptr<actor>(new sink(line));
  })));
  return push_from_senders(sys, sink, senders, each, line);
}

// ---------------------------------------------------------------- routers

// Four sender actors push 2,000,000 messages through a round-robin pool of
// four routees; each routee reports when it has its quarter.
double router_roundrobin() {
  constexpr int senders = 4;
  constexpr int routees = 4;
  constexpr std::int64_t each = 500'000;
  constexpr std::int64_t per_routee = senders * each / routees;
  actor_system sys(bench_config());
  finish_line line;
  pid driver = sys.root().spawn(collector(routees, line));
  props_ptr routee = share(props::from([driver] {
    struct counter : actor {
      std::int64_t left = per_routee;
      pid driver;
      explicit counter(pid d) : driver(std::move(d)) {}
      void receive(context& ctx) override {
        if (ctx.message<test::Num>() && --left == 0) send_done(ctx, driver);
      }
    };
    return std::unique_ptr<actor>(new counter(driver));
  }));
  pid router = sys.root().spawn(routers::pool(routing::round_robin, routee, routees));
  return push_from_senders(sys, router, senders, each, line);
}

// The same workload through the SDK: senders, router and routees are a
// plugin's (test/plugins/pingpong.cpp), the routees' Done goes to a
// collector of the bench's own.
double plugin_router_roundrobin() {
  constexpr int routees = 4;
  constexpr std::int64_t total = 4 * 500'000;
  actor_system sys(bench_config());
  auto host = std::make_shared<plugin::host>(sys, [](plugin::log_level, std::string_view) {});
  if (!host->load(std::string(TROUPE_TEST_PLUGINS) + "/pingpong.so").ok) {
    std::fprintf(stderr, "troupe-bench: cannot load the pingpong plugin\n");
    std::exit(1);
  }
  finish_line line;
  sys.root().spawn_named(collector(routees, line), "bench-rr-collector");
  const pid driver = sys.root().spawn_named(host->kind("bench.rr_driver"), "bench-rr-driver").pid;
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto start = clock_type::now();
  sys.root().send(driver, make_message<test::Text>(
                              [](flatbuffers::FlatBufferBuilder& b) { return test::CreateTextDirect(b, "go"); }));
  auto end = line.wait();
  sys.shutdown();
  return static_cast<double>(total) / seconds(end - start);
}

// ---------------------------------------------------------------- spawning

// The spawning loop runs inside an actor, as spawns do in a node (an actor,
// or the admin API on the loop thread); the actors are top-level ones.
props_ptr spawner(std::int64_t n, props_ptr child, std::vector<pid>* keep) {
  return share(props::from_fn([n, child, keep](context& ctx) {
    if (!ctx.message<test::Text>()) return;
    root_context& root = ctx.system().root();
    if (keep != nullptr)
      for (std::int64_t i = 0; i < n; ++i) (*keep)[i] = root.spawn(child);
    else
      for (std::int64_t i = 0; i < n; ++i) root.spawn(child);
  }));
}

message go() {
  return make_message<test::Text>(
      [](flatbuffers::FlatBufferBuilder& b) { return test::CreateTextDirect(b, "go"); });
}

double spawn_oneshot() {
  constexpr std::int64_t n = 1'000'000;
  actor_system sys(bench_config());
  finish_line line;
  pid driver = sys.root().spawn(collector(n, line));
  auto oneshot = share(props::from_fn([driver](context& ctx) {
    if (ctx.message<system::Started>()) {
      send_done(ctx, driver);
      ctx.stop(ctx.self());
    }
  }));
  pid s = sys.root().spawn(spawner(n, oneshot, nullptr));
  message m = go();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto start = clock_type::now();
  sys.root().send(s, std::move(m));
  auto end = line.wait();
  sys.shutdown();
  return static_cast<double>(n) / seconds(end - start);
}

long rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6)) * 1024;
  return 0;
}

struct idle_result {
  double rate;
  double bytes_per_actor;
};

// Memory is measured in a fresh process: one that already ran other
// workloads reuses their freed memory and would report too little.
idle_result spawn_idle_in_child() {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return {0, 0};
  self[n] = 0;
  std::string cmd = "exec '" + std::string(self) + "' --child spawn_idle";
  FILE* child = popen(cmd.c_str(), "r");
  idle_result r{0, 0};
  if (child == nullptr || std::fscanf(child, "%lf %lf", &r.rate, &r.bytes_per_actor) != 2)
    std::fprintf(stderr, "troupe-bench: the spawn_idle child process failed\n");
  if (child != nullptr) pclose(child);
  return r;
}

idle_result spawn_idle() {
  constexpr std::int64_t n = 1'000'000;
  actor_system sys(bench_config());
  finish_line line;
  pid driver = sys.root().spawn(collector(n, line));
  auto idle = share(props::from_fn([driver](context& ctx) {
    if (ctx.message<system::Started>()) send_done(ctx, driver);
  }));
  std::vector<pid> handles(n);  // allocated and touched before the first reading
  for (auto& h : handles) h = pid();
  pid s = sys.root().spawn(spawner(n, idle, &handles));
  message m = go();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  long before = rss_bytes();
  auto start = clock_type::now();
  sys.root().send(s, std::move(m));
  auto end = line.wait();
  // What the actors hold, not the Done messages that queued at the driver
  // on the way (more of them the faster the spawning): the node's
  // housekeeper hands free message memory back within 2 s.
  node::housekeeper::once();
  long after = rss_bytes();
  sys.shutdown(std::chrono::seconds(60));
  return {static_cast<double>(n) / seconds(end - start),
          static_cast<double>(after - before) / static_cast<double>(n)};
}

// ---------------------------------------------------------------- request/response

props_ptr echo_props() {
  return share(props::from_fn([](context& ctx) {
    if (ctx.message<test::Num>()) ctx.respond(ctx.current());
  }));
}

double percentile(std::vector<double>& v, double p) {
  std::sort(v.begin(), v.end());
  std::size_t i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

struct latency {
  double p50, p99;
};

latency reqresp_async() {
  constexpr int warmup = 10'000, timed = 100'000;
  actor_system sys(bench_config());
  finish_line line;
  pid echo = sys.root().spawn(echo_props());
  std::vector<double> us;
  us.reserve(timed);
  struct client : actor {
    pid echo;
    int left = warmup + timed;
    std::vector<double>* us;
    finish_line* line;
    clock_type::time_point t0;
    void next(context& ctx) {
      t0 = clock_type::now();
      future f = ctx.request_future(echo, num(left), std::chrono::seconds(10));
      ctx.reenter_after(f, [this](context& c, const future_result&) {
        auto t1 = clock_type::now();
        if (left <= timed) us->push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        if (--left == 0) line->cross();
        else next(c);
      });
    }
    void receive(context& ctx) override {
      if (ctx.message<test::Text>()) next(ctx);
    }
  };
  pid c = sys.root().spawn(share(props::from([&] {
    auto p = std::make_unique<client>();
    p->echo = echo;
    p->us = &us;
    p->line = &line;
    return std::unique_ptr<actor>(std::move(p));
  })));
  sys.root().send(c, make_message<test::Text>(
                         [](flatbuffers::FlatBufferBuilder& b) { return test::CreateTextDirect(b, "go"); }));
  line.wait();
  sys.shutdown();
  return {percentile(us, 0.50), percentile(us, 0.99)};
}

latency reqresp_blocking() {
  constexpr int warmup = 2'000, timed = 20'000;
  actor_system sys(bench_config());
  pid echo = sys.root().spawn(echo_props());
  std::vector<double> us;
  us.reserve(timed);
  for (int i = 0; i < warmup + timed; ++i) {
    message m = num(i);
    auto t0 = clock_type::now();
    future f = sys.root().request_future(echo, std::move(m), std::chrono::seconds(10));
    f.wait_for(std::chrono::seconds(10));
    auto t1 = clock_type::now();
    if (i >= warmup) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  sys.shutdown();
  return {percentile(us, 0.50), percentile(us, 0.99)};
}

// ---------------------------------------------------------------- timers

// Arms 100,000 one-shot scheduler timers (a message to an actor, due in a
// minute), lets the loop take them in, then cancels them all. Reports the
// caller's nanoseconds per timer for arm + cancel. (A live timer is one
// 64-byte pool block plus a 16-byte heap slot on the loop.)
double timers_100k() {
  constexpr int n = 100'000;
  actor_system sys(bench_config());
  pid target = sys.root().spawn(share(props::from_fn([](context&) {})));
  message m = num(1);
  std::vector<timer_handle> hs;
  hs.reserve(n);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto t0 = clock_type::now();
  scheduler sched = sys.scheduler();
  for (int i = 0; i < n; ++i) hs.push_back(sched.send_once(std::chrono::seconds(60), target, m));
  auto t1 = clock_type::now();
  // The loop takes them in on its next housekeeping tick.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto t2 = clock_type::now();
  for (timer_handle& h : hs) h.cancel();
  auto t3 = clock_type::now();
  sys.shutdown();
  const double ns = std::chrono::duration<double, std::nano>((t1 - t0) + (t3 - t2)).count();
  return ns / n;
}

// ---------------------------------------------------------------- EventStream

// What thousands of subscribers cost: 10,000 actors subscribe to the
// EventStream one after another, each with a list of event types (as a
// plugin actor's subscribe_events does), 1,000 events of a type none of
// them wants are published, then each unsubscribes. Caller's µs per
// subscribe, per publish and per unsubscribe.
struct events_result {
  double subscribe_us, publish_us, unsubscribe_us;
};

events_result events_10k() {
  constexpr int n = 10'000, events = 1'000;
  actor_system sys(bench_config());
  std::vector<pid> actors;
  actors.reserve(n);
  props_ptr quiet = share(props::from_fn([](context&) {}));
  for (int i = 0; i < n; ++i) actors.push_back(sys.root().spawn(quiet));
  std::vector<type_id> wanted{type_id_of<system::DeadLetterEvent>(), type_id_of<system::ActorFailedEvent>()};
  std::vector<std::uint64_t> ids;
  ids.reserve(n);
  event_stream& stream = sys.events();
  const auto t0 = clock_type::now();
  for (const pid& a : actors) ids.push_back(stream.subscribe(a, wanted));
  const auto t1 = clock_type::now();
  for (int i = 0; i < events; ++i) stream.publish(num(i));
  const auto t2 = clock_type::now();
  for (std::uint64_t id : ids) stream.unsubscribe(id);
  const auto t3 = clock_type::now();
  sys.shutdown();
  const auto us = [](auto d) { return std::chrono::duration<double, std::micro>(d).count(); };
  return {us(t1 - t0) / n, us(t2 - t1) / events, us(t3 - t2) / n};
}

// ---------------------------------------------------------------- remote

// One node with the node-to-node transport on 127.0.0.1, as troupe-node
// sets it up: bound before the actor system, served from the loop thread.
struct remote_node {
  event_loop loop;
  std::unique_ptr<remote::transport> t;
  std::unique_ptr<actor_system> sys;

  // `busy_us` > 0: the event loop polls, and idle workers look for work,
  // that long before sleeping (dispatcher.busy_poll_us of a node).
  remote_node(const char* name, bool tls, int busy_us = 0) {
    remote::options o;
    o.insecure_plaintext = !tls;
    o.self.cluster = "bench";
    o.self.node = name;
    o.creds.secrets = {"a secret for the benchmark nodes"};
    o.listen = "127.0.0.1:0";
    o.log = [](log_level level, const std::string& line) {
      if (level == log_level::warning || level == log_level::error)
        std::fprintf(stderr, "troupe-bench: %s\n", line.c_str());
    };
    t = std::make_unique<remote::transport>(loop, o);
    std::string error;
    if (!t->bind(error)) {
      std::fprintf(stderr, "troupe-bench: %s\n", error.c_str());
      std::exit(1);
    }
    system_config c = bench_config();
    c.address = t->address();
    c.loop = &loop;
    if (busy_us > 0) {
      const std::chrono::microseconds window(busy_us);
      c.dispatcher.spin = std::max(c.dispatcher.spin, window);
      loop.busy_poll(window);
    }
    loop.start_thread();
    sys = std::make_unique<actor_system>(c);
    on_loop([this] { t->start(*sys); });
  }
  ~remote_node() {
    on_loop([this] { t->shutdown(); });
    sys->shutdown();
    loop.stop();
    sys.reset();
    t.reset();
  }
  void on_loop(std::function<void()> fn) {
    std::promise<void> done;
    loop.post([&] {
      fn();
      done.set_value();
    });
    done.get_future().wait();
  }
};

// The server process: an echo actor named "echo" (the node's own, or with
// `plugin` the echo plugin's kind, whose turns run on the workers only);
// prints its PID's address, then serves until SIGTERM.
int remote_server(bool tls, bool plugin = false, int busy_us = 0, bool on_loop = false) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before any thread starts
  {
    remote_node server("bench-server", tls, busy_us);
    std::shared_ptr<plugin::host> host;
    if (plugin) {
      host = std::make_shared<plugin::host>(*server.sys, [](plugin::log_level, std::string_view) {});
      if (!host->load(TROUPE_ECHO_PLUGIN).ok) {
        std::fprintf(stderr, "troupe-bench: cannot load %s\n", TROUPE_ECHO_PLUGIN);
        return 1;
      }
      props_ptr echo = host->kind("echo");
      if (on_loop) {
        // What kinds.echo.on_event_loop: true does in a node.
        auto p = std::make_shared<props>(*echo);
        p->on_event_loop = true;
        echo = p;
      }
      server.sys->root().spawn_named(echo, "echo");
    } else {
      server.sys->root().spawn_named(echo_props(), "echo");
    }
    std::printf("%s\n", server.t->address().c_str());
    std::fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
  }
  return 0;
}

// Starts this program as the server process; returns its pid and address.
pid_t start_remote_server(std::string& address, bool tls, bool plugin = false, bool busy = false,
                          bool on_loop = false) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  int fds[2];
  if (n <= 0 || pipe(fds) != 0) return -1;
  self[n] = 0;
  pid_t child = fork();
  if (child == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    execl(self, self, "--child",
          on_loop ? "remote_server_plugin_busy_on_loop"
          : busy  ? "remote_server_plugin_busy"
          : plugin ? "remote_server_plugin"
          : tls    ? "remote_server_tls"
                   : "remote_server",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  char line[256] = {0};
  std::size_t got = 0;
  while (got < sizeof line - 1) {
    ssize_t r = read(fds[0], line + got, 1);
    if (r <= 0 || line[got] == '\n') break;
    ++got;
  }
  close(fds[0]);
  line[got] = 0;
  address = line;
  return child;
}

// The CPU time all threads of process `p` have used, in nanoseconds.
std::int64_t cpu_ns(pid_t p) {
  std::int64_t total = 0;
  const std::string tasks = "/proc/" + std::to_string(p) + "/task";
  for (const auto& t : std::filesystem::directory_iterator(tasks)) {
    std::ifstream f(t.path() / "schedstat");
    std::int64_t ns = 0;
    if (f >> ns) total += ns;
  }
  return total;
}

// What the remote round trips are measured against: the same exchange
// (160 bytes out, 192 back, one in flight, 500 warm-up + 5,000 timed) over
// bare loopback TCP between two processes, each waiting in epoll as a node's
// loop does. No actor runtime, no framing: the floor on this machine.
struct tcp_result {
  double p50, p99, cpu_us;  // cpu_us: of both processes, per round trip
};

// `busy`: each side polls its socket for up to busy_poll_us before it
// sleeps in epoll, as a node with dispatcher.busy_poll_us does.
tcp_result loopback_tcp_rtt(bool busy = false) {
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      listen(listener, 1) != 0 || getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    std::perror("troupe-bench: loopback listener");
    std::exit(1);
  }
  const auto ping_pong = [busy](int s, std::size_t send, bool first) {
    const int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const int ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    char buf[512] = {};
    return [=](auto&& on_round) mutable {
      for (bool go = first;; go = true) {
        if (go && write(s, buf, send) != static_cast<ssize_t>(send)) break;
        int n = 0;
        if (busy) {
          const auto until = clock_type::now() + std::chrono::microseconds(busy_poll_us);
          while ((n = epoll_wait(ep, &ev, 1, 0)) == 0 && clock_type::now() < until) {
          }
        }
        if (n == 0) n = epoll_wait(ep, &ev, 1, -1);
        if (n != 1 || read(s, buf, sizeof buf) <= 0) break;
        if (!on_round()) break;
      }
      close(ep);
    };
  };
  const pid_t child = fork();
  if (child == 0) {
    const int s = accept(listener, nullptr, nullptr);
    ping_pong(s, 192, false)([] { return true; });
    _exit(0);
  }
  close(listener);
  const int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror("troupe-bench: loopback connect");
    std::exit(1);
  }
  constexpr int warmup = 500, timed = 5'000;
  std::vector<double> us;
  us.reserve(timed);
  int round = 0;
  std::int64_t cpu_start = 0, cpu_end = 0;
  auto t0 = clock_type::now();
  ping_pong(s, 160, true)([&] {
    const auto t1 = clock_type::now();
    if (round == warmup) cpu_start = cpu_ns(getpid()) + cpu_ns(child);
    if (round++ >= warmup) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    t0 = t1;
    if (round < warmup + timed) return true;
    cpu_end = cpu_ns(getpid()) + cpu_ns(child);
    return false;
  });
  close(s);
  waitpid(child, nullptr, 0);
  return {percentile(us, 0.50), percentile(us, 0.99), (cpu_end - cpu_start) / 1e3 / timed};
}

struct remote_result {
  double p50, p99, w1, w1000, cpu_us;  // cpu_us: of both processes, per timed round trip
};

// Round trips to the echo actor of another process: one in flight (500
// warm-up, 5,000 timed), then a window of 1,000 until 100,000 were sent;
// over TLS 1.3 (the default) or plaintext.
remote_result remote_echo(bool tls, bool plugin = false, bool busy = false, bool on_loop = false) {
  std::string address;
  const pid_t server = start_remote_server(address, tls, plugin, busy, on_loop);
  if (server <= 0 || address.empty()) {
    std::fprintf(stderr, "troupe-bench: the remote server process did not start\n");
    std::exit(1);
  }
  remote_result out{};
  {
    remote_node client("bench-client", tls, busy ? busy_poll_us : 0);
    pid echo = client.sys->resolve(address + "/echo");

    constexpr int warmup = 500, timed = 5'000;
    std::vector<double> us;
    us.reserve(timed);
    finish_line rtt_done;
    clock_type::time_point timed_start;
    std::int64_t rtt_cpu = 0;  // at the start, then what the timed round trips used
    struct rtt_client : actor {
      pid echo;
      int left = warmup + timed;
      std::vector<double>* us;
      finish_line* line;
      clock_type::time_point* timed_start;
      std::int64_t* cpu_start;
      pid_t server;
      clock_type::time_point t0;
      void next(context& ctx) {
        if (left == timed) *cpu_start = cpu_ns(getpid()) + cpu_ns(server);
        t0 = clock_type::now();
        if (left == timed) *timed_start = t0;
        ctx.request(echo, num(left));
      }
      void receive(context& ctx) override {
        if (ctx.message<test::Text>()) return next(ctx);
        if (!ctx.message<test::Num>()) return;
        const auto t1 = clock_type::now();
        if (left <= timed) us->push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        if (--left == 0) {
          *cpu_start = cpu_ns(getpid()) + cpu_ns(server) - *cpu_start;
          line->cross();
        } else {
          next(ctx);
        }
      }
    };
    pid c = client.sys->root().spawn(share(props::from([&] {
      auto p = std::make_unique<rtt_client>();
      p->echo = echo;
      p->us = &us;
      p->line = &rtt_done;
      p->timed_start = &timed_start;
      p->cpu_start = &rtt_cpu;
      p->server = server;
      return std::unique_ptr<actor>(std::move(p));
    })));
    client.sys->root().send(c, make_message<test::Text>([](flatbuffers::FlatBufferBuilder& b) {
                              return test::CreateTextDirect(b, "go");
                            }));
    const auto rtt_end = rtt_done.wait();
    out.w1 = timed / seconds(rtt_end - timed_start);
    out.p50 = percentile(us, 0.50);
    out.p99 = percentile(us, 0.99);
    out.cpu_us = rtt_cpu / 1e3 / timed;

    constexpr std::int64_t total = 100'000, window = 1'000;
    finish_line window_done;
    struct window_client : actor {
      pid echo;
      std::int64_t sent = 0, received = 0;
      finish_line* line;
      void receive(context& ctx) override {
        if (ctx.message<test::Text>()) {
          while (sent < window) ctx.request(echo, num(++sent));
        } else if (ctx.message<test::Num>()) {
          if (++received == total) line->cross();
          else if (sent < total) ctx.request(echo, num(++sent));
        }
      }
    };
    pid w = client.sys->root().spawn(share(props::from([&] {
      auto p = std::make_unique<window_client>();
      p->echo = echo;
      p->line = &window_done;
      return std::unique_ptr<actor>(std::move(p));
    })));
    const auto start = clock_type::now();
    client.sys->root().send(w, make_message<test::Text>([](flatbuffers::FlatBufferBuilder& b) {
                              return test::CreateTextDirect(b, "go");
                            }));
    const auto end = window_done.wait();
    out.w1000 = 2.0 * total / seconds(end - start);
  }
  kill(server, SIGTERM);
  int status = 0;
  waitpid(server, &status, 0);
  return out;
}

// ---------------------------------------------------------------- driver

struct options {
  std::string only;
  int runs = 5;
  bool each = false;  // --each: every run's value too, on stderr
};

// --only: comma-separated prefixes; one with a trailing `$` is an exact name.
bool selected(const options& o, const std::string& name) {
  if (o.only.empty()) return true;
  std::string_view rest = o.only;
  while (!rest.empty()) {
    const std::size_t comma = rest.find(',');
    std::string_view one = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (!one.empty() && one.back() == '$' ? name == one.substr(0, one.size() - 1) : name.rfind(one, 0) == 0)
      return true;
  }
  return false;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void print(const std::string& name, double value, const char* unit) {
  if (value >= 1000) std::printf("bench=%s value=%.0f unit=%s\n", name.c_str(), value, unit);
  else std::printf("bench=%s value=%.3f unit=%s\n", name.c_str(), value, unit);
  std::fflush(stdout);
}

// Runs `fn` `runs` times and prints the median of each of its results.
template <class F>
void measure(const options& o, std::vector<std::pair<std::string, const char*>> names, int runs, F fn) {
  bool any = false;
  for (auto& [n, u] : names) any = any || selected(o, n);
  if (!any) return;
  std::vector<std::vector<double>> results(names.size());
  for (int r = 0; r < runs; ++r) {
    // A node's housekeeper hands free memory back every 2 s; workloads here
    // follow each other faster than that, so the bench makes that pass
    // itself before each run. Otherwise a workload starts on what the one
    // before left: after a flood, hundreds of MiB of free blocks in the
    // order the flood freed them, instead of fresh memory.
    node::housekeeper::once();
    std::vector<double> values = fn();
    for (std::size_t i = 0; i < names.size(); ++i) {
      results[i].push_back(values[i]);
      if (o.each && selected(o, names[i].first))
        std::fprintf(stderr, "run %d %s %.0f\n", r + 1, names[i].first.c_str(), values[i]);
    }
  }
  for (std::size_t i = 0; i < names.size(); ++i)
    if (selected(o, names[i].first)) print(names[i].first, median(results[i]), names[i].second);
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  if (argc == 3 && std::string(argv[1]) == "--child" && std::string(argv[2]) == "remote_server")
    return remote_server(false);
  if (argc == 3 && std::string(argv[1]) == "--child" && std::string(argv[2]) == "remote_server_tls")
    return remote_server(true);
  if (argc == 3 && std::string(argv[1]) == "--child" && std::string(argv[2]) == "remote_server_plugin")
    return remote_server(false, true);
  if (argc == 3 && std::string(argv[1]) == "--child" && std::string(argv[2]) == "remote_server_plugin_busy")
    return remote_server(false, true, busy_poll_us);
  if (argc == 3 && std::string(argv[1]) == "--child" && std::string(argv[2]) == "remote_server_plugin_busy_on_loop")
    return remote_server(false, true, busy_poll_us, true);
  if (argc == 3 && std::string(argv[1]) == "--child" && std::string(argv[2]) == "spawn_idle") {
    idle_result r = spawn_idle();
    std::printf("%f %f\n", r.rate, r.bytes_per_actor);
    return 0;
  }
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--only" && i + 1 < argc) o.only = argv[++i];
    else if (a == "--runs" && i + 1 < argc) o.runs = std::max(1, std::atoi(argv[++i]));
    else if (a == "--each") o.each = true;
    else {
      std::fprintf(stderr, "usage: troupe-bench [--only PREFIX[,PREFIX...]] [--runs N] [--each]\n");
      return 2;
    }
  }
  const int heavy_runs = std::max(1, (o.runs + 1) / 2);
  // Two spinning threads on one core would pass the line once a time slice:
  // only with two cores to run on (the affinity mask, not the machine's).
  cpu_set_t cpus;
  if (sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) >= 2)
    measure(o, {{"machine_cross_core_rtt", "ns"}}, o.runs, [] { return std::vector{cross_core_rtt()}; });
  measure(o, {{"pingpong_1pair", "msgs/s"}}, o.runs, [] { return std::vector{pingpong(1)}; });
  // The same workload watched: scraped ten times a second, then also timed.
  measure(o, {{"pingpong_1pair_scraped", "msgs/s"}}, o.runs,
          [] { return std::vector{pingpong(1, watched::scraped)}; });
  measure(o, {{"pingpong_1pair_histogram", "msgs/s"}}, o.runs,
          [] { return std::vector{pingpong(1, watched::histogram)}; });
  measure(o, {{"pingpong_100pairs", "msgs/s"}}, o.runs, [] { return std::vector{pingpong(100)}; });
  measure(o, {{"pingpong_10000pairs", "msgs/s"}}, o.runs, [] { return std::vector{pingpong(10'000)}; });
  measure(o, {{"plugin_pingpong_1", "msgs/s"}}, o.runs, [] { return std::vector{plugin_pingpong()}; });
  measure(o, {{"fanin_100x30000", "msgs/s"}}, o.runs, [] { return std::vector{fanin()}; });
  measure(o, {{"router_roundrobin", "msgs/s"}}, o.runs, [] { return std::vector{router_roundrobin()}; });
  measure(o, {{"plugin_router_roundrobin", "msgs/s"}}, o.runs,
          [] { return std::vector{plugin_router_roundrobin()}; });
  measure(o, {{"spawn_oneshot_1m", "actors/s"}}, heavy_runs, [] { return std::vector{spawn_oneshot()}; });
  measure(o, {{"spawn_idle_1m_rate", "actors/s"}, {"spawn_idle_1m_bytes_per_actor", "bytes"}}, heavy_runs, [] {
    idle_result r = spawn_idle_in_child();
    return std::vector{r.rate, r.bytes_per_actor};
  });
  measure(o, {{"reqresp_async_p50", "us"}, {"reqresp_async_p99", "us"}}, heavy_runs, [] {
    latency l = reqresp_async();
    return std::vector{l.p50, l.p99};
  });
  measure(o, {{"reqresp_blocking_p50", "us"}, {"reqresp_blocking_p99", "us"}}, heavy_runs, [] {
    latency l = reqresp_blocking();
    return std::vector{l.p50, l.p99};
  });
  measure(o, {{"timers_100k", "ns/timer"}}, o.runs, [] { return std::vector{timers_100k()}; });
  measure(o, {{"events_10k_subscribe", "us"}, {"events_10k_publish", "us"}, {"events_10k_unsubscribe", "us"}},
          o.runs, [] {
            events_result r = events_10k();
            return std::vector{r.subscribe_us, r.publish_us, r.unsubscribe_us};
          });
  measure(o, {{"remote_baseline_tcp_rtt_p50", "us"}, {"remote_baseline_tcp_rtt_p99", "us"},
              {"remote_baseline_tcp_cpu", "us/rtt"}},
          o.runs, [] {
            tcp_result r = loopback_tcp_rtt();
            return std::vector{r.p50, r.p99, r.cpu_us};
          });
  measure(o, {{"remote_rtt_p50", "us"}, {"remote_rtt_p99", "us"}, {"remote_w1", "msgs/s"},
              {"remote_w1000", "msgs/s"}},
          o.runs, [] {
            remote_result r = remote_echo(false);
            return std::vector{r.p50, r.p99, r.w1, r.w1000};
          });
  measure(o, {{"remote_tls_rtt_p50", "us"}, {"remote_tls_rtt_p99", "us"}, {"remote_tls_w1", "msgs/s"},
              {"remote_tls_w1000", "msgs/s"}},
          o.runs, [] {
            remote_result r = remote_echo(true);
            return std::vector{r.p50, r.p99, r.w1, r.w1000};
          });
  // The same over plaintext with the echo plugin's kind: the path users'
  // code takes (its turns never run on the server's event loop).
  measure(o, {{"remote_rtt_plugin_p50", "us"}, {"remote_rtt_plugin_p99", "us"}, {"remote_plugin_w1", "msgs/s"},
              {"remote_plugin_w1000", "msgs/s"}, {"remote_rtt_plugin_cpu", "us/rtt"}},
          o.runs, [] {
            remote_result r = remote_echo(false, true);
            return std::vector{r.p50, r.p99, r.w1, r.w1000, r.cpu_us};
          });
  // Both again with busy polling (dispatcher.busy_poll_us: 100 on both
  // nodes), with the CPU both processes use per timed round trip; the echo
  // kind on the workers (as by default), then allowed on the server's event
  // loop (kinds.echo.on_event_loop: true).
  measure(o, {{"remote_busypoll_baseline_tcp_rtt_p50", "us"}, {"remote_busypoll_baseline_tcp_rtt_p99", "us"},
              {"remote_busypoll_baseline_tcp_cpu", "us/rtt"}},
          o.runs, [] {
            tcp_result r = loopback_tcp_rtt(true);
            return std::vector{r.p50, r.p99, r.cpu_us};
          });
  measure(o, {{"remote_busypoll_rtt_plugin_p50", "us"}, {"remote_busypoll_rtt_plugin_p99", "us"},
              {"remote_busypoll_rtt_plugin_cpu", "us/rtt"}},
          o.runs, [] {
            remote_result r = remote_echo(false, true, true);
            return std::vector{r.p50, r.p99, r.cpu_us};
          });
  measure(o, {{"remote_busypoll_rtt_plugin_on_loop_p50", "us"}, {"remote_busypoll_rtt_plugin_on_loop_p99", "us"},
              {"remote_busypoll_rtt_plugin_on_loop_cpu", "us/rtt"}},
          o.runs, [] {
            remote_result r = remote_echo(false, true, true, true);
            return std::vector{r.p50, r.p99, r.cpu_us};
          });
  if (selected(o, "persist") || selected(o, "recover")) {
    const std::string dir = persist_state_dir();
    std::printf("info: persist state_dir=%s fs=%s synchronous=full\n", dir.c_str(), file_system_of(dir).c_str());
  }
  measure(o, {{"persist_fsync_baseline_us", "us"}}, o.runs, [] { return std::vector{persist_fsync_baseline_us()}; });
  measure(o, {{"persist_sqlite_1actor", "events/s"}}, heavy_runs, [] { return std::vector{persist_1actor()}; });
  measure(o, {{"persist_sqlite_1000actors", "events/s"}, {"persist_sqlite_1000actors_events_per_sync", "events"},
              {"persist_append_p99", "us"}},
          heavy_runs, [] { return persist_1000actors(); });
  if (persist_pg_server().empty() && selected(o, "persist_pg"))
    std::printf("info: persist_pg skipped: no PostgreSQL server (TROUPE_BENCH_PG; make bench starts one)\n");
  else
    measure(o, {{"persist_pg_1000actors", "events/s"}, {"persist_pg_1000actors_events_per_sync", "events"},
                {"persist_pg_append_p99", "us"}},
            heavy_runs, [] { return persist_pg_1000actors(); });
  measure(o, {{"recover_1m_events", "events/s"}}, heavy_runs, [] { return std::vector{recover_1m_events()}; });
  measure(o, {{"swim_sim_detect_5_p50", "s"}, {"swim_sim_detect_5_p90", "s"}}, 1, [] { return swim_detect(5, 20); });
  measure(o, {{"swim_sim_detect_50_p50", "s"}, {"swim_sim_detect_50_p90", "s"}}, 1, [] { return swim_detect(50, 10); });
  measure(o, {{"swim_sim_converge_p90", "s"}}, 1, [] { return std::vector{swim_converge_p90(50, 10)}; });
  measure(o, {{"swim_sim_false_deaths_10pct", "per 1000 member-min"}}, 1,
          [] { return std::vector{swim_false_deaths(5, 0.10, std::chrono::hours(2))}; });
  measure(o, {{"swim_sim_false_deaths", "per 1000 member-min"}}, 1,
          [] { return std::vector{swim_false_deaths(5, 0.20, std::chrono::hours(2))}; });
  measure(o, {{"swim_sim_bytes_per_member_s", "bytes"}}, 1, [] { return std::vector{swim_bytes_per_member_s(16)}; });
  measure(o, {{"swim_sim_steps_per_s", "steps/s"}}, o.runs, [] { return std::vector{swim_steps_per_s()}; });
  measure(o, {{"admin_send_rps", "req/s"}}, o.runs, [] { return std::vector{admin_send_rps()}; });
  measure(o, {{"admin_healthz_p99_under_slowloris", "ms"}}, o.runs,
          [] { return std::vector{admin_healthz_p99_under_slowloris()}; });
  return 0;
}
