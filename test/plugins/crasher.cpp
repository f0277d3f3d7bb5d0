// A kind whose handler kills the process, for the crash report tests:
// a Num of 1 writes through a bad pointer (SIGSEGV), 2 aborts (SIGABRT),
// 3 recurses until the stack overflows (SIGSEGV on the guard page).
#include <cstdint>
#include <cstdlib>

#include <troupe/troupe.hpp>
#include "test_messages_generated.h"

namespace {

__attribute__((noinline)) std::uint64_t deeper(std::uint64_t n) {
  volatile char pad[1024];
  pad[0] = static_cast<char>(n);
  if (n == UINT64_MAX) return pad[0];  // never: the stack ends long before
  return deeper(n + 1) + pad[0];
}

struct Crashes : troupe::Actor {
  void receive(troupe::Context& ctx) override {
    auto n = ctx.message<troupe::test::Num>();
    if (!n) return;
    if (n->n() == 1) {
      volatile std::uintptr_t bad = 16;
      *reinterpret_cast<volatile int*>(bad) = 1;
    } else if (n->n() == 2) {
      std::abort();
    } else if (n->n() == 3) {
      ctx.respond<troupe::test::Num>([&](auto& b) {
        return troupe::test::CreateNum(b, static_cast<std::int64_t>(deeper(0)));
      });
    }
  }
};

}  // namespace

TROUPE_PLUGIN(crasher, "1.0.0") { plugin.kind<Crashes>("crash.receive"); }
