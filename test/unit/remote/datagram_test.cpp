#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "remote/datagram.hpp"

using namespace troupe::remote;
using verdict = datagram_seal::verdict;

namespace {

std::vector<std::uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

const std::string secret = "a-secret-long-enough-for-the-cluster";
const std::string other_secret = "another-secret-long-enough-for-it";

}  // namespace

TEST_CASE("a sealed datagram opens with the same secret and says who sent it", "[datagram]") {
  datagram_seal a("c", {secret}), b("c", {secret});
  const auto d = a.seal("node-a", 7, bytes("ping"));
  CHECK(d.size() == a.overhead(6) + 4);
  std::vector<std::uint8_t> plain;
  datagram_seal::sender from;
  REQUIRE(b.open(d, plain, from) == verdict::ok);
  CHECK(plain == bytes("ping"));
  CHECK(from.name == "node-a");
  CHECK(from.generation == 7);
  CHECK(from.counter == 1);
  // What is sealed is not readable in the datagram.
  CHECK(std::search(d.begin(), d.end(), plain.begin(), plain.end()) == d.end());
}

TEST_CASE("a datagram under another key, of another cluster, or altered is refused", "[datagram]") {
  datagram_seal a("c", {secret}), stranger("c", {other_secret}), elsewhere("other", {secret});
  std::vector<std::uint8_t> plain;
  datagram_seal::sender from;
  const auto d = a.seal("node-a", 1, bytes("hello"));
  CHECK(stranger.open(d, plain, from) == verdict::unauthenticated);
  CHECK(plain.empty());
  CHECK(elsewhere.open(d, plain, from) == verdict::wrong_cluster);
  for (std::size_t i : {std::size_t{8}, d.size() / 2, d.size() - 1}) {
    auto bent = d;
    bent[i] ^= 0x01;  // the name, the generation or counter, the tag
    datagram_seal fresh("c", {secret});
    const verdict v = fresh.open(bent, plain, from);
    CHECK((v == verdict::unauthenticated || v == verdict::malformed || v == verdict::wrong_cluster));
  }
  datagram_seal fresh("c", {secret});
  for (std::size_t n : {std::size_t{0}, std::size_t{3}, std::size_t{20}, d.size() - 17})
    CHECK(fresh.open({d.data(), n}, plain, from) != verdict::ok);
}

TEST_CASE("a replayed datagram is refused; reordered ones within the window are not", "[datagram]") {
  datagram_seal a("c", {secret}), b("c", {secret});
  std::vector<std::vector<std::uint8_t>> sent;
  for (int i = 0; i < 100; ++i) sent.push_back(a.seal("node-a", 1, bytes("x")));
  std::vector<std::uint8_t> plain;
  datagram_seal::sender from;
  REQUIRE(b.open(sent[50], plain, from) == verdict::ok);
  CHECK(b.open(sent[50], plain, from) == verdict::replayed);
  CHECK(b.open(sent[20], plain, from) == verdict::ok);  // late, within 64
  CHECK(b.open(sent[20], plain, from) == verdict::replayed);
  REQUIRE(b.open(sent[99], plain, from) == verdict::ok);
  CHECK(b.open(sent[30], plain, from) == verdict::replayed);  // 69 behind: too old to tell
  CHECK(b.open(sent[98], plain, from) == verdict::ok);
}

TEST_CASE("a newer generation of a sender starts afresh; the older one is stale", "[datagram]") {
  datagram_seal before("c", {secret}), after("c", {secret}), b("c", {secret});
  std::vector<std::uint8_t> plain;
  datagram_seal::sender from;
  const auto old1 = before.seal("node-a", 1, bytes("a"));
  const auto old2 = before.seal("node-a", 1, bytes("b"));
  REQUIRE(b.open(old1, plain, from) == verdict::ok);
  REQUIRE(b.open(after.seal("node-a", 2, bytes("c")), plain, from) == verdict::ok);
  CHECK(from.generation == 2);
  CHECK(b.open(old2, plain, from) == verdict::stale);
}

TEST_CASE("during a rotation both secrets open; the first seals", "[datagram]") {
  datagram_seal old_side("c", {secret}), rotating("c", {other_secret, secret}), new_side("c", {other_secret});
  std::vector<std::uint8_t> plain;
  datagram_seal::sender from;
  CHECK(rotating.open(old_side.seal("a", 1, bytes("1")), plain, from) == verdict::ok);
  CHECK(rotating.open(new_side.seal("b", 1, bytes("2")), plain, from) == verdict::ok);
  CHECK(new_side.open(rotating.seal("c", 1, bytes("3")), plain, from) == verdict::ok);
  CHECK(old_side.open(rotating.seal("c", 1, bytes("4")), plain, from) == verdict::unauthenticated);
}
