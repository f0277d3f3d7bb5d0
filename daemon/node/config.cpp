#include "node/config.hpp"

#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "node/overload.hpp"

namespace troupe::node {

namespace {

// A folder the node can keep its state in: a writable directory, or one it
// can create (the nearest folder above that exists is writable).
bool usable_state_dir(const std::string& dir, std::string& why) {
  std::error_code ec;
  std::filesystem::path p(dir);
  if (std::filesystem::exists(p, ec)) {
    if (!std::filesystem::is_directory(p, ec)) why = dir + " is not a directory";
    else if (::access(dir.c_str(), W_OK | X_OK) != 0) why = dir + " is not writable";
    return why.empty();
  }
  for (p = p.parent_path(); !p.empty(); p = p.parent_path()) {
    if (std::filesystem::exists(p, ec)) {
      if (std::filesystem::is_directory(p, ec) && ::access(p.c_str(), W_OK | X_OK) == 0) return true;
      why = dir + " does not exist and cannot be created in " + p.string();
      return false;
    }
  }
  // A relative path none of whose folders exist: made in the working folder.
  if (::access(".", W_OK | X_OK) == 0) return true;
  why = dir + " does not exist and cannot be created in the working folder";
  return false;
}

// Every key of every mapping must be a plain value, and appear once:
// yaml-cpp would take a mapping as a key apart later with an exception,
// and keep only the first of two equal keys (a second `admin:` section
// adding token_file would be ignored, leaving the API open).
void check_keys(const YAML::Node& n, section_reader& r, int depth = 0) {
  if (depth > 64) {
    r.error(n, "the document nests more than 64 levels deep");
    return;
  }
  if (n.IsMap()) {
    std::map<std::string, int> seen;
    for (const auto& kv : n) {
      if (!kv.first.IsScalar()) {
        r.error(kv.first, std::string("a ") + (kv.first.IsMap() ? "mapping" : "list") +
                              " is used as a key; keys are names");
        continue;
      }
      const std::string key = kv.first.Scalar();
      if (auto [it, fresh] = seen.emplace(key, section_reader::line_of(kv.first)); !fresh)
        r.error(kv.first, "duplicate key '" + key + "' (first at line " + std::to_string(it->second) +
                              "); each key may appear once");
      check_keys(kv.second, r, depth + 1);
    }
  } else if (n.IsSequence()) {
    for (const auto& item : n) check_keys(item, r, depth + 1);
  }
}

// The secrets of node.secret_file: one a line, blank lines and '#' comments skipped.
void read_secrets(const YAML::Node& v, section_reader& r, const std::string& what,
                  node_settings::secret_list& out) {
  read::text(v, r, what, out.file);
  out.secrets.clear();
  if (!r.readable_file(v, what, out.file)) return;
  std::ifstream in(out.file, std::ios::binary);
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    std::size_t start = 0;
    while (start < line.size() && std::isspace(static_cast<unsigned char>(line[start]))) ++start;
    line.erase(0, start);
    if (line.empty() || line[0] == '#') continue;
    if (line.size() < 16)
      r.error(v, what + " " + out.file + " line " + std::to_string(number) + " holds a secret of " +
                     std::to_string(line.size()) + " bytes; at least 16 are needed");
    out.secrets.push_back(line);
  }
  if (out.secrets.empty()) r.error(v, what + " " + out.file + " holds no secret");
}

}  // namespace

struct config_loader {
  static bool load(const std::string& path, const schema& s, config& out, std::vector<config_error>& errors);
};

std::vector<std::string> config::kinds() const {
  std::vector<std::string> out;
  for (const auto& [kind, keys] : kinds_) out.push_back(kind);
  return out;
}

std::vector<std::string> config::keep_running(const config& running, const schema& s) {
  std::vector<std::string> kept;
  auto keep = [&](const section_base* sec, std::shared_ptr<const void>& mine,
                  const std::shared_ptr<const void>& theirs, const std::string& where) {
    std::shared_ptr<void> next = sec->copy(mine.get());
    for (std::string& k : sec->keep_running(theirs.get(), next.get(), where)) kept.push_back(std::move(k));
    mine = std::move(next);
  };
  for (const section_base* sec : s.sections) {
    auto mine = values_.find(sec);
    auto theirs = running.values_.find(sec);
    if (mine != values_.end() && theirs != running.values_.end())
      keep(sec, mine->second, theirs->second, sec->name());
  }
  // Per-kind keys apply to actors as they are spawned, and those spawned
  // already keep theirs: a change waits for a restart.
  if (running.kinds_ != kinds_) {
    std::map<std::string, bool> names;
    for (const auto& [k, v] : running.kinds_) names[k] = true;
    for (const auto& [k, v] : kinds_) names[k] = true;
    for (const auto& [kind, unused] : names) {
      const auto a = running.kinds_.find(kind);
      const auto b = kinds_.find(kind);
      for (const section_base* sec : s.kind_keys) {
        const void* x = a == running.kinds_.end() || !a->second.count(sec) ? nullptr : a->second.at(sec).get();
        const void* y = b == kinds_.end() || !b->second.count(sec) ? nullptr : b->second.at(sec).get();
        if ((x == nullptr) != (y == nullptr) || (x != nullptr && !sec->same(x, y)))
          kept.push_back("kinds." + kind + "." + sec->name());
      }
    }
    kinds_ = running.kinds_;
  }
  return kept;
}

bool load_config(const std::string& path, const schema& s, config& out,
                 std::vector<config_error>& errors) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    errors.push_back({path, 0, "is a directory, not a configuration file"});
    return false;
  }
  // Whatever yaml-cpp or the file system throws is a configuration error
  // (with the line when yaml-cpp knows it), never the end of the process:
  // a reload runs this in a node that must go on.
  try {
    return config_loader::load(path, s, out, errors);
  } catch (const YAML::Exception& e) {
    errors.push_back({path, e.mark.line >= 0 ? e.mark.line + 1 : 0, "invalid configuration: " + e.msg});
  } catch (const std::exception& e) {
    errors.push_back({path, 0, std::string("cannot read the configuration: ") + e.what()});
  }
  return false;
}

bool config_loader::load(const std::string& path, const schema& s, config& out,
                         std::vector<config_error>& errors) {
  std::ifstream in(path);
  if (!in) {
    errors.push_back({path, 0, "cannot read the file"});
    return false;
  }
  YAML::Node root;
  try {
    root = YAML::Load(in);
  } catch (const YAML::ParserException& e) {
    errors.push_back({path, e.mark.line + 1, "invalid YAML: " + e.msg});
    return false;
  }
  if (in.bad()) {
    errors.push_back({path, 0, "cannot read the file"});
    return false;
  }
  out.path = path;
  section_reader r(path, errors);
  check_keys(root, r);
  if (!errors.empty()) return false;
  const bool empty = !root || root.IsNull();  // an empty file: the defaults
  std::vector<std::string> known;
  for (const section_base* sec : s.sections) known.push_back(sec->name());
  known.push_back("kinds");
  if (!empty && !r.check_map(root, "", known)) return false;
  for (const section_base* sec : s.sections) {
    YAML::Node n = empty ? YAML::Node() : root[sec->name()];
    out.values_[sec] = sec->parse(n ? &n : nullptr, sec->name(), r, out);
  }
  // kinds.<kind>.<key>: what is set per actor kind.
  YAML::Node kinds = empty ? YAML::Node() : root["kinds"];
  if (kinds && !kinds.IsMap()) {
    r.error(kinds, "'kinds' must be a mapping of kind names");
  } else if (kinds) {
    std::vector<std::string> keys;
    for (const section_base* sec : s.kind_keys) keys.push_back(sec->name());
    // `all` first: its keys are the defaults of the other kinds.
    std::vector<std::pair<YAML::Node, YAML::Node>> entries;
    for (const auto& kv : kinds)
      entries.insert(kv.first.Scalar() == config::all_kinds ? entries.begin() : entries.end(), {kv.first, kv.second});
    for (const auto& [name, value] : entries) {
      const std::string kind = name.as<std::string>();
      const std::string where = "kinds." + kind;
      if (kind.empty()) r.error(name, "'kinds' holds an empty kind name");
      if (!value.IsMap()) {
        r.error(value, "'" + where + "' must be a mapping");
        continue;
      }
      if (!r.check_map(value, where, keys)) continue;
      for (const section_base* sec : s.kind_keys)
        if (const YAML::Node v = value[sec->name()])
          out.kinds_[kind][sec] = sec->parse(&v, where + "." + sec->name(), r, out);
    }
  }
  return errors.empty();
}

namespace {

// A Markdown table cell: no line breaks, no unescaped bars.
std::string cell(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += ' ';
    else out += c;
  }
  return out;
}

}  // namespace

std::string config_reference(const schema& s) {
  std::string out;
  auto table = [&](const section_base& sec, const std::string& where) {
    out += "\n### `" + where + "`\n\n" + sec.doc() + "\n\n";
    out += "| key | value | default | on reload | meaning |\n|---|---|---|---|---|\n";
    for (const key_doc& k : sec.keys(where))
      out += "| `" + cell(k.key) + "` | " + cell(k.type) + " | `" + cell(k.default_text) + "` | " +
             (k.when == applies::live ? "applies" : "at restart") + " | " + cell(k.doc) + " |\n";
  };
  for (const section_base* sec : s.sections) table(*sec, sec->name());
  for (const section_base* sec : s.kind_keys) table(*sec, "kinds.<kind>." + sec->name());
  out += "\n`kinds.all` sets the keys of every kind; `kinds.<kind>` overrides them for one.\n";
  return out;
}

const section<node_settings>& node_section() {
  static const section<node_settings> s = [] {
    section<node_settings> n("node", "Who the node is, where it listens for other nodes, and how it stops.");
    n.text("name", &node_settings::name, "The node's name, in logs, metrics and /v1/node.")
        .text("cluster", &node_settings::cluster,
              "The cluster's name: a node only links with nodes that give the same one.")
        .address("listen", &node_settings::listen, true,
                 "The node-to-node address (TCP). Unset: the node talks to no other node. Port 0 "
                 "takes a free one.")
        .address("advertise", &node_settings::advertise, false,
                 "The address other nodes dial and PIDs carry; needed when listen is a wildcard. "
                 "Unset: listen as bound.")
        .key<node_settings::secret_list>(
            "secret_file", &node_settings::secret, "path",
            "The cluster secrets, one a line ('#' comments and blank lines skipped, at least 16 "
            "bytes each): the first is offered when dialing, any is accepted. A reload re-reads "
            "the file, so a rotation needs no restart.",
            read_secrets, [](const node_settings::secret_list& l) { return read::show(l.file); })
        .live()
        .number("drain_timeout", &node_settings::drain_timeout_seconds, 1, 3600, "seconds",
                "How long actors may take to stop on SIGTERM before they are stopped by force.")
        .live()
        .number("stall_timeout", &node_settings::stall_timeout_seconds, 1, 3600, "seconds",
                "Every worker inside one handler this long, or the event loop not running this "
                "long, and the node is stalled: /healthz answers 503 and the systemd watchdog is "
                "no longer fed.")
        .live()
        .key<queue_budget_setting>(
            "max_queued_bytes", &node_settings::max_queued_bytes,
            "auto, none, a size (512MiB, 2GB) or a share of the memory limit (1%-90%)",
            "How much memory messages waiting in mailboxes may hold before sends are refused "
            "(dead letters over_budget). auto is half the memory limit (the cgroup's, else RAM), "
            "and at least 16 MiB; a size must be 1 MiB or more.",
            [](const YAML::Node& v, section_reader& r, const std::string& what, queue_budget_setting& out) {
              std::string text;
              read::text(v, r, what, text);
              std::string why;
              if (!text.empty() && !parse_queue_budget(text, out, why)) r.error(v, what + " '" + text + "': " + why);
            },
            [](const queue_budget_setting& s) { return to_string(s); })
        .live()
        .path("state_dir", &node_settings::state_dir,
              "Where the node keeps what outlives it, one node per folder (locked while it runs). "
              "Unset: systemd's $STATE_DIRECTORY; neither: nothing is kept.")
        .check([](node_settings& n, const YAML::Node& node, section_reader& r, const config&) {
          n.line = section_reader::line_of(node);
          if (n.name.empty()) r.error(node, "'node.name' must not be empty");
          if (!n.listen.empty() && n.advertise.empty()) {
            const std::string host = n.listen.substr(0, n.listen.rfind(':'));
            if (host == "0.0.0.0" || host == "[::]")
              r.error(node["listen"], "'node.advertise' is needed when 'node.listen' is " + n.listen +
                                          ": peers cannot dial a wildcard address");
          }
          if (!n.state_dir.empty()) {
            std::string why;
            if (!usable_state_dir(n.state_dir, why)) r.error(node["state_dir"], "'node.state_dir' " + why);
          } else if (const char* sd = std::getenv("STATE_DIRECTORY"); sd != nullptr && *sd != '\0') {
            // systemd's StateDirectory= (a colon-separated list: the first is ours).
            n.state_dir = std::string(sd).substr(0, std::string(sd).find(':'));
            std::string why;
            if (!usable_state_dir(n.state_dir, why)) r.error(0, "$STATE_DIRECTORY: " + why);
          }
        });
    return n;
  }();
  return s;
}

const section<seeds_settings>& seeds_section() {
  static const section<seeds_settings> s = [] {
    section<seeds_settings> n("seeds", "Nodes to connect to at start.");
    n.key<std::vector<std::string>>(
         "", &seeds_settings::seeds, "list of host:port",
         "Other nodes' addresses. A reload contacts the seeds it adds; one it drops stays "
         "connected while traffic uses it.",
         [](const YAML::Node& v, section_reader& r, const std::string&, std::vector<std::string>& out) {
           if (!v.IsSequence()) {
             r.error(v, "'seeds' must be a list of addresses");
             return;
           }
           out.clear();
           for (const auto& item : v) {
             std::string why;
             const std::string a = item.IsScalar() ? item.as<std::string>() : std::string();
             if (!section_reader::valid_address(a, false, why))
               r.error(item, "seed '" + a + "' is not a valid address: " + why);
             else
               out.push_back(a);
           }
         },
         [](const std::vector<std::string>& l) { return read::show(l); })
        .live();
    return n;
  }();
  return s;
}

const section<dispatcher_settings>& dispatcher_section() {
  static const section<dispatcher_settings> s = [] {
    section<dispatcher_settings> n("dispatcher", "The workers that run actors.");
    n.number("threads", &dispatcher_settings::threads, 0, 1024, "",
             "Worker threads; 0 is one per core.");
    n.number("busy_poll_us", &dispatcher_settings::busy_poll_us, 0, 10000, "microseconds",
             "For latency-critical nodes: after its last work, the event loop polls its "
             "sockets, and an idle worker looks for work, this long before sleeping. Saves "
             "the wake-ups of a request's way through the node at the price of CPU while "
             "traffic flows; 0 (the default) sleeps at once (a worker still looks for 50).");
    return n;
  }();
  return s;
}

const section<log_settings>& log_section() {
  static const section<log_settings> s = [] {
    section<log_settings> n("log", "What the node writes to standard error (the journal under systemd).");
    n.pick<log_level>("level", &log_settings::level,
                      {{"debug", log_level::debug}, {"info", log_level::info},
                       {"warning", log_level::warning}, {"error", log_level::error}},
                      "The least important lines written.")
        .live()
        .choice("format", &log_settings::format, {"text", "json"},
                "text lines, or one JSON object a line.")
        .live();
    return n;
  }();
  return s;
}

}  // namespace troupe::node
