#pragma once
// What the node says when it dies of a fatal signal (a plugin that
// dereferences null, aborts, divides by zero): one log line naming the
// signal and what the crashing thread ran (plugin, kind, actor), written
// async-signal-safely; then the node dies of that signal as it would have
// (a core dump, systemd's restart). Plugins run in-process: this does not
// keep the node alive, it says who killed it.

namespace troupe::node {

// Installs the handlers for SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT,
// and an alternate signal stack for the calling thread.
void install_crash_report();

// An alternate signal stack for the calling thread, so that the report is
// written even when the thread overflowed its stack. Each worker calls it.
void crash_stack_for_this_thread();

}  // namespace troupe::node
