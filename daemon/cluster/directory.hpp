#pragma once
// The grain directory of one node: for each grain this node owns (by
// placement.hpp), where its activation runs and who waits for it. A state
// machine with no socket, thread or clock inside: the node feeds it the
// requests and the outcomes of activations, and carries out what it asks
// (activate a grain here, answer a caller).
//
// One activation per grain: the first request for an unknown grain orders
// its activation and every request until it is done waits for that one; a
// failed activation is an error for every waiting caller at once, not a
// timeout; an activation that ends (passivated, stopped, its node lost)
// leaves the directory, and the next request activates the grain again.
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <tuple>
#include <utility>
#include <vector>

namespace troupe::cluster {

struct grain_id {
  std::string kind;
  std::string identity;
  friend bool operator<(const grain_id& a, const grain_id& b) {
    return std::tie(a.kind, a.identity) < std::tie(b.kind, b.identity);
  }
  friend bool operator==(const grain_id& a, const grain_id& b) = default;
};

struct grain_id_hash {
  std::size_t operator()(const grain_id& g) const noexcept;
};

// Where an activation runs: the node (its address and start) and the
// actor's id there.
struct activation {
  std::string address;
  std::uint64_t generation = 0;
  std::string actor;
  friend bool operator==(const activation& a, const activation& b) = default;
};

enum class locate_error : std::uint8_t {
  none,
  activation_failed,  // the grain's constructor failed (detail says why)
  busy,               // too many callers wait for this grain already
};
const char* to_string(locate_error e) noexcept;

class grain_directory {
 public:
  // Who asked (the node's own number for a waiting call).
  using caller = std::uint64_t;

  struct answer {
    caller who;
    grain_id id;
    locate_error error = locate_error::none;
    activation where;    // when error is none
    std::string detail;  // why not, in words
  };

  // `max_waiting`: callers that may wait for one activation.
  explicit grain_directory(std::size_t max_waiting = 10000) : max_waiting_(max_waiting) {}

  // `who` asks where `id` runs: answered at once when it is known, after
  // the activation otherwise (which this call orders when none is on its
  // way: see take_activations).
  void locate(const grain_id& id, caller who);
  // The activation of `id` ordered here is done: every waiting caller is
  // answered.
  void activated(const grain_id& id, const activation& where);
  // It failed: every waiting caller gets the error, and the grain is
  // unknown again.
  void activation_failed(const grain_id& id, const std::string& why);
  // The activation ended (passivated, stopped): forgotten, if it is still
  // the one the directory knows.
  void deactivated(const grain_id& id, const activation& where);
  // Every activation on the node at `address` is gone. Returns how many.
  std::size_t node_lost(const std::string& address);

  // What the node must do: activate these grains here...
  std::vector<grain_id> take_activations() { return std::exchange(orders_, {}); }
  // ...and answer these callers.
  std::vector<answer> take_answers() { return std::exchange(answers_, {}); }

  // Grains active, and grains whose activation is on its way.
  std::size_t active() const noexcept { return active_; }
  std::size_t activating() const noexcept { return entries_.size() - active_; }
  // Where `id` runs, when it is active.
  const activation* find(const grain_id& id) const;

 private:
  struct entry {
    bool active = false;
    activation where;
    std::vector<caller> waiting;
  };

  std::size_t max_waiting_;
  std::unordered_map<grain_id, entry, grain_id_hash> entries_;
  std::size_t active_ = 0;
  std::vector<grain_id> orders_;
  std::vector<answer> answers_;
};

}  // namespace troupe::cluster
