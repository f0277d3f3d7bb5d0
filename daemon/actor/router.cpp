#include "actor/router.hpp"

#include <algorithm>
#include <chrono>
#include <thread>

#include "actor/actor_system.hpp"
#include "actor/pid_table.hpp"
#include "system_generated.h"

namespace troupe {

const char* to_string(routing r) noexcept {
  switch (r) {
    case routing::round_robin: return "round_robin";
    case routing::random: return "random";
    case routing::broadcast: return "broadcast";
    case routing::consistent_hash: return "consistent_hash";
  }
  return "unknown";
}

namespace {

constexpr type_id poison_type = type_id_of<system::PoisonPill>();
constexpr type_id add_type = type_id_of<router::AddRoutee>();
constexpr type_id remove_type = type_id_of<router::RemoveRoutee>();
constexpr type_id get_type = type_id_of<router::GetRoutees>();
constexpr type_id adjust_type = type_id_of<router::AdjustPoolSize>();
constexpr type_id broadcast_type = type_id_of<router::Broadcast>();

bool for_router(type_id t) noexcept {
  return t == poison_type || t == add_type || t == remove_type || t == get_type ||
         t == adjust_type || t == broadcast_type;
}

// splitmix64's finaliser: spreads FNV-1a's output over the whole ring.
std::uint64_t mix(std::uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

// A per-thread generator for random routing: no shared state between senders.
std::uint64_t next_random() noexcept {
  thread_local std::uint64_t state =
      mix(reinterpret_cast<std::uintptr_t>(&state) ^
          static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  state += 0x9e3779b97f4a7c15ull;
  return mix(state);
}

// Sends `e` to `to`, a copy sharing its payload, with the same sender.
void send_copy(const pid& to, envelope* e) noexcept {
  envelope* c = share_envelope(e);
  if (e->sender != nullptr) {
    e->sender->retain();
    c->sender = e->sender;
  }
  to.get()->send_user(c);
}

}  // namespace

// ------------------------------------------------------------ routing

struct router_state::table {
  std::vector<pid> routees;
  // consistent_hash: (point, routee index), sorted by point.
  std::vector<std::pair<std::uint64_t, std::uint32_t>> ring;
};

std::uint64_t router_state::hash(std::string_view key) noexcept {
  return mix(hash_type_name(key));
}

router_state::router_state(std::shared_ptr<const router_config> cfg) : cfg_(std::move(cfg)) {
  tables_.push_back(std::make_unique<const table>());
  table_.store(tables_.back().get(), std::memory_order_release);
}

router_state::~router_state() = default;

const std::vector<pid>& router_state::routees() const noexcept {
  return table_.load(std::memory_order_relaxed)->routees;
}

void router_state::start(context& router) {
  // Runs as the router is spawned, before anyone can send to it: the first
  // message already finds every routee.
  std::vector<pid> rt;
  if (cfg_->routee) {
    for (std::size_t i = 0; i < cfg_->pool_size; ++i) rt.push_back(router.spawn(cfg_->routee));
  } else {
    for (const pid& p : cfg_->group) {
      router.watch(p);
      rt.push_back(p);
    }
  }
  set_routees(std::move(rt));
}

void router_state::set_routees(std::vector<pid> routees) {
  auto t = std::make_unique<table>();
  t->routees = std::move(routees);
  if (cfg_->strategy == routing::consistent_hash) {
    const std::uint32_t points = std::max<std::uint32_t>(1, cfg_->virtual_nodes);
    t->ring.reserve(t->routees.size() * points);
    for (std::uint32_t i = 0; i < t->routees.size(); ++i) {
      // A routee's points depend on its identity only, so they stay put
      // when other routees come and go.
      const std::string id = t->routees[i].to_string();
      const std::uint64_t base = hash_type_name(id);
      for (std::uint32_t v = 0; v < points; ++v)
        t->ring.emplace_back(mix(base + 0x9e3779b97f4a7c15ull * (v + 1)), i);
    }
    std::sort(t->ring.begin(), t->ring.end());
  }
  tables_.push_back(std::move(t));
  table_.store(tables_.back().get(), std::memory_order_release);
}

const pid* router_state::pick(const table& t, envelope* e) noexcept {
  const std::size_t n = t.routees.size();
  switch (cfg_->strategy) {
    case routing::round_robin:
      // A 32-bit remainder costs a third of a 64-bit one; the turn only
      // jumps once every 2^32 messages.
      return &t.routees[static_cast<std::uint32_t>(next_.fetch_add(1, std::memory_order_relaxed)) %
                        static_cast<std::uint32_t>(n)];
    case routing::random:
      // Lemire's multiply-shift: uniform enough, and no division at all.
      return &t.routees[static_cast<std::size_t>(
          (static_cast<unsigned __int128>(next_random()) * n) >> 64)];
    case routing::consistent_hash: {
      std::string_view key;
      try {
        key = cfg_->hash_key ? cfg_->hash_key(*e)
                             : (e->hdrs ? e->hdrs->get(hash_key_header) : std::string_view());
      } catch (...) {
        return nullptr;
      }
      if (key.empty()) return nullptr;
      const std::uint64_t h = hash(key);
      auto it = std::lower_bound(t.ring.begin(), t.ring.end(),
                                 std::pair<std::uint64_t, std::uint32_t>(h, 0));
      if (it == t.ring.end()) it = t.ring.begin();
      return &t.routees[it->second];
    }
    case routing::broadcast:
      break;
  }
  return nullptr;
}

bool router_state::route(actor_system& sys, envelope* e) noexcept {
  if (for_router(e->type)) return false;
  const table* t = table_.load(std::memory_order_acquire);
  const std::size_t n = t->routees.size();
  if (n == 0) {
    sys.dead_letter(e, nullptr, dead_letter_reason::no_routee);
    return true;
  }
  if (cfg_->strategy == routing::broadcast) {
    for (std::size_t i = 0; i + 1 < n; ++i) send_copy(t->routees[i], e);
    t->routees[n - 1].get()->send_user(e);
    return true;
  }
  const pid* to = pick(*t, e);
  if (to == nullptr) {
    sys.dead_letter(e, nullptr, dead_letter_reason::no_routee);
    return true;
  }
  to->get()->send_user(e);
  return true;
}

// ------------------------------------------------------------ the router actor

namespace {

pid resolve(actor_system& sys, const system::Pid* p) {
  if (p == nullptr || p->id() == nullptr) return pid();
  if (p->address() != nullptr && p->address()->string_view() != sys.address()) return pid();
  if (earlier_start(p->generation(), sys.generation())) return pid();
  pid found = sys.lookup(p->id()->string_view());
  return found == sys.dead_letters() ? pid() : found;
}

flatbuffers::Offset<system::Pid> encode(flatbuffers::FlatBufferBuilder& b, const pid& p) {
  return encode_pid(b, p.get());
}

// Keeps the routee table and handles management messages; the routing
// itself happens in router_state, on the senders' threads.
class router_actor final : public actor {
 public:
  void receive(context& ctx) override {
    router_state& rs = *ctx.router();
    const router_config& cfg = rs.config();
    actor_system& sys = ctx.system();
    if (auto* add = ctx.message<router::AddRoutee>()) {
      pid p = resolve(sys, add->pid());
      std::vector<pid> rt = rs.routees();
      if (p && std::find(rt.begin(), rt.end(), p) == rt.end()) {
        ctx.watch(p);
        rt.push_back(std::move(p));
        rs.set_routees(std::move(rt));
      }
    } else if (auto* rm = ctx.message<router::RemoveRoutee>()) {
      pid p = resolve(sys, rm->pid());
      std::vector<pid> rt = rs.routees();
      auto it = std::find(rt.begin(), rt.end(), p);
      if (p && it != rt.end()) {
        rt.erase(it);
        rs.set_routees(std::move(rt));
        release(ctx, p);
      }
    } else if (ctx.message<router::GetRoutees>()) {
      const std::vector<pid> rt = rs.routees();
      ctx.respond<router::Routees>([&](flatbuffers::FlatBufferBuilder& b) {
        std::vector<flatbuffers::Offset<system::Pid>> pids;
        for (const pid& p : rt) pids.push_back(encode(b, p));
        return router::CreateRouteesDirect(b, &pids);
      });
    } else if (auto* adj = ctx.message<router::AdjustPoolSize>()) {
      if (!cfg.routee) return;  // groups have no Props to grow from
      std::vector<pid> rt = rs.routees();
      if (adj->change() > 0) {
        for (int i = 0; i < adj->change(); ++i) rt.push_back(ctx.spawn(cfg.routee));
        rs.set_routees(std::move(rt));
      } else if (adj->change() < 0) {
        const std::size_t drop = std::min<std::size_t>(rt.size(), -static_cast<std::int64_t>(adj->change()));
        std::vector<pid> gone(rt.end() - static_cast<std::ptrdiff_t>(drop), rt.end());
        rt.resize(rt.size() - drop);
        rs.set_routees(std::move(rt));
        for (const pid& p : gone) release(ctx, p);
      }
    } else if (auto* bc = ctx.message<router::Broadcast>()) {
      const auto* payload = bc->payload();
      const std::vector<pid>& rt = rs.routees();
      if (rt.empty()) return;
      message original = message::adopt(make_envelope(
          bc->message_type(), payload ? payload->data() : nullptr, payload ? payload->size() : 0));
      process* sender = ctx.envelope().sender;
      for (const pid& p : rt) {
        envelope* c = share_envelope(original.get());
        if (sender != nullptr) {
          sender->retain();
          c->sender = sender;
        }
        p.get()->send_user(c);
      }
    } else if (ctx.message<system::Terminated>()) {
      // A routee stopped for good (a pool's child, or a watched group member).
      std::vector<pid> rt = rs.routees();
      const std::size_t before = rt.size();
      std::erase_if(rt, [](const pid& p) { return p.get()->dead(); });
      if (rt.size() != before) rs.set_routees(std::move(rt));
    }
  }

 private:
  // A routee leaves: a pool's own child is stopped, a group member is only
  // no longer watched.
  static void release(context& ctx, const pid& p) {
    const auto kids = ctx.children();
    if (std::find(kids.begin(), kids.end(), p) != kids.end()) ctx.stop(p);
    else ctx.unwatch(p);
  }
};

}  // namespace

props router_props(router_config cfg) {
  props p = props::of<router_actor>();
  p.kind = std::string("troupe.router.") + to_string(cfg.strategy);
  p.router = std::make_shared<const router_config>(std::move(cfg));
  return p;
}

namespace routers {

props_ptr pool(routing r, props_ptr routee, std::size_t size) {
  router_config c;
  c.strategy = r;
  c.routee = std::move(routee);
  c.pool_size = size;
  return share(router_props(std::move(c)));
}

props_ptr group(routing r, std::vector<pid> routees) {
  router_config c;
  c.strategy = r;
  c.group = std::move(routees);
  return share(router_props(std::move(c)));
}

props_ptr consistent_hash_pool(props_ptr routee, std::size_t size, hash_key_fn key) {
  router_config c;
  c.strategy = routing::consistent_hash;
  c.routee = std::move(routee);
  c.pool_size = size;
  c.hash_key = std::move(key);
  return share(router_props(std::move(c)));
}

props_ptr consistent_hash_group(std::vector<pid> routees, hash_key_fn key) {
  router_config c;
  c.strategy = routing::consistent_hash;
  c.group = std::move(routees);
  c.hash_key = std::move(key);
  return share(router_props(std::move(c)));
}

message add_routee(const pid& p) {
  return make_message<router::AddRoutee>(
      [&](flatbuffers::FlatBufferBuilder& b) { return router::CreateAddRoutee(b, encode(b, p)); });
}

message remove_routee(const pid& p) {
  return make_message<router::RemoveRoutee>(
      [&](flatbuffers::FlatBufferBuilder& b) { return router::CreateRemoveRoutee(b, encode(b, p)); });
}

message get_routees() {
  return make_message<router::GetRoutees>(
      [](flatbuffers::FlatBufferBuilder& b) { return router::CreateGetRoutees(b); });
}

message adjust_pool_size(int change) {
  return make_message<router::AdjustPoolSize>(
      [&](flatbuffers::FlatBufferBuilder& b) { return router::CreateAdjustPoolSize(b, change); });
}

message broadcast(const message& m) {
  return make_message<router::Broadcast>([&](flatbuffers::FlatBufferBuilder& b) {
    auto bytes = m->bytes();
    return router::CreateBroadcast(b, m->type, b.CreateVector(bytes.data(), bytes.size()));
  });
}

std::vector<pid> routees_in(actor_system& sys, const message& reply) {
  std::vector<pid> out;
  auto* r = reply.as<router::Routees>();
  if (r == nullptr || r->pids() == nullptr) return out;
  for (const system::Pid* p : *r->pids())
    if (pid found = resolve(sys, p)) out.push_back(std::move(found));
  return out;
}

}  // namespace routers

}  // namespace troupe
