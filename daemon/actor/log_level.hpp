#pragma once
// How much a log line matters: one type for every layer (the runtime's
// users, remote, plugins, the node). The values are syslog priorities, as
// the journal reads them.
namespace troupe {

enum class log_level : int { debug = 7, info = 6, warning = 4, error = 3 };

// "debug", "info", "warning", "error".
constexpr const char* to_string(log_level l) noexcept {
  switch (l) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warning: return "warning";
    case log_level::error: return "error";
  }
  return "info";
}

}  // namespace troupe
