// libFuzzer target: the bytes a peer can send inside the channel. The first
// byte picks the state the connection is in: before the identity exchange
// (Hello, Welcome, anything else out of place), or after it, where Batch
// and the other frames are read field by field as the transport reads
// them, their numbers go through the link's receive window and their
// acknowledgements through a send ledger.
#include <cstdint>
#include <cstring>
#include <string>

#include "remote/link.hpp"
#include "remote/session.hpp"

namespace {

using namespace troupe::remote;

std::size_t touch(const flatbuffers::String* s) { return s ? s->size() + (s->size() ? s->c_str()[0] : 0) : 0; }

// Plays the node's part as the transport does: the link's window admits
// numbered items, acknowledgements clear a ledger of items "sent" before,
// and a Welcome's `received` resends the rest.
struct sink : session_events {
  std::size_t seen = 0;
  receive_window window;
  send_ledger<std::uint64_t> ledger;
  sink() {
    for (std::uint64_t i = 0; i < 64; ++i) ledger.push(i);
  }
  void write(std::span<const std::uint8_t> f) override { seen += f.size(); }
  verdict on_hello(const peer_hello& h) override {
    seen += h.address.size();
    verdict v;
    v.received = window.received_from(h.incarnation);
    return v;
  }
  void on_up(std::uint64_t received) override {
    ledger.acknowledge(received, [&](std::uint64_t& i) { seen += i; });
    ledger.each([&](std::uint64_t seq, std::uint64_t& i) { seen += seq + i; });
  }
  void on_ack(std::uint64_t ack) override {
    ledger.acknowledge(ack, [&](std::uint64_t& i) { seen += i; });
    if (ledger.empty()) ledger.push(ack);
  }
  void on_frame(const troupe::wire::Frame& f) override {
    using troupe::wire::Body;
    if (f.body_type() != Body::Batch && window.admit(f.seq(), 1) != 0) return;
    switch (f.body_type()) {
      case Body::Batch: {
        const auto& b = *f.body_as_Batch();
        if (!batch_indexes_valid(b) || !b.envelopes()) return;
        const std::uint64_t skip = window.admit(f.seq(), b.envelopes()->size());
        for (std::uint32_t n = static_cast<std::uint32_t>(skip); n < b.envelopes()->size(); ++n) {
          const auto* e = b.envelopes()->Get(n);
          seen += touch(b.targets()->Get(e->target()));
          if (e->sender() != 0) seen += touch(b.senders()->Get(e->sender() - 1));
          seen += static_cast<std::size_t>(b.types()->Get(e->type()));
          if (const auto* p = e->payload())
            for (std::uint8_t byte : *p) seen += byte;
          if (const auto* hs = e->headers())
            for (const auto* h : *hs) seen += touch(h->key()) + touch(h->value());
        }
        return;
      }
      case Body::Watch: seen += touch(f.body_as_Watch()->watcher()) + touch(f.body_as_Watch()->target()); return;
      case Body::Unwatch: seen += touch(f.body_as_Unwatch()->watcher()) + touch(f.body_as_Unwatch()->target()); return;
      case Body::Terminated: seen += touch(f.body_as_Terminated()->target()) + f.body_as_Terminated()->reason(); return;
      case Body::Stop: seen += touch(f.body_as_Stop()->target()); return;
      case Body::SpawnRequest: seen += touch(f.body_as_SpawnRequest()->kind()) + touch(f.body_as_SpawnRequest()->name()); return;
      case Body::SpawnResponse: seen += touch(f.body_as_SpawnResponse()->id()) + touch(f.body_as_SpawnResponse()->error()); return;
      default: return;
    }
  }
};

const identity& self() {
  static const identity id{"fuzz", "fuzz-node", "127.0.0.1:7700", 1, min_max_frame};
  return id;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  sink events;
  session s(self(), events);
  if (data[0] & 1) s.assume_up_for_fuzzing();
  else s.start();
  // Deliver in two reads, split where the second byte says.
  const std::uint8_t* rest = data + 2;
  std::size_t left = size - 2;
  const std::size_t first = left == 0 ? 0 : data[1] % (left + 1);
  for (std::size_t part : {first, left - first}) {
    if (part == 0) continue;
    auto room = s.prepare(part);
    std::memcpy(room.data(), rest, part);
    if (!s.commit(part)) break;
    rest += part;
  }
  return 0;
}
