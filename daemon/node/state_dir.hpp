#pragma once
// The node's state directory: made if missing, and locked while the node
// runs, because two nodes must never keep their state in one folder.
#include <string>

namespace troupe::node {

class state_dir {
 public:
  state_dir() = default;
  state_dir(const state_dir&) = delete;
  state_dir& operator=(const state_dir&) = delete;
  ~state_dir();

  // Makes `path` if needed and locks it (a lock file holding this process's
  // id). False with `error` set when it cannot be made, or another process
  // holds it. An empty `path` is no state directory: nothing to do.
  bool open(const std::string& path, std::string& error);
  // The folder, absolute; empty when there is none.
  const std::string& path() const noexcept { return path_; }

  static constexpr const char* lock_name = "troupe-node.lock";

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace troupe::node
