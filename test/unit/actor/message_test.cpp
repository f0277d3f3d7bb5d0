#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <iterator>
#include <thread>
#include <vector>

#include "actor/block_pool.hpp"

#include "probe.hpp"

using namespace troupe;
using namespace troupe::testing;

TEST_CASE("a pool request gets the smallest block that holds it, and the block is all its own", "[message]") {
  for (std::size_t bytes = 1; bytes <= 4097; ++bytes) {
    const std::uint8_t c = block_pool::size_class_of(bytes);
    if (bytes > 4096) {
      REQUIRE(c == block_pool::oversize_class);
      continue;
    }
    INFO(bytes << " bytes");
    REQUIRE(c < std::size(block_pool::class_sizes));
    REQUIRE(block_pool::class_sizes[c] >= bytes);
    if (c > 0) REQUIRE(block_pool::class_sizes[c - 1] < bytes);
  }
  // Every class, and the oversize one: two blocks at once never overlap,
  // and the whole block can be written.
  for (std::size_t bytes : {1, 64, 65, 128, 129, 200, 384, 511, 1024, 2048, 4096, 5000}) {
    std::uint8_t ca, cb;
    auto* a = static_cast<unsigned char*>(block_pool::allocate(bytes, ca));
    auto* b = static_cast<unsigned char*>(block_pool::allocate(bytes, cb));
    REQUIRE(ca == cb);
    std::memset(a, 0xaa, bytes);
    std::memset(b, 0x55, bytes);
    REQUIRE(std::count(a, a + bytes, 0xaa) == static_cast<std::ptrdiff_t>(bytes));
    block_pool::deallocate(a, ca);
    block_pool::deallocate(b, cb);
  }
}

TEST_CASE("type ids are the FNV-1a hash of the fully-qualified table name", "[message]") {
  // The same value is computed by plugins and remote nodes, so it must never change.
  STATIC_REQUIRE(hash_type_name("") == 0xcbf29ce484222325ull);
  STATIC_REQUIRE(hash_type_name("a") == 0xaf63dc4c8601ec8cull);
  STATIC_REQUIRE(type_id_of<test::Num>() == hash_type_name("troupe.test.Num"));
  REQUIRE(type_id_of<test::Num>() != type_id_of<test::Text>());
}

TEST_CASE("a built message reads back as its own type only", "[message]") {
  message m = num(42);
  REQUIRE(m->type == type_id_of<test::Num>());
  REQUIRE(m.as<test::Num>() != nullptr);
  REQUIRE(m.as<test::Num>()->n() == 42);
  REQUIRE(m.as<test::Text>() == nullptr);
  flatbuffers::Verifier v(m->data, m->size);
  REQUIRE(v.VerifyBuffer<test::Num>(nullptr));

  message t = text("hello");
  REQUIRE(t.as<test::Text>()->s()->str() == "hello");
}

TEST_CASE("messages larger than the pooled sizes still work", "[message]") {
  std::string big(100'000, 'x');
  message m = text(big);
  REQUIRE(m.as<test::Text>()->s()->str() == big);
}

TEST_CASE("a local send hands over the same bytes, never a copy", "[message]") {
  inbox<const std::uint8_t*> seen;
  actor_system sys(small_config());
  pid a = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (ctx.message<test::Num>()) seen.put(ctx.envelope().data);
  })));
  message m = num(7);
  const std::uint8_t* sent = m->data;
  sys.root().send(a, std::move(m));
  auto got = seen.take();
  REQUIRE(got.has_value());
  REQUIRE(*got == sent);
}

TEST_CASE("shared envelopes point at one payload", "[message]") {
  message original = num(5);
  message copy = message::adopt(share_envelope(original.get()));
  REQUIRE(copy->data == original->data);
  REQUIRE(copy.as<test::Num>()->n() == 5);
  original = message();  // the copy keeps the payload alive
  REQUIRE(copy.as<test::Num>()->n() == 5);
}

TEST_CASE("headers travel with a message and are looked up by key", "[message]") {
  message m = num(1);
  m->hdrs = headers::make({{"trace", "abc"}, {"user", "u1"}});
  REQUIRE(m->hdrs->get("trace") == "abc");
  REQUIRE(m->hdrs->get("user") == "u1");
  REQUIRE(m->hdrs->get("missing").empty());
  message copy = message::adopt(share_envelope(m.get()));
  REQUIRE(copy->hdrs->get("trace") == "abc");
}

TEST_CASE("envelopes freed on another thread are reused without loss", "[message]") {
  // Fan-in frees on the receiver's thread what the sender allocated.
  std::atomic<std::int64_t> sum{0};
  inbox<int> done;
  actor_system sys(small_config());
  constexpr int n = 20'000;
  pid sink = sys.root().spawn(share(props::from_fn([&](context& ctx) {
    if (auto* x = ctx.message<test::Num>()) {
      if (sum.fetch_add(x->n()) + x->n() == std::int64_t{n} * (n + 1) / 2) done.put(1);
    }
  })));
  for (int i = 1; i <= n; ++i) sys.root().send(sink, num(i));
  REQUIRE(done.take().has_value());
}

TEST_CASE("a thread that ends hands back all it took of a slab, used or not", "[pool]") {
  if (!block_pool::enabled()) {
    SUCCEED("AddressSanitizer builds allocate every block on its own: no pool to test");
    return;
  }
  block_pool::release_idle();
  const std::size_t before = block_pool::stats().mapped_bytes;
  // The thread allocates until it has had to map a slab of its own (the
  // shared pool's free 384-byte blocks, if any, come first), then frees
  // everything and ends: most of that slab it never touched.
  std::size_t taken = 0;
  std::thread([&] {
    std::vector<void*> held;
    std::uint8_t c = 0;
    while (block_pool::stats().mapped_bytes == before && held.size() < 1'000'000)
      held.push_back(block_pool::allocate(300, c));
    taken = held.size();
    for (void* p : held) block_pool::deallocate(p, c);
  }).join();
  CHECK(block_pool::stats().mapped_bytes > before);
  CHECK(taken > 0);
  block_pool::release_idle();
  CHECK(block_pool::stats().mapped_bytes <= before);
}

TEST_CASE("the pool gives slabs whose blocks are all free back to the system", "[pool]") {
  if (!block_pool::enabled()) {
    SUCCEED("AddressSanitizer builds allocate every block on its own: no pool to test");
    return;
  }
  // On a thread of its own, as a flood's sender: its blocks reach the shared
  // pool when it frees them (beyond its cache) and when it ends.
  constexpr std::size_t n = 200'000;  // 200,000 x 256-byte blocks: about 49 MiB
  std::thread([&] {
    std::vector<envelope*> held;
    held.reserve(n);
    for (std::size_t i = 0; i < n; ++i) held.push_back(envelope_pool::allocate(150));
    for (envelope* e : held) envelope_pool::deallocate(e);
  }).join();
  const block_pool::pool_stats full = block_pool::stats();
  CHECK(full.mapped_bytes >= n * 256);
  CHECK(full.idle_bytes >= n * 256);
  const std::size_t returned = block_pool::release_idle();
  const block_pool::pool_stats after = block_pool::stats();
  CHECK(returned >= n * 256 - (1u << 20));
  // Other threads of the test process (ending ones hand their caches
  // over) may move a few blocks meanwhile.
  CHECK(after.mapped_bytes + returned <= full.mapped_bytes + (1u << 20));
  CHECK(after.mapped_bytes + returned + (1u << 20) >= full.mapped_bytes);
  CHECK(after.idle_bytes + returned <= full.idle_bytes + (1u << 20));
  CHECK(after.idle_bytes + returned + (1u << 20) >= full.idle_bytes);
  // What is left still serves.
  envelope* e = envelope_pool::allocate(150);
  std::memset(e->inline_bytes(), 0xab, 150);
  envelope_pool::deallocate(e);
}
