#pragma once
// Prometheus metrics of the node, served on metrics.listen at /metrics.
// Everything is read at scrape time from counters the runtime keeps anyway
// (relaxed atomics, per-worker message counts), so metrics cost the hot
// path nothing. Labels are of low cardinality: kind and reason, never an
// actor id.
#include <memory>
#include <string>

namespace troupe {
class actor_system;
class event_loop;
namespace plugin {
class host;
}
}  // namespace troupe

namespace prometheus {
class Exposer;
}

namespace troupe::node {

class metrics {
 public:
  // Binds `listen` ("127.0.0.1:7781"); throws std::runtime_error naming the
  // address if it cannot.
  metrics(const std::string& listen, actor_system& sys, std::shared_ptr<plugin::host> plugins,
          event_loop& loop);
  ~metrics();
  // The port actually bound (for listen addresses with port 0).
  int port() const;

 private:
  class collector;
  std::shared_ptr<collector> collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace troupe::node
