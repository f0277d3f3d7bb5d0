#pragma once
// Cluster membership: SWIM with the Lifeguard extensions, as a state
// machine. Its inputs are a datagram, a stream message and the time; its
// outputs are datagrams and stream messages to send, the time it next
// wants to run (next_wake), and events about members. It has no socket,
// thread or clock of its own: the node wires it to UDP, TLS streams and
// its loop, and the simulator in the tests to a simulated network.
//
// - Probing: one member per probe interval, in a shuffled round; no ack
//   within the probe timeout and k members are asked to probe it; no ack at
//   all by the end of the interval and it is suspected.
// - Suspicion (suspicion.hpp) ends in a dead verdict unless the member
//   refutes it with a higher incarnation; independent confirmations
//   shorten it.
// - Lifeguard's health score (awareness.hpp) slows this node's own probes
//   when it is the slow one.
// - News piggy-backs on probes and gossip, each piece sent a limited number
//   of times (broadcasts.hpp); a full-state exchange with one member every
//   push_pull_interval repairs what gossip missed, and is how a node joins.
// - A node joins by a full-state exchange with a seed that has joined; only
//   the first listed seed forms a cluster alone. Dead members and seeds not
//   in view are contacted now and then, so the halves of a partition meet again.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "cluster/awareness.hpp"
#include "cluster/broadcasts.hpp"
#include "cluster/member.hpp"
#include "cluster/messages.hpp"
#include "cluster/options.hpp"
#include "cluster/suspicion.hpp"

namespace troupe::cluster {

// Something to send: a datagram, or a message on a stream (a full-state exchange).
struct outgoing {
  enum class channel : std::uint8_t { datagram, stream };
  channel via = channel::datagram;
  std::string to;  // an address
  std::vector<std::uint8_t> bytes;
};

// What changed about a member, for those who watch the cluster.
struct member_event {
  enum class kind : std::uint8_t { joined, updated, suspect, alive, dead, left, forgotten };
  kind what;
  member who;
  // Who said so: the member that suspected it or declared it dead (itself
  // for a leave); empty for news of the member's own (alive, joined).
  std::string from;
};
const char* to_string(member_event::kind k) noexcept;

struct membership_stats {
  std::uint64_t datagrams_in = 0, datagrams_out = 0, bytes_in = 0, bytes_out = 0;
  std::uint64_t streams_in = 0, streams_out = 0;
  std::uint64_t malformed = 0, wrong_cluster = 0;
  std::uint64_t probes = 0, indirect_probes = 0, suspicions = 0, refutations = 0, dead_verdicts = 0;
  // Times this node heard it was declared dead (and refuted it).
  std::uint64_t declared_dead = 0;
  // How probes ended: acknowledged directly, through another member, or not at all.
  std::uint64_t acked = 0, acked_indirectly = 0, failed = 0;
};

class membership {
 public:
  // `self.generation` must be new at every start of the node. `seeds` are
  // addresses; the first may form a cluster alone. `seed` seeds the choice
  // of whom to probe and gossip to.
  membership(std::string cluster, member_id self, std::vector<std::string> seeds, swim_options o,
             std::uint64_t seed, metadata meta = {});

  void start(millis now);
  // A datagram from `from` (the address it came from).
  void on_datagram(const std::string& from, std::span<const std::uint8_t> bytes, millis now);
  // A stream message (a full-state exchange) from `from`.
  void on_stream(const std::string& from, std::span<const std::uint8_t> bytes, millis now);
  // Runs what is due by `now`.
  void advance(millis now);
  // When advance() next has something to do.
  millis next_wake() const;

  // This node leaves: it tells the others (they mark it left, not dead).
  void leave(millis now);
  // An operator declares `name` dead (a node that will not return); false
  // when it is not a member, or dead already.
  bool down(const std::string& name, millis now);
  // Replaces this node's metadata; the others learn it by gossip.
  void set_meta(metadata meta, millis now);
  // Replaces the seeds (a reload): a node that has not joined asks the new
  // ones at once; seeds not in view are asked now and then.
  void set_seeds(std::vector<std::string> seeds, millis now);
  // Asks the node at `address` for a full-state exchange now (a provider
  // such as etcd named it a member before gossip did).
  void contact(const std::string& address) {
    if (address != self_.address) exchange_state(address, false);
  }

  std::vector<outgoing> take_outgoing() { return std::exchange(out_, {}); }
  std::vector<member_event> take_events() { return std::exchange(events_, {}); }

  const member_id& self() const noexcept { return self_; }
  const member* find(const std::string& name) const;
  std::vector<member> members() const;  // every member known, this node included
  // Calls f(const member&) for every member known, without copying them.
  template <class F>
  void each_member(F&& f) const {
    for (const auto& [name, e] : members_) f(e.m);
  }
  // Whether this node belongs to a formed cluster.
  bool joined() const noexcept { return joined_; }
  // Whether its view is worth acting on (placing grains by it): it has
  // joined, and either a member of a formed cluster answered it, or another
  // seed sent its whole state, or it lists no other seed, or five probe
  // intervals have passed since its start: a first seed that restarts is
  // found by the members of the cluster it formed before that, or is alone
  // indeed.
  bool settled(millis now) const;
  // Whether every alive member reports the same value of `key` (which goes
  // to `value`): a way to damp flapping, not a guarantee.
  bool consensus(const std::string& key, std::string* value = nullptr) const;
  unsigned health() const noexcept { return awareness_.score(); }
  // Whether this node has heard, within the longest a suspicion can last,
  // from a majority of the members it knows that have not left (the dead
  // ones it still remembers count: on the small side of a partition, the
  // others are dead to it and it is still a minority). Exactly half is a
  // majority for the half with the lowest name. A node out of touch may be
  // declared dead by the others without knowing it: what it alone must
  // hold (grain activations) it gives up.
  bool in_touch(millis now) const;
  // Whether this node hears the cluster now: some other member was heard
  // from within `window`, or there is no other member up to hear from. A
  // node that was stopped (SIGSTOP) or cut off hears nobody, and may have
  // been declared dead meanwhile: until it hears again, what it alone may
  // hold (grain activations) it must not serve.
  bool hearing(millis now, millis window) const;
  // How long this node has heard from no other member up (0 when there is
  // none to hear from). Asked before an input is handled, it tells how long
  // the node was deaf: stopped, starved or cut off.
  millis silent_for(millis now) const;
  // The soonest the others can declare a member dead once it goes quiet:
  // a probe interval, then the shortest suspicion.
  millis earliest_verdict() const { return opts_.probe_interval + suspicion_min(); }
  // The longest a suspicion lasts now, before a dead verdict.
  millis suspicion_max() const { return suspicion_min() * opts_.suspicion_max_mult; }
  const membership_stats& stats() const noexcept { return stats_; }
  const swim_options& options() const noexcept { return opts_; }

 private:
  struct entry {
    member m;
    std::unique_ptr<suspicion> suspected;
    millis heard{0};  // when a datagram or stream last came from it (or it was learned of)
  };
  struct probe_state {
    bool active = false, acked = false, indirect_sent = false;
    std::uint32_t seq = 0;
    std::string target;
    std::uint64_t generation = 0;
    millis indirect_at{0}, end{0};
    unsigned nacks_expected = 0, nacks = 0;
  };
  struct relay {
    std::string requester;  // address
    std::uint32_t their_seq = 0;
    millis nack_at{0};
    bool want_nack = false;
  };

  // News, applied here and passed on.
  void apply(const alive_news& n, millis now);
  void apply(const suspect_news& n, millis now);
  void apply(const dead_news& n, millis now);
  void apply(const news& n, millis now);
  void refute(std::uint32_t above, millis now);
  bool stale_about_self(const news& n) const;
  void broadcast(news n) { queue_.push(std::move(n)); }
  void set_state(entry& e, member_state s, millis now);
  void heard_from(const member_id& who, millis now);
  // Whether `who` is news here: not known at that start, or held dead.
  bool unknown(const member_id& who) const;

  void handle(const std::string& from, const packet& p, millis now);
  void handle(const std::string& from, const sync& s, millis now);

  void start_probe(millis now);
  void probe_indirectly(millis now);
  void finish_probe(millis now);
  void gossip(millis now);
  void exchange_state(const std::string& address, bool reply);
  // Queues a datagram; with `piggyback`, news from the queue fills it up.
  void send(const std::string& to, packet p, bool piggyback = true);

  // Whom pick() chooses from. Indirect probes go to alive members only: one
  // this node already suspects is likely on the far side of the same fault,
  // and its missing nack would count against this node's own health.
  enum class among { alive, live, live_and_recently_dead };
  std::vector<const entry*> pick(unsigned k, const std::string& except, among who, millis now);
  std::size_t live_count() const;
  unsigned retransmit_limit() const;
  millis suspicion_min() const;
  alive_news alive_of(const member& m) const { return {m.id, m.meta_version, m.meta}; }
  void event(member_event::kind k, const member& m, std::string from = {}) {
    events_.push_back({k, m, std::move(from)});
  }

  std::string cluster_;
  member_id self_;
  std::vector<std::string> seeds_;
  swim_options opts_;
  std::mt19937_64 rng_;
  awareness awareness_;
  broadcast_queue queue_;
  std::map<std::string, entry> members_;  // by name, this node included
  // The highest generation seen of names forgotten since: older news
  // about them is refused.
  std::map<std::string, std::uint64_t> floors_;
  // When each sender this node did not know may be asked for its state
  // again (bounded by the members that can authenticate).
  std::map<std::string, millis> asked_;
  std::vector<std::string> round_;  // who is probed next, shuffled
  std::size_t round_at_ = 0;
  probe_state probe_;
  std::map<std::uint32_t, relay> relays_;
  std::uint32_t seq_ = 0;
  bool started_ = false, joined_ = false, leaving_ = false;
  millis started_at_{0};
  bool answered_ = false;  // a member of a formed cluster answered an exchange
  std::optional<std::uint32_t> dead_heard_;  // the highest incarnation of this node heard declared dead
  millis next_probe_{0}, next_gossip_{0}, next_push_pull_{0}, next_join_{0}, next_reconnect_{0};
  std::vector<outgoing> out_;
  std::vector<member_event> events_;
  membership_stats stats_;
};

}  // namespace troupe::cluster
