// The grain directory: one activation per grain however many callers ask
// at once, a failed activation answered to every waiting caller at once,
// and activations that end (or whose node is lost) forgotten.
#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <string>

#include "cluster/directory.hpp"

using namespace troupe::cluster;

namespace {
grain_id g(const std::string& identity) { return {"counter", identity}; }
activation at(const std::string& address, const std::string& actor) { return {address, 7, actor}; }
}  // namespace

TEST_CASE("1,000 first calls to 10 identities order exactly 10 activations", "[directory]") {
  grain_directory d;
  for (grain_directory::caller c = 0; c < 1000; ++c) d.locate(g("c" + std::to_string(c % 10)), c);
  const auto orders = d.take_activations();
  REQUIRE(orders.size() == 10);
  CHECK(d.take_answers().empty());  // everyone waits
  CHECK(d.activating() == 10);
  for (const grain_id& id : orders) d.activated(id, at("n1:7700", "grain-" + id.identity));
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
  d.locate(g("c3"), 5000);
  CHECK(d.take_activations().empty());
  const auto now = d.take_answers();
  REQUIRE(now.size() == 1);
  CHECK(now[0].where.actor == "grain-c3");
}

TEST_CASE("a failed activation is an error for every waiting caller at once, and the next call tries again",
          "[directory]") {
  grain_directory d;
  d.locate(g("bad"), 1);
  d.locate(g("bad"), 2);
  REQUIRE(d.take_activations().size() == 1);
  d.activation_failed(g("bad"), "the constructor threw: no");
  const auto answers = d.take_answers();
  REQUIRE(answers.size() == 2);
  for (const auto& a : answers) {
    CHECK(a.error == locate_error::activation_failed);
    CHECK(a.detail == "the constructor threw: no");
  }
  CHECK(d.activating() == 0);
  d.locate(g("bad"), 3);
  CHECK(d.take_activations().size() == 1);
}

TEST_CASE("the callers that may wait for one activation are bounded", "[directory]") {
  grain_directory d(3);
  for (grain_directory::caller c = 0; c < 5; ++c) d.locate(g("x"), c);
  const auto answers = d.take_answers();
  REQUIRE(answers.size() == 2);
  for (const auto& a : answers) CHECK(a.error == locate_error::busy);
  d.activated(g("x"), at("n1:7700", "gx"));
  CHECK(d.take_answers().size() == 3);
}

TEST_CASE("an activation that ended is forgotten; news of an older one is not", "[directory]") {
  grain_directory d;
  d.locate(g("a"), 1);
  d.take_activations();
  d.activated(g("a"), at("n1:7700", "a1"));
  d.take_answers();
  d.deactivated(g("a"), at("n1:7700", "a1"));
  CHECK(d.find(g("a")) == nullptr);
  CHECK(d.active() == 0);

  d.locate(g("a"), 2);
  REQUIRE(d.take_activations().size() == 1);
  d.activated(g("a"), at("n1:7700", "a2"));
  d.deactivated(g("a"), at("n1:7700", "a1"));  // the old one's end, late
  REQUIRE(d.find(g("a")) != nullptr);
  CHECK(d.find(g("a"))->actor == "a2");
  d.activated(g("a"), at("n2:7700", "a3"));  // told twice: the first stays
  CHECK(d.find(g("a"))->actor == "a2");
  d.activated(g("never-asked"), at("n1:7700", "z"));
  CHECK(d.find(g("never-asked")) == nullptr);
}

TEST_CASE("a lost node takes its activations with it, and only those", "[directory]") {
  grain_directory d;
  for (grain_directory::caller c = 0; c < 4; ++c) d.locate(g("g" + std::to_string(c)), c);
  for (const grain_id& id : d.take_activations())
    d.activated(id, at(id.identity < "g2" ? "n1:7700" : "n2:7700", id.identity));
  CHECK(d.node_lost("n1:7700") == 2);
  CHECK(d.find(g("g0")) == nullptr);
  CHECK(d.find(g("g2")) != nullptr);
  CHECK(d.active() == 2);
  d.take_answers();
  d.locate(g("g0"), 9);
  CHECK(d.take_activations().size() == 1);
}
