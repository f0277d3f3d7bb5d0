#include "node/module.hpp"

#include "actor/middleware.hpp"

#include <algorithm>
#include <limits>

namespace troupe::node {

using nlohmann::json;

namespace {

// JSON bodies nest at most this deep: parsers recurse, and a request
// thread's stack is small (a 4 KB body of brackets crashed the node).
constexpr std::size_t max_json_depth = 32;

// How deep `text` nests arrays and objects, counting no further than
// `limit + 1`; brackets inside strings do not count.
std::size_t json_depth(std::string_view text, std::size_t limit) {
  std::size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) break;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

// nlohmann's messages start with "[json.exception.parse_error.101] ".
std::string json_reason(const std::exception& e) {
  std::string what = e.what();
  if (what.rfind("[json.exception.", 0) == 0) {
    const std::size_t end = what.find("] ");
    if (end != std::string::npos) what.erase(0, end + 2);
  }
  return what;
}

}  // namespace

void admin_request::reply(int status, const json& body_json) const {
  http_response out;
  out.status = status;
  // Text that came from outside may hold invalid UTF-8: replaced, not thrown.
  out.body = body_json.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  out.headers.emplace_back("Cache-Control", "no-store");
  if (status == 401) out.headers.emplace_back("WWW-Authenticate", "Bearer");
  stats->by_class[std::min(status / 100, 5)].fetch_add(1, std::memory_order_relaxed);
  http->answer(std::move(out));
}

void admin_request::error(int status, const std::string& code, const std::string& message) const {
  reply(status, json{{"error", {{"code", code}, {"message", message}}}});
}

bool admin_request::object(json& out) const {
  if (json_depth(body(), max_json_depth) > max_json_depth) {
    error(400, "bad_json", "the body nests arrays and objects deeper than " +
                               std::to_string(max_json_depth) + " levels");
    return false;
  }
  try {
    out = json::parse(body());
  } catch (const json::exception& e) {
    // Malformed, invalid UTF-8, or a number out of range (1e999).
    error(400, "bad_json", "the body is not JSON: " + json_reason(e));
    return false;
  }
  if (!out.is_object()) {
    error(400, "bad_request", "the body must be a JSON object");
    return false;
  }
  return true;
}

prometheus::MetricFamily metric_family(std::string name, std::string help, prometheus::MetricType type) {
  return prometheus::MetricFamily{std::move(name), std::move(help), type, {}};
}

void add_metric(prometheus::MetricFamily& f, double value,
                std::vector<prometheus::ClientMetric::Label> labels) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (f.type == prometheus::MetricType::Counter) m.counter.value = value;
  else m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

prometheus::MetricFamily single_metric(std::string name, std::string help,
                                       prometheus::MetricType type, double value) {
  prometheus::MetricFamily f = metric_family(std::move(name), std::move(help), type);
  add_metric(f, value);
  return f;
}

prometheus::ClientMetric histogram_metric(const std::vector<std::uint64_t>& counts, const std::vector<double>& bounds,
                                          double sum, std::vector<prometheus::ClientMetric::Label> labels) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    m.histogram.bucket.push_back({cumulative, i < bounds.size() ? bounds[i] : std::numeric_limits<double>::infinity()});
  }
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = sum;
  return m;
}

prometheus::ClientMetric seconds_histogram(const middleware::latency_histogram& h,
                                           std::vector<prometheus::ClientMetric::Label> labels) {
  const middleware::latency_histogram::snapshot snap = h.read();
  static const std::vector<double> bounds = [] {
    std::vector<double> b;
    for (const std::uint64_t ns : middleware::latency_histogram::bounds_ns) b.push_back(static_cast<double>(ns) / 1e9);
    return b;
  }();
  return histogram_metric(std::vector<std::uint64_t>(snap.buckets.begin(), snap.buckets.end()), bounds,
                          static_cast<double>(snap.sum_ns) / 1e9, std::move(labels));
}

void node_context::add_route(admin_route r) {
  std::lock_guard lock(mu_);
  auto next = std::make_shared<std::vector<admin_route>>(routes_ ? *routes_ : std::vector<admin_route>{});
  next->push_back(std::move(r));
  routes_ = std::move(next);
}

namespace {
using check_list = std::shared_ptr<const std::vector<std::function<std::string()>>>;
// Copied on write: readers take the list under the lock and call it outside.
void append(std::mutex& mu, check_list& list, std::function<std::string()> fn) {
  std::lock_guard lock(mu);
  auto next = std::make_shared<std::vector<std::function<std::string()>>>(
      list ? *list : std::vector<std::function<std::string()>>{});
  next->push_back(std::move(fn));
  list = std::move(next);
}
check_list snapshot(std::mutex& mu, const check_list& list) {
  std::lock_guard lock(mu);
  return list;
}
}  // namespace

void node_context::add_readiness(std::function<std::string()> why_not) { append(mu_, readiness_, std::move(why_not)); }

void node_context::add_readiness_detail(std::function<std::string()> what) { append(mu_, details_, std::move(what)); }

std::string node_context::not_ready() const {
  if (const check_list checks = snapshot(mu_, readiness_))
    for (const auto& check : *checks)
      if (std::string why = check(); !why.empty()) return why;
  return {};
}

std::vector<std::string> node_context::readiness_details() const {
  std::vector<std::string> out;
  if (const check_list checks = snapshot(mu_, details_))
    for (const auto& check : *checks)
      if (std::string what = check(); !what.empty()) out.push_back(std::move(what));
  return out;
}

void node_context::add_metrics(metric_source s) {
  std::lock_guard lock(mu_);
  auto next = std::make_shared<std::vector<metric_source>>(metrics_ ? *metrics_ : std::vector<metric_source>{});
  next->push_back(std::move(s));
  metrics_ = std::move(next);
}

bool node_context::route(const admin_request& r) const {
  std::shared_ptr<const std::vector<admin_route>> routes;
  {
    std::lock_guard lock(mu_);
    routes = routes_;
  }
  if (routes)
    for (const admin_route& route : *routes)
      if (route(r)) return true;
  return false;
}

void node_context::collect(std::vector<prometheus::MetricFamily>& out) const {
  std::shared_ptr<const std::vector<metric_source>> sources;
  {
    std::lock_guard lock(mu_);
    sources = metrics_;
  }
  if (sources)
    for (const metric_source& s : *sources) s(out);
}

}  // namespace troupe::node
