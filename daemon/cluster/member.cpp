#include "cluster/member.hpp"

namespace troupe::cluster {

namespace {

// The comma-separated items of metadata key `key`.
std::vector<std::string> listed(const member& m, const char* key) {
  std::vector<std::string> out;
  const auto it = m.meta.find(key);
  if (it == m.meta.end()) return out;
  std::size_t at = 0;
  const std::string& s = it->second;
  while (at < s.size()) {
    std::size_t comma = s.find(',', at);
    if (comma == std::string::npos) comma = s.size();
    if (comma > at) out.push_back(s.substr(at, comma - at));
    at = comma + 1;
  }
  return out;
}

}  // namespace

std::vector<std::string> kinds_of(const member& m) { return listed(m, "kinds"); }

std::vector<std::pair<std::string, std::string>> grains_of(const member& m) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const std::string& item : listed(m, "grains")) {
    const std::size_t at = item.rfind('@');
    if (at == std::string::npos) out.emplace_back(item, "");
    else out.emplace_back(item.substr(0, at), item.substr(at + 1));
  }
  return out;
}

}  // namespace troupe::cluster
