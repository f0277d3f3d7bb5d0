#include "node/config.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <unistd.h>
#include <set>

#include <yaml-cpp/yaml.h>

namespace troupe::node {

std::string config_error::to_string() const {
  std::string s = file;
  if (line > 0) {
    s.push_back(':');
    s.append(std::to_string(line));
  }
  return s + ": " + message;
}

namespace {

struct reader {
  std::string file;
  std::vector<config_error>& errors;

  void error(const YAML::Node& at, const std::string& msg) {
    errors.push_back({file, at.Mark().line >= 0 ? at.Mark().line + 1 : 0, msg});
  }

  // Reports keys of `map` that are not in `known`.
  bool check_map(const YAML::Node& map, const std::string& where, const std::set<std::string>& known) {
    if (!map.IsMap()) {
      error(map, "'" + where + "' must be a mapping");
      return false;
    }
    for (const auto& kv : map) {
      std::string key = kv.first.as<std::string>();
      if (!known.count(key)) {
        std::string list;
        for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
        error(kv.first, "unknown key '" + (where.empty() ? key : where + "." + key) + "' (expected one of: " + list + ")");
      }
    }
    return true;
  }

  void string_field(const YAML::Node& map, const std::string& where, const char* key, std::string& out) {
    YAML::Node v = map[key];
    if (!v) return;
    if (!v.IsScalar()) {
      error(v, "'" + where + "." + key + "' must be a string");
      return;
    }
    out = v.as<std::string>();
  }

  // A list of non-empty strings.
  void string_list(const YAML::Node& map, const std::string& where, const char* key,
                   std::vector<std::string>& out) {
    YAML::Node v = map[key];
    if (!v) return;
    if (!v.IsSequence()) {
      error(v, "'" + where + "." + key + "' must be a list of names");
      return;
    }
    for (const auto& item : v) {
      if (!item.IsScalar() || item.as<std::string>().empty()) {
        error(item, "'" + where + "." + key + "' must hold plugin names");
        continue;
      }
      out.push_back(item.as<std::string>());
    }
  }
};

}  // namespace

bool load_config(const std::string& path, config& out, std::vector<config_error>& errors) {
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
  reader r{path, errors};
  if (!root || root.IsNull()) return true;  // empty file: defaults
  if (!r.check_map(root, "", {"node", "dispatcher", "log", "plugins", "demo"})) return false;

  if (YAML::Node n = root["node"];
      n && r.check_map(n, "node", {"name", "cluster", "drain_timeout"})) {
    r.string_field(n, "node", "name", out.name);
    r.string_field(n, "node", "cluster", out.cluster);
    if (out.name.empty()) r.error(n, "'node.name' must not be empty");
    if (YAML::Node t = n["drain_timeout"]) {
      try {
        long v = t.as<long>();
        if (v < 1 || v > 3600) r.error(t, "'node.drain_timeout' must be between 1 and 3600 seconds");
        else out.drain_timeout_seconds = static_cast<unsigned>(v);
      } catch (const YAML::Exception&) {
        r.error(t, "'node.drain_timeout' must be a whole number of seconds");
      }
    }
  }
  if (YAML::Node d = root["demo"]) {
    try {
      out.demo = d.as<bool>();
    } catch (const YAML::Exception&) {
      r.error(d, "'demo' must be true or false");
    }
  }
  if (YAML::Node d = root["dispatcher"]; d && r.check_map(d, "dispatcher", {"threads"})) {
    if (YAML::Node t = d["threads"]) {
      try {
        long v = t.as<long>();
        if (v < 0 || v > 1024) r.error(t, "'dispatcher.threads' must be between 0 and 1024");
        else out.threads = static_cast<unsigned>(v);
      } catch (const YAML::Exception&) {
        r.error(t, "'dispatcher.threads' must be a whole number");
      }
    }
  }
  if (YAML::Node l = root["log"]; l && r.check_map(l, "log", {"level", "format"})) {
    r.string_field(l, "log", "format", out.log_format);
    if (out.log_format != "text" && out.log_format != "json")
      r.error(l["format"], "'log.format' must be text or json");
    r.string_field(l, "log", "level", out.log_level);
    static const std::set<std::string> levels{"debug", "info", "warning", "error"};
    if (!levels.count(out.log_level))
      r.error(l["level"], "'log.level' must be one of debug, info, warning, error");
  }
  if (YAML::Node pl = root["plugins"];
      pl && r.check_map(pl, "plugins", {"dir", "load", "required"})) {
    r.string_field(pl, "plugins", "dir", out.plugin_dir);
    r.string_list(pl, "plugins", "load", out.plugins);
    r.string_list(pl, "plugins", "required", out.required_plugins);
    for (const auto& name : out.required_plugins)
      if (std::find(out.plugins.begin(), out.plugins.end(), name) == out.plugins.end())
        out.plugins.push_back(name);
    for (const auto& name : out.plugins)
      if (name.find('/') != std::string::npos)
        r.error(pl, "plugin name '" + name + "' must be a name in 'plugins.dir', not a path");
    if (!out.plugins.empty() && out.plugin_dir.empty())
      r.error(pl, "'plugins.dir' is needed to load plugins");
    if (!out.plugin_dir.empty() && out.plugin_dir[0] != '/') {
      std::filesystem::path base = std::filesystem::path(path).parent_path();
      out.plugin_dir = (base / out.plugin_dir).lexically_normal().string();
    }
    std::error_code ec;
    if (!out.plugin_dir.empty() &&
        (!std::filesystem::is_directory(out.plugin_dir, ec) ||
         ::access(out.plugin_dir.c_str(), R_OK | X_OK) != 0))
      r.error(pl["dir"], "'plugins.dir' " + out.plugin_dir + " is not a readable directory");
  }
  return errors.empty();
}

}  // namespace troupe::node
