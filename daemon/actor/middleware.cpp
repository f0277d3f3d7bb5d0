#include "actor/middleware.hpp"

#include <chrono>
#include <cstdio>

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

void latency_histogram::record(std::uint64_t ns) noexcept {
  // Each thread keeps to one stripe, handed out in turn.
  static std::atomic<std::size_t> next_stripe{0};
  thread_local const std::size_t mine =
      next_stripe.fetch_add(1, std::memory_order_relaxed) % stripe_count;
  std::size_t b = 0;
  while (b < bounds_ns.size() && ns > bounds_ns[b]) ++b;
  stripe& s = stripes_[mine];
  s.buckets[b].fetch_add(1, std::memory_order_relaxed);
  s.sum_ns.fetch_add(ns, std::memory_order_relaxed);
}

latency_histogram::snapshot latency_histogram::read() const noexcept {
  snapshot out;
  for (const stripe& s : stripes_) {
    for (std::size_t b = 0; b < bucket_count; ++b) {
      const std::uint64_t n = s.buckets[b].load(std::memory_order_relaxed);
      out.buckets[b] += n;
      out.count += n;
    }
    out.sum_ns += s.sum_ns.load(std::memory_order_relaxed);
  }
  return out;
}

receive_middleware time_receive(std::shared_ptr<latency_histogram> h) {
  return [h = std::move(h)](context& ctx, const receive_next& next) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      next(ctx);
    } catch (...) {
      h->record(static_cast<std::uint64_t>(elapsed_ns(t0)));
      throw;
    }
    h->record(static_cast<std::uint64_t>(elapsed_ns(t0)));
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
