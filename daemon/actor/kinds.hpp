#pragma once
// The kinds of actor a node can spawn by name ("acme.counter"). Plugins
// register theirs here; the admin API, peers and plugins all spawn through
// spawn_kind (root_context, context), so they all get the same answers.
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "actor/props.hpp"

namespace troupe {

class kind_registry {
 public:
  // Any thread. False when the name is taken: the first one stays.
  bool add(const std::string& name, props_ptr p);
  // Null when no kind has that name.
  props_ptr find(std::string_view name) const;
  std::vector<std::string> names() const;  // sorted
  std::size_t size() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, props_ptr, std::less<>> kinds_;
};

// Why a spawn was refused, in words for an HTTP client, a peer or the log.
std::string spawn_refusal(spawn_error e, const std::string& kind, const std::string& name);

}  // namespace troupe
