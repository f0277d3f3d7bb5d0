#include "actor/supervision.hpp"

#include <algorithm>
#include <cmath>

#include "actor/process.hpp"

namespace troupe {

const char* to_string(directive d) noexcept {
  switch (d) {
    case directive::resume: return "resume";
    case directive::restart: return "restart";
    case directive::stop: return "stop";
    case directive::escalate: return "escalate";
  }
  return "unknown";
}

std::size_t restart_stats::record(std::chrono::steady_clock::time_point now,
                                  std::chrono::steady_clock::duration window) {
  failures.push_back(now);
  std::erase_if(failures, [&](auto t) { return now - t > window; });
  return failures.size();
}

std::chrono::nanoseconds backoff::delay(std::size_t failure_number, std::mt19937_64& rng) const {
  if (initial.count() <= 0) return std::chrono::nanoseconds{0};
  double base = static_cast<double>(std::chrono::nanoseconds(initial).count());
  double cap = static_cast<double>(std::chrono::nanoseconds(max).count());
  double exponent = static_cast<double>(failure_number > 0 ? failure_number - 1 : 0);
  double d = std::min(cap, base * std::pow(multiplier, std::min(exponent, 62.0)));
  double j = std::clamp(jitter, 0.0, 1.0);
  if (j > 0) {
    std::uniform_real_distribution<double> spread(-j, j);
    d *= 1.0 + spread(rng);
  }
  return std::chrono::nanoseconds(static_cast<std::int64_t>(std::min(d, cap)));
}

directive supervisor_strategy::decide_for(const pid& child, const std::string& reason) const {
  return decide ? decide(child, reason) : directive::restart;
}

}  // namespace troupe
