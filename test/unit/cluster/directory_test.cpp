// The grain directory: one activation per grain however many callers ask
// at once, a failed activation answered to every waiting caller at once,
// activations that end forgotten, and requests for partitions on their way
// here buffered (bounded) and served in order.
#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <string>

#include "cluster/directory.hpp"

using namespace troupe::cluster;

namespace {
grain_id g(const std::string& identity) { return {"counter", identity}; }
activation at(const std::string& address, const std::string& actor) { return {address, 7, actor}; }
constexpr millis t0{0};

member host(const std::string& name, std::uint64_t generation, const std::string& grains = "counter@1") {
  member m;
  m.id = {name, name + ":7700", generation, 0};
  m.meta["grains"] = grains;
  return m;
}

// A directory of node n1 alone in its cluster: it holds every partition.
grain_directory solo(directory_options o = {}) {
  grain_directory d({"n1", 1}, {"counter"}, o);
  d.set_view(std::make_shared<grain_hosts>(std::vector<member>{host("n1", 1)}, o.partitions), t0);
  return d;
}
}  // namespace

TEST_CASE("1,000 first calls to 10 identities order exactly 10 activations", "[directory]") {
  grain_directory d = solo();
  for (grain_directory::caller c = 0; c < 1000; ++c) d.locate(g("c" + std::to_string(c % 10)), c, t0);
  const auto orders = d.take_activations();
  REQUIRE(orders.size() == 10);
  CHECK(d.take_answers().empty());  // everyone waits
  CHECK(d.activating() == 10);
  for (const grain_id& id : orders) d.activated(id, at("n1:7700", "grain-" + id.identity), t0);
  const auto answers = d.take_answers();
  REQUIRE(answers.size() == 1000);
  std::set<grain_directory::caller> answered;
  for (const auto& a : answers) {
    CHECK(a.error == locate_error::none);
    CHECK(a.where.actor == "grain-" + a.id.identity);
    CHECK(a.id.identity == "c" + std::to_string(a.who % 10));
    answered.insert(a.who);
  }
  CHECK(answered.size() == 1000);
  CHECK(d.active() == 10);
  CHECK(d.activating() == 0);

  // Known now: answered at once, nothing ordered.
  d.locate(g("c3"), 5000, t0);
  CHECK(d.take_activations().empty());
  const auto now = d.take_answers();
  REQUIRE(now.size() == 1);
  CHECK(now[0].where.actor == "grain-c3");
}

TEST_CASE("a failed activation is an error for every waiting caller at once, and the next call tries again",
          "[directory]") {
  grain_directory d = solo();
  d.locate(g("bad"), 1, t0);
  d.locate(g("bad"), 2, t0);
  REQUIRE(d.take_activations().size() == 1);
  d.activation_failed(g("bad"), "the constructor threw: no", t0);
  const auto answers = d.take_answers();
  REQUIRE(answers.size() == 2);
  for (const auto& a : answers) {
    CHECK(a.error == locate_error::activation_failed);
    CHECK(a.detail == "the constructor threw: no");
  }
  CHECK(d.activating() == 0);
  d.locate(g("bad"), 3, t0);
  CHECK(d.take_activations().size() == 1);
}

TEST_CASE("an activation stopped before it started sends its callers to ask again, not an error", "[directory]") {
  grain_directory d = solo();
  d.locate(g("moving"), 1, t0);
  d.locate(g("moving"), 2, t0);
  REQUIRE(d.take_activations().size() == 1);
  d.activation_stopped(g("moving"), "stopped before it started (moved)", t0);
  const auto answers = d.take_answers();
  REQUIRE(answers.size() == 2);
  for (const auto& a : answers) {
    CHECK(a.error == locate_error::not_owner);
    CHECK(a.detail == "stopped before it started (moved)");
  }
  CHECK(d.activating() == 0);
}

TEST_CASE("the callers that may wait for one activation are bounded", "[directory]") {
  directory_options o;
  o.max_waiting = 3;
  grain_directory d = solo(o);
  for (grain_directory::caller c = 0; c < 5; ++c) d.locate(g("x"), c, t0);
  const auto answers = d.take_answers();
  REQUIRE(answers.size() == 2);
  for (const auto& a : answers) CHECK(a.error == locate_error::busy);
  d.activated(g("x"), at("n1:7700", "gx"), t0);
  CHECK(d.take_answers().size() == 3);
}

TEST_CASE("an activation that ended is forgotten; news of an older one is not", "[directory]") {
  grain_directory d = solo();
  d.locate(g("a"), 1, t0);
  d.take_activations();
  d.activated(g("a"), at("n1:7700", "a1"), t0);
  d.take_answers();
  d.deactivated(g("a"), at("n1:7700", "a1"), t0);
  CHECK(d.find(g("a")) == nullptr);
  CHECK(d.active() == 0);

  d.locate(g("a"), 2, t0);
  REQUIRE(d.take_activations().size() == 1);
  d.activated(g("a"), at("n1:7700", "a2"), t0);
  d.deactivated(g("a"), at("n1:7700", "a1"), t0);  // the old one's end, late
  REQUIRE(d.find(g("a")) != nullptr);
  CHECK(d.find(g("a"))->actor == "a2");
  d.activated(g("a"), at("n2:7700", "a3"), t0);  // told twice: the first stays
  CHECK(d.find(g("a"))->actor == "a2");
  d.activated(g("never-asked"), at("n1:7700", "z"), t0);
  CHECK(d.find(g("never-asked")) == nullptr);
}

TEST_CASE("a partition on its way here buffers its requests, bounded, and serves them in order", "[directory]") {
  directory_options o;
  o.partitions = 4;
  o.max_buffered = 3;
  grain_directory d({"n2", 2}, {"counter"}, o);
  // n1 and n2 host the kind: n2 must have n1's grant for what it owns.
  d.set_view(std::make_shared<grain_hosts>(std::vector<member>{host("n1", 1), host("n2", 2)}, o.partitions), t0);
  std::vector<handover_message> claims = d.take_messages();
  REQUIRE(claims.size() == 1);
  CHECK(claims[0].op == handover_op::claim);
  CHECK(claims[0].peer == member_ref{"n1", 1});
  // Identities in the partitions n2 claims.
  std::vector<std::string> mine;
  for (int i = 0; mine.size() < 4; ++i)
    for (const partition_epoch& pe : claims[0].items)
      if (d.partition(g("i" + std::to_string(i))) == pe.partition) {
        mine.push_back("i" + std::to_string(i));
        break;
      }
  for (grain_directory::caller c = 0; c < 4; ++c) d.locate(g(mine[c]), c, t0);
  const auto early = d.take_answers();
  REQUIRE(early.size() == 1);  // the fourth overflowed
  CHECK(early[0].who == 3);
  CHECK(early[0].error == locate_error::busy);
  CHECK(d.take_activations().empty());
  CHECK(d.buffered() == 3);

  handover_message grant = claims[0];
  grant.op = handover_op::grant;
  grant.peer = {"n1", 1};
  grant.address = "n1:7700";
  d.on_message(grant, t0);
  const auto orders = d.take_activations();
  REQUIRE(orders.size() == 3);
  for (std::size_t i = 0; i < orders.size(); ++i) CHECK(orders[i] == g(mine[i]));  // in the order they came
  CHECK(d.buffered() == 0);
}

TEST_CASE("a request for a partition owned elsewhere is answered not_owner, with the owner", "[directory]") {
  directory_options o;
  o.partitions = 8;
  grain_directory d({"n1", 1}, {"counter"}, o);
  auto view = std::make_shared<grain_hosts>(std::vector<member>{host("n1", 1), host("n2", 2)}, o.partitions);
  d.set_view(view, t0);
  for (int i = 0;; ++i) {
    const grain_id id = g("k" + std::to_string(i));
    if (view->owner_of("counter", d.partition(id))->name != "n2") continue;
    d.locate(id, 1, t0);
    const auto a = d.take_answers();
    REQUIRE(a.size() == 1);
    CHECK(a[0].error == locate_error::not_owner);
    CHECK(a[0].detail.find("is n2") != std::string::npos);
    break;
  }
}
