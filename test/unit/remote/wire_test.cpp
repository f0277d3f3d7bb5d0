// Frames, batches and the handshake, without sockets: bytes go from one
// session straight into the other.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "actor/actor_system.hpp"
#include "actor/system_message.hpp"
#include "remote/frame.hpp"
#include "remote/link.hpp"
#include "remote/session.hpp"

using namespace troupe;
using namespace troupe::remote;

namespace {

std::vector<std::uint8_t> heartbeat_frame() {
  auto f = encode_frame([](flatbuffers::FlatBufferBuilder& b) {
    return std::pair(wire::Body::Heartbeat, wire::CreateHeartbeat(b).Union());
  });
  return {f.begin(), f.end()};
}

std::vector<std::uint8_t> disconnect_frame(const std::string& reason) {
  auto f = encode_frame([&](flatbuffers::FlatBufferBuilder& b) {
    return std::pair(wire::Body::Disconnect, wire::CreateDisconnect(b, b.CreateString(reason)).Union());
  });
  return {f.begin(), f.end()};
}

void feed(frame_reader& r, const std::vector<std::uint8_t>& bytes) {
  auto room = r.prepare(bytes.size());
  std::memcpy(room.data(), bytes.data(), bytes.size());
  r.commit(bytes.size());
}

// A process that is never sent to: a key for the batch encoder.
struct stub_process : process {
  using process::process;
  void send_user(envelope* e) noexcept override { e->release(); }
  void send_system(system_message*) noexcept override {}
  std::string id() const override { return "stub"; }
};

}  // namespace

TEST_CASE("frames cut from a stream arriving a byte at a time, in order") {
  frame_reader r(default_max_frame);
  std::vector<std::uint8_t> stream = disconnect_frame("first");
  const auto second = disconnect_frame("second, a little longer");
  stream.insert(stream.end(), second.begin(), second.end());
  std::vector<std::string> seen;
  for (std::uint8_t byte : stream) {
    feed(r, {byte});
    const wire::Frame* f = nullptr;
    while (r.next(f) == frame_reader::status::frame)
      seen.push_back(f->body_as_Disconnect()->reason()->str());
  }
  REQUIRE(seen == std::vector<std::string>{"first", "second, a little longer"});
  REQUIRE(r.buffered() == 0);
}

TEST_CASE("a frame after one of odd length is still read aligned") {
  frame_reader r(default_max_frame);
  // A peer's frame whose length is not a multiple of 8: a Heartbeat with
  // three bytes of padding the verifier tolerates at the end.
  std::vector<std::uint8_t> odd = heartbeat_frame();
  const std::uint32_t len = static_cast<std::uint32_t>(odd.size() - 4 + 3);
  std::memcpy(odd.data(), &len, 4);
  odd.insert(odd.end(), {0, 0, 0});
  std::vector<std::uint8_t> stream = odd;
  const auto next = disconnect_frame("after the odd one");
  stream.insert(stream.end(), next.begin(), next.end());
  feed(r, stream);
  const wire::Frame* f = nullptr;
  REQUIRE(r.next(f) == frame_reader::status::frame);
  REQUIRE(f->body_type() == wire::Body::Heartbeat);
  REQUIRE(r.next(f) == frame_reader::status::frame);
  REQUIRE(f->body_as_Disconnect()->reason()->str() == "after the odd one");
  REQUIRE(reinterpret_cast<std::uintptr_t>(f) % 4 == 0);
}

TEST_CASE("an oversized length and bytes that do not verify are refused") {
  frame_reader r(min_max_frame);
  std::vector<std::uint8_t> big(8, 0);
  const std::uint32_t len = min_max_frame + 1;
  std::memcpy(big.data(), &len, 4);
  feed(r, big);
  const wire::Frame* f = nullptr;
  REQUIRE(r.next(f) == frame_reader::status::oversized);
  REQUIRE(r.announced() == min_max_frame + 1);

  frame_reader g(default_max_frame);
  std::vector<std::uint8_t> garbage = {16, 0, 0, 0};
  garbage.insert(garbage.end(), 16, 0xff);
  feed(g, garbage);
  REQUIRE(g.next(f) == frame_reader::status::invalid);

  frame_reader t(default_max_frame);
  feed(t, {64, 0, 0, 0, 1, 2, 3});
  REQUIRE(t.next(f) == frame_reader::status::need_more);
}

TEST_CASE("a batch writes each target, sender and type once and keeps the order") {
  actor_system sys;
  auto* t1 = new stub_process(sys);
  auto* t2 = new stub_process(sys);
  auto* s1 = new stub_process(sys);
  batch_encoder enc(default_max_frame);
  std::vector<std::uint8_t> payload = {1, 2, 3, 4, 5};
  for (int i = 0; i < 100; ++i) {
    payload[0] = static_cast<std::uint8_t>(i);
    REQUIRE(enc.add(i % 2 ? t1 : t2, i % 2 ? "one" : "two", i % 3 ? s1 : nullptr, "far:1/$7", 1234,
                    i % 4 ? 42u : 43u, nullptr, payload));
  }
  auto bytes = enc.finish();
  std::vector<std::uint8_t> copy(bytes.begin(), bytes.end());
  frame_reader r(default_max_frame);
  feed(r, copy);
  const wire::Frame* f = nullptr;
  REQUIRE(r.next(f) == frame_reader::status::frame);
  const wire::Batch* b = f->body_as_Batch();
  REQUIRE(b != nullptr);
  REQUIRE(b->targets()->size() == 2);
  REQUIRE(b->senders()->size() == 1);
  REQUIRE(b->senders()->Get(0)->str() == "far:1/$7");
  REQUIRE(b->sender_generations()->size() == 1);
  CHECK(b->sender_generations()->Get(0) == 1234);
  REQUIRE(b->types()->size() == 2);
  REQUIRE(b->envelopes()->size() == 100);
  for (int i = 0; i < 100; ++i) {
    const wire::Envelope* e = b->envelopes()->Get(i);
    CHECK(e->payload()->Get(0) == i);
    CHECK(b->targets()->Get(e->target())->str() == (i % 2 ? "one" : "two"));
    CHECK(e->sender() == (i % 3 ? 1u : 0u));
    CHECK(b->types()->Get(e->type()) == (i % 4 ? 42u : 43u));
  }
  for (process* p : {static_cast<process*>(t1), static_cast<process*>(t2), static_cast<process*>(s1)})
    p->release();
  sys.shutdown();
}

TEST_CASE("a frame released and dropped lends its memory to the next frame") {
  actor_system sys;
  auto* t = new stub_process(sys);
  batch_encoder enc(default_max_frame);
  const std::vector<std::uint8_t> payload = {1, 2, 3};
  REQUIRE(enc.add(t, "t", nullptr, "", 0, 1, nullptr, payload));
  enc.finish();
  flatbuffers::DetachedBuffer first = enc.release();
  const std::uint8_t* first_memory = first.data() + first.size();  // frames grow down from the end
  REQUIRE(enc.add(t, "t", nullptr, "", 0, 1, nullptr, payload));
  enc.finish();
  flatbuffers::DetachedBuffer second = enc.release();  // the first is still out: new memory
  CHECK(second.data() + second.size() != first_memory);
  first = flatbuffers::DetachedBuffer();  // written and dropped (any thread may do it)
  REQUIRE(enc.add(t, "t", nullptr, "", 0, 1, nullptr, payload));
  enc.finish();
  flatbuffers::DetachedBuffer third = enc.release();
  CHECK(third.data() + third.size() == first_memory);
  std::vector<std::uint8_t> a(second.data(), second.data() + second.size());
  std::vector<std::uint8_t> b(third.data(), third.data() + third.size());
  CHECK(a == b);
  t->release();
  sys.shutdown();
}

TEST_CASE("a batch stops at the frame cap; a message bigger than a frame never fits") {
  actor_system sys;
  auto* t = new stub_process(sys);
  batch_encoder enc(min_max_frame);
  std::vector<std::uint8_t> chunk(10000, 7);
  int added = 0;
  while (enc.add(t, "t", nullptr, "", 0, 1, nullptr, chunk)) ++added;
  CHECK(added >= 5);
  CHECK(added < 7);
  CHECK(enc.finish().size() <= min_max_frame + 4);
  enc.reset();
  std::vector<std::uint8_t> huge(min_max_frame, 1);
  CHECK_FALSE(enc.add(t, "t", nullptr, "", 0, 1, nullptr, huge));
  CHECK(enc.count() == 0);
  t->release();
  sys.shutdown();
}

namespace {

// One end of an in-memory connection.
struct end : session_events {
  identity self;
  session s;
  end* other = nullptr;
  std::vector<std::uint8_t> inbox;
  bool up = false;
  std::vector<wire::Body> frames;

  end(std::string cluster, std::string address, std::uint64_t incarnation)
      : self{std::move(cluster), "n", std::move(address), incarnation, default_max_frame},
        s(self, *this) {}

  void write(std::span<const std::uint8_t> f) override {
    other->inbox.insert(other->inbox.end(), f.begin(), f.end());
  }
  std::uint64_t has_of_peer = 0;   // what Welcome says this end received
  std::uint64_t peer_has = 0;      // what the peer's Welcome said
  std::vector<std::uint64_t> acks;
  verdict on_hello(const peer_hello&) override {
    verdict v;
    v.received = has_of_peer;
    return v;
  }
  void on_up(std::uint64_t received) override {
    up = true;
    peer_has = received;
  }
  void on_frame(const wire::Frame& f) override { frames.push_back(f.body_type()); }
  void on_ack(std::uint64_t a) override { acks.push_back(a); }

  // Hands over what arrived; false once the session closed.
  bool pump() {
    if (inbox.empty()) return s.current() != session::state::closed;
    std::vector<std::uint8_t> bytes = std::move(inbox);
    inbox.clear();
    auto room = s.prepare(bytes.size());
    std::memcpy(room.data(), bytes.data(), bytes.size());
    return s.commit(bytes.size());
  }
};

void connect(end& a, end& b) {
  a.other = &b;
  b.other = &a;
  a.s.start();
  b.s.start();
  for (int i = 0; i < 10 && (!a.inbox.empty() || !b.inbox.empty()); ++i) {
    a.pump();
    b.pump();
  }
}

// Only `a` has sent its Hello, and `b` has not read it.
void start_one(end& a, end& b) {
  a.other = &b;
  b.other = &a;
  a.s.start();
  b.inbox.clear();
}

}  // namespace

TEST_CASE("two nodes of one cluster welcome each other inside the channel") {
  end a("c", "10.0.0.1:1", 1);
  end b("c", "10.0.0.2:1", 2);
  connect(a, b);
  REQUIRE(a.up);
  REQUIRE(b.up);
  REQUIRE(a.s.peer().address == "10.0.0.2:1");
  CHECK(a.s.version() == protocol_version);
  auto hb = heartbeat_frame();
  a.write(hb);  // lands in b's inbox
  REQUIRE(b.pump());
  REQUIRE(b.s.take_activity());
}

TEST_CASE("Welcome tells each side what the other has received, and frames carry acknowledgements") {
  end a("c", "10.0.0.1:1", 1);
  end b("c", "10.0.0.2:1", 2);
  a.has_of_peer = 41;
  b.has_of_peer = 7;
  connect(a, b);
  REQUIRE(a.up);
  REQUIRE(b.up);
  CHECK(a.peer_has == 7);
  CHECK(b.peer_has == 41);
  a.write(encode_frame(0, 99, [](flatbuffers::FlatBufferBuilder& fb) {
    return std::pair(wire::Body::Ack, wire::CreateAck(fb).Union());
  }));
  a.write(heartbeat_frame());  // no acknowledgement: nothing to report
  REQUIRE(b.pump());
  CHECK(b.acks == std::vector<std::uint64_t>{99});
}

TEST_CASE("the receive window admits each number once, and starts afresh for a new incarnation") {
  receive_window w;
  w.attach(5);
  CHECK(w.admit(1, 3) == 0);   // 1..3 new
  CHECK(w.admit(2, 4) == 2);   // 2, 3 seen; 4, 5 new
  CHECK(w.admit(4, 2) == 2);   // all seen
  CHECK(w.admit(0, 9) == 0);   // unnumbered: always delivered
  CHECK(w.last() == 5);
  CHECK(w.received_from(5) == 5);
  CHECK(w.received_from(6) == 0);
  CHECK(w.admit(~std::uint64_t{0}, 4) == 4);  // a range that wraps is refused
  w.attach(5);
  CHECK(w.last() == 5);
  w.attach(6);
  CHECK(w.last() == 0);
  CHECK(w.admit(1, 1) == 0);
}

TEST_CASE("the send ledger keeps what is unacknowledged, in order, under its numbers") {
  send_ledger<int> l;
  for (int i = 10; i < 15; ++i) l.push(i);  // numbers 1..5
  std::vector<int> done;
  CHECK(l.acknowledge(2, [&](int& i) { done.push_back(i); }) == 2);
  CHECK(done == std::vector<int>{10, 11});
  CHECK(l.acknowledge(1, [&](int& i) { done.push_back(i); }) == 0);  // old news
  std::vector<std::pair<std::uint64_t, int>> again;
  l.each([&](std::uint64_t seq, int& i) { again.emplace_back(seq, i); });
  CHECK(again == std::vector<std::pair<std::uint64_t, int>>{{3, 12}, {4, 13}, {5, 14}});
  CHECK(l.next() == 6);
  CHECK(l.acknowledge(1000, [](int&) {}) == 3);  // past what was sent: all of it, no more
  CHECK(l.empty());
  l.push(1);
  CHECK(l.clear([](int&) {}) == 1);
  CHECK(l.next() == 7);
}

TEST_CASE("a wrong cluster or protocol version is refused by reason, naming both") {
  SECTION("cluster") {
    end a("c", "10.0.0.1:1", 1);
    end b("d", "10.0.0.2:1", 2);
    connect(a, b);
    REQUIRE_FALSE(a.up);
    REQUIRE(a.s.current() == session::state::closed);
    CHECK((a.s.reason() == close_reason::cluster || a.s.reason() == close_reason::refused));
    CHECK(b.s.reason() == close_reason::cluster);
    CHECK(b.s.detail().find("'c'") != std::string::npos);
  }
  SECTION("version") {
    end a("c", "10.0.0.1:1", 1);
    a.other = &a;  // unused: the peer below is hand-written
    // A protocol-1 peer: its Hello has no min_version.
    auto hello = encode_frame([](flatbuffers::FlatBufferBuilder& b) {
      auto h = wire::CreateHello(b, 1, b.CreateString("c"), b.CreateString("old"),
                                 b.CreateString("10.0.0.9:1"), 9);
      return std::pair(wire::Body::Hello, h.Union());
    });
    a.inbox.assign(hello.begin(), hello.end());
    std::vector<std::uint8_t> sent;
    end sink("c", "10.0.0.3:1", 3);
    a.other = &sink;
    REQUIRE_FALSE(a.pump());
    CHECK(a.s.reason() == close_reason::version);
    CHECK(a.s.detail() == "the peer speaks protocol version 1, this node speaks 2");
  }
}

TEST_CASE("a connection to this node itself is refused") {
  end a("c", "10.0.0.1:1", 1);
  SECTION("by address") {
    end b("c", "10.0.0.1:1", 2);
    connect(a, b);
  }
  SECTION("by incarnation, whatever address it claims (a reflected connection)") {
    end b("c", "10.0.0.2:1", 1);
    connect(a, b);
  }
  REQUIRE_FALSE(a.up);
  CHECK(a.s.reason() == close_reason::address);
}

TEST_CASE("before the handshake, frames are small") {
  end a("c", "10.0.0.1:1", 1);
  end b("c", "10.0.0.2:1", 2);
  start_one(a, b);
  std::vector<std::uint8_t> big(64 << 10, 0);
  const std::uint32_t len = static_cast<std::uint32_t>(big.size() - 4);
  std::memcpy(big.data(), &len, 4);
  a.inbox = big;
  REQUIRE_FALSE(a.pump());
  CHECK(a.s.reason() == close_reason::protocol);
  CHECK(a.s.detail().find("before the handshake") != std::string::npos);
}

TEST_CASE("nothing but the handshake is accepted before it succeeds") {
  end a("c", "10.0.0.1:1", 1);
  end b("c", "10.0.0.2:1", 2);
  start_one(a, b);
  // A Batch where the Hello should be.
  actor_system sys;
  auto* t = new stub_process(sys);
  batch_encoder enc(default_max_frame);
  std::vector<std::uint8_t> payload = {1};
  REQUIRE(enc.add(t, "victim", nullptr, "", 0, 1, nullptr, payload));
  auto bytes = enc.finish();
  a.inbox.assign(bytes.begin(), bytes.end());
  REQUIRE_FALSE(a.pump());
  CHECK(a.s.reason() == close_reason::protocol);
  CHECK(a.frames.empty());
  t->release();
  sys.shutdown();
}
