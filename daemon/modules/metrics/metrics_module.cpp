// The metrics module: /metrics on metrics.listen for Prometheus, with the
// node's own metrics, every module's, and the handler-time histograms of
// the kinds whose kinds.<kind>.histogram is true.
#include <memory>

#include "actor/actor_system.hpp"
#include "modules/metrics/metrics_server.hpp"
#include "node/log.hpp"
#include "node/module.hpp"

namespace troupe::node {

namespace {

struct metrics_settings {
  std::string listen = "127.0.0.1:7781";
};

struct histogram_setting {
  bool on = false;
};

const section<metrics_settings>& metrics_section() {
  static const section<metrics_settings> s = [] {
    section<metrics_settings> m("metrics", "The Prometheus endpoint.");
    m.address("listen", &metrics_settings::listen, true,
              "Where /metrics is served (plain HTTP, GET only). Port 0 takes a free one.")
        .moved("histograms", "set kinds.<kind>.histogram: true (kinds.all.histogram for every kind)");
    return m;
  }();
  return s;
}

// kinds.<kind>.histogram
const section<histogram_setting>& histogram_section() {
  static const section<histogram_setting> s = [] {
    section<histogram_setting> h("histogram", "Whether the kind's handler times are kept.");
    h.flag("", &histogram_setting::on,
           "Keeps the handler times of the kind's actors as a histogram "
           "(troupe_message_processing_seconds{kind}). Timing costs two clock reads a message, so "
           "only the kinds named pay it.");
    return h;
  }();
  return s;
}

class metrics_module final : public module {
 public:
  // Before any module starts: plugins may spawn as they load.
  bool prepare(node_context& ctx, system_config&) override {
    const config& c = ctx.settings();
    const histogram_setting* all = c.for_kind(histogram_section(), config::all_kinds);
    std::vector<std::string> on, off;
    for (const std::string& kind : c.kinds())
      if (const histogram_setting* h = c.for_kind(histogram_section(), kind); h != nullptr && kind != config::all_kinds)
        (h->on ? on : off).push_back(kind);
    histograms_ = std::make_unique<kind_histograms>(all != nullptr && all->on, std::move(on), std::move(off));
    return true;
  }

  int start(node_context& ctx) override {
    const config& c = ctx.settings();
    const metrics_settings& m = c.get(metrics_section());
    // The admin section's connection bounds serve both servers.
    if (const http_limits* l = ctx.find<http_limits>()) limits_ = *l;
    ctx.add_metrics(runtime_metrics(ctx.system(), ctx.loop()));
    ctx.add_metrics(histogram_metrics(*histograms_));
    try {
      server_ = std::make_unique<metrics_server>(m.listen, limits_, [&ctx](std::vector<prometheus::MetricFamily>& out) {
        ctx.collect(out);
      });
    } catch (const std::exception& e) {
      log(level::error, e.what());
      return 1;
    }
    listen_ = m.listen;
    log(level::info, "metrics on " + url() + "/metrics");
    return 0;
  }

  void decorate_kind(const std::string& kind, props& p) override {
    if (histograms_) histograms_->instrument(kind, p);
  }

  void describe(nlohmann::json& node) const override {
    if (server_) node["metrics"] = url() + "/metrics";
  }

  void close() override { server_.reset(); }

 private:
  std::string url() const {
    return "http://" + listen_.substr(0, listen_.rfind(':')) + ":" + std::to_string(server_->port());
  }

  http_limits limits_;
  std::unique_ptr<kind_histograms> histograms_;
  std::unique_ptr<metrics_server> server_;
  std::string listen_;
};

}  // namespace

}  // namespace troupe::node

troupe::node::module_def troupe_module_metrics() {
  using namespace troupe::node;
  return {"metrics", {&metrics_section()}, {&histogram_section()}, [] { return std::make_unique<metrics_module>(); }};
}
