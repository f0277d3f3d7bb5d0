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
// Copies of opts' format for log_from_signal_handler, which takes no lock.
std::atomic<bool> signal_json{false}, signal_syslog{false};

const char* name_of(level l) noexcept { return troupe::to_string(l); }

}  // namespace

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
  signal_json.store(o.json, std::memory_order_relaxed);
  signal_syslog.store(o.syslog_prefix, std::memory_order_relaxed);
}

void log_from_signal_handler(const char* text) noexcept {
  char line[1024];
  std::size_t at = 0;
  auto put = [&](const char* s) {
    while (*s != '\0' && at < sizeof line - 2) line[at++] = *s++;
  };
  if (signal_syslog.load(std::memory_order_relaxed)) put("<3>");
  if (signal_json.load(std::memory_order_relaxed)) {
    put("{\"level\":\"error\",\"message\":\"");
    for (const char* c = text; *c != '\0' && at < sizeof line - 8; ++c) {
      const unsigned char u = static_cast<unsigned char>(*c);
      if (u == '"' || u == '\\') {
        line[at++] = '\\';
        line[at++] = static_cast<char>(u);
      } else if (u < 0x20) {
        line[at++] = ' ';
      } else {
        line[at++] = static_cast<char>(u);
      }
    }
    put("\"}");
  } else {
    put("error troupe-node: ");
    for (const char* c = text; *c != '\0' && at < sizeof line - 2; ++c)
      line[at++] = *c == '\n' ? ' ' : *c;
  }
  line[at++] = '\n';
  ssize_t ignored = ::write(STDERR_FILENO, line, at);
  (void)ignored;
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
  if (opts.syslog_prefix) {
    std::string prefixed = "<";
    prefixed += std::to_string(static_cast<int>(l));
    prefixed += '>';
    line = std::move(prefixed += line);
  }
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace troupe::node
