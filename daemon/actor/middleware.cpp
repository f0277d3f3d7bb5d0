#include "actor/middleware.hpp"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "actor/context.hpp"

namespace troupe::middleware {

namespace {

std::int64_t elapsed_ns(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                              since)
      .count();
}

std::string describe(context& ctx) {
  std::string s = ctx.self().to_string();
  if (!ctx.props().kind.empty()) {
    s += " (";
    s += ctx.props().kind;
    s += ')';
  }
  char type[32];
  std::snprintf(type, sizeof type, " type=%016llx",
                static_cast<unsigned long long>(ctx.type()));
  s += type;
  return s;
}

}  // namespace

receive_middleware log_receive(log_sink sink) {
  return [sink = std::move(sink)](context& ctx, const receive_next& next) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      next(ctx);
    } catch (const std::exception& e) {
      sink(describe(ctx) + " failed: " + e.what());
      throw;
    }
    sink(describe(ctx) + " handled in " + std::to_string(elapsed_ns(t0)) + " ns");
  };
}

receive_middleware count_receive(std::shared_ptr<receive_metrics> m) {
  return [m = std::move(m)](context& ctx, const receive_next& next) {
    const auto t0 = std::chrono::steady_clock::now();
    m->messages.fetch_add(1, std::memory_order_relaxed);
    try {
      next(ctx);
    } catch (...) {
      m->failures.fetch_add(1, std::memory_order_relaxed);
      m->handler_nanoseconds.fetch_add(static_cast<std::uint64_t>(elapsed_ns(t0)),
                                       std::memory_order_relaxed);
      throw;
    }
    m->handler_nanoseconds.fetch_add(static_cast<std::uint64_t>(elapsed_ns(t0)),
                                     std::memory_order_relaxed);
  };
}

namespace {

#if defined(__x86_64__)
bool invariant_tsc() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("flags", 0) == 0)
      return line.find(" constant_tsc") != std::string::npos &&
             line.find(" nonstop_tsc") != std::string::npos;
  return false;
}
const bool use_tsc = invariant_tsc();
#else
constexpr bool use_tsc = false;
#endif

std::uint64_t steady_ns() noexcept {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

// Nanoseconds per tick of latency_histogram::now(), measured once against
// steady_clock over 10 ms.
double ns_per_tick() {
  static const double ratio = [] {
    if (!use_tsc) return 1.0;
    const std::uint64_t n0 = steady_ns(), t0 = latency_histogram::now();
    std::uint64_t n1;
    while ((n1 = steady_ns()) - n0 < 10'000'000) {
    }
    const std::uint64_t t1 = latency_histogram::now();
    return t1 > t0 ? static_cast<double>(n1 - n0) / static_cast<double>(t1 - t0) : 1.0;
  }();
  return ratio;
}

}  // namespace

std::uint64_t latency_histogram::now() noexcept {
#if defined(__x86_64__)
  if (use_tsc) return __rdtsc();
#endif
  return steady_ns();
}

latency_histogram::latency_histogram() noexcept : ns_per_tick_(ns_per_tick()) {
  for (std::size_t b = 0; b < bounds_ns.size(); ++b)
    bounds_ticks_[b] = static_cast<std::uint64_t>(static_cast<double>(bounds_ns[b]) / ns_per_tick_);
}

void latency_histogram::record_ticks(std::uint64_t ticks) noexcept {
  // Each thread keeps to one stripe, handed out in turn.
  static std::atomic<std::size_t> next_stripe{0};
  thread_local const std::size_t mine =
      next_stripe.fetch_add(1, std::memory_order_relaxed) % stripe_count;
  std::size_t b = 0;
  while (b < bounds_ticks_.size() && ticks > bounds_ticks_[b]) ++b;
  stripe& s = stripes_[mine];
  s.buckets[b].fetch_add(1, std::memory_order_relaxed);
  s.sum_ticks.fetch_add(ticks, std::memory_order_relaxed);
}

void latency_histogram::record(std::uint64_t ns) noexcept {
  record_ticks(static_cast<std::uint64_t>(static_cast<double>(ns) / ns_per_tick_));
}

latency_histogram::snapshot latency_histogram::read() const noexcept {
  snapshot out;
  std::uint64_t ticks = 0;
  for (const stripe& s : stripes_) {
    for (std::size_t b = 0; b < bucket_count; ++b) {
      const std::uint64_t n = s.buckets[b].load(std::memory_order_relaxed);
      out.buckets[b] += n;
      out.count += n;
    }
    ticks += s.sum_ticks.load(std::memory_order_relaxed);
  }
  out.sum_ns = static_cast<std::uint64_t>(static_cast<double>(ticks) * ns_per_tick_);
  return out;
}

receive_middleware time_receive(std::shared_ptr<latency_histogram> h) {
  return [h = std::move(h)](context& ctx, const receive_next& next) {
    const std::uint64_t t0 = latency_histogram::now();
    // A handler that moved to another core may read a counter a little
    // behind: such a duration counts as zero.
    auto elapsed = [t0] {
      const std::uint64_t t1 = latency_histogram::now();
      return t1 > t0 ? t1 - t0 : 0;
    };
    try {
      next(ctx);
    } catch (...) {
      h->record_ticks(elapsed());
      throw;
    }
    h->record_ticks(elapsed());
  };
}

send_middleware stamp_header(std::string key, std::string value) {
  return [key = std::move(key), value = std::move(value)](context&, const pid& target, envelope* e,
                                                          const send_next& next) {
    set_header(e, key, value);
    next(target, e);
  };
}

spawn_middleware log_spawn(log_sink sink) {
  return [sink = std::move(sink)](spawn_request& r, const spawn_next& next) {
    const std::string kind = r.props->kind.empty() ? std::string("actor") : r.props->kind;
    spawn_result res = next(r);
    if (res) sink("spawned " + res.pid.to_string() + " (" + kind + ")");
    else sink("spawn of " + kind + " refused: " + to_string(res.error));
    return res;
  };
}

}  // namespace troupe::middleware
