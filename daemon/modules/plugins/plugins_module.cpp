// The plugins module: loads the .so files plugins.load names, at start and
// when a reload lists new ones, and gives each of their kinds its mailbox
// (kinds.<kind>.mailbox, else kinds.all.mailbox). Serves /v1/plugins and
// /v1/kinds.
#include <algorithm>
#include <filesystem>
#include <memory>

#include <unistd.h>

#include "actor/actor_system.hpp"
#include "node/log.hpp"
#include "node/module.hpp"
#include "plugin/plugin_host.hpp"

namespace troupe::node {

namespace {

using nlohmann::json;

struct mailbox_settings {
  unsigned capacity = 10000;
  mailbox_kind overflow = mailbox_kind::bounded_drop_newest;  // what a full one does
};

struct plugins_settings {
  std::vector<std::string> dirs;
  std::vector<std::string> load;  // the required ones included
  std::vector<std::string> required;
};

const std::vector<std::pair<std::string, mailbox_kind>> overflows{
    {"drop_newest", mailbox_kind::bounded_drop_newest},
    {"drop_oldest", mailbox_kind::bounded_drop_oldest},
    {"block", mailbox_kind::bounded_block}};
// 0: unbounded. The top: a mailbox of about 12 GiB of small messages.
constexpr long max_capacity = 100'000'000;

const section<plugins_settings>& plugins_section() {
  static const section<plugins_settings> s = [] {
    section<plugins_settings> p("plugins", "Which plugins the node loads, and the mailbox their actors get.");
    p.key<std::vector<std::string>>(
         "dir", &plugins_settings::dirs, "path, or list of paths",
         "Folders searched for NAME.so, first match first. Relative paths are taken from the "
         "config file's folder. A reload looks for newly listed plugins in the new folders.",
         [](const YAML::Node& v, section_reader& r, const std::string& what, std::vector<std::string>& out) {
           if (v.IsScalar()) {
             std::string one;
             read::text(v, r, what, one);
             out.clear();
             if (!one.empty()) out.push_back(one);
           } else {
             read::names(v, r, what, "folders", "", out);
           }
           for (std::string& d : out) d = r.relative_to_config(d);
         },
         [](const std::vector<std::string>& l) { return read::show(l); })
        .live()
        .names("load", &plugins_settings::load, "plugin names",
               "Plugins to load, each a file NAME.so in plugins.dir. One that does not load is "
               "logged and skipped. A reload loads the newly listed ones; one it no longer lists "
               "stays loaded until a restart.")
        .live()
        .names("required", &plugins_settings::required, "plugin names",
               "Plugins that must load: one that does not stops the node with exit status 78. "
               "Loaded as if listed in load.")
        .live()
        .moved("mailbox", "set kinds.all.mailbox for every kind, kinds.<kind>.mailbox for one")
        .check([](plugins_settings& p, const YAML::Node& node, section_reader& r, const config&) {
          for (const auto& name : p.required)
            if (std::find(p.load.begin(), p.load.end(), name) == p.load.end()) p.load.push_back(name);
          for (const auto& name : p.load)
            if (name.find('/') != std::string::npos)
              r.error(node, "plugin name '" + name + "' must be a name in 'plugins.dir', not a path");
          if (!p.load.empty() && p.dirs.empty()) r.error(node, "'plugins.dir' is needed to load plugins");
          // A folder of the list may be missing (a local one nobody filled
          // yet), but plugins need one that can be read.
          std::string tried;
          bool readable = false;
          for (const std::string& dir : p.dirs) {
            std::error_code ec;
            readable = readable || (std::filesystem::is_directory(dir, ec) && ::access(dir.c_str(), R_OK | X_OK) == 0);
            tried += (tried.empty() ? "" : ", ") + dir;
          }
          if (!p.dirs.empty() && !p.load.empty() && !readable)
            r.error(node["dir"], p.dirs.size() > 1 ? "'plugins.dir' lists no readable directory: " + tried
                                                   : "'plugins.dir' " + tried + " is not a readable directory");
        });
    return p;
  }();
  return s;
}

// kinds.<kind>.mailbox: unset fields are those of kinds.all.mailbox.
const section<mailbox_settings>& kind_mailbox_section() {
  static const section<mailbox_settings> s = [] {
    section<mailbox_settings> m("mailbox",
                                "The mailbox of a plugin kind's actors; what kinds.<kind>.mailbox leaves "
                                "out comes from kinds.all.mailbox.");
    m.number("capacity", &mailbox_settings::capacity, 0, max_capacity, "messages",
             "How many messages may wait for one actor. 0 is unbounded.")
        .pick<mailbox_kind>("overflow", &mailbox_settings::overflow, overflows,
                "What a full mailbox does with one more message: refuse it (a dead letter "
                "mailbox_full), drop the oldest waiting, or make the sender wait.")
        .starts_from([](const config& c) {
          const mailbox_settings* all = c.for_kind(kind_mailbox_section(), config::all_kinds);
          return all != nullptr ? *all : mailbox_settings{};
        });
    return m;
  }();
  return s;
}

struct on_event_loop_setting {
  bool on = false;
};

// kinds.<kind>.on_event_loop
const section<on_event_loop_setting>& on_event_loop_section() {
  static const section<on_event_loop_setting> s = [] {
    section<on_event_loop_setting> e("on_event_loop",
                                     "Whether the kind's turns may run on the event loop thread.");
    e.flag("", &on_event_loop_setting::on,
           "For kinds whose handlers never block, on latency-critical nodes: a message from "
           "another node may run the actor's turn on the event loop thread that read it, as the "
           "node's own actors' turns run, instead of waking a worker for it. A handler that "
           "takes longer than 0.5 ms sends its actor back to the workers for 10 ms (then up to "
           "40 s if it happens again); one that blocks holds up every socket and timer of the "
           "node while it does. Unset: plugin code runs on the workers only.");
    return e;
  }();
  return s;
}

mailbox_options to_options(unsigned capacity, mailbox_kind overflow) {
  mailbox_options o;
  if (capacity == 0) return o;  // unbounded
  o.capacity = capacity;
  o.kind = overflow;
  return o;
}

// NAME.so in the first of `dirs` that has it (else in the first, so that
// the loader's error names a real place).
std::filesystem::path find_plugin(const std::vector<std::string>& dirs, const std::string& name) {
  for (const std::string& dir : dirs) {
    std::error_code ec;
    std::filesystem::path p = std::filesystem::path(dir) / (name + ".so");
    if (std::filesystem::exists(p, ec)) return p;
  }
  return std::filesystem::path(dirs.empty() ? std::string() : dirs.front()) / (name + ".so");
}

class plugins_module final : public module {
 public:
  int start(node_context& ctx) override {
    // Shared: its kinds keep a weak reference to it.
    host_ = std::make_shared<plugin::host>(ctx.system(), [](log_level l, std::string_view line) { log(l, line); });
    // The mailboxes are fixed at start (their keys apply at restart): a
    // kind's own, else kinds.all's, else the default.
    const config& c = ctx.settings();
    const plugins_settings& p = c.get(plugins_section());
    std::map<std::string, mailbox_options> by_kind;
    for (const std::string& kind : c.kinds())
      if (const mailbox_settings* m = c.for_kind(kind_mailbox_section(), kind))
        by_kind[kind] = to_options(m->capacity, m->overflow);
    const mailbox_settings* all = c.for_kind(kind_mailbox_section(), config::all_kinds);
    const mailbox_settings every = all != nullptr ? *all : mailbox_settings{};
    // kinds.<kind>.on_event_loop, else kinds.all.on_event_loop.
    std::map<std::string, bool> on_loop;
    for (const std::string& kind : c.kinds())
      if (const on_event_loop_setting* e = c.for_kind(on_event_loop_section(), kind))
        on_loop[kind] = e->on;
    // The configuration wins over the plugin's own props, which win over
    // the default.
    host_->set_kind_decorator([&ctx, every_configured = all != nullptr, all = to_options(every.capacity, every.overflow),
                               by_kind = std::move(by_kind), on_loop = std::move(on_loop)](
                                  const std::string& kind, props& pr, bool plugin_mailbox) {
      if (auto e = on_loop.find(kind); e != on_loop.end()) pr.on_event_loop = e->second;
      else if (auto a = on_loop.find(config::all_kinds); a != on_loop.end()) pr.on_event_loop = a->second;
      const auto it = by_kind.find(kind);
      const bool fixed = it != by_kind.end() || every_configured;
      if (fixed || !plugin_mailbox) {
        const std::uint32_t throughput = pr.mailbox.throughput;  // not a configuration key
        pr.mailbox = it != by_kind.end() ? it->second : all;
        pr.mailbox.throughput = throughput;
      }
      ctx.decorate_kind(kind, pr);
      return fixed;
    });
    if (!load(p, true)) {
      log(level::error, "stopping: a required plugin did not load");
      return ex_config;
    }
    ctx.offer<plugin::host>(host_.get());
    ctx.add_route([h = host_.get()](const admin_request& r) { return route(*h, r); });
    ctx.add_metrics([h = host_.get()](std::vector<prometheus::MetricFamily>& out) {
      using prometheus::MetricType;
      out.push_back(single_metric("troupe_plugins_loaded", "Plugins loaded", MetricType::Gauge,
                                  static_cast<double>(h->plugins().size())));
      out.push_back(single_metric("troupe_plugin_load_failures_total", "Plugins refused at load",
                                  MetricType::Counter, static_cast<double>(h->stats().refused.load())));
      out.push_back(single_metric("troupe_plugin_invalid_messages_total",
                                  "Messages to plugin actors rejected by schema verification",
                                  MetricType::Counter,
                                  static_cast<double>(h->stats().invalid_messages.load())));
    });
    return 0;
  }

  void reload(const config& next) override {
    if (!host_) return;
    const plugins_settings& p = next.get(plugins_section());
    if (p.dirs != dirs_)
      log(level::info, "reload: newly listed plugins are looked for in the new plugins.dir; "
                       "those loaded already stay as they are");
    load(p, false);
    for (const auto& name : loaded_)
      if (std::find(p.load.begin(), p.load.end(), name) == p.load.end())
        log(level::warning, "reload: plugins.load (" + name + " stays loaded) changes only at restart");
  }

  void describe(json& node) const override {
    if (!host_) return;
    node["plugins"] = host_->plugins().size();
    node["kinds"] = host_->kinds().size();
  }

  std::string status() const override {
    if (!host_) return {};
    return std::to_string(host_->plugins().size()) + " plugins, " + std::to_string(host_->kinds().size()) + " kinds";
  }

 private:
  // Loads the plugins `p` lists that are not loaded yet. False if a
  // required one fails (only fatal at start).
  bool load(const plugins_settings& p, bool starting) {
    dirs_ = p.dirs;
    bool ok = true;
    for (const std::string& name : p.load) {
      if (std::find(loaded_.begin(), loaded_.end(), name) != loaded_.end()) continue;
      const auto r = host_->load(find_plugin(p.dirs, name));
      const bool required = std::find(p.required.begin(), p.required.end(), name) != p.required.end();
      if (r.ok) {
        loaded_.push_back(name);
      } else if (required) {
        log(level::error, "required plugin '" + name + "' did not load");
        if (starting) ok = false;
      }
    }
    return ok;
  }

  static bool route(plugin::host& h, const admin_request& r) {
    const auto& p = r.path;
    if (p.size() != 2 || (p[1] != "plugins" && p[1] != "kinds")) return false;
    if (!r.get()) {
      r.error(405, "method_not_allowed", "use GET");
      return true;
    }
    if (p[1] == "plugins") {
      json list = json::array();
      for (const auto& info : h.plugins())
        list.push_back({{"name", info.name},
                        {"version", info.version},
                        {"file", info.file},
                        {"abi", std::to_string(info.abi_major) + "." + std::to_string(info.abi_minor)},
                        {"kinds", info.kinds}});
      r.reply(200, {{"plugins", list}});
      return true;
    }
    json kinds = json::array();
    for (const auto& info : h.plugins())
      for (const auto& k : info.kinds) kinds.push_back({{"name", k}, {"plugin", info.name}});
    std::sort(kinds.begin(), kinds.end(), [](const json& a, const json& b) { return a["name"] < b["name"]; });
    json types = json::array();
    for (const auto& t : h.message_types()) types.push_back({{"name", t.name}, {"plugin", t.plugin}});
    r.reply(200, {{"kinds", kinds}, {"message_types", types}});
    return true;
  }

  std::shared_ptr<plugin::host> host_;
  std::vector<std::string> loaded_;
  std::vector<std::string> dirs_;
};

}  // namespace

}  // namespace troupe::node

troupe::node::module_def troupe_module_plugins() {
  using namespace troupe::node;
  return {"plugins", {&plugins_section()}, {&kind_mailbox_section(), &on_event_loop_section()}, [] { return std::make_unique<plugins_module>(); },
          [](const config& c) {
            // A required plugin whose file is in no folder stops the start.
            std::vector<std::string> problems;
            const plugins_settings& p = c.get(plugins_section());
            for (const std::string& name : p.required) {
              const std::filesystem::path file = find_plugin(p.dirs, name);
              if (::access(file.c_str(), R_OK) != 0)
                problems.push_back("plugins.required: '" + name + "' has no readable " + name + ".so in plugins.dir (" +
                                   read::show(p.dirs) + ")");
            }
            return problems;
          }};
}
