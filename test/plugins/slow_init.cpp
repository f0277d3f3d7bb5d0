// Takes 1.5 s to initialise: a node loading it is still starting for that
// long (signals that come meanwhile must not end it).
#include <chrono>
#include <thread>

#include <troupe/troupe.hpp>

namespace {

struct Idle : troupe::Actor {
  void receive(troupe::Context&) override {}
};

}  // namespace

TROUPE_PLUGIN(slow_init, "1.0.0") {
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  plugin.kind<Idle>("slow.idle");
}
