// The persistence module: the journal that persistent actors keep their
// state in (persistence.provider), opened before any actor starts and
// closed after the last has stopped, so that every append it acknowledged
// is in the database before the node exits. Its metrics: appends by
// outcome, how long they took, events per commit, recoveries.
#include <array>
#include <atomic>
#include <fstream>
#include <memory>
#include <sstream>

#include "actor/actor_system.hpp"
#include "actor/middleware.hpp"
#include "actor/props.hpp"
#include "node/log.hpp"
#include "node/module.hpp"
#include "node/state_dir.hpp"
#include "persistence/actor_journal.hpp"
#include "persistence/pg_journal.hpp"
#include "persistence/sqlite_journal.hpp"
#include "plugin/plugin_host.hpp"

namespace troupe::node {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

struct persistence_settings {
  std::string provider = "none";
  file_text postgres_conninfo, postgres_password;
  unsigned postgres_connections = 2;
  std::string synchronous = "full";
  unsigned max_event_bytes = 1 << 20;
  unsigned checkpoint_pages = 4096;
  unsigned sort_after_events = 65536;
};

const section<persistence_settings>& persistence_section() {
  static const section<persistence_settings> s = [] {
    section<persistence_settings> p(
        "persistence",
        "Where persistent actors keep their journal of events and their snapshots. sqlite: one database, "
        "journal.db in node.state_dir, on this node only (a grain that moves to another node does not find "
        "its state there).");
    p.choice("provider", &persistence_settings::provider, {"none", "sqlite", "postgres"},
             "none: no actor kind may be persistent. sqlite: the journal in node.state_dir/journal.db. "
             "postgres: the journal in a PostgreSQL database that every node naming it shares, so that a "
             "grain finds its state on whichever node activates it.")
        .key<file_text>("postgres_conninfo_file", &persistence_settings::postgres_conninfo, "path",
                        "For postgres: a file holding the libpq connection string or URI (host=db port=5432 "
                        "dbname=troupe user=troupe). A reload re-reads it; connections are replaced once idle.",
                        read_file_text, [](const file_text& f) { return read::show(f.file); })
        .live()
        .key<file_text>("postgres_password_file", &persistence_settings::postgres_password, "path",
                        "For postgres: a file holding the password (its first line). Unset: libpq's own "
                        "(PGPASSWORD, ~/.pgpass) or none. A reload re-reads it.",
                        read_file_text, [](const file_text& f) { return read::show(f.file); })
        .live()
        .number("postgres_connections", &persistence_settings::postgres_connections, 1, 64, "connections",
                "For postgres: connections to the server. Each carries its share of the actors' requests as "
                "one pipeline and one commit at a time.")
        .choice("synchronous", &persistence_settings::synchronous, {"off", "normal", "full", "extra"},
                "full: an event is acknowledged once it is synced to disk. normal and off acknowledge sooner "
                "and may lose the last acknowledged events when the machine (normal) or the process (off) "
                "goes down.")
        .number("max_event_bytes", &persistence_settings::max_event_bytes, 1, 64 << 20, "bytes",
                "A larger event is refused (the actor gets the refusal and goes on).")
        .number("checkpoint_pages", &persistence_settings::checkpoint_pages, 16, 1 << 24, "pages",
                "Write-ahead log pages (4 KiB) after which the journal's writer copies them into the database.")
        .number("sort_after_events", &persistence_settings::sort_after_events, 1, 1 << 24, "events",
                "Events are stored in the order they come, then sorted by actor in one transaction once "
                "this many wait: more makes appends cheaper and each sort longer (appends wait for it).")
        .check([](persistence_settings& p, const YAML::Node& node, section_reader& r, const config& so_far) {
          if (p.provider == "sqlite" && so_far.get(node_section()).state_dir.empty())
            r.error(node, "'persistence.provider' sqlite needs 'node.state_dir' (where journal.db goes)");
          if (p.provider == "postgres" && p.postgres_conninfo.file.empty())
            r.error(node, "'persistence.provider' postgres needs 'persistence.postgres_conninfo_file' (a file "
                          "holding the connection string, like: host=db.example port=5432 dbname=troupe user=troupe)");
          if (!p.postgres_conninfo.text.empty()) {
            const std::string why = persistence::pg_conninfo_error(p.postgres_conninfo.text);
            if (!why.empty())
              r.error(node, "'persistence.postgres_conninfo_file' " + p.postgres_conninfo.file +
                                " does not hold a connection string libpq reads: " + why);
          }
        });
    return p;
  }();
  return s;
}

// kinds.<kind>.persistence: how a persistent kind's actors keep their state.
struct kind_persistence {
  unsigned snapshot_every = 0;
};

const section<kind_persistence>& kind_persistence_section() {
  static const section<kind_persistence> s = [] {
    section<kind_persistence> k("persistence", "For a persistent kind (its plugin says it is one).");
    k.number("snapshot_every", &kind_persistence::snapshot_every, 0, 100000000, "events",
             "An actor stores a snapshot of its state every this many events, so that recovery reads the "
             "snapshot and the events after it. 0: only the snapshots the actor asks for.");
    return k;
  }();
  return s;
}

// Events per commit: powers of two up to 16384.
class count_histogram {
 public:
  static constexpr std::size_t buckets = 16;
  void record(std::uint64_t n) noexcept {
    std::size_t i = 0;
    while (i + 1 < buckets && n > bound(i)) ++i;
    counts_[n > bound(buckets - 1) ? buckets : i].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(n, std::memory_order_relaxed);
  }
  static std::uint64_t bound(std::size_t i) noexcept { return std::uint64_t{1} << i; }
  ClientMetric metric() const {
    std::vector<std::uint64_t> counts;
    std::vector<double> bounds;
    for (std::size_t i = 0; i <= buckets; ++i) {
      counts.push_back(counts_[i].load(std::memory_order_relaxed));
      if (i < buckets) bounds.push_back(static_cast<double>(bound(i)));
    }
    return histogram_metric(counts, bounds, static_cast<double>(sum_.load(std::memory_order_relaxed)));
  }

 private:
  std::array<std::atomic<std::uint64_t>, buckets + 1> counts_{};
  std::atomic<std::uint64_t> sum_{0};
};

MetricFamily histogram_family(std::string name, std::string help, ClientMetric m) {
  MetricFamily f = metric_family(std::move(name), std::move(help), MetricType::Histogram);
  f.metric.push_back(std::move(m));
  return f;
}

struct persistence_metrics {
  middleware::latency_histogram append_seconds, recovery_seconds;
  count_histogram batch_events;
};

class persistence_module final : public module {
 public:
  int start(node_context& ctx) override {
    ctx_ = &ctx;
    ctx.add_route([this](const admin_request& r) { return journal_route(r); });
    const persistence_settings& s = ctx.settings().get(persistence_section());
    provider_ = s.provider;
    if (s.provider == "none") return 0;
    sys_ = &ctx.system();
    metrics_ = std::make_shared<persistence_metrics>();
    auto on_batch = [m = metrics_](std::size_t events, double) {
      if (events > 0) m->batch_events.record(events);
    };
    if (s.provider == "postgres") {
      persistence::pg_options o;
      o.loop = &ctx.loop();  // its sockets beside the node's others
      o.conninfo = s.postgres_conninfo.text;
      o.password = first_line(s.postgres_password.text);
      o.connections = s.postgres_connections;
      o.max_event_bytes = s.max_event_bytes;
      o.on_batch = on_batch;
      o.on_event = [](bool warning, const std::string& line) {
        log(warning ? level::warning : level::info, "persistence: " + line);
      };
      pg_ = persistence::pg_journal::open(std::move(o));
      store_ = pg_;
      path_ = s.postgres_conninfo.file;
      credentials_ = {s.postgres_conninfo.text, s.postgres_password.text};
      // Not ready (with PostgreSQL's own words) until every connection is.
      ctx.add_readiness([pg = pg_] {
        const std::string why = pg->not_ready();
        return why.empty() ? why : "persistence: " + why;
      });
    } else {
      path_ = ctx.state().path() + "/journal.db";
      persistence::sqlite_options o;
      o.path = path_;
      o.synchronous = s.synchronous;
      o.max_event_bytes = s.max_event_bytes;
      o.checkpoint_pages = s.checkpoint_pages;
      o.compact_rows = o.compact_step = s.sort_after_events;
      o.on_sort_failed = [path = o.path](const std::string& why) {
        log(level::warning, "persistence: sorting the journal's log failed (" + why + "); its events stay in the log, "
                            "read from there, and the sort is tried again later (" + path + ")");
      };
      o.on_batch = on_batch;
      std::string error;
      sqlite_ = persistence::sqlite_journal::open(std::move(o), error);
      if (!sqlite_) {
        log(level::error, "persistence: " + error);
        return 1;
      }
      store_ = sqlite_;
    }
    persistence::actor_journal::hooks h;
    h.warn = [](const std::string& line) { log(level::warning, "persistence: " + line); };
    h.on_append = [m = metrics_](persistence::result, double seconds) {
      m->append_seconds.record(static_cast<std::uint64_t>(seconds * 1e9));
    };
    h.on_recovered = [m = metrics_](double seconds, std::uint64_t) {
      m->recovery_seconds.record(static_cast<std::uint64_t>(seconds * 1e9));
    };
    service_ = std::make_shared<persistence::actor_journal>(*store_, std::move(h));
    sys_->set_journal(service_.get());
    ctx.add_metrics([m = metrics_, store = store_, sqlite = sqlite_, pg = pg_, service = service_](
                        std::vector<MetricFamily>& out) { collect(*m, *store, sqlite.get(), pg.get(), *service, out); });
    if (pg_)
      log(level::info, "persistence: the journal is in PostgreSQL (the connection string in " + path_ + ", " +
                           std::to_string(s.postgres_connections) + " connections)");
    else
      log(level::info, "persistence: the journal is " + path_ + " (SQLite, synchronous=" + s.synchronous + ")");
    return 0;
  }

  // The connection string and password files were read again.
  void reload(const config& next) override {
    if (!pg_) return;
    const persistence_settings& s = next.get(persistence_section());
    const std::pair<std::string, std::string> now{s.postgres_conninfo.text, s.postgres_password.text};
    if (now == credentials_) return;
    credentials_ = now;
    pg_->set_credentials(now.first, first_line(now.second));
    log(level::info, "reload: PostgreSQL's connection string or password changed; each connection is replaced "
                     "once it is idle");
  }

  // On the loop thread, with the running configuration.
  void decorate_kind(const std::string& kind, props& p) override {
    if (ctx_ == nullptr) return;
    if (const kind_persistence* k = ctx_->settings().setting_for(kind_persistence_section(), kind))
      p.snapshot_every = k->snapshot_every;
  }

  // Every actor has stopped: what the journal acknowledged is in it; what
  // is still queued is written before the store closes.
  void actors_stopped() override {
    if (!store_) return;
    sys_->set_journal(nullptr);
    store_->stop();
  }

  // The node's loop ends: PostgreSQL's sockets, watched on it, close now
  // (already done when the actors stopped first, as they do on SIGTERM).
  void loop_closing() override {
    if (pg_) pg_->stop();
  }


  void describe(nlohmann::json& node) const override {
    nlohmann::json p = {{"provider", provider_}};
    if (sqlite_) p["path"] = path_;
    if (pg_) p["conninfo_file"] = path_;
    node["persistence"] = std::move(p);
  }

 private:
  // GET /v1/journal/{persistence id}?after=N&limit=M: the events, as JSON
  // through the plugins' schemas. The id may be one segment (its '/'
  // escaped) or the rest of the path.
  bool journal_route(const admin_request& r) {
    const auto& p = r.path;
    if (p.size() < 2 || p[1] != "journal") return false;
    if (!r.get()) {
      r.error(405, "method_not_allowed", "use GET");
      return true;
    }
    if (!store_) {
      r.error(404, "no_journal", "this node keeps no journal (persistence.provider is none)");
      return true;
    }
    std::string id;
    for (std::size_t i = 2; i < p.size(); ++i) id += (i > 2 ? "/" : "") + p[i];
    if (id.empty()) {
      r.error(404, "not_found", "GET /v1/journal/{persistence id}, like /v1/journal/bank.account/alice");
      return true;
    }
    std::uint64_t after = 0, limit = 100;
    for (auto [name, out, lo, hi] : {std::tuple{"after", &after, 0ull, ~0ull}, std::tuple{"limit", &limit, 1ull, 4096ull}}) {
      const std::string v = r.var(name);
      if (v.empty()) continue;
      char* end = nullptr;
      const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
      if (*end != '\0' || n < lo || n > hi) {
        r.error(400, "bad_request", std::string(name) + " must be a number from " + std::to_string(lo) + " to " +
                                        std::to_string(hi) + ", not '" + v + "'");
        return true;
      }
      *out = n;
    }
    plugin::host* plugins = ctx_->find<plugin::host>();
    store_->read(id, after, false, limit, [r, id, plugins](persistence::read_result&& got) {
      if (got.status != persistence::result::ok) return r.error(503, "journal_failed", got.detail);
      nlohmann::json events = nlohmann::json::array();
      for (const persistence::event& e : got.events) {
        nlohmann::json j = {{"seq", e.seq}};
        std::string type, text, error;
        message m = message::adopt(make_envelope(e.type, e.data.data(), e.data.size()));
        if (plugins != nullptr && plugins->to_json(*m.get(), type, text, error) == plugin::codec_status::ok) {
          j["type"] = type;
          j["event"] = nlohmann::json::parse(text, nullptr, false);
        } else {
          char hex[24];
          std::snprintf(hex, sizeof hex, "0x%016llx", static_cast<unsigned long long>(e.type));
          j["type"] = nullptr;
          j["type_id"] = hex;
          j["size"] = e.data.size();
        }
        events.push_back(std::move(j));
      }
      r.reply(200, {{"id", id}, {"events", std::move(events)}, {"more", !got.end}});
    });
    return true;
  }

  static std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

  static void collect(const persistence_metrics& m, const persistence::journal& store,
                      const persistence::sqlite_journal* sqlite, const persistence::pg_journal* pg,
                      const persistence::actor_journal& service, std::vector<MetricFamily>& out) {
    const persistence::append_counts& st = store.appends();
    auto appends = metric_family("troupe_persist_appends_total",
                                 "Appends to the journal, by outcome: ok (durable), rejected (refused, the actor "
                                 "went on), conflict (another writer), failed (the store failed)",
                                 MetricType::Counter);
    add_metric(appends, static_cast<double>(st.ok.load(std::memory_order_relaxed)), {{"result", "ok"}});
    add_metric(appends, static_cast<double>(st.rejected.load(std::memory_order_relaxed)), {{"result", "rejected"}});
    add_metric(appends, static_cast<double>(st.conflict.load(std::memory_order_relaxed)), {{"result", "conflict"}});
    add_metric(appends, static_cast<double>(st.failed.load(std::memory_order_relaxed)), {{"result", "failed"}});
    out.push_back(std::move(appends));
    if (pg != nullptr) collect_pg(pg->stats(), out);
    if (sqlite != nullptr) collect_sqlite(sqlite->stats(), out);
    out.push_back(histogram_family("troupe_persist_append_seconds",
                                   "From an actor's persist to its answer (durable, or refused)",
                                   seconds_histogram(m.append_seconds)));
    out.push_back(histogram_family("troupe_persist_batch_events", "Events stored per commit (one sync each)",
                                   m.batch_events.metric()));
    out.push_back(histogram_family("troupe_recovery_seconds",
                                   "From a persistent actor's start to the end of its recovery",
                                   seconds_histogram(m.recovery_seconds)));
    out.push_back(single_metric("troupe_persist_actors_stopped_total",
                                "Persistent actors stopped: the store failed, or another writer appended first",
                                MetricType::Counter,
                                static_cast<double>(service.stats().stopped.load(std::memory_order_relaxed))));
  }

  static void collect_sqlite(const persistence::sqlite_stats& st, std::vector<MetricFamily>& out) {
    auto sorts = metric_family("troupe_persist_sorts_total",
                               "Moves of the journal's log into its table sorted by actor (persistence."
                               "sort_after_events), by outcome",
                               MetricType::Counter);
    add_metric(sorts, static_cast<double>(st.compactions.load(std::memory_order_relaxed)), {{"result", "ok"}});
    add_metric(sorts, static_cast<double>(st.compaction_failures.load(std::memory_order_relaxed)),
               {{"result", "failed"}});
    out.push_back(std::move(sorts));
  }

  static void collect_pg(const persistence::pg_stats& st, std::vector<MetricFamily>& out) {
    out.push_back(single_metric("troupe_persist_pg_connections", "Connections to PostgreSQL ready now",
                                MetricType::Gauge, static_cast<double>(st.up.load(std::memory_order_relaxed))));
    out.push_back(single_metric("troupe_persist_pg_connection_failures_total",
                                "Connections to PostgreSQL lost, or attempts to connect that failed",
                                MetricType::Counter, static_cast<double>(st.losses.load(std::memory_order_relaxed))));
    out.push_back(single_metric("troupe_persist_pg_resent_total",
                                "Requests sent again alone because a statement of their batch failed",
                                MetricType::Counter, static_cast<double>(st.resent.load(std::memory_order_relaxed))));
  }

  node_context* ctx_ = nullptr;
  std::string provider_ = "none";
  std::string path_;
  actor_system* sys_ = nullptr;
  std::shared_ptr<persistence_metrics> metrics_;
  // Shared with the metrics source, which a scrape may run until the end.
  std::shared_ptr<persistence::journal> store_;
  std::shared_ptr<persistence::sqlite_journal> sqlite_;
  std::shared_ptr<persistence::pg_journal> pg_;
  std::pair<std::string, std::string> credentials_;
  std::shared_ptr<persistence::actor_journal> service_;
};

}  // namespace

}  // namespace troupe::node

troupe::node::module_def troupe_module_persistence() {
  using namespace troupe::node;
  return {"persistence", {&persistence_section()}, {&kind_persistence_section()},
          [] { return std::make_unique<persistence_module>(); }};
}
