#include "node/crash.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <iterator>
#include <cstdint>
#include <cstdlib>

#include "actor/context.hpp"
#include "node/log.hpp"

namespace troupe::node {

namespace {

constexpr int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};

const char* signal_name(int sig) noexcept {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV (invalid memory access)";
    case SIGBUS: return "SIGBUS (bad memory access)";
    case SIGILL: return "SIGILL (illegal instruction)";
    case SIGFPE: return "SIGFPE (arithmetic error)";
    case SIGABRT: return "SIGABRT (aborted)";
  }
  return "a fatal signal";
}

struct writer {
  char* buf;
  std::size_t n;
  std::size_t at = 0;
  void put(const char* s) noexcept {
    while (*s != '\0' && at + 1 < n) buf[at++] = *s++;
    buf[at] = '\0';
  }
  void hex(std::uintptr_t v) noexcept {
    char digits[2 + 2 * sizeof v + 1];
    std::size_t d = sizeof digits - 1;
    digits[d] = '\0';
    do {
      digits[--d] = "0123456789abcdef"[v & 15];
      v >>= 4;
    } while (v != 0);
    digits[--d] = 'x';
    digits[--d] = '0';
    put(digits + d);
  }
};

void on_fatal_signal(int sig, siginfo_t* info, void*) {
  char text[900];
  writer w{text, sizeof text};
  w.put("fatal signal ");
  w.put(signal_name(sig));
  if ((sig == SIGSEGV || sig == SIGBUS) && info != nullptr) {
    w.put(" at address ");
    w.hex(reinterpret_cast<std::uintptr_t>(info->si_addr));
  }
  char what[600];
  if (context::describe_running(what, sizeof what) > 0) {
    w.put(" while running ");
    w.put(what);
  } else {
    w.put(" outside any actor's turn");
  }
  w.put("; the node exits");
  log_from_signal_handler(text);
  // Die of the same signal, as without this handler: SA_RESETHAND put the
  // default back; a fault re-raises when the instruction runs again.
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

void crash_stack_for_this_thread() {
  // A thread that has one already (a sanitizer gives each its own, and
  // frees it at thread exit) keeps it.
  stack_t current{};
  if (::sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE) == 0) return;
  // Kept for the life of the process (threads come and go rarely); listed
  // here so that they stay reachable memory, not leaks.
  static std::atomic<void*> stacks[512];
  static std::atomic<std::size_t> used{0};
  const std::size_t slot = used.fetch_add(1, std::memory_order_relaxed);
  if (slot >= std::size(stacks)) return;
  constexpr std::size_t size = 64 * 1024;
  stack_t ss{};
  ss.ss_sp = std::malloc(size);
  if (ss.ss_sp == nullptr) return;
  ss.ss_size = size;
  stacks[slot].store(ss.ss_sp, std::memory_order_relaxed);
  ::sigaltstack(&ss, nullptr);
}

void install_crash_report() {
  crash_stack_for_this_thread();
  struct sigaction sa {};
  sa.sa_sigaction = &on_fatal_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (int sig : fatal_signals) ::sigaction(sig, &sa, nullptr);
}

}  // namespace troupe::node
