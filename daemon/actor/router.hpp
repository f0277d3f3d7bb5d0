#pragma once
// Routers: one PID in front of several routees. A pool router spawns and
// supervises its routees from one Props; a group router is given PIDs.
//
// Routing happens on the sender's thread: a send to the router's PID picks
// the routee and goes straight into that routee's mailbox, with no hop
// through the router's own mailbox. Only management messages
// (troupe.router.*) and PoisonPill go to the router itself.
//
//   round_robin      each routee in turn
//   random           a routee at random
//   broadcast        every routee (the payload is shared, not copied)
//   consistent_hash  by the message's key: the same key goes to the same
//                    routee, and adding or removing a routee moves only the
//                    keys that must move (a ring of virtual nodes)
//
// A message a router cannot place (no routee, no hash key) is a dead letter
// with reason no_routee. Stopping the router stops a pool's routees (they
// are its children), not a group's.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "actor/cpu.hpp"
#include "actor/props.hpp"

namespace troupe {

class actor_system;
class context;

enum class routing : std::uint8_t { round_robin, random, broadcast, consistent_hash };
const char* to_string(routing r) noexcept;

// The consistent-hash key of a message; empty when it has none. By default
// a message supplies its key in the header "hash-key".
using hash_key_fn = std::function<std::string_view(const envelope& e)>;
inline constexpr std::string_view hash_key_header = "hash-key";

struct router_config {
  routing strategy = routing::round_robin;
  // A pool: `pool_size` routees made from `routee`.
  props_ptr routee;
  std::size_t pool_size = 0;
  // A group: these routees.
  std::vector<pid> group;
  hash_key_fn hash_key;               // consistent_hash; null: the "hash-key" header
  std::uint32_t virtual_nodes = 128;  // consistent_hash: ring points per routee
};

// Props of a router; spawn it like any actor. The router supervises a
// pool's routees with `supervisor` (one-for-one restart by default).
props router_props(router_config cfg);

namespace routers {
props_ptr pool(routing r, props_ptr routee, std::size_t size);
props_ptr group(routing r, std::vector<pid> routees);
props_ptr consistent_hash_pool(props_ptr routee, std::size_t size, hash_key_fn key = {});
props_ptr consistent_hash_group(std::vector<pid> routees, hash_key_fn key = {});

// Management messages.
message add_routee(const pid& p);
message remove_routee(const pid& p);
message get_routees();
message adjust_pool_size(int change);
message broadcast(const message& m);
// The PIDs in a reply to get_routees() (local ones; others are skipped).
std::vector<pid> routees_in(actor_system& sys, const message& reply);
}  // namespace routers

// The routing side of a router, used from any sender's thread. The table of
// routees is replaced whole by the router (on its own thread) and published
// with one atomic store; senders read it without a lock or a reference
// count. A replaced table is kept until the router itself is freed, since a
// sender may still be reading it: each change costs 8 bytes per routee for
// the router's lifetime.
class router_state {
 public:
  explicit router_state(std::shared_ptr<const router_config> cfg);
  ~router_state();

  // Routes `e`; false when it is for the router itself.
  bool route(actor_system& sys, envelope* e) noexcept;

  // Spawns a pool's routees or watches a group's, as the router is spawned.
  void start(context& router);
  // The router's thread only.
  void set_routees(std::vector<pid> routees);
  const std::vector<pid>& routees() const noexcept;
  const router_config& config() const noexcept { return *cfg_; }

  // Consistent hashing, exposed for tests: the routee index for `key`.
  static std::uint64_t hash(std::string_view key) noexcept;

 private:
  struct table;
  const pid* pick(const table& t, envelope* e) noexcept;

  std::shared_ptr<const router_config> cfg_;
  std::atomic<const table*> table_;
  std::vector<std::unique_ptr<const table>> tables_;  // current and replaced ones
  alignas(false_sharing_range) std::atomic<std::uint64_t> next_{0};  // round-robin turn
};

}  // namespace troupe
