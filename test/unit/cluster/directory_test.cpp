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

// ---------------------------------------------------------------- moved activations kept

namespace {

// Directories that pass their hand-over messages by hand; `lose` drops
// what its member sends.
struct pair_net {
  std::map<std::string, grain_directory*> dirs;
  std::set<std::string> lose;
  void deliver(millis now = t0) {
    for (bool more = true; more;) {
      more = false;
      for (auto& [name, d] : dirs)
        for (handover_message m : d->take_messages()) {
          more = true;
          const auto to = dirs.find(m.peer.name);
          if (to == dirs.end() || lose.count(name)) continue;
          m.peer = d->partitions().self();
          m.address = name + ":7700";
          to->second->on_message(m, now);
        }
    }
  }
};

std::shared_ptr<const grain_hosts> view(const std::vector<member>& ms) {
  return std::make_shared<grain_hosts>(ms, default_partitions);
}

// Activates every grain ordered on `d` (node `name`), with actor ids "a-<identity>".
void activate_all(grain_directory& d, const std::string& name) {
  for (const grain_id& id : d.take_activations()) d.activated(id, {name + ":7700", 1, "a-" + id.identity}, t0);
}

}  // namespace

TEST_CASE("moves: keep — a joiner holds at once, answers for what the old holder still runs, and activates it "
          "only once that has ended",
          "[directory]") {
  directory_options o;
  o.moves = partition_moves::keep;
  o.max_moving = 1;  // would be waves of one, if anything stopped
  grain_directory a({"n1", 1}, {"counter"}, o), b({"n2", 1}, {"counter"}, o);
  pair_net net{{{"n1", &a}, {"n2", &b}}, {}};
  a.set_view(view({host("n1", 1)}), t0);
  for (int i = 0; i < 200; ++i) a.locate(g("c" + std::to_string(i)), static_cast<grain_directory::caller>(i), t0);
  activate_all(a, "n1");
  a.take_answers();
  REQUIRE(a.active() == 200);

  const auto both = view({host("n1", 1), host("n2", 1)});
  a.set_view(both, t0);
  b.set_view(both, t0);
  net.deliver();
  CHECK(a.take_stops().empty());  // nothing stops
  CHECK(a.partitions().count(partition_role::releasing) == 0);
  std::vector<grain_id> theirs;  // grains n2 owns now, still active on n1
  for (int i = 0; i < 200; ++i)
    if (both->owner(g("x").kind, grain_key("counter", "c" + std::to_string(i)))->name == "n2")
      theirs.push_back(g("c" + std::to_string(i)));
  REQUIRE(theirs.size() > 50);
  CHECK(b.remote() == theirs.size());
  CHECK(a.active() == 200);

  // n2 answers with n1's activations, and orders none.
  for (std::size_t i = 0; i < theirs.size(); ++i) b.locate(theirs[i], 1000 + i, t0);
  CHECK(b.take_activations().empty());
  const auto answers = b.take_answers();
  REQUIRE(answers.size() == theirs.size());
  for (const auto& x : answers) {
    CHECK(x.error == locate_error::none);
    CHECK(x.where.address == "n1:7700");
    CHECK(x.where.actor == "a-" + x.id.identity);
  }

  // One passivates on n1; the report is lost, and sent again.
  const grain_id first = theirs[0];
  a.deactivated(first, {"n1:7700", 1, "a-" + first.identity}, t0);
  net.lose.insert("n1");
  net.deliver();
  net.lose.clear();
  b.locate(first, 1, t0);
  CHECK(b.take_activations().empty());  // still known as n1's: not activated twice
  REQUIRE(b.take_answers().size() == 1);
  a.advance(millis(600));
  net.deliver(millis(600));
  CHECK(b.remote() == theirs.size() - 1);
  b.locate(first, 2, t0);
  const auto orders = b.take_activations();
  REQUIRE(orders.size() == 1);
  CHECK(orders[0] == first);
  // Noted: not sent again.
  a.advance(millis(1200));
  CHECK(a.take_messages().empty());
}

TEST_CASE("moves: keep — a leave stops what the node kept, and its grantee forgets it", "[directory]") {
  directory_options o;
  o.moves = partition_moves::keep;
  grain_directory a({"n1", 1}, {"counter"}, o), b({"n2", 1}, {"counter"}, o);
  pair_net net{{{"n1", &a}, {"n2", &b}}, {}};
  a.set_view(view({host("n1", 1)}), t0);
  for (int i = 0; i < 100; ++i) a.locate(g("c" + std::to_string(i)), static_cast<grain_directory::caller>(i), t0);
  activate_all(a, "n1");
  const auto both = view({host("n1", 1), host("n2", 1)});
  a.set_view(both, t0);
  b.set_view(both, t0);
  net.deliver();
  const std::size_t kept = b.remote();
  REQUIRE(kept > 0);
  a.leave(t0);
  net.deliver();
  // All of them stop, kept or held (the held in waves of max_moving).
  std::size_t stopped = 0;
  for (auto stops = a.take_stops(); !stops.empty(); stops = a.take_stops()) {
    CHECK_FALSE(a.partitions().idle());
    for (const grain_id& id : stops) a.deactivated(id, {"n1:7700", 1, "a-" + id.identity}, t0);
    stopped += stops.size();
    net.deliver();
  }
  CHECK(stopped == 100);
  CHECK(a.partitions().idle());
  CHECK(b.remote() == 0);
}

TEST_CASE("moves: keep — told of a second activation of a grain it knows, a holder keeps the first and evicts "
          "the other",
          "[directory]") {
  directory_options o;
  o.moves = partition_moves::keep;
  grain_directory a({"n1", 1}, {"counter"}, o), b({"n2", 1}, {"counter"}, o);
  pair_net net{{{"n1", &a}, {"n2", &b}}, {}};
  // Each alone (each took the other for dead): both activate every grain.
  a.set_view(view({host("n1", 1)}), t0);
  b.set_view(view({host("n2", 1)}), t0);
  for (int i = 0; i < 100; ++i) {
    a.locate(g("c" + std::to_string(i)), static_cast<grain_directory::caller>(i), t0);
    b.locate(g("c" + std::to_string(i)), static_cast<grain_directory::caller>(i), t0);
  }
  activate_all(a, "n1");
  activate_all(b, "n2");
  // The views agree again.
  const auto both = view({host("n1", 1), host("n2", 1)});
  a.set_view(both, t0);
  b.set_view(both, t0);
  net.deliver();
  // Each gave up what the other owns, listing its own activations there:
  // every one of those is a second activation for the owner, evicted.
  const auto a_stops = a.take_stops(), b_stops = b.take_stops();
  CHECK(a_stops.size() + b_stops.size() == 100);
  for (const grain_id& id : a_stops) CHECK(both->owner("counter", grain_key(id.kind, id.identity))->name == "n2");
  for (const grain_id& id : b_stops) CHECK(both->owner("counter", grain_key(id.kind, id.identity))->name == "n1");
  CHECK(a.stats().evicted == a_stops.size());
  for (const grain_id& id : a_stops) a.deactivated(id, {"n1:7700", 1, "a-" + id.identity}, t0);
  for (const grain_id& id : b_stops) b.deactivated(id, {"n2:7700", 1, "a-" + id.identity}, t0);
  net.deliver();
  CHECK(a.active() + b.active() == 100);
  CHECK(a.remote() + b.remote() == 0);
}
