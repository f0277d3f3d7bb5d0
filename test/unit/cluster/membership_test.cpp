// The membership protocol in the deterministic simulator: scenarios a user
// would check (a kill is noticed, a restart is seen at once, a pause is
// forgiven, a partition heals, nodes that start together form one
// cluster), then many random runs with every invariant checked after every
// step. TROUPE_SIM_SEEDS sets how many random runs (CI runs thousands in
// the optimised build); TROUPE_SIM_SEED replays one.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <sstream>


#include "cluster/messages.hpp"
#include "sim.hpp"

using namespace troupe::cluster;
using namespace troupe::cluster::sim;
using namespace std::chrono_literals;

namespace {

// n members, each listing the first three as seeds, all started at once.
simulator cluster_of(unsigned n, std::uint64_t seed, network net = {}, swim_options o = swim_options::lan()) {
  simulator s(seed, o, net);
  std::vector<unsigned> seeds;
  for (unsigned i = 0; i < std::min(n, 3u); ++i) seeds.push_back(i);
  for (unsigned i = 0; i < n; ++i) s.add(i, seeds);
  for (unsigned i = 0; i < n; ++i) s.start(i);
  return s;
}

// Runs until converged (checked every second), at most `limit`; the time it took.
std::optional<millis> until_converged(simulator& s, millis limit) {
  const millis start = s.now();
  while (s.now() - start < limit) {
    s.run_for(1s);
    if (s.converged()) return s.now() - start;
  }
  return std::nullopt;
}

std::uint64_t env_number(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

}  // namespace

TEST_CASE("messages survive their encoding, and bad bytes are refused", "[cluster]") {
  packet p;
  p.cluster = "c";
  p.from = {"a", "127.0.0.1:1", 7, 2};
  p.probe = probe_kind::indirect_ping;
  p.seq = 42;
  p.target = {"b", "127.0.0.2:1", 9, 1};
  p.want_nack = true;
  p.gossip.push_back(alive_news{{"c", "127.0.0.3:1", 3, 4}, 5, {{"grains", "counter@1"}}});
  p.gossip.push_back(suspect_news{{"d", "x", 1, 1}, "a"});
  p.gossip.push_back(dead_news{{"e", "y", 2, 0}, "b", true});
  const auto bytes = encode(p);
  packet q;
  std::string why;
  REQUIRE(decode(bytes, q, why));
  CHECK(q.from == p.from);
  CHECK(q.probe == probe_kind::indirect_ping);
  CHECK(q.seq == 42);
  CHECK(q.target == p.target);
  CHECK(q.want_nack);
  REQUIRE(q.gossip.size() == 3);
  CHECK(std::get<alive_news>(q.gossip[0]).meta.at("grains") == "counter@1");
  CHECK(std::get<dead_news>(q.gossip[2]).left);

  std::vector<std::uint8_t> junk(bytes.begin(), bytes.begin() + static_cast<long>(bytes.size() / 2));
  CHECK_FALSE(decode(junk, q, why));
  CHECK(why.find("malformed") != std::string::npos);
  std::vector<std::uint8_t> tiny{1, 2, 3};
  CHECK_FALSE(decode(tiny, q, why));
}

TEST_CASE("a machine counts bad datagrams and those of another cluster, and goes on", "[cluster]") {
  membership m("c", {"a", "addr-a", 1, 0}, {}, swim_options::lan(), 1);
  m.start(0ms);
  const std::vector<std::uint8_t> junk(100, 0xff);
  m.on_datagram("addr-x", junk, 10ms);
  packet p;
  p.cluster = "other";
  p.from = {"x", "addr-x", 1, 0};
  p.probe = probe_kind::ping;
  p.target = m.self();
  m.on_datagram("addr-x", encode(p), 20ms);
  CHECK(m.stats().malformed == 1);
  CHECK(m.stats().wrong_cluster == 1);
  for (const outgoing& o : m.take_outgoing()) CHECK(o.to != "addr-x");  // no answer to either
}

TEST_CASE("five members that start together agree on who is alive, and stay quiet", "[cluster]") {
  simulator s = cluster_of(5, 1);
  const auto took = until_converged(s, 10s);
  REQUIRE(took);
  CHECK(*took <= 3s);
  s.run_for(60s);
  CHECK(s.converged());
  CHECK(s.violation().empty());
  for (unsigned i = 0; i < 5; ++i) {
    CHECK(s.at(i).joined());
    CHECK(s.at(i).stats().suspicions == 0);
  }
}

TEST_CASE("a killed member is declared dead by every other, then forgotten", "[cluster]") {
  simulator s = cluster_of(5, 2);
  REQUIRE(until_converged(s, 10s));
  const millis killed = s.now();
  s.kill(3);
  s.run_for(60s);
  INFO(s.violation());
  REQUIRE(s.violation().empty());
  REQUIRE(s.dead_seen["n3"].size() == 4);
  for (millis t : s.dead_seen["n3"]) CHECK(t - killed <= 40s);
  for (unsigned i : {0u, 1u, 2u, 4u}) CHECK(s.at(i).find("n3")->state == member_state::dead);
  s.run_for(swim_options::lan().dead_retention);
  for (unsigned i : {0u, 1u, 2u, 4u}) CHECK(s.at(i).find("n3") == nullptr);
  CHECK(s.converged());
}

TEST_CASE("the wan profile detects a killed member too, only more slowly", "[cluster]") {
  simulator s = cluster_of(5, 12, {0.0, 0.0, 20ms, 150ms}, swim_options::wan());
  REQUIRE(until_converged(s, 30s));
  const millis killed = s.now();
  s.kill(1);
  s.run_for(300s);
  INFO(s.violation());
  REQUIRE(s.violation().empty());
  REQUIRE(s.dead_seen["n1"].size() == 4);
  // The least suspicion is 6 probe intervals of 5 s; with five members no
  // confirmation is expected, so the longest (180 s) it is, after a round
  // of probes.
  for (millis t : s.dead_seen["n1"]) {
    CHECK(t - killed >= 30s);
    CHECK(t - killed <= 240s);
  }
}

TEST_CASE("a restarted member is seen at once as its new generation", "[cluster]") {
  simulator s = cluster_of(5, 3);
  REQUIRE(until_converged(s, 10s));
  const std::uint64_t old = s.at(2).self().generation;
  s.restart(2);
  REQUIRE(s.at(2).self().generation > old);
  const auto took = until_converged(s, 20s);
  INFO(s.violation());
  REQUIRE(took);
  CHECK(*took <= 5s);  // no waiting for the old generation's death
  CHECK(s.violation().empty());
  CHECK(s.dead_seen["n2"].empty());
}

TEST_CASE("a member stopped for a few seconds is suspected at most, never declared dead", "[cluster]") {
  simulator s = cluster_of(5, 4);
  REQUIRE(until_converged(s, 10s));
  s.pause(1, 3s);
  s.run_for(20s);
  INFO(s.violation());
  CHECK(s.violation().empty());
  CHECK(s.dead_seen["n1"].empty());
  CHECK(s.converged());
}

TEST_CASE("the halves of a partition declare each other dead, and find each other again", "[cluster]") {
  simulator s = cluster_of(6, 5);
  REQUIRE(until_converged(s, 10s));
  s.partition({0, 1, 2});
  s.run_for(90s);
  CHECK(s.at(0).find("n4")->state == member_state::dead);
  CHECK(s.at(4).find("n0")->state == member_state::dead);
  s.heal();
  const auto took = until_converged(s, 120s);
  INFO(s.violation());
  REQUIRE(took);
  CHECK(s.violation().empty());
}

TEST_CASE("a partition of 2 | 3: each side declares the other dead within 30 s, in all but a rare run", "[cluster]") {
  // The small side's probes fail more often than not, so its local health
  // slows it down, and news it gossips mostly goes to the far side. What
  // keeps it within bounds: alive members probed before suspects, nacks
  // that come before the requester gives up, suspects not asked to help,
  // and no piggy-backed news spent on suspects.
  const std::uint64_t runs = env_number("TROUPE_SIM_SEEDS", 500);
  std::uint64_t late = 0;
  millis slowest{0};
  for (std::uint64_t seed = 1; seed <= runs; ++seed) {
    simulator s = cluster_of(5, seed);
    REQUIRE(until_converged(s, 10s));
    s.run_for(millis(static_cast<std::int64_t>(seed * 37 % 1000)));
    s.partition({0, 1});
    const auto split = [&] {
      for (unsigned a = 0; a < 5; ++a)
        for (unsigned b = 0; b < 5; ++b)
          if ((a < 2) != (b < 2) && s.at(a).find(s.name(b))->state != member_state::dead) return false;
      return true;
    };
    millis took{0};
    while (!split() && took < 60s) {
      s.run_for(250ms);
      took += 250ms;
    }
    INFO("seed " << seed);
    REQUIRE(split());
    slowest = std::max(slowest, took);
    if (took > 30s) ++late;
  }
  WARN(runs << " runs: " << late << " took over 30 s, the slowest " << slowest.count() << " ms");
  CHECK(late * 500 <= runs);
  CHECK(slowest <= 45s);
}

TEST_CASE("the small side of a partition knows it is out of touch; the large side does not", "[cluster]") {
  simulator s = cluster_of(5, 15);
  REQUIRE(until_converged(s, 10s));
  for (unsigned i = 0; i < 5; ++i) CHECK(s.at(i).in_touch(s.now()));
  s.partition({3, 4});
  // Before the longest suspicion has passed, nobody gives up.
  s.run_for(s.at(0).suspicion_max() / 2);
  for (unsigned i = 0; i < 5; ++i) CHECK(s.at(i).in_touch(s.now()));
  s.run_for(s.at(0).suspicion_max());
  for (unsigned i = 0; i < 3; ++i) CHECK(s.at(i).in_touch(s.now()));
  // Its dead members still count: two of five is no majority.
  CHECK_FALSE(s.at(3).in_touch(s.now()));
  CHECK_FALSE(s.at(4).in_touch(s.now()));
  s.heal();
  REQUIRE(until_converged(s, 120s));
  for (unsigned i = 0; i < 5; ++i) CHECK(s.at(i).in_touch(s.now()));
}

TEST_CASE("a member paused past its dead verdict hears of it, and is out of touch until it hears again", "[cluster]") {
  simulator s = cluster_of(3, 16);
  REQUIRE(until_converged(s, 10s));
  const millis longest = s.at(0).suspicion_max();
  s.pause(2, longest + 10s);
  s.run_for(longest + 5s);
  CHECK(s.at(0).find("n2")->state == member_state::dead);
  // When it wakes, the first thing its clock says is that it heard nobody
  // for too long: for as long as the others need to declare it dead, and
  // for longer than a suspicion lasts.
  CHECK(s.at(2).silent_for(s.now()) >= s.at(2).earliest_verdict());
  CHECK_FALSE(s.at(2).hearing(s.now(), s.at(2).earliest_verdict()));
  CHECK_FALSE(s.at(2).in_touch(s.now()));
  CHECK(s.at(0).silent_for(s.now()) < s.at(0).earliest_verdict());
  s.run_for(15s);
  CHECK(s.at(2).stats().declared_dead >= 1);
  CHECK(s.at(2).in_touch(s.now()));
  CHECK(s.at(0).find("n2")->state == member_state::alive);
  // A killed member: the two left of three are still a majority.
  s.kill(1);
  s.run_for(longest + 30s);
  CHECK(s.at(0).in_touch(s.now()));
  CHECK(s.at(2).in_touch(s.now()));
}

TEST_CASE("a member that leaves is left everywhere, never dead, never back in that generation", "[cluster]") {
  simulator s = cluster_of(5, 6);
  REQUIRE(until_converged(s, 10s));
  s.leave(4);
  s.run_for(5s);
  for (unsigned i = 0; i < 4; ++i) CHECK(s.at(i).find("n4")->state == member_state::left);
  s.kill(4);
  s.run_for(30s);
  CHECK(s.dead_seen["n4"].empty());
  CHECK(s.violation().empty());
}

TEST_CASE("an operator's down is a dead verdict everywhere at once", "[cluster]") {
  simulator s = cluster_of(5, 7);
  REQUIRE(until_converged(s, 10s));
  s.kill(2);
  s.down(0, 2);
  s.run_for(3s);
  for (unsigned i : {0u, 1u, 3u, 4u}) CHECK(s.at(i).find("n2")->state == member_state::dead);
  CHECK(s.violation().empty());
}

TEST_CASE("nodes that list each other as seeds form one cluster, whatever order they start in", "[cluster]") {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    simulator s(seed, swim_options::lan());
    for (unsigned i = 0; i < 5; ++i) s.add(i, {0, 1, 2});
    // The first seed starts last.
    for (unsigned i : {4u, 3u, 2u, 1u, 0u}) {
      s.start(i);
      s.run_for(millis(300 + 700 * (seed % 3)));
    }
    INFO("seed " << seed);
    const auto took = until_converged(s, 30s);
    REQUIRE(took);
    for (unsigned i = 0; i < 5; ++i) CHECK(s.at(i).joined());
    CHECK(s.violation().empty());
  }
}

TEST_CASE("a node whose seeds are not up yet keeps asking, and joins when one is", "[cluster]") {
  simulator s(9, swim_options::lan());
  s.add(0, {0});
  s.add(1, {0});
  s.start(1);
  s.run_for(20s);
  CHECK_FALSE(s.at(1).joined());
  s.start(0);
  REQUIRE(until_converged(s, 10s));
  CHECK(s.at(1).joined());
}

TEST_CASE("metadata spreads, and consensus tells when every alive member says the same", "[cluster]") {
  simulator s = cluster_of(5, 10);
  REQUIRE(until_converged(s, 10s));
  for (unsigned i = 0; i < 5; ++i) s.at(i).set_meta({{"topology", "h1"}}, s.now());
  s.run_for(5s);
  std::string value;
  CHECK(s.at(0).consensus("topology", &value));
  CHECK(value == "h1");
  s.at(3).set_meta({{"topology", "h2"}}, s.now());
  s.run_for(5s);
  CHECK_FALSE(s.at(0).consensus("topology"));
  CHECK(s.at(1).find("n3")->meta.at("topology") == "h2");
}

TEST_CASE("one seed replays exactly", "[cluster]") {
  auto run = [](std::uint64_t seed) {
    simulator s = cluster_of(8, seed, {0.1, 0.05, 1ms, 30ms});
    s.run_for(20s);
    s.kill(5);
    s.pause(2, 2s);
    s.run_for(40s);
    return s.trace();
  };
  CHECK(run(77) == run(77));
  CHECK(run(77) != run(78));
}

// Seeds that once broke something, kept as they were.
TEST_CASE("seed 300: every copy of a suspicion lost at 20% loss is no dead verdict", "[cluster]") {
  // Every datagram carrying n3's suspicion of n4 was lost, n4 never heard
  // of it, and a later confirmation made it a verdict at once. The
  // suspicion is now told to the suspect every round.
  simulator s(300, swim_options::lan(), {0.2, 0.0, 1ms, 10ms});
  for (unsigned i = 0; i < 5; ++i) s.add(i, {0, 1, 2});
  for (unsigned i = 0; i < 5; ++i) s.start(i);
  s.run_for(900s);
  CHECK(s.false_deaths() == 0);
  CHECK(s.violation().empty());
}

// Random faults for a while, then quiet: every invariant after every step,
// and one agreed view after the quiet period.
TEST_CASE("random runs: invariants always, one view after the faults stop", "[cluster][random]") {
  const std::uint64_t only = env_number("TROUPE_SIM_SEED", 0);
  const std::uint64_t seeds = only != 0 ? 1 : env_number("TROUPE_SIM_SEEDS", 100);
  for (std::uint64_t k = 0; k < seeds; ++k) {
    const std::uint64_t seed = only != 0 ? only : 1000 + k;
    std::mt19937_64 rng(seed);
    const unsigned n = 3 + static_cast<unsigned>(rng() % 6);
    network net{static_cast<double>(rng() % 21) / 100.0, static_cast<double>(rng() % 6) / 100.0, 1ms,
                millis(5 + rng() % 60)};
    simulator s = cluster_of(n, seed, net);
    for (int round = 0; round < 12; ++round) {
      s.run_for(millis(2000 + rng() % 8000));
      const unsigned who = static_cast<unsigned>(rng() % n);
      switch (rng() % 6) {
        case 0: if (s.running(who)) s.kill(who); break;
        case 1: s.restart(who); break;
        case 2: if (s.running(who)) s.pause(who, millis(500 + rng() % 6000)); break;
        case 3: {
          std::set<unsigned> half;
          for (unsigned i = 0; i < n; ++i)
            if (rng() % 2) half.insert(i);
          s.partition(half);
          break;
        }
        case 4: s.heal(); break;
        default: break;
      }
    }
    // Quiet: no loss, every member back, no partition.
    s.heal();
    s.set_network({0.0, 0.0, 1ms, 10ms});
    for (unsigned i = 0; i < n; ++i)
      if (!s.running(i)) s.start(i);
    // The bound: the longest suspicion (24 s below ten members) and a
    // round of reconnection (10 s), with room to spare; 2,000 seeds took
    // at most 31 s.
    const auto took = until_converged(s, 60s);
    INFO("seed " << seed << " (replay: TROUPE_SIM_SEED=" << seed << ")");
    INFO(s.violation());
    REQUIRE(s.violation().empty());
    std::string why;
    s.converged(&why);
    INFO(why);
    REQUIRE(took);
  }
}
