#pragma once
// One suspicion of one member (Lifeguard): it ends in a dead verdict at a
// deadline that starts at `max` and moves towards `min` as independent
// members confirm it (k confirmations are expected), never below `min`
// after the suspicion began; with none expected, it is `min`.
#include <cmath>
#include <set>
#include <string>

#include "cluster/member.hpp"

namespace troupe::cluster {

class suspicion {
 public:
  suspicion(millis start, millis min, millis max, unsigned k, const std::string& from)
      : start_(start), min_(min), max_(max), k_(k) {
    confirmations_.insert(from);
  }
  // A confirmation from `from`; true when it was a new one (then it is
  // worth gossiping on).
  bool confirm(const std::string& from) {
    if (confirmations_.size() > k_ || !confirmations_.insert(from).second) return false;
    return true;
  }
  millis deadline() const noexcept {
    // The first suspicion counts for nothing: it is what started it.
    // With no confirmation to wait for (too few members to give them), the
    // least time: waiting longer would not make the verdict any surer.
    if (k_ == 0) return start_ + min_;
    const double c = static_cast<double>(confirmations_.size() - 1);
    if (c <= 0) return start_ + max_;
    const double frac = std::log(c + 1.0) / std::log(static_cast<double>(k_) + 1.0);
    const auto span = static_cast<double>((max_ - min_).count());
    const millis timeout = max_ - millis(static_cast<std::int64_t>(frac * span));
    return start_ + std::max(timeout, min_);
  }
  millis start() const noexcept { return start_; }

 private:
  millis start_, min_, max_;
  unsigned k_;
  std::set<std::string> confirmations_;
};

}  // namespace troupe::cluster
