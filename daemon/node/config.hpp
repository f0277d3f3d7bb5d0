#pragma once
// The node's YAML configuration. Every problem is reported with the file,
// line and key, and the node exits with EX_CONFIG (78).
#include <string>
#include <vector>

namespace troupe::node {

struct config {
  std::string name = "troupe";
  std::string cluster = "troupe";
  unsigned threads = 0;
  std::string log_level = "info";
};

struct config_error {
  std::string file;
  int line = 0;  // 1-based; 0 when unknown
  std::string message;
  std::string to_string() const;
};

// Parses `path`. On failure returns false and fills `errors` (all of them).
bool load_config(const std::string& path, config& out, std::vector<config_error>& errors);

}  // namespace troupe::node
