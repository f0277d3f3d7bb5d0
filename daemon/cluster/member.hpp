#pragma once
// Who a member of the cluster is, and what is known of it.
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace troupe::cluster {

// Time inside the protocol: milliseconds on a clock the caller owns (the
// node's monotonic clock, or the simulator's).
using millis = std::chrono::milliseconds;

// A member: a name is one node, a generation one start of it (a restart
// has a higher one), an incarnation SWIM's refutation counter within a
// generation. News about a member is ordered by (generation, incarnation).
struct member_id {
  std::string name;
  std::string address;  // where it takes datagrams and streams
  std::uint64_t generation = 0;
  std::uint32_t incarnation = 0;

  // Which of two pieces of news about one name is newer.
  friend bool operator<(const member_id& a, const member_id& b) noexcept {
    return std::tie(a.generation, a.incarnation) < std::tie(b.generation, b.incarnation);
  }
  bool operator==(const member_id&) const = default;
};

enum class member_state : std::uint8_t { alive, suspect, dead, left };
const char* to_string(member_state s) noexcept;

// A small map each member publishes about itself (grain kinds it hosts,
// its protocol version, its load), with a version that grows with every
// change.
using metadata = std::map<std::string, std::string>;

struct member {
  member_id id;
  member_state state = member_state::alive;
  millis since{0};  // when it entered its state, on the owner's clock
  std::uint64_t meta_version = 0;
  metadata meta;
};

// The kinds a member hosts, as its metadata says them ("kinds": "a,b").
std::vector<std::string> kinds_of(const member& m);
// The grain kinds it hosts and their versions ("grains": "counter@1.2.0,...").
std::vector<std::pair<std::string, std::string>> grains_of(const member& m);

}  // namespace troupe::cluster
