// Membership from a coordination service (registry.hpp): the members are
// exactly the records the service holds, whatever order its news comes in
// and however often the watch is lost and the prefix listed again; SWIM
// only marks them unreachable. TROUPE_SIM_SEEDS sets how many random runs.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "cluster/registry.hpp"

using namespace troupe::cluster;
using K = member_event::kind;

namespace {

record rec(const std::string& name, std::uint64_t gen, bool leaving = false) {
  return {name, "127.0.0.1:" + std::to_string(7000 + name.size()), gen, {{"grains", "c@1"}}, leaving};
}

std::vector<std::pair<K, std::string>> kinds(std::vector<member_event> events) {
  std::vector<std::pair<K, std::string>> out;
  for (const auto& e : events) out.emplace_back(e.what, e.who.id.name);
  return out;
}

member swim(const std::string& name, std::uint64_t gen, member_state s) {
  member m;
  m.id = {name, "x", gen, 0};
  m.state = s;
  return m;
}

}  // namespace

TEST_CASE("registry: a record is a join, a deleted one a death, a leaving one a leave") {
  registry r("self", millis(1000));
  r.reset({rec("self", 1), rec("a", 5)}, millis(0));
  CHECK(r.listed());
  CHECK(kinds(r.take_events()) == std::vector<std::pair<K, std::string>>{{K::joined, "a"}, {K::joined, "self"}});
  r.put(rec("b", 7), millis(1));
  r.remove("a", millis(2));
  r.put(rec("b", 7, true), millis(3));
  const auto events = r.take_events();
  REQUIRE(events.size() == 3);
  CHECK(events[0].what == K::joined);
  CHECK(events[1].what == K::dead);
  CHECK(events[1].from == "etcd");
  CHECK(events[2].what == K::left);
  CHECK(r.find("a")->state == member_state::dead);
  CHECK(r.find("b")->state == member_state::left);
  // The delete that follows a leave says nothing more.
  r.remove("b", millis(4));
  CHECK(r.take_events().empty());
  r.advance(millis(1003));
  CHECK(kinds(r.take_events()) == std::vector<std::pair<K, std::string>>{{K::forgotten, "a"}, {K::forgotten, "b"}});
  CHECK(r.find("a") == nullptr);
}

TEST_CASE("registry: a restart replaces the old start; an older record is ignored") {
  registry r("self", millis(1000));
  r.reset({rec("a", 5)}, millis(0));
  r.take_events();
  r.put(rec("a", 9), millis(1));
  auto events = r.take_events();
  REQUIRE(events.size() == 2);
  CHECK((events[0].what == K::dead && events[0].who.id.generation == 5));
  CHECK((events[1].what == K::joined && events[1].who.id.generation == 9));
  r.put(rec("a", 5), millis(2));
  CHECK(r.take_events().empty());
  CHECK(r.find("a")->id.generation == 9);
}

TEST_CASE("registry: a start that registers again after its lease ran out joins again") {
  registry r("self", millis(1000));
  r.reset({rec("a", 5)}, millis(0));
  r.remove("a", millis(1));
  r.take_events();
  r.put(rec("a", 5), millis(2));
  const auto events = r.take_events();
  REQUIRE(events.size() == 1);
  CHECK(events[0].what == K::joined);
  CHECK(events[0].who.id.incarnation == 1);
  CHECK(r.find("a")->state == member_state::alive);
}

TEST_CASE("registry: SWIM marks members unreachable, never gone; only for the start it knows") {
  registry r("self", millis(1000));
  r.reset({rec("self", 1), rec("a", 5), rec("b", 6)}, millis(0));
  r.take_events();
  r.reachability({swim("a", 5, member_state::dead), swim("b", 4, member_state::dead), swim("self", 1, member_state::dead)},
                 millis(1));
  CHECK(kinds(r.take_events()) == std::vector<std::pair<K, std::string>>{{K::suspect, "a"}});
  CHECK(r.find("a")->state == member_state::suspect);
  CHECK(r.find("b")->state == member_state::alive);     // SWIM's news was about an older start
  CHECK(r.find("self")->state == member_state::alive);  // this node is never unreachable to itself
  r.reachability({swim("a", 5, member_state::alive)}, millis(2));
  CHECK(kinds(r.take_events()) == std::vector<std::pair<K, std::string>>{{K::alive, "a"}});
  // A listing without it: gone.
  r.reset({rec("self", 1), rec("b", 6)}, millis(3));
  CHECK(kinds(r.take_events()) == std::vector<std::pair<K, std::string>>{{K::dead, "a"}});
}

TEST_CASE("registry: random news, lost watches and listings again keep the members the service's", "[sim]") {
  const char* env = std::getenv("TROUPE_SIM_SEEDS");
  const std::uint64_t seeds = env != nullptr ? std::strtoull(env, nullptr, 10) : 200;
  const std::vector<std::string> names = {"self", "a", "b", "c", "d"};
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    INFO("seed " << seed);
    std::mt19937_64 rng(seed);
    auto pick = [&](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); };
    std::map<std::string, record> store;  // what the service holds
    std::uint64_t next_gen = 1;
    registry r("self", millis(50));
    r.reset({}, millis(0));
    bool in_sync = true;                  // every change since the last listing was seen
    std::vector<member_event> events;
    for (int step = 1; step <= 300; ++step) {
      const millis now(step);
      const std::string name = names[pick(names.size())];
      const bool seen = pick(10) != 0;    // the watch may miss a change (it was lost)
      auto deliver = [&](auto fn) {
        if (seen) fn();
        else in_sync = false;
      };
      switch (pick(6)) {
        case 0: {  // a start
          record x = rec(name, next_gen++);
          store[name] = x;
          deliver([&] { r.put(x, now); });
          break;
        }
        case 1:  // its lease runs out, or it deletes its record
          if (store.erase(name) != 0) deliver([&] { r.remove(name, now); });
          break;
        case 2:  // it is leaving
          if (auto it = store.find(name); it != store.end() && !it->second.leaving) {
            it->second.leaving = true;
            record x = it->second;
            deliver([&] { r.put(x, now); });
          }
          break;
        case 3: {  // SWIM's view, at random
          std::vector<member> view;
          for (const auto& [n, x] : store)
            view.push_back(swim(n, x.generation, pick(3) == 0 ? member_state::dead : member_state::alive));
          r.reachability(view, now);
          break;
        }
        case 4: {  // the watch is lost: the prefix is listed again
          std::vector<record> all;
          for (const auto& [n, x] : store) all.push_back(x);
          r.reset(all, now);
          in_sync = true;
          break;
        }
        default:
          r.advance(now);
      }
      for (auto& e : r.take_events()) events.push_back(std::move(e));
      if (!in_sync) continue;
      // The members up are exactly the records held that are not leaving, in their generation.
      std::map<std::string, std::uint64_t> up, want;
      for (const member& m : r.members())
        if (m.state == member_state::alive || m.state == member_state::suspect) up[m.id.name] = m.id.generation;
      for (const auto& [n, x] : store)
        if (!x.leaving) want[n] = x.generation;
      REQUIRE(up == want);
    }
    // Every start's events begin with its join and end, if they end, with
    // one death or leave (then at most its forgetting).
    std::map<std::tuple<std::string, std::uint64_t, std::uint32_t>, std::vector<K>> by_start;
    for (const auto& e : events) by_start[{e.who.id.name, e.who.id.generation, e.who.id.incarnation}].push_back(e.what);
    for (const auto& [start, seq] : by_start) {
      INFO(std::get<0>(start) << " generation " << std::get<1>(start) << " incarnation " << std::get<2>(start));
      REQUIRE(seq.front() == K::joined);
      std::size_t ends = 0;
      for (std::size_t i = 1; i < seq.size(); ++i) {
        if (seq[i] == K::dead || seq[i] == K::left) ++ends;
        if (ends > 0 && seq[i] != K::dead && seq[i] != K::left) REQUIRE(seq[i] == K::forgotten);
      }
      REQUIRE(ends <= 1);
    }
  }
}
