#pragma once
// The node's YAML configuration: one section per top-level key, each
// described once (settings.hpp) by the node itself or by the module that
// owns it, and per-kind keys under kinds.<kind>. Every problem is reported
// with the file, line and key, and the node exits with EX_CONFIG (78).
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "node/log.hpp"
#include "node/overload.hpp"
#include "node/settings.hpp"

namespace troupe::node {

// What a configuration file may hold: the sections in the order they are
// read (a section's checks see those before it), and the per-kind keys.
struct schema {
  std::vector<const section_base*> sections;
  std::vector<const section_base*> kind_keys;
};

class config {
 public:
  std::string path;  // the file it was read from

  // A section's value: its defaults when the file leaves it out.
  template <class S>
  const S& get(const section<S>& s) const {
    const auto it = values_.find(&s);
    return it != values_.end() ? *static_cast<const S*>(it->second.get()) : s.defaults();
  }
  // kinds.<kind>.<key>: null when the file does not set it for `kind`.
  // (kinds.all.<key> is the default of every kind: see setting_for.)
  template <class S>
  const S* for_kind(const section<S>& s, const std::string& kind) const {
    const auto k = kinds_.find(kind);
    if (k == kinds_.end()) return nullptr;
    const auto it = k->second.find(&s);
    return it != k->second.end() ? static_cast<const S*>(it->second.get()) : nullptr;
  }
  // kinds.<kind>.<key>, else kinds.all.<key>, else null.
  template <class S>
  const S* setting_for(const section<S>& s, const std::string& kind) const {
    const S* own = for_kind(s, kind);
    return own != nullptr ? own : for_kind(s, all_kinds);
  }
  // Every kind that kinds: names (`all` included).
  std::vector<std::string> kinds() const;
  static constexpr const char* all_kinds = "all";

  // Reload: for each restart-only key whose value differs from `running`'s,
  // this config takes the running value back; returns those keys' names.
  std::vector<std::string> keep_running(const config& running, const schema& s);

 private:
  friend struct config_loader;
  std::map<const section_base*, std::shared_ptr<const void>> values_;
  std::map<std::string, std::map<const section_base*, std::shared_ptr<const void>>> kinds_;
};

// Parses `path` against `s`. On failure returns false and fills `errors`
// (all of them).
bool load_config(const std::string& path, const schema& s, config& out,
                 std::vector<config_error>& errors);

// The configuration reference (Markdown), from the schema: what
// docs/operations.md holds between its config-reference markers.
std::string config_reference(const schema& s);

// The node's own sections.
struct node_settings {
  std::string name = "troupe";
  std::string cluster = "troupe";
  // Addresses are "host:port" ([v6]:port for IPv6). Listen addresses must
  // be IP literals; the others may be host names.
  std::string listen;     // the node-to-node port
  std::string advertise;  // what peers dial
  // node.secret_file and its lines, one secret each: the first is offered
  // when dialing, all are accepted.
  struct secret_list {
    std::string file;
    std::vector<std::string> secrets;
    bool operator==(const secret_list&) const = default;
  };
  secret_list secret;
  unsigned drain_timeout_seconds = 10;
  unsigned stall_timeout_seconds = 10;
  queue_budget_setting max_queued_bytes;
  std::string state_dir;
  int line = 0;  // where the section is in the file, for checks made later
};
struct seeds_settings {
  std::vector<std::string> seeds;
};
struct dispatcher_settings {
  unsigned threads = 0;
  unsigned busy_poll_us = 0;
};
struct log_settings {
  troupe::log_level level = troupe::log_level::info;
  std::string format = "text";
};

const section<node_settings>& node_section();
const section<seeds_settings>& seeds_section();
const section<dispatcher_settings>& dispatcher_section();
const section<log_settings>& log_section();

}  // namespace troupe::node
