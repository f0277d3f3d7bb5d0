#pragma once
// Membership kept by a coordination service (etcd): who is a member is
// what the service lists; SWIM only says whom this node cannot reach.
//
// The registry is a state machine like membership: its inputs are the
// service's records (a whole listing, then one change at a time), SWIM's
// view of the same members, and the time; its outputs are the members and
// events about them. A record that appears is a join; one replaced by a
// later generation of the same name is that start's death and the new
// one's join; one deleted is a leave when it said it was leaving, else a
// death (its lease ran out). A member SWIM holds suspect or dead stays a
// member, shown suspect (unreachable), and keeps its grains: only the
// service ends membership, so placement never sees two sources disagree.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cluster/member.hpp"
#include "cluster/membership.hpp"

namespace troupe::cluster {

// A member as the service records it.
struct record {
  std::string name;
  std::string address;
  std::uint64_t generation = 0;
  metadata meta;
  bool leaving = false;  // it is handing over and about to delete its record

  bool operator==(const record&) const = default;
};

// A record as stored (JSON: {"name","address","generation","meta","leaving"});
// nullopt with `why` for one that is not a member record.
std::optional<record> parse_record(const std::string& json, std::string& why);
std::string format_record(const record& r);

class registry {
 public:
  // `self` is this node's name; `retention` how long members that died
  // or left are still listed (as such) before they are forgotten.
  registry(std::string self, millis retention) : self_(std::move(self)), retention_(retention) {}

  // The service's whole listing (at start, or again after a compaction or
  // a lost watch): what is missing from it is gone.
  void reset(const std::vector<record>& all, millis now);
  // One record written, or deleted (by name).
  void put(const record& r, millis now);
  void remove(const std::string& name, millis now);
  // SWIM's view: members it holds suspect or dead are unreachable.
  void reachability(const std::vector<member>& swim, millis now);
  // Forgets members gone for longer than the retention.
  void advance(millis now);

  bool listed() const noexcept { return listed_; }
  std::vector<member> members() const;
  const member* find(const std::string& name) const;
  std::vector<member_event> take_events() { return std::exchange(events_, {}); }

 private:
  struct entry {
    member m;
    bool unreachable = false;
    bool announced = false;  // its join was told (a start first seen leaving is not)
  };
  void gone(entry& e, member_state how, millis now);
  // Who said so (member_event::from): this node for unreachable, etcd
  // for a death (the lease ran out), the member itself for a leave.
  void event(member_event::kind k, const member& m) {
    using K = member_event::kind;
    events_.push_back({k, m, k == K::suspect ? self_ : k == K::dead ? std::string("etcd") : std::string()});
  }
  static bool up(member_state s) { return s == member_state::alive || s == member_state::suspect; }

  std::string self_;
  millis retention_;
  bool listed_ = false;
  std::map<std::string, entry> members_;
  // SWIM's verdicts by name, with the generation they were about.
  std::map<std::string, std::pair<std::uint64_t, bool>> unreachable_;
  std::vector<member_event> events_;
};

}  // namespace troupe::cluster
