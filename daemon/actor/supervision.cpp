#include "actor/supervision.hpp"

#include <algorithm>
#include <cmath>

#include "actor/actor_system.hpp"
#include "actor/context_internal.hpp"
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

void context::fail(std::string reason) noexcept {
  suspended_ = true;
  system().stats().failures.fetch_add(1, std::memory_order_relaxed);
  if (const auto& hook = system().config().on_failure) {
    try {
      hook(*this, reason);
    } catch (...) {
    }
  }
  if (system().events().has_subscribers())
    system().events().publish(actor_failed_event{self(), reason});
  if (parent_) {
    auto* m = new system_message(system_kind::failure, process_ref(static_cast<process*>(this)));
    m->error = std::move(reason);
    m->stats = ex().stats;
    parent_.get()->send_system(m);
  } else {
    system().supervise_root(*this, reason, ex().stats);
  }
}

namespace {

// Applies a supervisor's decision about `child`. `supervisor` is null for
// root actors, which the system's guardian strategy supervises.
void apply_directive(actor_system& sys, const supervisor_strategy& s, context* supervisor,
                     const process_ref& child, const std::string& reason, restart_stats stats) {
  troupe::pid child_pid(child);
  directive d;
  try {
    d = s.decide_for(child_pid, reason);
  } catch (...) {
    d = directive::stop;  // a decider that fails cannot be trusted to restart
  }
  std::vector<troupe::pid> targets;
  if (s.applies_to == supervisor_strategy::scope::all_for_one && supervisor != nullptr)
    targets = supervisor->children();
  else
    targets.push_back(child_pid);

  if (d == directive::restart) {
    std::size_t n = stats.record(std::chrono::steady_clock::now(), s.window);
    if (n > s.max_restarts) d = directive::stop;
  }
  if (sys.events().has_subscribers()) sys.events().publish(supervision_event{child_pid, d, reason});

  switch (d) {
    case directive::resume: {
      auto* m = new system_message(system_kind::resume);
      m->stats = std::move(stats);
      child->send_system(m);
      break;
    }
    case directive::restart: {
      auto delay = sys.backoff_delay(s.backoff, stats.failures.size());
      for (const troupe::pid& t : targets) {
        restart_stats st = t == child_pid ? stats : restart_stats{};
        auto send = [target = t, st = std::move(st)]() {
          auto* m = new system_message(system_kind::restart);
          m->stats = st;
          target.get()->send_system(m);
        };
        if (delay.count() > 0) sys.loop().arm(delay, std::move(send));
        else send();
      }
      break;
    }
    case directive::stop:
      for (const troupe::pid& t : targets)
        t.get()->send_system(new system_message(system_kind::stop));
      break;
    case directive::escalate:
      if (supervisor != nullptr) {
        supervisor->escalate(child_pid, reason, std::move(stats));
      } else {
        child->send_system(new system_message(system_kind::stop));
      }
      break;
  }
}

}  // namespace

void context::escalate(troupe::pid child, std::string reason, restart_stats child_stats) noexcept {
  ex().escalated.emplace_back(std::move(child), std::move(child_stats));
  fail(std::move(reason));
}

void context::handle_failure(system_message& m) noexcept {
  static const supervisor_strategy default_strategy{};
  const supervisor_strategy& s = props_->supervisor ? *props_->supervisor : default_strategy;
  apply_directive(system(), s, this, m.who, m.error, std::move(m.stats));
}

void actor_system::supervise_root(context& child, const std::string& reason, restart_stats& stats) {
  apply_directive(*this, cfg_.guardian, nullptr, process_ref(static_cast<process*>(&child)), reason,
                  stats);
}
}  // namespace troupe
