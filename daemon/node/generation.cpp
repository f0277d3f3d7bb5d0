#include "node/generation.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

namespace troupe::node {

bool next_generation(const std::string& state_dir, std::uint64_t now_ms, std::uint64_t& out, std::string& error) {
  out = now_ms;
  if (state_dir.empty()) return true;
  const std::string path = state_dir + "/generation";
  std::uint64_t kept = 0;
  if (std::ifstream in(path); in) {
    std::string text;
    std::getline(in, text);
    if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos || text.size() > 19) {
      error = path + " does not hold a generation (a number); remove it to start afresh";
      return false;
    }
    kept = std::stoull(text);
  }
  out = std::max(kept + 1, now_ms);
  // Written to a new file and renamed over the old: a crash leaves one or
  // the other, never half of one.
  const std::string tmp = path + ".new";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    error = "cannot write " + tmp + ": " + std::strerror(errno);
    return false;
  }
  const std::string text = std::to_string(out) + "\n";
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  if (!written || ::rename(tmp.c_str(), path.c_str()) != 0) {
    error = "cannot write " + path + ": " + std::strerror(written ? errno : saved);
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

}  // namespace troupe::node
