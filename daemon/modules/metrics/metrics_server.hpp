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
#include "node/module.hpp"

namespace troupe {
class actor_system;
struct props;
class event_loop;
}  // namespace troupe

namespace troupe::middleware {
class latency_histogram;
}

namespace troupe::node {

// The opt-in histograms of handler time by kind (kinds.<kind>.histogram in
// the config). Timing costs two clock reads a message, so only the kinds
// named pay it.
class kind_histograms {
 public:
  explicit kind_histograms(std::vector<std::string> kinds = {});
  // Every kind but those of `off`, or only those of `on`.
  kind_histograms(bool every, std::vector<std::string> on, std::vector<std::string> off);
  // The histogram for `kind`, made on first call; null if not opted in.
  std::shared_ptr<middleware::latency_histogram> for_kind(const std::string& kind);
  std::map<std::string, std::shared_ptr<middleware::latency_histogram>> all() const;
  // Adds the timing middleware to `p` when `kind` is opted in.
  void instrument(const std::string& kind, props& p);

 private:
  std::vector<std::string> kinds_;
  std::vector<std::string> except_;
  bool every_kind_ = false;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<middleware::latency_histogram>> by_kind_;
};

// The node's own metrics: actors, messages, dead letters, memory, the event
// loop, the process. Read at scrape time, from the server's thread.
metric_source runtime_metrics(actor_system& sys, event_loop& loop);
// troupe_message_processing_seconds, for the kinds `h` times.
metric_source histogram_metrics(const kind_histograms& h);

// Serves GET /metrics on `listen` ("127.0.0.1:7781") in Prometheus' text
// format, from what `collect` gathers at each scrape.
class metrics_server {
 public:
  // Throws std::runtime_error naming the address if it cannot bind.
  metrics_server(const std::string& listen, const http_limits& limits, metric_source collect);
  ~metrics_server();
  // The port actually bound (for listen addresses with port 0).
  int port() const;

 private:
  std::unique_ptr<http_server> server_;
};

}  // namespace troupe::node
