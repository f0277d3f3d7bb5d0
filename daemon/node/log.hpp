#pragma once
// The node's log: one line per event on stderr (a line break inside a
// message is written as \n). Under systemd (stderr is the
// journal) each line starts with a <N> syslog priority that journald reads;
// otherwise plain text; or JSON lines with log.format: json. Safe from any
// thread.
#include <string>
#include <string_view>

#include "actor/log_level.hpp"

namespace troupe::node {

using level = troupe::log_level;  // syslog priorities

struct log_options {
  level min = level::info;
  bool json = false;
  bool syslog_prefix = false;  // set when stderr is the journal
};

// Whether stderr is the journal: systemd names the stream it connected in
// JOURNAL_STREAM ("device:inode"), which a child whose stderr was
// redirected elsewhere inherits too.
bool stderr_is_journal() noexcept;

// Changes what is logged and how (at start and on reload).
void configure_log(const log_options& o);
void log(level l, std::string_view text);
// An error line written with one write(2), in the configured format, for a
// signal handler: no allocation, no lock, no time in JSON lines. `text`
// must be NUL-terminated.
void log_from_signal_handler(const char* text) noexcept;

}  // namespace troupe::node
