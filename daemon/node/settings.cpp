#include "node/settings.hpp"

#include <arpa/inet.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace troupe::node {

std::string config_error::to_string() const {
  std::string s = file;
  if (line > 0) {
    s.push_back(':');
    s.append(std::to_string(line));
  }
  return s + ": " + message;
}

void section_reader::error(const YAML::Node& at, const std::string& message) {
  errors_.push_back({file_, at.IsDefined() ? line_of(at) : 0, message});
}

void section_reader::error(int line, const std::string& message) {
  errors_.push_back({file_, line, message});
}

bool section_reader::check_map(const YAML::Node& map, const std::string& where,
                               const std::vector<std::string>& known) {
  if (!map.IsMap()) {
    error(map, "'" + where + "' must be a mapping");
    return false;
  }
  for (const auto& kv : map) {
    const std::string key = kv.first.as<std::string>();
    bool found = false;
    for (const std::string& k : known) found = found || k == key;
    if (!found) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      error(kv.first, "unknown key '" + (where.empty() ? key : where + "." + key) +
                          "' (expected one of: " + list + ")");
    }
  }
  return true;
}

std::string section_reader::relative_to_config(const std::string& p) const {
  if (p.empty() || p[0] == '/') return p;
  return (std::filesystem::path(file_).parent_path() / p).lexically_normal().string();
}

bool section_reader::readable_file(const YAML::Node& at, const std::string& what, std::string& p) {
  p = relative_to_config(p);
  std::error_code ec;
  if (p.empty()) return false;
  if (!std::filesystem::is_regular_file(p, ec) || ::access(p.c_str(), R_OK) != 0) {
    error(at, what + " " + p + " is not a readable file");
    return false;
  }
  return true;
}

bool section_reader::valid_address(const std::string& a, bool literal, std::string& why) {
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
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) < (literal ? 0 : 1) || std::stoi(port) > 65535) {
    why = literal ? "the port must be 0-65535" : "the port must be 1-65535";
    return false;
  }
  return true;
}

bool section_reader::loopback_address(const std::string& address) {
  std::string host = address.substr(0, address.rfind(':'));
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

namespace read {

void text(const YAML::Node& v, section_reader& r, const std::string& what, std::string& out) {
  if (!v.IsScalar()) {
    r.error(v, what + " must be a string");
    return;
  }
  out = v.as<std::string>();
}

std::string one_of(const std::vector<std::string>& allowed) {
  std::string s;
  for (std::size_t i = 0; i < allowed.size(); ++i)
    s += (i == 0 ? "" : i + 1 == allowed.size() ? " or " : ", ") + allowed[i];
  return s;
}

void choice(const YAML::Node& v, section_reader& r, const std::string& what,
            const std::vector<std::string>& allowed, std::string& out) {
  std::string s;
  if (v.IsScalar()) s = v.as<std::string>();
  for (const std::string& a : allowed)
    if (v.IsScalar() && s == a) {
      out = s;
      return;
    }
  r.error(v, what + " must be " + (allowed.size() > 3 ? "one of " : "") + one_of(allowed));
}

void number(const YAML::Node& v, section_reader& r, const std::string& what, long lo, long hi,
            const std::string& unit, unsigned& out) {
  try {
    const long n = v.as<long>();
    if (n < lo || n > hi)
      r.error(v, what + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                     (unit.empty() ? "" : " " + unit));
    else
      out = static_cast<unsigned>(n);
  } catch (const YAML::Exception&) {
    r.error(v, what + " must be a whole number" + (unit.empty() ? "" : " of " + unit));
  }
}

void duration(const YAML::Node& v, section_reader& r, const std::string& what, std::chrono::milliseconds lo,
              std::chrono::milliseconds hi, std::chrono::milliseconds& out) {
  const std::string s = v.IsScalar() ? v.Scalar() : std::string();
  std::size_t digits = 0;
  while (digits < s.size() && digits < 12 && s[digits] >= '0' && s[digits] <= '9') ++digits;
  const std::string unit = s.substr(digits);
  static const std::pair<const char*, long long> units[] = {
      {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
  long long per = 0;
  for (const auto& [name, ms] : units)
    if (unit == name) per = ms;
  if (digits == 0 || per == 0) {
    r.error(v, what + " must be a duration such as 500ms, 30s, 10m, 2h or 1d" +
                   (s.empty() ? std::string() : " (not '" + s + "')"));
    return;
  }
  const std::chrono::milliseconds d(std::stoll(s.substr(0, digits)) * per);
  if (d < lo || d > hi) {
    r.error(v, what + " must be between " + show(lo) + " and " + show(hi));
    return;
  }
  out = d;
}

std::string show(std::chrono::milliseconds d) {
  const long long ms = d.count();
  static const std::pair<const char*, long long> units[] = {
      {"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
  for (const auto& [name, per] : units)
    if (ms != 0 && ms % per == 0) return std::to_string(ms / per) + name;
  return std::to_string(ms) + "ms";
}

void flag(const YAML::Node& v, section_reader& r, const std::string& what, bool& out) {
  try {
    out = v.as<bool>();
  } catch (const YAML::Exception&) {
    r.error(v, what + " must be true or false");
  }
}

void address(const YAML::Node& v, section_reader& r, const std::string& what, bool literal,
             std::string& out) {
  if (!v.IsScalar()) {
    r.error(v, what + " must be an address like 127.0.0.1:7700");
    return;
  }
  const std::string a = v.as<std::string>();
  std::string why;
  if (!section_reader::valid_address(a, literal, why)) {
    r.error(v, what + " '" + a + "' is not a valid address: " + why);
    return;
  }
  out = a;
}

void names(const YAML::Node& v, section_reader& r, const std::string& what, const std::string& items,
           const std::string& every, std::vector<std::string>& out) {
  if (!every.empty() && v.IsScalar() && v.as<std::string>() == every) {
    out = {every};
    return;
  }
  if (!v.IsSequence()) {
    r.error(v, what + " must be a list of " + items + (every.empty() ? "" : " or '" + every + "'"));
    return;
  }
  out.clear();
  for (const auto& item : v) {
    if (!item.IsScalar() || item.as<std::string>().empty()) {
      r.error(item, what + " must hold " + items);
      continue;
    }
    out.push_back(item.as<std::string>());
  }
}

std::string show(const std::string& s) { return s.empty() ? "(none)" : s; }

std::string show(const std::vector<std::string>& list) {
  if (list.empty()) return "[]";
  std::string s = "[";
  for (std::size_t i = 0; i < list.size(); ++i) s += (i == 0 ? "" : ", ") + list[i];
  return s + "]";
}

}  // namespace read

void read_file_text(const YAML::Node& v, section_reader& r, const std::string& what, file_text& out) {
  read::text(v, r, what, out.file);
  out.text.clear();
  if (out.file.empty() || !r.readable_file(v, what, out.file)) return;
  std::ifstream in(out.file, std::ios::binary);
  std::ostringstream all;
  all << in.rdbuf();
  out.text = all.str();
  while (!out.text.empty() && std::isspace(static_cast<unsigned char>(out.text.back()))) out.text.pop_back();
  if (out.text.empty()) r.error(v, what + " " + out.file + " is empty");
}

}  // namespace troupe::node
