#pragma once
// Prometheus metrics of the node, served on metrics.listen at /metrics.
// Everything is read at scrape time from counters the runtime keeps anyway
// (relaxed atomics, per-worker message counts), so metrics cost the hot
// path nothing. Labels are of low cardinality: kind and reason, never an
// actor id.
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "node/http_server.hpp"

namespace troupe {
class actor_system;
struct props;
class event_loop;
namespace plugin {
class host;
}
}  // namespace troupe

namespace troupe::middleware {
class latency_histogram;
}

namespace troupe::remote {
struct stats;
}

namespace troupe::node {

struct admin_stats;

// The opt-in histograms of handler time by kind (metrics.histograms in the
// config: a list of kinds, or "all"). Timing costs two clock reads a
// message, so only the kinds named pay it.
class kind_histograms {
 public:
  explicit kind_histograms(std::vector<std::string> kinds = {});
  // The histogram for `kind`, made on first call; null if not opted in.
  std::shared_ptr<middleware::latency_histogram> for_kind(const std::string& kind);
  std::map<std::string, std::shared_ptr<middleware::latency_histogram>> all() const;
  // Adds the timing middleware to `p` when `kind` is opted in.
  void instrument(const std::string& kind, props& p);

 private:
  std::vector<std::string> kinds_;
  bool every_kind_ = false;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<middleware::latency_histogram>> by_kind_;
};

class metrics {
 public:
  // Binds `listen` ("127.0.0.1:7781") with the connection bounds of
  // `limits`; throws std::runtime_error naming the address if it cannot.
  // `histograms` and `admin` may be null; both must outlive the metrics.
  metrics(const std::string& listen, const http_limits& limits, actor_system& sys, std::shared_ptr<plugin::host> plugins,
          event_loop& loop, const kind_histograms* histograms = nullptr,
          const admin_stats* admin = nullptr, const remote::stats* peers = nullptr);
  ~metrics();
  // The port actually bound (for listen addresses with port 0).
  int port() const;

 private:
  class collector;
  std::shared_ptr<collector> collector_;
  std::unique_ptr<http_server> server_;
};

}  // namespace troupe::node
