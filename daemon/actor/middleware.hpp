#pragma once
// Ready-made middleware, and examples of writing one: logging and metrics
// around message handling, a header stamped on every outgoing message, and
// logging around spawns. Add them to Props:
//
//   props p = props::of<Worker>();
//   p.receive_hooks.push_back(middleware::count_receive(metrics));
//   p.receive_hooks.push_back(middleware::log_receive(sink));
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "actor/props.hpp"

namespace troupe::middleware {

// Where log lines go (the node passes its logger).
using log_sink = std::function<void(std::string_view line)>;

// One line per message handled: the actor, its kind, the message type and
// how long the handler took; a handler that throws is logged and the
// exception goes on to the supervisor as usual.
receive_middleware log_receive(log_sink sink);

// Counters for one set of actors (one Props, usually), read by metrics.
struct receive_metrics {
  std::atomic<std::uint64_t> messages{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> handler_nanoseconds{0};
};
receive_middleware count_receive(std::shared_ptr<receive_metrics> m);

// Handler times in fixed buckets, for a Prometheus histogram. Striped over
// cache lines by thread, so that workers recording at once rarely share one.
class latency_histogram {
 public:
  // Upper bounds of the buckets, in nanoseconds; one more bucket takes the rest.
  static constexpr std::array<std::uint64_t, 14> bounds_ns = {
      1'000,     5'000,      10'000,      50'000,      100'000,       500'000,       1'000'000,
      5'000'000, 10'000'000, 50'000'000, 100'000'000, 500'000'000, 1'000'000'000, 5'000'000'000};
  static constexpr std::size_t bucket_count = bounds_ns.size() + 1;

  latency_histogram() noexcept;

  // The histogram's clock: the CPU's time-stamp counter where it is
  // invariant (x86-64: ~12 ns a read in a VM, against ~31 ns for
  // steady_clock), else nanoseconds of steady_clock.
  static std::uint64_t now() noexcept;
  // Files a duration measured with now().
  void record_ticks(std::uint64_t ticks) noexcept;
  void record(std::uint64_t ns) noexcept;

  struct snapshot {
    std::array<std::uint64_t, bucket_count> buckets{};  // per bucket, not cumulative
    std::uint64_t count = 0;
    std::uint64_t sum_ns = 0;
  };
  snapshot read() const noexcept;

 private:
  struct alignas(64) stripe {
    std::array<std::atomic<std::uint64_t>, bucket_count> buckets{};
    std::atomic<std::uint64_t> sum_ticks{0};
  };
  static constexpr std::size_t stripe_count = 8;
  const double ns_per_tick_;
  std::array<std::uint64_t, bounds_ns.size()> bounds_ticks_;
  std::array<stripe, stripe_count> stripes_{};
};
// Times every message the actor handles (a throwing handler too).
receive_middleware time_receive(std::shared_ptr<latency_histogram> h);

// Sets header `key` to `value` on every message the actor sends.
send_middleware stamp_header(std::string key, std::string value);

// One line per spawn: the new actor and its kind, or why it was refused.
spawn_middleware log_spawn(log_sink sink);

}  // namespace troupe::middleware
