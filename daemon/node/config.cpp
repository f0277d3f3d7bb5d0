#include "node/config.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <arpa/inet.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <map>
#include <set>

#include <yaml-cpp/yaml.h>

#include "node/overload.hpp"

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

  // A whole number in [lo, hi], in `unit` when it has one ("seconds").
  void number_field(const YAML::Node& map, const std::string& where, const char* key, long lo,
                    long hi, const std::string& unit, unsigned& out) {
    YAML::Node v = map[key];
    if (!v) return;
    const std::string what = "'" + where + "." + key + "'";
    try {
      long n = v.as<long>();
      if (n < lo || n > hi)
        error(v, what + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                     (unit.empty() ? "" : " " + unit));
      else
        out = static_cast<unsigned>(n);
    } catch (const YAML::Exception&) {
      error(v, what + " must be a whole number" + (unit.empty() ? "" : " of " + unit));
    }
  }

  // "host:port" (or "[v6]:port"); `literal` demands an IP address.
  void address_field(const YAML::Node& map, const std::string& where, const char* key,
                     bool literal, std::string& out) {
    YAML::Node v = map[key];
    if (!v) return;
    std::string what = "'" + where + "." + key + "'";
    if (!v.IsScalar()) {
      error(v, what + " must be an address like 127.0.0.1:7700");
      return;
    }
    std::string a = v.as<std::string>();
    std::string why;
    if (!valid_address(a, literal, why)) {
      error(v, what + " '" + a + "' is not a valid address: " + why);
      return;
    }
    out = a;
  }

  static bool valid_address(const std::string& a, bool literal, std::string& why) {
    std::string host, port;
    if (!a.empty() && a[0] == '[') {
      auto close = a.find(']');
      if (close == std::string::npos || close + 1 >= a.size() || a[close + 1] != ':') {
        why = "expected [v6-address]:port";
        return false;
      }
      host = a.substr(1, close - 1);
      port = a.substr(close + 2);
      in6_addr six{};
      if (inet_pton(AF_INET6, host.c_str(), &six) != 1) {
        why = "'" + host + "' is not an IPv6 address";
        return false;
      }
    } else {
      auto colon = a.rfind(':');
      if (colon == std::string::npos || colon == 0) {
        why = "expected host:port";
        return false;
      }
      host = a.substr(0, colon);
      port = a.substr(colon + 1);
      in_addr four{};
      if (inet_pton(AF_INET, host.c_str(), &four) != 1) {
        if (literal) {
          why = "'" + host + "' is not an IP address";
          return false;
        }
        for (char c : host)
          if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.')) {
            why = "'" + host + "' is not a host name";
            return false;
          }
      }
    }
    // Port 0 (any free port) only makes sense for an address we listen on.
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string::npos ||
        std::stoi(port) < (literal ? 0 : 1) || std::stoi(port) > 65535) {
      why = literal ? "the port must be 0-65535" : "the port must be 1-65535";
      return false;
    }
    return true;
  }

  // { capacity: N, overflow: drop_newest | drop_oldest | block }
  void mailbox_field(const YAML::Node& m, const std::string& where, config::mailbox& out) {
    if (!check_map(m, where, {"capacity", "overflow"})) return;
    // 0: unbounded. The top: a mailbox of about 12 GiB of small messages.
    number_field(m, where, "capacity", 0, 100'000'000, "messages", out.capacity);
    string_field(m, where, "overflow", out.overflow);
    if (out.overflow != "drop_newest" && out.overflow != "drop_oldest" && out.overflow != "block")
      error(m["overflow"], "'" + where + ".overflow' must be drop_newest, drop_oldest or block");
  }

  // A list of non-empty strings (plugin names, kinds), or the one word
  // `every` standing for all of them (then `out` is just that word).
  void string_list(const YAML::Node& map, const std::string& where, const char* key,
                   std::vector<std::string>& out, const std::string& what = "plugin names",
                   const char* every = nullptr) {
    YAML::Node v = map[key];
    if (!v) return;
    const std::string name = "'" + where + "." + key + "'";
    if (every != nullptr && v.IsScalar() && v.as<std::string>() == every) {
      out = {every};
      return;
    }
    if (!v.IsSequence()) {
      error(v, name + " must be a list of " + what +
                   (every != nullptr ? std::string(" or '") + every + "'" : std::string()));
      return;
    }
    for (const auto& item : v) {
      if (!item.IsScalar() || item.as<std::string>().empty()) {
        error(item, name + " must hold " + what);
        continue;
      }
      out.push_back(item.as<std::string>());
    }
  }
};

// Every key of every mapping must be a plain value, and appear once:
// yaml-cpp would take a mapping as a key apart later with an exception,
// and keep only the first of two equal keys (a second `admin:` section
// adding token_file would be ignored, leaving the API open).
void check_keys(const YAML::Node& n, const std::string& file, std::vector<config_error>& errors,
                int depth = 0) {
  auto line = [](const YAML::Node& x) { return x.Mark().line >= 0 ? x.Mark().line + 1 : 0; };
  if (depth > 64) {
    errors.push_back({file, line(n), "the document nests more than 64 levels deep"});
    return;
  }
  if (n.IsMap()) {
    std::map<std::string, int> seen;
    for (const auto& kv : n) {
      if (!kv.first.IsScalar()) {
        errors.push_back({file, line(kv.first),
                          std::string("a ") + (kv.first.IsMap() ? "mapping" : "list") +
                              " is used as a key; keys are names"});
        continue;
      }
      const std::string key = kv.first.Scalar();
      if (auto [it, fresh] = seen.emplace(key, line(kv.first)); !fresh)
        errors.push_back({file, line(kv.first),
                          "duplicate key '" + key + "' (first at line " + std::to_string(it->second) +
                              "); each key may appear once"});
      check_keys(kv.second, file, errors, depth + 1);
    }
  } else if (n.IsSequence()) {
    for (const auto& item : n) check_keys(item, file, errors, depth + 1);
  }
}

bool load_checked(const std::string& path, config& out, std::vector<config_error>& errors);

// Whether an "ip:port" listens on the loopback interface only.
bool loopback_address(const std::string& address) {
  std::string host = address.substr(0, address.rfind(':'));
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

}  // namespace

bool load_config(const std::string& path, config& out, std::vector<config_error>& errors) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    errors.push_back({path, 0, "is a directory, not a configuration file"});
    return false;
  }
  // Whatever yaml-cpp or the file system throws is a configuration error
  // (with the line when yaml-cpp knows it), never the end of the process:
  // a reload runs this in a node that must go on.
  try {
    return load_checked(path, out, errors);
  } catch (const YAML::Exception& e) {
    errors.push_back({path, e.mark.line >= 0 ? e.mark.line + 1 : 0, "invalid configuration: " + e.msg});
  } catch (const std::exception& e) {
    errors.push_back({path, 0, std::string("cannot read the configuration: ") + e.what()});
  }
  return false;
}

namespace {

bool load_checked(const std::string& path, config& out, std::vector<config_error>& errors) {
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
  const std::size_t before = errors.size();
  check_keys(root, path, errors);
  if (errors.size() != before) return false;
  reader r{path, errors};
  if (!root || root.IsNull()) return true;  // empty file: defaults
  if (!r.check_map(root, "", {"node", "seeds", "admin", "metrics", "dispatcher", "log", "plugins",
                              "demo", "remote", "kinds"}))
    return false;
  const std::filesystem::path base = std::filesystem::path(path).parent_path();
  auto relative_to_config = [&](std::string& p) {
    if (!p.empty() && p[0] != '/') p = (base / p).lexically_normal().string();
  };
  // True when `p` names a file that can be read.
  auto readable_file = [&](const YAML::Node& at, const std::string& what, std::string& p) {
    relative_to_config(p);
    std::error_code ec;
    if (p.empty()) return false;
    if (!std::filesystem::is_regular_file(p, ec) || ::access(p.c_str(), R_OK) != 0) {
      r.error(at, what + " " + p + " is not a readable file");
      return false;
    }
    return true;
  };

  int node_line = 0;
  std::string why_budget;
  if (YAML::Node n = root["node"];
      n && r.check_map(n, "node", {"name", "cluster", "listen", "advertise", "secret_file",
                                   "drain_timeout", "state_dir", "stall_timeout",
                                   "max_queued_bytes"})) {
    node_line = n.Mark().line >= 0 ? n.Mark().line + 1 : 0;
    r.string_field(n, "node", "name", out.name);
    r.string_field(n, "node", "cluster", out.cluster);
    r.address_field(n, "node", "listen", true, out.listen);
    r.address_field(n, "node", "advertise", false, out.advertise);
    r.string_field(n, "node", "secret_file", out.secret_file);
    if (readable_file(n["secret_file"], "'node.secret_file'", out.secret_file)) {
      std::ifstream in(out.secret_file, std::ios::binary);
      std::string line;
      for (int number = 1; std::getline(in, line); ++number) {
        while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
        std::size_t start = 0;
        while (start < line.size() && std::isspace(static_cast<unsigned char>(line[start]))) ++start;
        line.erase(0, start);
        if (line.empty() || line[0] == '#') continue;
        if (line.size() < 16)
          r.error(n["secret_file"], "'node.secret_file' " + out.secret_file + " line " +
                                        std::to_string(number) + " holds a secret of " +
                                        std::to_string(line.size()) +
                                        " bytes; at least 16 are needed");
        out.secrets.push_back(line);
      }
      if (out.secrets.empty())
        r.error(n["secret_file"], "'node.secret_file' " + out.secret_file + " holds no secret");
    }
    if (!out.listen.empty() && out.advertise.empty()) {
      const std::string host = out.listen.substr(0, out.listen.rfind(':'));
      if (host == "0.0.0.0" || host == "[::]")
        r.error(n["listen"], "'node.advertise' is needed when 'node.listen' is " + out.listen +
                                 ": peers cannot dial a wildcard address");
    }
    if (out.name.empty()) r.error(n, "'node.name' must not be empty");
    r.number_field(n, "node", "drain_timeout", 1, 3600, "seconds", out.drain_timeout_seconds);
    r.number_field(n, "node", "stall_timeout", 1, 3600, "seconds", out.stall_timeout_seconds);
    r.string_field(n, "node", "max_queued_bytes", out.max_queued_bytes);
    if (queue_budget_setting b; !parse_queue_budget(out.max_queued_bytes, b, why_budget))
      r.error(n["max_queued_bytes"], "'node.max_queued_bytes' '" + out.max_queued_bytes + "': " + why_budget);
    r.string_field(n, "node", "state_dir", out.state_dir);
    if (n["state_dir"] && out.state_dir.empty()) r.error(n["state_dir"], "'node.state_dir' must not be empty");
    relative_to_config(out.state_dir);
    if (!out.state_dir.empty()) {
      std::string why;
      if (!usable_state_dir(out.state_dir, why)) r.error(n["state_dir"], "'node.state_dir' " + why);
    }
  }
  if (out.state_dir.empty()) {
    // systemd's StateDirectory= (a colon-separated list: the first is ours).
    if (const char* sd = std::getenv("STATE_DIRECTORY"); sd != nullptr && *sd != '\0') {
      out.state_dir = std::string(sd).substr(0, std::string(sd).find(':'));
      std::string why;
      if (!usable_state_dir(out.state_dir, why))
        errors.push_back({path, 0, "$STATE_DIRECTORY: " + why});
    }
  }
  if (YAML::Node sd = root["seeds"]) {
    if (!sd.IsSequence()) {
      r.error(sd, "'seeds' must be a list of addresses");
    } else {
      for (const auto& item : sd) {
        std::string why;
        std::string a = item.IsScalar() ? item.as<std::string>() : std::string();
        if (!reader::valid_address(a, false, why)) r.error(item, "seed '" + a + "' is not a valid address: " + why);
        else out.seeds.push_back(a);
      }
    }
  }
  int admin_line = 0;
  if (YAML::Node a = root["admin"];
      a && r.check_map(a, "admin", {"listen", "token_file", "insecure_no_token", "max_connections",
                                     "max_connections_per_address", "idle_timeout"})) {
    admin_line = a["listen"] ? a["listen"].Mark().line + 1 : a.Mark().line + 1;
    r.address_field(a, "admin", "listen", true, out.admin_listen);
    if (YAML::Node v = a["insecure_no_token"]) {
      try {
        out.admin_insecure_no_token = v.as<bool>();
      } catch (const YAML::Exception&) {
        r.error(v, "'admin.insecure_no_token' must be true or false");
      }
    }
    r.number_field(a, "admin", "max_connections", 1, 1 << 20, "", out.admin_max_connections);
    r.number_field(a, "admin", "max_connections_per_address", 0, 1 << 20, "",
                   out.admin_max_connections_per_address);
    r.number_field(a, "admin", "idle_timeout", 1, 3600, "seconds", out.admin_idle_timeout_seconds);
    r.string_field(a, "admin", "token_file", out.admin_token_file);
    if (readable_file(a["token_file"], "'admin.token_file'", out.admin_token_file)) {
      std::ifstream in(out.admin_token_file);
      std::getline(in, out.admin_token);
      while (!out.admin_token.empty() && std::isspace(static_cast<unsigned char>(out.admin_token.back())))
        out.admin_token.pop_back();
      if (out.admin_token.empty())
        r.error(a["token_file"], "'admin.token_file' " + out.admin_token_file +
                                     " holds no token (its first line is empty)");
    }
  }
  // The admin API spawns and stops actors: reachable from other hosts, it
  // needs a token, unless the operator says in so many words that it does not.
  if (!loopback_address(out.admin_listen) && out.admin_token_file.empty() &&
      !out.admin_insecure_no_token)
    errors.push_back({path, admin_line,
                      "'admin.listen' " + out.admin_listen +
                          " accepts connections from other hosts, and 'admin.token_file' is not set: "
                          "anyone who reaches it could spawn and stop actors (set a token_file, or "
                          "'admin.insecure_no_token: true' if that is what you want)"});
  if (YAML::Node m = root["metrics"]; m && r.check_map(m, "metrics", {"listen", "histograms"})) {
    r.address_field(m, "metrics", "listen", true, out.metrics_listen);
    r.string_list(m, "metrics", "histograms", out.histogram_kinds, "kinds", "all");
  }
  if (YAML::Node rm = root["remote"];
      rm && r.check_map(rm, "remote", {"max_frame_bytes", "send_queue", "heartbeat_interval_ms",
                                       "heartbeat_timeout_ms", "handshake_timeout_ms",
                                       "unreachable_timeout_ms", "spawn", "insecure_plaintext",
                                       "tls", "max_connections", "max_pending_connections",
                                       "max_pending_per_address"})) {
    r.number_field(rm, "remote", "max_frame_bytes", 65536, 64 << 20, "bytes", out.max_frame_bytes);
    r.number_field(rm, "remote", "send_queue", 16, 1 << 24, "messages", out.send_queue);
    r.number_field(rm, "remote", "heartbeat_interval_ms", 10, 600000, "milliseconds",
                   out.heartbeat_interval_ms);
    r.number_field(rm, "remote", "heartbeat_timeout_ms", 20, 3600000, "milliseconds",
                   out.heartbeat_timeout_ms);
    r.number_field(rm, "remote", "handshake_timeout_ms", 10, 600000, "milliseconds",
                   out.handshake_timeout_ms);
    r.number_field(rm, "remote", "unreachable_timeout_ms", 0, 3600000, "milliseconds",
                   out.unreachable_timeout_ms);
    if (out.heartbeat_timeout_ms <= out.heartbeat_interval_ms)
      r.error(rm, "'remote.heartbeat_timeout_ms' (" + std::to_string(out.heartbeat_timeout_ms) +
                      ") must be longer than 'remote.heartbeat_interval_ms' (" +
                      std::to_string(out.heartbeat_interval_ms) + ")");
    r.string_list(rm, "remote", "spawn", out.remote_spawn, "kinds", "*");
    if (YAML::Node v = rm["insecure_plaintext"]) {
      try {
        out.insecure_plaintext = v.as<bool>();
      } catch (const YAML::Exception&) {
        r.error(v, "'remote.insecure_plaintext' must be true or false");
      }
    }
    if (YAML::Node t = rm["tls"]; t && r.check_map(t, "remote.tls", {"cert_file", "key_file", "ca_file"})) {
      r.string_field(t, "remote.tls", "cert_file", out.tls_cert_file);
      r.string_field(t, "remote.tls", "key_file", out.tls_key_file);
      r.string_field(t, "remote.tls", "ca_file", out.tls_ca_file);
      readable_file(t["cert_file"], "'remote.tls.cert_file'", out.tls_cert_file);
      readable_file(t["key_file"], "'remote.tls.key_file'", out.tls_key_file);
      readable_file(t["ca_file"], "'remote.tls.ca_file'", out.tls_ca_file);
      if (out.tls_cert_file.empty() || out.tls_key_file.empty() || out.tls_ca_file.empty())
        r.error(t, "'remote.tls' needs cert_file, key_file and ca_file together");
    }
    r.number_field(rm, "remote", "max_connections", 1, 1 << 20, "", out.max_connections);
    r.number_field(rm, "remote", "max_pending_connections", 1, 1 << 20, "",
                   out.max_pending_connections);
    r.number_field(rm, "remote", "max_pending_per_address", 1, 1 << 20, "",
                   out.max_pending_per_address);
  }
  // Peers prove membership with the secret or a certificate, unless the
  // operator turned TLS off.
  if (!out.listen.empty() && out.secret_file.empty() && out.tls_cert_file.empty() &&
      !out.insecure_plaintext)
    errors.push_back({path, node_line,
                      "'node.secret_file' (or 'remote.tls') is needed with 'node.listen': peers "
                      "prove that they are members with it (or set 'remote.insecure_plaintext: "
                      "true' to turn TLS off)"});
  if (YAML::Node d = root["demo"]) {
    try {
      out.demo = d.as<bool>();
    } catch (const YAML::Exception&) {
      r.error(d, "'demo' must be true or false");
    }
  }
  if (YAML::Node d = root["dispatcher"]; d && r.check_map(d, "dispatcher", {"threads"}))
    r.number_field(d, "dispatcher", "threads", 0, 1024, "", out.threads);
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
      pl && r.check_map(pl, "plugins", {"dir", "load", "required", "mailbox"})) {
    if (YAML::Node m = pl["mailbox"]) r.mailbox_field(m, "plugins.mailbox", out.plugin_mailbox);
    if (YAML::Node d = pl["dir"]; d && d.IsScalar()) {
      std::string one;
      r.string_field(pl, "plugins", "dir", one);
      if (!one.empty()) out.plugin_dirs.push_back(one);
    } else {
      r.string_list(pl, "plugins", "dir", out.plugin_dirs, "folders");
    }
    r.string_list(pl, "plugins", "load", out.plugins);
    r.string_list(pl, "plugins", "required", out.required_plugins);
    for (const auto& name : out.required_plugins)
      if (std::find(out.plugins.begin(), out.plugins.end(), name) == out.plugins.end())
        out.plugins.push_back(name);
    for (const auto& name : out.plugins)
      if (name.find('/') != std::string::npos)
        r.error(pl, "plugin name '" + name + "' must be a name in 'plugins.dir', not a path");
    if (!out.plugins.empty() && out.plugin_dirs.empty())
      r.error(pl, "'plugins.dir' is needed to load plugins");
    // A folder of the list may be missing (a local one nobody filled yet),
    // but plugins need one that can be read.
    std::string tried;
    bool readable = false;
    for (std::string& dir : out.plugin_dirs) {
      relative_to_config(dir);
      std::error_code ec;
      readable = readable || (std::filesystem::is_directory(dir, ec) &&
                              ::access(dir.c_str(), R_OK | X_OK) == 0);
      tried += (tried.empty() ? "" : ", ") + dir;
    }
    if (!out.plugin_dirs.empty() && !out.plugins.empty() && !readable)
      r.error(pl["dir"], out.plugin_dirs.size() > 1
                             ? "'plugins.dir' lists no readable directory: " + tried
                             : "'plugins.dir' " + tried + " is not a readable directory");
  }
  // kinds.<kind>: what is set per actor kind. Unset mailbox fields are
  // those of plugins.mailbox.
  if (YAML::Node kinds = root["kinds"]; kinds && !kinds.IsMap()) {
    r.error(kinds, "'kinds' must be a mapping of kind names");
  } else if (kinds) {
    for (const auto& kv : kinds) {
      const std::string kind = kv.first.as<std::string>();
      const std::string where = "kinds." + kind;
      if (kind.empty()) r.error(kv.first, "'kinds' holds an empty kind name");
      if (!kv.second.IsMap()) {
        r.error(kv.second, "'" + where + "' must be a mapping");
        continue;
      }
      if (!r.check_map(kv.second, where, {"mailbox"})) continue;
      config::mailbox m = out.plugin_mailbox;
      if (YAML::Node mb = kv.second["mailbox"]) r.mailbox_field(mb, where + ".mailbox", m);
      out.kind_mailboxes[kind] = m;
    }
  }
  return errors.empty();
}

}  // namespace

}  // namespace troupe::node
