#include "node/state_dir.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace troupe::node {

state_dir::~state_dir() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

bool state_dir::open(const std::string& path, std::string& error) {
  if (path.empty()) return true;
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::absolute(path, ec).lexically_normal();
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    error = "state directory " + dir.string() + " cannot be made: " + ec.message();
    return false;
  }
  const std::string lock = (dir / lock_name).string();
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    error = "state directory " + dir.string() + ": cannot open " + lock + ": " + std::strerror(errno);
    return false;
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char holder[32] = {0};
    const ssize_t n = ::pread(fd, holder, sizeof holder - 1, 0);
    ::close(fd);
    std::string who = n > 0 ? std::string(holder, static_cast<std::size_t>(n)) : std::string();
    while (!who.empty() && (who.back() == '\n' || who.back() == ' ')) who.pop_back();
    error = err == EWOULDBLOCK
                ? "state directory " + dir.string() + " is in use by another node" +
                      (who.empty() ? std::string() : " (pid " + who + ")")
                : "state directory " + dir.string() + ": cannot lock " + lock + ": " + std::strerror(err);
    return false;
  }
  const std::string me = std::to_string(::getpid()) + "\n";
  ssize_t written = -1;
  if (::ftruncate(fd, 0) == 0) written = ::pwrite(fd, me.data(), me.size(), 0);
  if (written != static_cast<ssize_t>(me.size())) {
    error = "state directory " + dir.string() + ": cannot write " + lock + ": " +
            (written < 0 ? std::strerror(errno) : "short write (is the disk full?)");
    ::close(fd);
    return false;
  }
  fd_ = fd;
  path_ = dir.string();
  return true;
}

}  // namespace troupe::node
