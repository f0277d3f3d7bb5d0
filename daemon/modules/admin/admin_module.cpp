// The admin module: the admin HTTP API (admin_api.hpp) on admin.listen,
// its bearer token, its connection bounds, and its metrics.
#include <fstream>
#include <memory>

#include "modules/admin/admin_api.hpp"
#include "node/log.hpp"
#include "node/module.hpp"

namespace troupe::node {

namespace {

struct admin_settings {
  std::string listen = "127.0.0.1:7780";
  struct token_file {
    std::string file;
    std::string token;  // the file's first line
    bool operator==(const token_file&) const = default;
  };
  token_file token;
  bool insecure_no_token = false;
  unsigned max_connections = 4096;
  unsigned max_connections_per_address = 0;
  unsigned idle_timeout_seconds = 30;
  int line = 0;  // of admin.listen, or of the section, for the check below
};

void read_token(const YAML::Node& v, section_reader& r, const std::string& what, admin_settings::token_file& out) {
  read::text(v, r, what, out.file);
  out.token.clear();
  if (!r.readable_file(v, what, out.file)) return;
  std::ifstream in(out.file);
  std::getline(in, out.token);
  while (!out.token.empty() && std::isspace(static_cast<unsigned char>(out.token.back()))) out.token.pop_back();
  if (out.token.empty()) r.error(v, what + " " + out.file + " holds no token (its first line is empty)");
}

const section<admin_settings>& admin_section() {
  static const section<admin_settings> s = [] {
    section<admin_settings> a("admin", "The admin API (JSON over HTTP) that troupectl talks to.");
    a.address("listen", &admin_settings::listen, true, "Where the admin API listens. Port 0 takes a free one.")
        .key<admin_settings::token_file>(
            "token_file", &admin_settings::token, "path",
            "A file whose first line is the bearer token every /v1 call must carry. Unset: no "
            "token. A reload re-reads it.",
            read_token, [](const admin_settings::token_file& t) { return read::show(t.file); })
        .live()
        .flag("insecure_no_token", &admin_settings::insecure_no_token,
              "Allows a listen address beyond loopback without a token (refused otherwise).")
        .number("max_connections", &admin_settings::max_connections, 1, 1 << 20, "",
                "Open connections to the admin and metrics servers, each; more are refused.")
        .number("max_connections_per_address", &admin_settings::max_connections_per_address, 0, 1 << 20, "",
                "Open connections from one client address; 0 is no limit.")
        .number("idle_timeout", &admin_settings::idle_timeout_seconds, 1, 3600, "seconds",
                "A connection that sends nothing this long is closed.")
        .check([](admin_settings& a, const YAML::Node& node, section_reader& r, const config&) {
          a.line = node["listen"] ? section_reader::line_of(node["listen"]) : section_reader::line_of(node);
          // The admin API spawns and stops actors: reachable from other hosts,
          // it needs a token, unless the operator says in so many words that
          // it does not.
          if (!section_reader::loopback_address(a.listen) && a.token.file.empty() && !a.insecure_no_token)
            r.error(a.line, "'admin.listen' " + a.listen +
                                " accepts connections from other hosts, and 'admin.token_file' is not set: "
                                "anyone who reaches it could spawn and stop actors (set a token_file, or "
                                "'admin.insecure_no_token: true' if that is what you want)");
        });
    return a;
  }();
  return s;
}

std::string url(const std::string& listen, int port) {
  return "http://" + listen.substr(0, listen.rfind(':')) + ":" + std::to_string(port);
}

class admin_module final : public module {
 public:
  int start(node_context& ctx) override {
    const admin_settings& a = ctx.settings().get(admin_section());
    limits_.max_connections = a.max_connections;
    limits_.max_connections_per_address = a.max_connections_per_address;
    limits_.idle_timeout_s = a.idle_timeout_seconds;
    ctx.offer<http_limits>(&limits_);  // the metrics server's too
    try {
      api_ = std::make_unique<admin_api>(a.listen, a.token.token, limits_, ctx);
    } catch (const std::exception& e) {
      log(level::error, e.what());
      return 1;
    }
    token_ = a.token.token;
    listen_ = a.listen;
    ctx.add_metrics([stats = &api_->stats()](std::vector<prometheus::MetricFamily>& out) { collect(*stats, out); });
    log(level::info, "admin API on " + url(a.listen, api_->port()) + (a.token.token.empty() ? "" : " (bearer token required)"));
    return 0;
  }

  void describe(nlohmann::json& node) const override {
    if (api_) node["admin"] = url(listen_, api_->port());
  }

  void reload(const config& next) override {
    if (!api_) return;
    const std::string& token = next.get(admin_section()).token.token;
    if (token != token_) {
      api_->set_token(token);
      token_ = token;
      log(level::info, token.empty() ? "reload: the admin API needs no token now"
                                     : "reload: the admin API takes the new token");
    }
  }

  void close() override { api_.reset(); }

 private:
  static void collect(const admin_stats& s, std::vector<prometheus::MetricFamily>& out) {
    using prometheus::MetricType;
    auto f = metric_family("troupe_admin_requests_total", "Admin API requests by status class", MetricType::Counter);
    for (std::size_t c : {2, 4, 5})
      add_metric(f, static_cast<double>(s.by_class[c].load(std::memory_order_relaxed)),
                 {{"status", std::to_string(c) + "xx"}});
    out.push_back(std::move(f));
    const http_stats* h = s.connections;
    if (h == nullptr) return;
    out.push_back(single_metric("troupe_admin_connections", "Open connections to the admin API", MetricType::Gauge,
                                static_cast<double>(h->open.load(std::memory_order_relaxed))));
    auto refused = metric_family("troupe_admin_connections_refused_total",
                                 "Admin API connections refused, by the limit they met", MetricType::Counter);
    add_metric(refused, static_cast<double>(h->refused_limit.load(std::memory_order_relaxed)),
               {{"reason", "max_connections"}});
    add_metric(refused, static_cast<double>(h->refused_per_address.load(std::memory_order_relaxed)),
               {{"reason", "max_connections_per_address"}});
    out.push_back(std::move(refused));
    out.push_back(single_metric("troupe_admin_bodies_too_large_total",
                                "Admin API requests refused for a body over the limit", MetricType::Counter,
                                static_cast<double>(h->too_large.load(std::memory_order_relaxed))));
  }

  http_limits limits_;
  std::unique_ptr<admin_api> api_;
  std::string token_;
  std::string listen_;
};

}  // namespace

}  // namespace troupe::node

troupe::node::module_def troupe_module_admin() {
  using namespace troupe::node;
  return {"admin", {&admin_section()}, {}, [] { return std::make_unique<admin_module>(); }};
}
