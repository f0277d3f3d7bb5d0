#include <map>
#include <set>

#include <catch2/catch.hpp>

#include "actor/router.hpp"
#include "probe.hpp"

using namespace troupe;
using namespace troupe::testing;

namespace {

struct hit {
  std::string routee;
  std::int64_t n;
};

// Routees that report who got which number.
props_ptr recorder(inbox<hit>& hits) {
  return share(props::from_fn([&hits](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) hits.put({ctx.self().id(), n->n()});
  }));
}

std::vector<pid> routees_of(actor_system& sys, const pid& router) {
  future f = sys.root().request_future(router, routers::get_routees(), 5s);
  future_result r = f.get_result();
  REQUIRE(r.ok());
  return routers::routees_in(sys, r.reply);
}

message keyed(const std::string& key, std::int64_t n) {
  message m = num(n);
  set_header(m.get(), hash_key_header, key);
  return m;
}

}  // namespace

TEST_CASE("a round-robin pool gives each routee its turn", "[router]") {
  inbox<hit> hits;
  actor_system sys(small_config());
  pid router = sys.root().spawn(routers::pool(routing::round_robin, recorder(hits), 4));
  REQUIRE(routees_of(sys, router).size() == 4);
  for (int i = 0; i < 40; ++i) sys.root().send(router, num(i));
  std::map<std::string, int> per;
  for (const hit& h : hits.take_n(40)) ++per[h.routee];
  REQUIRE(per.size() == 4);
  for (auto& [id, count] : per) REQUIRE(count == 10);
  stop_and_wait(sys, router);
}

TEST_CASE("a round-robin group routes to the given actors", "[router]") {
  inbox<hit> hits;
  actor_system sys(small_config());
  std::vector<pid> members;
  for (int i = 0; i < 3; ++i) members.push_back(sys.root().spawn(recorder(hits)));
  pid router = sys.root().spawn(routers::group(routing::round_robin, members));
  for (int i = 0; i < 9; ++i) sys.root().send(router, num(i));
  std::map<std::string, int> per;
  for (const hit& h : hits.take_n(9)) ++per[h.routee];
  REQUIRE(per.size() == 3);
  for (const pid& m : members) REQUIRE(per[m.id()] == 3);
  // Stopping a group router leaves its members alone.
  stop_and_wait(sys, router);
  for (const pid& m : members) REQUIRE_FALSE(m.get()->dead());
}

TEST_CASE("a random pool delivers everything, spread over its routees", "[router]") {
  inbox<hit> hits;
  actor_system sys(small_config());
  pid router = sys.root().spawn(routers::pool(routing::random, recorder(hits), 4));
  for (int i = 0; i < 2000; ++i) sys.root().send(router, num(i));
  auto all = hits.take_n(2000);
  REQUIRE(all.size() == 2000);
  std::map<std::string, int> per;
  std::set<std::int64_t> seen;
  for (const hit& h : all) {
    ++per[h.routee];
    seen.insert(h.n);
  }
  REQUIRE(seen.size() == 2000);
  REQUIRE(per.size() == 4);
  for (auto& [id, count] : per) REQUIRE(count > 300);  // 500 expected; far from chance failure
}

TEST_CASE("a broadcast pool gives every routee every message", "[router]") {
  inbox<hit> hits;
  actor_system sys(small_config());
  pid router = sys.root().spawn(routers::pool(routing::broadcast, recorder(hits), 3));
  sys.root().send(router, num(7));
  sys.root().send(router, num(8));
  std::map<std::string, std::vector<std::int64_t>> per;
  for (const hit& h : hits.take_n(6)) per[h.routee].push_back(h.n);
  REQUIRE(per.size() == 3);
  for (auto& [id, ns] : per) REQUIRE(ns == std::vector<std::int64_t>{7, 8});
}

TEST_CASE("a Broadcast message reaches every routee of any router", "[router]") {
  inbox<hit> hits;
  actor_system sys(small_config());
  pid router = sys.root().spawn(routers::pool(routing::round_robin, recorder(hits), 3));
  sys.root().send(router, routers::broadcast(num(5)));
  std::set<std::string> who;
  for (const hit& h : hits.take_n(3)) {
    REQUIRE(h.n == 5);
    who.insert(h.routee);
  }
  REQUIRE(who.size() == 3);
  REQUIRE_FALSE(hits.take(30ms));
}

TEST_CASE("a consistent-hash router sends a key to the same routee every time", "[router]") {
  inbox<hit> hits;
  actor_system sys(small_config());
  pid router = sys.root().spawn(routers::consistent_hash_pool(recorder(hits), 4));
  std::map<std::int64_t, std::string> first;
  for (int round = 0; round < 3; ++round) {
    for (int k = 0; k < 100; ++k) sys.root().send(router, keyed("user-" + std::to_string(k), k));
    for (const hit& h : hits.take_n(100)) {
      auto [it, fresh] = first.emplace(h.n, h.routee);
      REQUIRE(it->second == h.routee);
    }
  }
  std::set<std::string> used;
  for (auto& [k, r] : first) used.insert(r);
  REQUIRE(used.size() == 4);
}

TEST_CASE("adding or removing a routee moves only the keys it must", "[router]") {
  inbox<hit> hits;
  actor_system sys(small_config());
  std::vector<pid> members;
  for (int i = 0; i < 4; ++i) members.push_back(sys.root().spawn(recorder(hits)));
  pid router = sys.root().spawn(routers::consistent_hash_group(members));
  constexpr int keys = 1000;
  auto place_all = [&] {
    for (int k = 0; k < keys; ++k) {
      std::string key = "k";  // appended, not "k" + ...: GCC 12 -Wrestrict false positive
      key.append(std::to_string(k));
      sys.root().send(router, keyed(key, k));
    }
    std::map<std::int64_t, std::string> at;
    for (const hit& h : hits.take_n(keys)) at[h.n] = h.routee;
    REQUIRE(at.size() == keys);
    return at;
  };
  auto before = place_all();

  pid extra = sys.root().spawn(recorder(hits));
  sys.root().send(router, routers::add_routee(extra));
  REQUIRE(eventually([&] { return routees_of(sys, router).size() == 5; }));
  auto grown = place_all();
  int moved = 0;
  for (auto& [k, r] : grown)
    if (r != before[k]) {
      REQUIRE(r == extra.id());  // a key only ever moves to the newcomer
      ++moved;
    }
  // About a fifth of the keys belong to the newcomer now.
  REQUIRE(moved > keys / 10);
  REQUIRE(moved < keys * 3 / 10);

  sys.root().send(router, routers::remove_routee(members[1]));
  REQUIRE(eventually([&] { return routees_of(sys, router).size() == 4; }));
  auto shrunk = place_all();
  for (auto& [k, r] : shrunk) {
    if (grown[k] == members[1].id()) REQUIRE(r != members[1].id());  // its keys go elsewhere
    else REQUIRE(r == grown[k]);                                     // nobody else's move
  }
}

TEST_CASE("routing keeps the sender, so routees answer the requester", "[router]") {
  actor_system sys(small_config());
  props_ptr doubler = share(props::from_fn([](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) {
      std::int64_t v = n->n() * 2;
      ctx.respond<test::Num>([&](auto& b) { return test::CreateNum(b, v); });
    }
  }));
  for (routing r : {routing::round_robin, routing::random}) {
    pid router = sys.root().spawn(routers::pool(r, doubler, 3));
    for (int i = 0; i < 10; ++i) {
      future f = sys.root().request_future(router, num(i), 5s);
      REQUIRE(f.get_result().as<test::Num>()->n() == 2 * i);
    }
  }
}

TEST_CASE("adjusting a pool grows it and stops the routees it sheds", "[router]") {
  inbox<hit> hits;
  actor_system sys(small_config());
  pid router = sys.root().spawn(routers::pool(routing::round_robin, recorder(hits), 2));
  sys.root().send(router, routers::adjust_pool_size(3));
  REQUIRE(eventually([&] { return routees_of(sys, router).size() == 5; }));
  std::vector<pid> five = routees_of(sys, router);
  sys.root().send(router, routers::adjust_pool_size(-4));
  REQUIRE(eventually([&] { return routees_of(sys, router).size() == 1; }));
  for (std::size_t i = 1; i < five.size(); ++i)
    REQUIRE(eventually([&] { return five[i].get()->dead(); }));
  REQUIRE_FALSE(five[0].get()->dead());
  for (int i = 0; i < 3; ++i) sys.root().send(router, num(i));
  for (const hit& h : hits.take_n(3)) REQUIRE(h.routee == five[0].id());
}

TEST_CASE("a failing pool routee is restarted in place; a stopped one leaves the pool",
          "[router]") {
  inbox<hit> hits;
  actor_system sys(small_config());
  props_ptr fragile = share(props::from_fn([&](context& ctx) {
    if (auto* n = ctx.message<test::Num>()) {
      if (n->n() < 0) throw std::runtime_error("negative");
      if (n->n() == 99) ctx.stop(ctx.self());
      hits.put({ctx.self().id(), n->n()});
    }
  }));
  pid router = sys.root().spawn(routers::pool(routing::broadcast, fragile, 3));
  std::vector<pid> before = routees_of(sys, router);
  sys.root().send(router, num(-1));  // every routee fails and is restarted
  sys.root().send(router, num(1));
  REQUIRE(hits.take_n(3).size() == 3);
  REQUIRE(routees_of(sys, router) == before);

  sys.root().send(before[0], num(99));  // one routee stops itself
  REQUIRE(hits.take());
  REQUIRE(eventually([&] { return routees_of(sys, router).size() == 2; }));
  stop_and_wait(sys, router);
  for (const pid& p : before) REQUIRE(p.get()->dead());  // a pool's routees stop with it
}

TEST_CASE("what a router cannot place is a dead letter", "[router]") {
  inbox<hit> hits;
  actor_system sys(small_config());
  auto no_routee = [&] {
    return sys.stats().dead_letters[static_cast<int>(dead_letter_reason::no_routee)].load();
  };
  pid empty = sys.root().spawn(routers::group(routing::round_robin, {}));
  sys.root().send(empty, num(1));
  REQUIRE(no_routee() == 1);
  pid hashed = sys.root().spawn(routers::consistent_hash_pool(recorder(hits), 2));
  sys.root().send(hashed, num(2));  // no key
  REQUIRE(no_routee() == 2);
  // A request that cannot be placed fails fast.
  future f = sys.root().request_future(empty, num(3), 30s);
  REQUIRE(f.wait_for(5s));
  REQUIRE(f.status() == future_status::dead_letter);
}

TEST_CASE("a key function lets the message's own field be its hash key", "[router]") {
  inbox<hit> hits;
  actor_system sys(small_config());
  // Keys from the Text payload itself.
  pid router = sys.root().spawn(routers::consistent_hash_pool(
      share(props::from_fn([&](context& ctx) {
        if (auto* t = ctx.message<test::Text>()) hits.put({ctx.self().id(), std::stoll(t->s()->str())});
      })),
      3, [](const envelope& e) -> std::string_view {
        auto* t = e.as<test::Text>();
        return t && t->s() ? t->s()->string_view() : std::string_view();
      }));
  std::map<std::int64_t, std::string> at;
  for (int round = 0; round < 2; ++round) {
    for (int k = 0; k < 50; ++k) sys.root().send(router, text(std::to_string(k)));
    for (const hit& h : hits.take_n(50)) {
      auto [it, fresh] = at.emplace(h.n, h.routee);
      REQUIRE(it->second == h.routee);
    }
  }
}
