// plugin-probe PLUGIN.so NAME: loads the greeter plugin of the out-of-tree
// test into a real actor system, spawns oot.greeter, asks it to greet NAME
// and prints the answer. Exit status 0 only if that all worked.
#include <cstdio>
#include <memory>
#include <string>

#include "actor/actor_system.hpp"
#include "greeter_generated.h"
#include "plugin/plugin_host.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: plugin-probe PLUGIN.so NAME\n");
    return 2;
  }
  troupe::actor_system sys;
  auto host = std::make_shared<troupe::plugin::host>(sys);
  auto loaded = host->load(argv[1]);
  if (!loaded.ok) return 1;  // the host has logged why
  troupe::props_ptr kind = host->kind("oot.greeter");
  if (!kind) {
    std::fprintf(stderr, "plugin-probe: no kind oot.greeter\n");
    return 1;
  }
  troupe::pid g = sys.root().spawn(kind);
  const std::string name = argv[2];
  auto reply = sys.root()
                   .request_future(g, troupe::make_message<oot::Greet>([&](auto& b) {
                                     return oot::CreateGreetDirect(b, name.c_str());
                                   }),
                                   std::chrono::seconds(5))
                   .get_result();
  auto* greeting = reply.as<oot::Greeting>();
  if (greeting == nullptr || greeting->text() == nullptr) {
    std::fprintf(stderr, "plugin-probe: no Greeting came back\n");
    return 1;
  }
  std::printf("%s\n", greeting->text()->c_str());
  return 0;
}
