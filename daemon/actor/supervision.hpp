#pragma once
// Supervision: what a parent does when a child fails.
#include <chrono>
#include <cstdint>
#include <vector>
#include <functional>
#include <random>
#include <string>

namespace troupe {

class pid;

enum class directive : std::uint8_t {
  resume,    // keep the actor and its state, go on with the next message
  restart,   // replace the actor instance with a fresh one
  stop,      // stop the actor
  escalate,  // fail the supervisor itself, with the child's reason
};

const char* to_string(directive d) noexcept;

// Failures of one child, kept by the child and judged by its supervisor.
struct restart_stats {
  std::vector<std::chrono::steady_clock::time_point> failures;

  // Records a failure now and forgets those older than `window`; returns
  // how many remain (this one included).
  std::size_t record(std::chrono::steady_clock::time_point now,
                     std::chrono::steady_clock::duration window);
};

// Exponential backoff before a restart: initial · multiplierⁿ⁻¹ for the n-th
// failure within the window, capped at `max`, then spread by ±jitter so that
// siblings failing together do not restart together.
struct backoff {
  std::chrono::milliseconds initial{0};  // 0: restart at once
  std::chrono::milliseconds max{30'000};
  double multiplier = 2.0;
  double jitter = 0.2;  // fraction of the delay, 0..1

  std::chrono::nanoseconds delay(std::size_t failure_number, std::mt19937_64& rng) const;
};

struct supervisor_strategy {
  enum class scope : std::uint8_t {
    one_for_one,  // the directive applies to the failed child only
    all_for_one,  // the directive applies to every child
  };
  using decider = std::function<directive(const pid& child, const std::string& reason)>;

  scope applies_to = scope::one_for_one;
  decider decide;           // empty: always restart
  std::uint32_t max_restarts = 10;  // within `window`; more stops the child
  std::chrono::steady_clock::duration window = std::chrono::seconds(10);
  troupe::backoff backoff{};

  directive decide_for(const pid& child, const std::string& reason) const;
};

}  // namespace troupe
