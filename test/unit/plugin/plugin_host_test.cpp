#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include <catch2/catch.hpp>

#include "../actor/probe.hpp"
#include "counter_generated.h"
#include "plugin/plugin_host.hpp"
#include <troupe/abi.h>
#include "worker_pool_generated.h"
#include "gate_messages_generated.h"
#include "connection_generated.h"

using namespace troupe;
using namespace troupe::testing;

namespace {

const std::string examples = TROUPE_EXAMPLE_PLUGINS;  // build/plugins
const std::string fixtures = TROUPE_TEST_PLUGINS;     // build/test/plugins

// Collects what the host logs.
struct log_lines {
  std::mutex mu;
  std::vector<std::string> lines;
  plugin::log_sink sink() {
    return [this](plugin::log_level, std::string_view l) {
      std::lock_guard lock(mu);
      lines.emplace_back(l);
    };
  }
  bool has(const std::string& part) {
    std::lock_guard lock(mu);
    for (const auto& l : lines)
      if (l.find(part) != std::string::npos) return true;
    return false;
  }
};

future_result ask(actor_system& sys, const pid& to, message m) {
  return sys.root().request_future(to, std::move(m), 5s).get_result();
}

message add(std::int64_t by) {
  return make_message<counter::Add>([&](auto& b) { return counter::CreateAdd(b, by); });
}
message get() {
  return make_message<counter::Get>([](auto& b) { return counter::CreateGet(b); });
}
std::int64_t value_of(const future_result& r) {
  auto* v = r.as<counter::Value>();
  return v ? v->value() : -1;
}

}  // namespace

TEST_CASE("the counter plugin counts, answers and resets", "[plugin]") {
  log_lines log;
  actor_system sys(small_config());
  auto host = std::make_shared<plugin::host>(sys, log.sink());
  REQUIRE(host->load(examples + "/counter/counter.so").ok);
  REQUIRE(log.has("plugin counter 1.0.0 loaded (1 kinds)"));
  props_ptr p = host->kind("counter");
  REQUIRE(p);
  pid c = sys.root().spawn(p);
  sys.root().send(c, add(5));
  sys.root().send(c, add(37));
  REQUIRE(value_of(ask(sys, c, get())) == 42);
  sys.root().send(c, make_message<counter::Reset>([](auto& b) { return counter::CreateReset(b); }));
  REQUIRE(value_of(ask(sys, c, get())) == 0);
  auto infos = host->plugins();
  REQUIRE(infos.size() == 1);
  REQUIRE(infos[0].name == "counter");
  REQUIRE(infos[0].kinds == std::vector<std::string>{"counter"});
}

TEST_CASE("the echo plugin replies with what it got", "[plugin]") {
  actor_system sys(small_config());
  auto host = std::make_shared<plugin::host>(sys);
  REQUIRE(host->load(examples + "/echo/echo.so").ok);
  pid e = sys.root().spawn(host->kind("echo"));
  future_result r = ask(sys, e, text("ping"));
  REQUIRE(r.ok());
  REQUIRE(r.as<test::Text>()->s()->str() == "ping");
}

TEST_CASE("the worker pool spawns workers and they come back after failing", "[plugin]") {
  actor_system sys(small_config());
  auto host = std::make_shared<plugin::host>(sys);
  REQUIRE(host->load(examples + "/worker-pool/worker_pool.so").ok);
  pid pool = sys.root().spawn(host->kind("worker-pool.pool"));
  auto workers = ask(sys, pool, make_message<worker_pool::GetWorkers>(
                                    [](auto& b) { return worker_pool::CreateGetWorkers(b); }));
  REQUIRE(workers.as<worker_pool::Workers>()->count() == 3);
  auto job = [](std::int64_t id, bool fail) {
    return make_message<worker_pool::Job>(
        [&](auto& b) { return worker_pool::CreateJob(b, id, fail); });
  };
  // Three jobs go to the three workers in turn.
  std::map<std::string, std::int64_t> incarnation;
  for (int i = 0; i < 3; ++i) {
    auto d = ask(sys, pool, job(i, false));
    REQUIRE(d.ok());
    REQUIRE(d.as<worker_pool::Done>()->id() == i);
    incarnation[d.as<worker_pool::Done>()->worker()->str()] = d.as<worker_pool::Done>()->incarnation();
  }
  REQUIRE(incarnation.size() == 3);
  // Job 3 goes to the first worker again and fails: no answer.
  auto lost = sys.root().request_future(pool, job(3, true), 200ms).get_result();
  REQUIRE(lost.status == future_status::timed_out);
  // The next two jobs go to the others; then the first, restarted, takes job 6.
  ask(sys, pool, job(4, false));
  ask(sys, pool, job(5, false));
  auto again = ask(sys, pool, job(6, false));
  REQUIRE(again.ok());
  const std::string who = again.as<worker_pool::Done>()->worker()->str();
  REQUIRE(incarnation.count(who) == 1);
  REQUIRE(again.as<worker_pool::Done>()->incarnation() > incarnation[who]);
  REQUIRE(sys.stats().restarts.load() == 1);
}

TEST_CASE("the connection example keeps queries aside until it is connected, then answers them in order",
          "[plugin]") {
  actor_system sys(small_config());
  auto host = std::make_shared<plugin::host>(sys);
  REQUIRE(host->load(examples + "/connection/connection.so").ok);
  const pid link = sys.root().spawn(host->kind("connection.link"));
  auto query = [](const char* text) {
    return make_message<connection::Query>([&](auto& b) { return connection::CreateQueryDirect(b, text); });
  };
  auto status = [] { return make_message<connection::Status>([](auto& b) { return connection::CreateStatus(b); }); };
  // Disconnected: three queries wait (stash); a status is answered at once.
  std::vector<future> waiting;
  for (const char* q : {"a", "b", "c"}) waiting.push_back(sys.root().request_future(link, query(q), 5s));
  auto s = ask(sys, link, status());
  REQUIRE(s.as<connection::State>() != nullptr);
  CHECK_FALSE(s.as<connection::State>()->connected());
  CHECK(s.as<connection::State>()->waiting() == 3);
  // Connected (become, unstash_all): answered in the order they came.
  int order = 0;
  for (std::size_t i = 0; i < waiting.size(); ++i) {
    auto r = waiting[i].get_result();
    REQUIRE(r.status == future_status::completed);
    const auto* a = r.reply.as<connection::Answer>();
    REQUIRE(a != nullptr);
    CHECK(a->text()->str() == std::string("answer to ") + "abc"[i]);
    CHECK(a->order() == ++order);
    CHECK(a->over() == 1);
  }
  // Dropped: the next query waits for the second connection.
  sys.root().send(link, make_message<connection::Drop>([](auto& b) { return connection::CreateDrop(b); }));
  auto later = ask(sys, link, query("d"));
  REQUIRE(later.as<connection::Answer>() != nullptr);
  CHECK(later.as<connection::Answer>()->order() == 4);
  CHECK(later.as<connection::Answer>()->over() == 2);
  CHECK(ask(sys, link, status()).as<connection::State>()->connected());
}

TEST_CASE("plugins that do not fit are refused with the file and the reason", "[plugin]") {
  log_lines log;
  actor_system sys(small_config());
  auto host = std::make_shared<plugin::host>(sys, log.sink());

  const std::string text_file = fixtures + "/not-a-plugin.so";
  std::ofstream(text_file) << "just some text\n";
  auto r = host->load(text_file);
  REQUIRE_FALSE(r.ok);
  REQUIRE(r.error == text_file + ": not a shared object (no ELF header)");

  r = host->load(fixtures + "/no_entry.so");
  REQUIRE_FALSE(r.ok);
  REQUIRE(r.error == fixtures + "/no_entry.so: no entry symbol troupe_plugin_entry (not a Troupe plugin?)");

  r = host->load(fixtures + "/bad_abi.so");
  REQUIRE_FALSE(r.ok);
  REQUIRE(r.error == fixtures + "/bad_abi.so: plugin ABI " + std::to_string(TROUPE_ABI_MAJOR + 1) +
                         ".0 does not match the node's ABI " + std::to_string(TROUPE_ABI_MAJOR) +
                         "." + std::to_string(TROUPE_ABI_MINOR) + " (the major versions differ)");

  REQUIRE(host->load(examples + "/counter/counter.so").ok);
  r = host->load(fixtures + "/dup_kind.so");
  REQUIRE_FALSE(r.ok);
  REQUIRE(r.error.find("dup_kind.so: init failed: kind 'counter' refused") != std::string::npos);
  // Refused whole: its other kind is not there either.
  REQUIRE_FALSE(host->kind("dup.fine"));

  REQUIRE(host->stats().refused.load() == 4);
  for (const auto& e : {"not-a-plugin.so", "no_entry.so", "bad_abi.so", "dup_kind.so"})
    REQUIRE(log.has(e));
  // The node goes on with what did load.
  REQUIRE(host->kinds() == std::vector<std::string>{"counter"});
}

TEST_CASE("a second file with a loaded plugin's name is refused, not a deadlock", "[plugin]") {
  log_lines log;
  actor_system sys(small_config());
  auto host = std::make_shared<plugin::host>(sys, log.sink());
  const std::string copy = fixtures + "/counter-copy.so";
  std::filesystem::copy_file(examples + "/counter/counter.so", copy,
                             std::filesystem::copy_options::overwrite_existing);
  REQUIRE(host->load(examples + "/counter/counter.so").ok);
  auto r = host->load(copy);
  REQUIRE_FALSE(r.ok);
  REQUIRE(r.error == copy + ": a plugin named 'counter' is already loaded from " + examples +
                         "/counter/counter.so");
  REQUIRE(host->stats().refused.load() == 1);
  REQUIRE(host->plugins().size() == 1);
}

TEST_CASE("a kind registered outside init is refused", "[plugin]") {
  log_lines log;
  actor_system sys(small_config());
  auto host = std::make_shared<plugin::host>(sys, log.sink());
  REQUIRE(host->load(fixtures + "/late_kind.so").ok);
  pid late = sys.root().spawn(host->kind("late.kind"));
  REQUIRE(ask(sys, late, num(1)).ok());  // it tried, from its handler
  REQUIRE(host->stats().kinds_refused.load() == 1);
  REQUIRE_FALSE(host->kind("late.sneaky"));
  REQUIRE(log.has("late_kind.so: kind 'late.sneaky' registered outside init: refused"));
}

TEST_CASE("a plugin's exceptions fail its actor only", "[plugin]") {
  actor_system sys(small_config());
  auto host = std::make_shared<plugin::host>(sys);
  REQUIRE(host->load(fixtures + "/thrower.so").ok);

  pid r = sys.root().spawn(host->kind("throw.receive"));
  REQUIRE(ask(sys, r, num(1)).as<test::Num>()->n() == 1);
  REQUIRE(ask(sys, r, num(2)).as<test::Num>()->n() == 2);
  sys.root().send(r, num(-7));  // fails; the guardian restarts it with fresh state
  REQUIRE(ask(sys, r, num(3)).as<test::Num>()->n() == 1);
  REQUIRE(host->stats().actor_failures.load() == 1);

  // A constructor that always throws: restarted until the limit, then stopped.
  pid c = sys.root().spawn(host->kind("throw.constructor"));
  REQUIRE(eventually([&] { return c.get()->dead(); }));

  // A destructor that throws: the actor still stops cleanly.
  pid d = sys.root().spawn(host->kind("throw.destructor"));
  REQUIRE(ask(sys, d, num(9)).as<test::Num>()->n() == 9);
  stop_and_wait(sys, d);
  // And the plugin's other actors are untouched.
  REQUIRE(ask(sys, r, num(4)).as<test::Num>()->n() == 2);
}

TEST_CASE("a plugin built for an older ABI minor runs", "[plugin]") {
  actor_system sys(small_config());
  auto host = std::make_shared<plugin::host>(sys);
  REQUIRE(host->load(fixtures + "/old_minor.so").ok);
  REQUIRE(host->plugins()[0].abi_minor == 0);
  REQUIRE(TROUPE_ABI_MINOR > 0);  // the node is newer
  pid e = sys.root().spawn(host->kind("old.echo"));
  REQUIRE(ask(sys, e, num(11)).as<test::Num>()->n() == 11);
}

TEST_CASE("bytes that do not verify against the kind's schema never reach it", "[plugin]") {
  log_lines log;
  actor_system sys(small_config());
  auto host = std::make_shared<plugin::host>(sys, log.sink());
  REQUIRE(host->load(examples + "/counter/counter.so").ok);
  pid c = sys.root().spawn(host->kind("counter"));
  // Bytes from outside (the network, the gateway) are not trusted.
  const std::uint8_t garbage[] = {0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4};
  sys.root().send(c, message::adopt(make_envelope(type_id_of<counter::Add>(), garbage, sizeof garbage)));
  REQUIRE(eventually([&] { return host->stats().invalid_messages.load() == 1; }));
  REQUIRE(sys.stats().dead_letters[static_cast<int>(dead_letter_reason::invalid)].load() == 1);
  REQUIRE(log.has("message rejected: 8 bytes do not verify as counter.Add"));
  // Valid bytes of the same untrusted origin pass verification.
  message good = add(5);
  sys.root().send(c, message::adopt(make_envelope(good->type, good->data, good->size)));
  REQUIRE(value_of(ask(sys, c, get())) == 5);
  REQUIRE(host->stats().invalid_messages.load() == 1);
}

TEST_CASE("plugin actors message each other through the node", "[plugin]") {
  inbox<int> done;
  actor_system sys(small_config());
  auto host = std::make_shared<plugin::host>(sys);
  REQUIRE(host->load(fixtures + "/pingpong.so").ok);
  props_ptr player = host->kind("bench.player");
  pid driver = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<system::Started>()) {
      pid a = ctx.spawn(player);
      pid b = ctx.spawn(player);
      // The first ball goes to a as if b had sent it.
      envelope* e = for_delivery(num(1000));
      b.get()->retain();
      e->sender = b.get();
      a.get()->send_user(e);
    } else if (ctx.message<test::Done>()) {
      done.put(1);
    }
  })));
  REQUIRE(done.take());
  stop_and_wait(sys, driver);
}

TEST_CASE("a plugin uses what ABI 1.1 added: receive timeouts", "[plugin]") {
  actor_system sys(small_config());
  auto host = std::make_shared<plugin::host>(sys);
  REQUIRE(host->load(fixtures + "/thrower.so").ok);
  pid q = sys.root().spawn(host->kind("quiet.answer"));
  const auto t0 = std::chrono::steady_clock::now();
  future_result r = ask(sys, q, num(1));
  REQUIRE(r.ok());
  REQUIRE(r.as<test::Num>()->n() == 42);
  REQUIRE(std::chrono::steady_clock::now() - t0 >= 20ms);
}

TEST_CASE("JSON becomes a plugin's message and its reply becomes JSON", "[plugin][json]") {
  actor_system sys(small_config());
  auto host = std::make_shared<plugin::host>(sys);
  REQUIRE(host->load(examples + "/counter/counter.so").ok);

  auto types = host->message_types();
  std::vector<std::string> names;
  for (const auto& t : types) {
    names.push_back(t.name);
    CHECK(t.plugin == "counter");
  }
  CHECK(names == std::vector<std::string>{"counter.Add", "counter.Get", "counter.Reset", "counter.Value"});

  pid c = sys.root().spawn(host->kind("counter"));
  message m;
  std::string error;
  REQUIRE(host->from_json("counter.Add", R"({"by": 41})", m, error) == plugin::codec_status::ok);
  CHECK(m->type == type_id_of<counter::Add>());
  REQUIRE(m.as<counter::Add>() != nullptr);
  CHECK(m.as<counter::Add>()->by() == 41);
  sys.root().send(c, std::move(m));
  REQUIRE(host->from_json("counter.Add", R"({"by": 1})", m, error) == plugin::codec_status::ok);
  sys.root().send(c, std::move(m));
  REQUIRE(host->from_json("counter.Get", "{}", m, error) == plugin::codec_status::ok);
  future_result r = ask(sys, c, std::move(m));
  REQUIRE(r.ok());
  std::string type, json;
  REQUIRE(host->to_json(*r.reply.get(), type, json, error) == plugin::codec_status::ok);
  CHECK(type == "counter.Value");
  CHECK(json == R"({"value": 42})");
}

TEST_CASE("JSON that does not fit the type is refused with the reason", "[plugin][json]") {
  actor_system sys(small_config());
  auto host = std::make_shared<plugin::host>(sys);
  REQUIRE(host->load(examples + "/counter/counter.so").ok);
  message m;
  std::string error;
  CHECK(host->from_json("counter.Nope", "{}", m, error) == plugin::codec_status::unknown_type);
  CHECK(error == "unknown message type 'counter.Nope': no loaded plugin declares it");
  CHECK(host->from_json("counter.Add", R"({"bye": 1})", m, error) == plugin::codec_status::mismatch);
  CHECK(error == "the body does not match counter.Add: 'bye' is not a field of counter.Add (its fields: by)");
  CHECK(host->from_json("counter.Add", R"({"by": "many"})", m, error) ==
        plugin::codec_status::mismatch);
  CHECK(error == R"x(the body does not match counter.Add: 'by' must be a whole number, not a string ("many"))x");
  CHECK(host->from_json("counter.Add", R"({"by": 1)", m, error) == plugin::codec_status::mismatch);
  CHECK(error == "the body does not match counter.Add: at line 1, column 8: expecting: , instead got: end of file");
  CHECK(!m);
  // The codec still works after the failures.
  REQUIRE(host->from_json("counter.Add", R"({"by": 3})", m, error) == plugin::codec_status::ok);
  CHECK(m.as<counter::Add>()->by() == 3);
}

TEST_CASE("a field that does not fit is named by its path, however deep", "[plugin][json]") {
  actor_system sys(small_config());
  auto host = std::make_shared<plugin::host>(sys);
  REQUIRE(host->load(fixtures + "/thrower.so").ok);  // declares troupe.test's messages
  message m;
  std::string error;
  const auto refused = [&](const char* json) {
    error.clear();
    const bool no = host->from_json("troupe.test.Order", json, m, error) == plugin::codec_status::mismatch;
    return no ? error.substr(error.find(": ") + 2) : std::string("accepted");
  };
  CHECK(refused(R"({"who": {"s": 5}})") == R"x('who.s' must be a string, not a whole number (5))x");
  CHECK(refused(R"({"lines": [{"n": 1}, {"n": "two"}]})") ==
        R"x('lines[1].n' must be a whole number, not a string ("two"))x");
  CHECK(refused(R"({"lines": {"n": 1}})") == R"x('lines' must be an array, not an object ({"n":1}))x");
  CHECK(refused(R"({"tags": ["a", 2]})") == R"x('tags[1]' must be a string, not a whole number (2))x");
  CHECK(refused(R"({"who": {"t": "x"}})") == "'who.t' is not a field of troupe.test.Text (its fields: s)");
  CHECK(refused(R"({"colour": 1.5})") ==
        "'colour' must be a whole number or one of the enum's names, not a number with a fraction (1.5)");
  // What the parser takes is never refused: a 64-bit whole number as a
  // string, as JavaScript clients send them.
  REQUIRE(host->from_json("troupe.test.Num", R"({"n": "9007199254740993"})", m, error) == plugin::codec_status::ok);
  CHECK(m.as<test::Num>()->n() == 9007199254740993LL);
  // What fits goes through, enum names and nested tables included.
  REQUIRE(host->from_json("troupe.test.Order",
                          R"({"who": {"s": "ann"}, "lines": [{"n": 1}, {"n": 2}], "tags": ["x"], "urgent": true,
                              "colour": "green"})",
                          m, error) == plugin::codec_status::ok);
  std::string type, json;
  REQUIRE(host->to_json(*m.get(), type, json, error) == plugin::codec_status::ok);
  CHECK(json.find(R"("colour": "green")") != std::string::npos);
}

TEST_CASE("a spawn that middleware refuses fails the plugin's spawn call, not the node", "[plugin]") {
  inbox<std::string> failures;
  system_config cfg = small_config();
  cfg.on_failure = [&](const context&, const std::string& reason) { failures.put(reason); };
  actor_system sys(cfg);
  auto host = std::make_shared<plugin::host>(sys);
  std::atomic<int> asked{0};
  host->set_kind_decorator([&](const std::string& kind, props& p, bool) {
    if (kind == "gate.fragile")
      p.spawn_hooks.push_back([&](spawn_request&, const spawn_next&) {
        ++asked;
        return spawn_result{};  // no actor, and no error either
      });
    return false;
  });
  REQUIRE(host->load(fixtures + "/gate.so").ok);
  const pid keeper = sys.root().spawn(host->kind("gate.keeper"));
  // The SDK throws what the host answered (the keeper catches it and says it).
  auto said = ask(sys, keeper, make_message<gate::SpawnWith>([](auto& b) {
    return gate::CreateSpawnWithDirect(b, "gate.fragile", "", false);
  }));
  REQUIRE(said.as<gate::SpawnedOn>() != nullptr);
  CHECK(said.as<gate::SpawnedOn>()->status() == TROUPE_ERR_STATE);
  CHECK(said.as<gate::SpawnedOn>()->text()->str() ==
        "spawn of 'gate.fragile' failed: the spawn of 'gate.fragile' was refused by its spawn middleware (status -2)");
  CHECK(asked.load() == 1);
  CHECK_FALSE(failures.take(100ms));  // caught: the keeper did not fail
  // And everything else goes on.
  REQUIRE(host->load(examples + "/counter/counter.so").ok);
  pid c = sys.root().spawn(host->kind("counter"));
  sys.root().send(c, add(7));
  CHECK(value_of(ask(sys, c, get())) == 7);
}
