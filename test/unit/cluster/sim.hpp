#pragma once
// A deterministic simulator for the membership machines: virtual time, a
// network that loses, delays, duplicates and reorders datagrams, streams
// that are delayed but not lost, partitions, members that pause (as under
// SIGSTOP: what is sent to them waits), die, and restart with a new
// generation. One seed gives one run, exactly. The invariants of the
// protocol are checked after every step; the first broken one is kept.
#include <any>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cluster/membership.hpp"

namespace troupe::cluster::sim {

struct network {
  double loss = 0.0;       // of each datagram
  double duplicate = 0.0;  // of each datagram
  millis delay_min{1}, delay_max{10};
};

// Something more that runs on every member, on the same clock and network
// (the grain layer in grain_sim.hpp): told when a member starts, is killed
// and runs, woken when it asks, and given what the other members send it
// over their stream links.
class application {
 public:
  virtual ~application() = default;
  // What member i publishes about itself from its start.
  virtual metadata metadata_of(unsigned i) = 0;
  virtual void started(unsigned i, millis now) = 0;
  virtual void killed(unsigned i) = 0;
  // Member i is about to run (before its membership hears anything new).
  virtual void before(unsigned i, millis now) = 0;
  // Member i ran (its timers, or something came): after its membership did.
  virtual void ran(unsigned i, millis now) = 0;
  virtual void received(unsigned to, unsigned from, const std::any& m, millis now) = 0;
  // What was sent to a start of member `to` that is not running (killed,
  // or restarted since): the sender's connection is refused or reset.
  virtual void undeliverable(unsigned to, unsigned from, const std::any& m, millis now) = 0;
  // When member i wants to run next (-1: no wish).
  virtual millis next_wake(unsigned i) const = 0;
};

class simulator {
 public:
  simulator(std::uint64_t seed, swim_options o, network net = {});
  void set_application(application* a) { app_ = a; }
  // A message over the stream link from `from` to `to`: delayed, in order,
  // never lost, but dropped across a partition, and when `to` is not the
  // start it was sent to any more.
  void send(unsigned from, unsigned to, std::any m);
  std::uint64_t generation(unsigned i) const { return nodes_.at(i).generation; }
  // Member i has something new to do (a timer set from outside its turns).
  void poke(unsigned i) { schedule_wake(i); }
  bool paused(unsigned i) const { return nodes_.at(i).paused_until > now_; }
  // A number drawn from the run's generator (the same run, the same numbers).
  std::uint64_t random() { return rng_(); }

  // Member i is "n<i>" at "127.0.<i/250>.<i%250+1>:7700"; `seeds` are
  // member numbers. It starts at the current time.
  void add(unsigned i, const std::vector<unsigned>& seeds);
  void start(unsigned i);
  void kill(unsigned i);                  // kill -9
  void restart(unsigned i);               // a new start: a new generation
  void pause(unsigned i, millis length);  // SIGSTOP for `length`, then SIGCONT
  void leave(unsigned i);
  void down(unsigned by, unsigned who);
  // Nothing passes between the two groups until heal().
  void partition(const std::set<unsigned>& a);
  void heal() { cut_.clear(); }
  void set_network(network n) { net_ = n; }

  void run_for(millis d);
  millis now() const { return now_; }

  membership& at(unsigned i) { return *nodes_.at(i).m; }
  bool running(unsigned i) const { return nodes_.at(i).up; }
  std::string name(unsigned i) const { return std::string("n").append(std::to_string(i)); }
  static std::string address(unsigned i);

  // Whether every running member sees exactly the running members alive,
  // each at its current generation and incarnation. Why not, otherwise.
  bool converged(std::string* why = nullptr) const;
  // The first invariant broken, or empty.
  const std::string& violation() const { return violation_; }
  // Dead verdicts about members that were running at the time, counted
  // once per member and incarnation.
  std::uint64_t false_deaths() const { return false_deaths_.size(); }
  std::uint64_t steps() const { return steps_; }
  std::uint64_t bytes() const { return bytes_; }
  // A digest of everything that happened: equal digests, equal runs.
  std::uint64_t trace() const { return trace_; }
  // When each member was first seen dead by each other running member,
  // since `since`.
  std::map<std::string, std::vector<millis>> dead_seen;
  std::map<std::string, std::vector<millis>> joined_seen;
  // Every member event, as it happens (for a replay that shows what went on).
  std::function<void(millis, unsigned observer, const member_event&)> on_event;
  // Every datagram and stream message sent, and whether the network dropped it.
  std::function<void(millis, unsigned from, const outgoing&, bool dropped)> on_send;

 private:
  struct node {
    std::unique_ptr<membership> m;
    std::vector<unsigned> seeds;
    bool up = false;
    millis paused_until{0};
    std::uint64_t generation = 0;
    millis wake{-1};  // the wake-up scheduled, or -1
  };
  struct event {
    millis at;
    std::uint64_t order;
    enum class kind : std::uint8_t { wake, datagram, stream, app } what;
    unsigned to;
    std::string from;
    std::vector<std::uint8_t> bytes;
    std::uint64_t generation;  // of the receiver it was meant for
    std::any payload = {};     // app
    unsigned sender = 0;       // app
    bool operator>(const event& o) const { return at != o.at ? at > o.at : order > o.order; }
  };
  // What an observer has held of a member, for the invariants.
  struct seen {
    std::uint64_t generation = 0;
    std::uint32_t incarnation = 0;
    std::uint64_t max_alive_gen = 0;
    std::uint32_t max_alive_inc = 0;
    bool has_alive = false;
    std::set<std::uint64_t> left_generations;
  };

  void push(event e);
  void schedule_wake(unsigned i);
  void deliver(unsigned i);  // collects what node i sends
  void step(event e);
  void check(unsigned observer);
  bool blocked(unsigned a, unsigned b) const;
  void violate(const std::string& what);
  void mix(std::uint64_t v) { trace_ = (trace_ ^ v) * 0x100000001b3ull; }

  application* app_ = nullptr;
  std::map<std::pair<unsigned, unsigned>, millis> last_app_;  // FIFO per link
  std::mt19937_64 rng_;
  swim_options opts_;
  network net_;
  std::map<unsigned, node> nodes_;
  std::map<std::string, unsigned> by_address_;
  std::priority_queue<event, std::vector<event>, std::greater<>> queue_;
  std::set<unsigned> cut_;
  millis now_{0};
  std::uint64_t order_ = 0, steps_ = 0, bytes_ = 0, trace_ = 0xcbf29ce484222325ull;
  std::uint64_t next_generation_ = 1;
  std::string violation_;
  // (observer, its generation, member name) -> what it held.
  std::map<std::tuple<unsigned, std::uint64_t, std::string>, seen, std::less<>> seen_;
  // (name, generation, incarnation) -> when anyone first suspected it.
  std::map<std::tuple<std::string, std::uint64_t, std::uint32_t>, millis> first_suspected_;
  std::set<std::tuple<std::string, std::uint64_t>> downed_;
  std::set<std::tuple<std::string, std::uint64_t, std::uint32_t>> false_deaths_;
};

}  // namespace troupe::cluster::sim
