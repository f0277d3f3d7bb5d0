// The bounded (kind, identity) -> value cache of the grain call path: it
// agrees with a plain map through puts, erases and evictions, keeps names
// whose hashes collide apart, and never holds more than its capacity.
#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>

#include "cluster/name_cache.hpp"
#include "cluster/placement.hpp"

using troupe::cluster::grain_key;
using troupe::cluster::name_cache;

TEST_CASE("name cache: find, replace and erase by name", "[name_cache]") {
  name_cache<int> c(100);
  CHECK(c.find(grain_key("k", "a"), "k", "a") == nullptr);
  c.put(grain_key("k", "a"), "k", "a", 1);
  c.put(grain_key("k", "b"), "k", "b", 2);
  c.put(grain_key("kb", ""), "kb", "", 3);  // the same bytes as ("k", "b"), another name
  REQUIRE(c.find(grain_key("k", "a"), "k", "a") != nullptr);
  CHECK(*c.find(grain_key("k", "a"), "k", "a") == 1);
  CHECK(*c.find(grain_key("k", "b"), "k", "b") == 2);
  CHECK(*c.find(grain_key("kb", ""), "kb", "") == 3);
  c.put(grain_key("k", "a"), "k", "a", 10);
  CHECK(*c.find(grain_key("k", "a"), "k", "a") == 10);
  CHECK(c.size() == 3);
  // Erased only when the predicate holds.
  CHECK_FALSE(c.erase(grain_key("k", "a"), "k", "a", [](int v) { return v == 1; }));
  CHECK(c.erase(grain_key("k", "a"), "k", "a", [](int v) { return v == 10; }));
  CHECK(c.find(grain_key("k", "a"), "k", "a") == nullptr);
  CHECK(c.size() == 2);
  c.erase_if([](int v) { return v == 2; });
  CHECK(c.find(grain_key("k", "b"), "k", "b") == nullptr);
  CHECK(*c.find(grain_key("kb", ""), "kb", "") == 3);
}

TEST_CASE("name cache: names with one hash stay apart", "[name_cache]") {
  name_cache<std::string> c(1000);
  // Every name under one key: a single probe run holds them all.
  for (int i = 0; i < 200; ++i) c.put(42, "kind", std::to_string(i), "v" + std::to_string(i));
  for (int i = 0; i < 200; ++i) {
    const std::string* v = c.find(42, "kind", std::to_string(i));
    REQUIRE(v != nullptr);
    CHECK(*v == "v" + std::to_string(i));
  }
  for (int i = 0; i < 200; i += 2) CHECK(c.erase(42, "kind", std::to_string(i), [](const auto&) { return true; }));
  for (int i = 0; i < 200; ++i) CHECK((c.find(42, "kind", std::to_string(i)) != nullptr) == (i % 2 == 1));
}

TEST_CASE("name cache: agrees with a map through random puts, erases and evictions", "[name_cache]") {
  for (std::uint32_t seed = 1; seed <= 50; ++seed) {
    std::mt19937 rng(seed);
    const std::size_t cap = 1 + rng() % 300;
    name_cache<std::shared_ptr<int>> c(cap);
    std::map<std::string, int> ref;  // what the cache may hold: a subset after evictions
    // Odd seeds hash names as grains do; even seeds give 7 hashes in all,
    // so that probe runs meet and wrap.
    const auto key_of = [&](const std::string& id) -> std::uint64_t {
      return seed % 2 ? grain_key("k", id) : std::stoul(id) % 7;
    };
    for (int step = 0; step < 5000; ++step) {
      const std::string id = std::to_string(rng() % 600);
      const std::uint64_t k = key_of(id);
      switch (rng() % 4) {
        case 0:
        case 1: {
          const int v = static_cast<int>(rng() % 1000);
          c.put(k, "k", id, std::make_shared<int>(v));
          ref[id] = v;
          REQUIRE(c.find(k, "k", id) != nullptr);  // an eviction never takes the newcomer
          break;
        }
        case 2: c.erase(k, "k", id, [](const auto&) { return true; }); ref.erase(id); break;
        case 3: c.erase_if([](const auto& v) { return *v % 10 == 0; });
                std::erase_if(ref, [](const auto& kv) { return kv.second % 10 == 0; });
                break;
      }
      REQUIRE(c.size() <= cap);
      if (step % 10 != 0) continue;
      // Every entry found is the latest value put for its name; what is
      // missing was evicted or erased.
      std::size_t found = 0, wrong = 0;
      for (int i = 0; i < 600; ++i) {
        const std::string n = std::to_string(i);
        const auto* v = c.find(key_of(n), "k", n);
        if (v == nullptr) continue;
        ++found;
        auto it = ref.find(n);
        if (it == ref.end() || **v != it->second) ++wrong;
      }
      REQUIRE(wrong == 0);
      REQUIRE(found == c.size());
    }
  }
}
