// Grain placement: every node that sees the same members picks the same
// owner; load spreads evenly; members that come and go move only what
// they must.
#include <catch2/catch.hpp>
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "cluster/placement.hpp"

using namespace troupe::cluster;

namespace {

std::vector<std::uint64_t> keys(const std::vector<std::string>& names) {
  std::vector<std::uint64_t> k;
  for (const auto& n : names) k.push_back(member_key(n));
  return k;
}

std::vector<std::string> nodes(int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back("node-" + std::to_string(i));
  return v;
}

// Owner name of each of `count` identities of kind "counter".
std::vector<std::string> owners(const std::vector<std::string>& names, int count) {
  const auto k = keys(names);
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) out.push_back(names[place(k, grain_key("counter", "c" + std::to_string(i)))]);
  return out;
}

}  // namespace

TEST_CASE("no member, no owner", "[placement]") {
  CHECK(place({}, grain_key("counter", "c1")) == no_owner);
}

TEST_CASE("the owner does not depend on the order members are listed in", "[placement]") {
  auto names = nodes(7);
  const auto before = owners(names, 2000);
  std::reverse(names.begin(), names.end());
  CHECK(owners(names, 2000) == before);
  std::rotate(names.begin(), names.begin() + 3, names.end());
  CHECK(owners(names, 2000) == before);
}

TEST_CASE("kind and identity are kept apart", "[placement]") {
  CHECK(grain_key("ab", "c") != grain_key("a", "bc"));
  CHECK(grain_key("counter", "c1") != grain_key("account", "c1"));
}

TEST_CASE("identities spread evenly over the members", "[placement]") {
  const auto names = nodes(10);
  std::map<std::string, int> load;
  for (const auto& o : owners(names, 100000)) ++load[o];
  REQUIRE(load.size() == 10);
  for (const auto& [n, c] : load) {
    INFO(n << " owns " << c);
    CHECK(c > 9400);  // 10,000 each, within 6%
    CHECK(c < 10600);
  }
}

TEST_CASE("a member that leaves moves only what it owned; one that joins takes its share from others",
          "[placement]") {
  auto names = nodes(8);
  const auto before = owners(names, 40000);

  auto fewer = names;
  fewer.erase(fewer.begin() + 3);
  const auto after_leave = owners(fewer, 40000);
  int moved = 0;
  for (std::size_t i = 0; i < before.size(); ++i) {
    if (before[i] != "node-3") CHECK(after_leave[i] == before[i]);
    moved += before[i] != after_leave[i];
  }
  CHECK(moved > 40000 / 8 * 0.9);
  CHECK(moved < 40000 / 8 * 1.1);

  auto more = names;
  more.push_back("node-new");
  const auto after_join = owners(more, 40000);
  int taken = 0;
  for (std::size_t i = 0; i < before.size(); ++i) {
    if (after_join[i] != before[i]) {
      CHECK(after_join[i] == "node-new");
      ++taken;
    }
  }
  CHECK(taken > 40000 / 9 * 0.9);
  CHECK(taken < 40000 / 9 * 1.1);
}

namespace {

troupe::cluster::member host(const std::string& name, const std::string& grains,
                             troupe::cluster::member_state st = troupe::cluster::member_state::alive) {
  troupe::cluster::member m;
  m.id = {name, name + ":7000", 7, 0};
  m.state = st;
  if (!grains.empty()) m.meta["grains"] = grains;
  return m;
}

}  // namespace

TEST_CASE("grain hosts: members up that host the kind, in its compatible version", "[placement]") {
  using troupe::cluster::grain_hosts;
  using troupe::cluster::member_state;
  const std::vector<troupe::cluster::member> members = {
      host("a", "counter@1.2.0,cart@2.0.0"),
      host("b", "counter@1.3.1"),
      host("c", "counter@2.0.0"),
      host("d", "counter@1.0.0", member_state::suspect),  // a suspect keeps its grains
      host("e", "counter@1.0.0", member_state::dead),
      host("f", "counter@1.0.0", member_state::left),
      host("g", ""),
  };
  const grain_hosts t(members);
  REQUIRE(t.hosts("counter") != nullptr);
  std::vector<std::string> names;
  for (const auto& h : *t.hosts("counter")) names.push_back(h.name);
  CHECK(names == std::vector<std::string>{"a", "b", "d"});  // major 1: three members against one
  CHECK(t.major("counter") == "1");
  CHECK(t.hosts("cart")->size() == 1);
  CHECK(t.hosts("nothing") == nullptr);
  CHECK(t.owner("nothing", 42) == nullptr);

  // Every identity has an owner among the hosts, the same whatever order the members came in.
  auto reversed = members;
  std::reverse(reversed.begin(), reversed.end());
  const grain_hosts r(reversed);
  CHECK(r == t);
  for (int i = 0; i < 1000; ++i) {
    const auto key = troupe::cluster::grain_key("counter", "c" + std::to_string(i));
    const auto* o = t.owner("counter", key);
    REQUIRE(o != nullptr);
    CHECK(o->name != "c");
    CHECK(*o == *r.owner("counter", key));
  }
}

TEST_CASE("grain hosts: a tie between majors goes to the lower one, compared as numbers", "[placement]") {
  const troupe::cluster::grain_hosts t({host("a", "k@9.1"), host("b", "k@10.0")});
  CHECK(t.major("k") == "9");
  CHECK(t.hosts("k")->size() == 1);
  CHECK(t.hosts("k")->front().name == "a");
}

namespace {
member grain_member(const std::string& name, const std::string& grains) {
  member m;
  m.id = {name, name + ":7700", 1, 0};
  m.meta["grains"] = grains;
  return m;
}
}  // namespace

TEST_CASE("partitions spread evenly over the hosts of a kind; a join moves about 1/n of them, all to the joiner",
          "[placement]") {
  std::vector<member> ms;
  for (int i = 0; i < 5; ++i) ms.push_back(grain_member("n" + std::to_string(i), "counter@1.0"));
  const grain_hosts five(ms);
  std::map<std::string, int> load;
  for (std::uint32_t p = 0; p < five.partitions(); ++p) ++load[five.owner_of("counter", p)->name];
  REQUIRE(load.size() == 5);
  for (const auto& [n, c] : load) {
    INFO(n << " owns " << c);
    CHECK(c > 150);  // 205 each
    CHECK(c < 260);
  }
  ms.push_back(grain_member("n5", "counter@1.0"));
  const grain_hosts six(ms);
  int moved = 0;
  for (std::uint32_t p = 0; p < six.partitions(); ++p) {
    if (six.owner_of("counter", p)->name == five.owner_of("counter", p)->name) continue;
    ++moved;
    CHECK(six.owner_of("counter", p)->name == "n5");
  }
  CHECK(moved > 120);  // 1024 / 6, about 171
  CHECK(moved < 230);
  // An identity's owner is its partition's.
  const std::uint64_t key = grain_key("counter", "c42");
  CHECK(six.owner("counter", key) == six.owner_of("counter", partition_of(key, six.partitions())));
}

TEST_CASE("members on another major version own no partition, but are listed among those to ask", "[placement]") {
  const grain_hosts h({grain_member("a", "counter@2.0"), grain_member("b", "counter@2.3"),
                       grain_member("c", "counter@1.9")});
  CHECK(h.major("counter") == "2");
  REQUIRE(h.hosts("counter")->size() == 2);
  REQUIRE(h.everyone("counter")->size() == 3);
  for (std::uint32_t p = 0; p < h.partitions(); ++p) CHECK(h.owner_of("counter", p)->name != "c");
  CHECK(h.owner_of("other", 0) == nullptr);
  CHECK(h.everyone("other") == nullptr);
}
