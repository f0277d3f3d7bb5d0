#include "node/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <cstdlib>
#include <mutex>

#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace troupe::node {

namespace {

std::mutex mu;
log_options opts;

const char* name_of(level l) noexcept {
  switch (l) {
    case level::debug: return "debug";
    case level::info: return "info";
    case level::warning: return "warning";
    case level::error: return "error";
  }
  return "info";
}

}  // namespace

bool parse_level(std::string_view name, level& out) noexcept {
  for (level l : {level::debug, level::info, level::warning, level::error})
    if (name == name_of(l)) {
      out = l;
      return true;
    }
  return false;
}

bool stderr_is_journal() noexcept {
  const char* v = std::getenv("JOURNAL_STREAM");
  unsigned long long dev = 0, ino = 0;
  if (v == nullptr || std::sscanf(v, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  return ::fstat(STDERR_FILENO, &st) == 0 && static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

void configure_log(const log_options& o) {
  std::lock_guard lock(mu);
  opts = o;
}

void log(level l, std::string_view text) {
  std::lock_guard lock(mu);
  // Syslog priorities: a smaller number is more severe.
  if (static_cast<int>(l) > static_cast<int>(opts.min)) return;
  std::string line;
  if (opts.json) {
    const auto now = std::chrono::system_clock::now();
    nlohmann::json j = {
        {"time", std::chrono::duration<double>(now.time_since_epoch()).count()},
        {"level", name_of(l)},
        {"message", std::string(text)},
    };
    line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line = std::string(name_of(l)) + " troupe-node: ";
    // One event, one line: a plugin's multi-line text must not look like
    // several events (or lose its priority after the first line).
    for (char c : text) {
      if (c == '\n') line += "\\n";
      else if (c == '\r') line += "\\r";
      else line.push_back(c);
    }
  }
  if (opts.syslog_prefix) line = "<" + std::to_string(static_cast<int>(l)) + ">" + line;
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace troupe::node
