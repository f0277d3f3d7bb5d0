// persist.writer: a persistent actor that, from its start, persists one
// event after another (one persist in flight at a time; every tenth, three
// events together), each saying which actor wrote it and which number it
// should get. After each acknowledgement it
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

  // One event at a time; every tenth time, three together.
  void next(troupe::Context& ctx) {
    const std::uint64_t first = ctx.last_seq() + 1;
    const unsigned of = ++turns % 10 == 0 ? 3 : 1;
    troupe::Events events;
    for (unsigned i = 0; i < of; ++i)
      events.add<persist_probe::Written>(
          [&](auto& b) { return persist_probe::CreateWrittenDirect(b, id.c_str(), first + i, first, of); });
    ctx.persist_all(events, [this, first](troupe::Context& c, const troupe::Persisted& p) {
      if (!p.ok()) return;
      for (std::uint64_t seq = first; seq <= p.last_seq; ++seq) tell_observer(id + " " + std::to_string(seq));
      next(c);
    });
  }
  unsigned turns = 0;
};

TROUPE_PLUGIN(persist_probe, "1.0.0") {
  plugin.kind<Writer>("persist.writer");
  plugin.persistent<Writer>("persist.writer");
  plugin.schema(persist_probe_bfbs);
}
