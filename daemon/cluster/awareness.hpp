#pragma once
// Lifeguard's local health score: how much this node itself is behind.
// Missed acks and nacks, and having to refute a suspicion, raise it; acks
// lower it. Probes and their timeouts stretch by (score + 1), so a node
// that is slow itself does not accuse others of it.
#include <algorithm>

#include "cluster/member.hpp"

namespace troupe::cluster {

class awareness {
 public:
  explicit awareness(unsigned max) noexcept : max_(max) {}
  void apply(int delta) noexcept {
    score_ = std::clamp(static_cast<int>(score_) + delta, 0, static_cast<int>(max_));
  }
  unsigned score() const noexcept { return score_; }
  millis scale(millis base) const noexcept { return base * (score_ + 1); }

 private:
  unsigned max_;
  unsigned score_ = 0;
};

}  // namespace troupe::cluster
