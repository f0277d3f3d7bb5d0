// persist.writer: a persistent actor that, from its start, persists one
// event after another (one in flight at a time), each saying which actor
// wrote it and which number it should get. After each acknowledgement it
// tells an observer outside the node (a UNIX datagram socket named by
// TROUPE_PERSIST_OBSERVER: "<persistence id> <seq>"), so that a test can
// kill the node with kill -9 at any moment and check that every
// acknowledged event is in the journal.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include <troupe/troupe.hpp>
#include "persist_messages_generated.h"

namespace {

void tell_observer(const std::string& line) {
  static const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const char* path = std::getenv("TROUPE_PERSIST_OBSERVER");
  if (fd < 0 || path == nullptr) return;
  sockaddr_un to{};
  to.sun_family = AF_UNIX;
  std::strncpy(to.sun_path, path, sizeof to.sun_path - 1);
  [[maybe_unused]] const ssize_t n =
      ::sendto(fd, line.data(), line.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
}

}  // namespace

struct Writer : troupe::PersistentActor {
  std::uint64_t recovered = 0;
  std::string id;

  void recover(troupe::Context&, const troupe::Recovered& r) override { recovered = r.seq; }

  void started(troupe::Context& ctx) override {
    id = std::string(ctx.persistence_id());
    next(ctx);
  }
  void receive(troupe::Context&) override {}

  void next(troupe::Context& ctx) {
    const std::uint64_t seq = ctx.last_seq() + 1;
    ctx.persist<persist_probe::Written>(
        [&](auto& b) { return persist_probe::CreateWrittenDirect(b, id.c_str(), seq); },
        [this](troupe::Context& c, const troupe::Persisted& p) {
          if (!p.ok()) return;
          tell_observer(id + " " + std::to_string(p.last_seq));
          next(c);
        });
  }
};

TROUPE_PLUGIN(persist_probe, "1.0.0") {
  plugin.kind<Writer>("persist.writer");
  plugin.persistent<Writer>("persist.writer");
  plugin.schema(persist_probe_bfbs);
}
