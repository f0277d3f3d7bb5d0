// The host side of grains: the actor "troupe.grains" of each node, which
// owns the directory of the grains placed here and their activations.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <unistd.h>

#include "actor/clock.hpp"
#include "cluster/directory.hpp"
#include "cluster_generated.h"
#include "modules/cluster/grains.hpp"
#include "node/log.hpp"
#include "system_generated.h"

namespace troupe::node {

namespace {

namespace gc = troupe::cluster;
using flatbuffers::FlatBufferBuilder;

constexpr auto sweep_interval = std::chrono::milliseconds(1000);
constexpr auto tick_interval = std::chrono::milliseconds(100);

// The resident memory of this process, in bytes (0 when unknown).
std::uint64_t resident_bytes() {
  std::ifstream f("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  if (!(f >> size >> resident)) return 0;
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace

// Everything here runs in the turns of "troupe.grains" (its messages, its
// supervisor's decisions, the continuations posted to it), except what
// takes `mu_` to read for the admin API.
class grain_host_state : public std::enable_shared_from_this<grain_host_state> {
 public:
  explicit grain_host_state(grain_service& svc)
      : svc_(svc), dir_({svc.options().self_name, svc.system().generation()}, kinds_of(svc.options()),
                        directory_options_of(svc.options())),
        self_address_(svc.system().address()), generation_(svc.system().generation()) {}

  static std::vector<std::string> kinds_of(const grain_options& o) {
    std::vector<std::string> out;
    for (const auto& [kind, k] : o.kinds) out.push_back(kind);
    return out;
  }
  static cluster::directory_options directory_options_of(const grain_options& o) {
    cluster::directory_options d;
    d.max_waiting = o.max_waiting;
    d.max_buffered = o.max_buffered;
    d.max_moving = o.max_moving;
    d.moves = o.keep_moved ? cluster::partition_moves::keep : cluster::partition_moves::stop;
    return d;
  }
  static cluster::millis now_ms() { return std::chrono::duration_cast<cluster::millis>(std::chrono::nanoseconds(steady_ns())); }

  void on_locate(context& ctx) {
    const auto* q = verified<gc::GrainLocate>(ctx.envelope());
    if (q == nullptr || q->kind() == nullptr || q->identity() == nullptr) {
      svc_.counters().malformed.fetch_add(1, std::memory_order_relaxed);
      log(level::warning, "grains: a GrainLocate from " + (ctx.sender() ? ctx.sender().to_string() : std::string("nobody")) +
                              " does not verify; dropped");
      return;
    }
    const std::string kind = q->kind()->str(), identity = q->identity()->str();
    const pid asker = ctx.sender();
    if (!asker) return;  // nobody to answer
    const auto refuse = [&](gc::GrainStatus s, const std::string& why) {
      answer(ctx, asker, q->request(), s, nullptr, why);
    };
    if (fenced_) return refuse(gc::GrainStatus::Fenced, "the node " + svc_.options().self_name + " is fenced: " + fence_why_);
    if (!svc_.serving())
      return refuse(gc::GrainStatus::Fenced, "the node " + svc_.options().self_name + " has not heard the cluster lately");
    if (!svc_.settled())
      return refuse(gc::GrainStatus::NotOwner, "the node " + svc_.options().self_name + " has not joined the cluster yet");
    if (dir_.partitions().view()->owner(kind, cluster::grain_key(kind, identity)) == nullptr)
      return refuse(gc::GrainStatus::NoHost, "no member hosts the grain kind '" + kind + "'");
    const std::uint64_t who = ++next_caller_;
    waiter w{asker, q->request(), {}, q->reply()};
    if (q->message() != nullptr && q->message()->size() != 0)  // verified by the grain's kind, as from any peer
      w.carried = message::adopt(make_envelope(q->type(), q->message()->data(), q->message()->size()));
    waiting_.emplace(who, std::move(w));
    dir_.locate({kind, identity}, who, now_ms());
    pump(ctx);
  }

  // A hand-over message from another node's grain service.
  void on_handover(context& ctx) {
    const auto* h = verified<gc::GrainHandover>(ctx.envelope());
    const pid from = ctx.sender();
    if (h == nullptr || h->from() == nullptr || h->kind() == nullptr || h->items() == nullptr || !from) {
      svc_.counters().malformed.fetch_add(1, std::memory_order_relaxed);
      log(level::warning, "grains: a GrainHandover from " + (from ? from.to_string() : std::string("nobody")) +
                              " does not verify; dropped");
      return;
    }
    if (h->to_generation() != generation_) return;  // meant for an earlier start of this node
    cluster::handover_message m;
    m.op = static_cast<cluster::handover_op>(h->op());
    if (m.op > cluster::handover_op::evict) {
      svc_.counters().malformed.fetch_add(1, std::memory_order_relaxed);
      log(level::warning, "grains: a GrainHandover from " + from.to_string() + " has an unknown op " +
                              std::to_string(static_cast<int>(h->op())) + "; dropped");
      return;
    }
    m.peer = {h->from()->str(), h->generation()};
    m.address = std::string(from.get()->address());
    // The member it names must be the node it came from.
    if (const auto* all = dir_.partitions().view()->everyone(h->kind()->string_view()))
      for (const cluster::grain_host& x : *all)
        if (x.name == m.peer.name && x.address != m.address) {
          svc_.counters().malformed.fetch_add(1, std::memory_order_relaxed);
          log(level::warning, "grains: a GrainHandover from " + m.address + " names the member " + m.peer.name +
                                  ", which is at " + x.address + "; dropped");
          return;
        }
    m.kind = h->kind()->str();
    m.partitions = h->partitions();
    m.items.reserve(h->items()->size());
    const auto* seqs = h->seqs();
    for (const gc::PartitionEpoch* pe : *h->items()) {
      const std::size_t i = m.items.size();
      m.items.push_back({pe->partition(), pe->epoch(), seqs != nullptr && i < seqs->size() ? seqs->Get(i) : 0});
    }
    if (const auto* acts = h->activations()) {
      m.activations.reserve(acts->size());
      for (const gc::KeptActivation* a : *acts) {
        if (a->identity() == nullptr || a->actor() == nullptr) {
          svc_.counters().malformed.fetch_add(1, std::memory_order_relaxed);
          log(level::warning, "grains: a GrainHandover from " + m.address + " lists an activation with no identity "
                                  "or actor; dropped");
          return;
        }
        m.activations.push_back({a->partition(), a->identity()->str(), a->actor()->str()});
      }
    }
    dir_.on_message(m, now_ms());
    pump(ctx);
  }

  // The hand-over's timers (resends), every tick of the host's timer.
  void tick(context& ctx) {
    dir_.advance(now_ms());
    pump(ctx);
    publish_counters();
  }

  // The members changed: the partitions this node owns move here, those it
  // no longer owns move away (their activations stop first).
  void set_view(context& ctx, std::shared_ptr<const cluster::grain_hosts> view) {
    dir_.set_view(std::move(view), now_ms());
    pump(ctx);
  }

  // SIGTERM: hand everything over; `done` once nothing is held here.
  void leave(context& ctx, std::function<void()> done) {
    leave_done_ = std::move(done);
    dir_.leave(now_ms());
    pump(ctx);
  }

  // The activation `child` has handled Started without failing.
  void started(context& ctx, const pid& child) {
    const auto it = children_.find(seq_of(child));
    if (it == children_.end() || it->second.started) return;  // a restart's Started
    child_rec& c = it->second;
    c.started = true;
    svc_.counters().observe_activation(static_cast<double>(steady_ns() - c.ordered_ns) / 1e9);
    dir_.activated(c.id, {self_address_, generation_, child.id()}, now_ms());
    svc_.remember(c.id.kind, c.id.identity, cluster::grain_key(c.id.kind, c.id.identity), child);
    pump(ctx);
  }

  // The supervisor's decision when `child` failed: a constructor that
  // fails is an error for every caller, not a restart; a started grain
  // that fails is restarted (a fresh instance, same identity).
  directive failed(const pid& child, const std::string& reason) {
    const auto it = children_.find(seq_of(child));
    if (it == children_.end() || it->second.started || ctx_ == nullptr) return directive::restart;
    child_rec& c = it->second;
    c.why = passivation::failed;
    c.stopping = true;
    log(level::warning, "grains: activating " + c.id.kind + "/" + c.id.identity + " failed: " + reason);
    dir_.activation_failed(c.id, reason, now_ms());
    pump(*ctx_);
    return directive::stop;
  }

  // The context of "troupe.grains", from its Started on (its own turns only).
  void attach(context* ctx) { ctx_ = ctx; }

  void terminated(context& ctx) {
    const auto* t = ctx.message<system::Terminated>();
    if (t == nullptr || t->who() == nullptr || t->who()->id() == nullptr) return;
    const auto it = children_.find(seq_of(t->who()->id()->string_view()));
    if (it == children_.end()) return;
    child_rec c;
    {
      // The admin API reads the entry under mu_: moving out of it writes it.
      std::lock_guard lock(mu_);
      c = std::move(it->second);
      children_.erase(it);
    }
    by_grain_.erase(c.id);
    svc_.forget(c.id.kind, c.id.identity, cluster::grain_key(c.id.kind, c.id.identity), c.who);
    if (c.started)
      dir_.deactivated(c.id, {self_address_, generation_, c.who.id()}, now_ms());
    else if (c.why != passivation::failed)  // stopped before its constructor was through
      dir_.activation_stopped(c.id, c.id.kind + "/" + c.id.identity + " was stopped before it started (" + std::string(to_string(c.why)) + ")", now_ms());
    grain_kind_counters& k = svc_.counters().of(c.id.kind);
    k.active.fetch_sub(1, std::memory_order_relaxed);
    k.passivations[static_cast<std::size_t>(c.why)].fetch_add(1, std::memory_order_relaxed);
    pump(ctx);
  }

  // Idle grains, and the oldest idle ones over the limits.
  void sweep(context& ctx) {
    const std::int64_t now = steady_ns();
    std::size_t kept = 0;
    for (auto& [id, c] : children_) {
      if (!c.started || c.stopping) continue;
      const auto k = svc_.options().kinds.find(c.id.kind);
      if (k != svc_.options().kinds.end() &&
          now - last_active(c) >= std::chrono::duration_cast<std::chrono::nanoseconds>(k->second.idle_timeout).count())
        passivate(ctx, c, passivation::idle);
      else
        ++kept;
    }
    std::size_t over = kept > svc_.options().max_activations ? kept - svc_.options().max_activations : 0;
    passivation why = passivation::limit;
    if (over == 0 && svc_.options().max_memory_bytes != 0 && resident_bytes() > svc_.options().max_memory_bytes) {
      over = std::max<std::size_t>(1, kept / 10);  // a tenth per sweep, until under the budget
      why = passivation::memory;
    }
    if (over == 0) return;
    std::vector<std::pair<std::int64_t, child_rec*>> idle;  // (last active, grain)
    idle.reserve(kept);
    for (auto& [id, c] : children_)
      if (c.started && !c.stopping) idle.emplace_back(last_active(c), &c);
    over = std::min(over, idle.size());
    std::partial_sort(idle.begin(), idle.begin() + static_cast<std::ptrdiff_t>(over), idle.end(),
                      [](const auto& a, const auto& b) { return a.first < b.first; });
    for (std::size_t i = 0; i < over; ++i) passivate(ctx, *idle[i].second, why);
  }

  void fence(context& ctx, bool on, const std::string& why) {
    if (on && !fenced_) {
      std::size_t n = 0;
      for (auto& [id, c] : children_)
        if (!c.stopping) {
          passivate(ctx, c, passivation::fenced);
          ++n;
        }
      log(level::warning, "grains: fenced (" + why + "): " + std::to_string(n) +
                              " activations stopped; none is made here until this node is back in touch");
    } else if (!on && fenced_) {
      log(level::info, "grains: no longer fenced; activating again");
    }
    fenced_ = on;
    fence_why_ = why;
    dir_.set_fenced(on, now_ms());
    pump(ctx);
  }

  // Every activation stops with its parent; counted as the node stopping.
  void stopping() {
    for (auto& [id, c] : children_) c.why = passivation::stopping;
  }

  nlohmann::json list(const std::string& kind, std::size_t limit) const {
    std::lock_guard lock(mu_);
    nlohmann::json out = nlohmann::json::array();
    std::size_t total = 0;
    const std::int64_t now = steady_ns();
    for (const auto& [seq, c] : children_) {
      if (!kind.empty() && c.id.kind != kind) continue;
      ++total;
      if (out.size() >= limit) continue;
      const std::int64_t at = last_active(c);
      out.push_back({{"kind", c.id.kind},
                     {"identity", c.id.identity},
                     {"id", c.who.id()},
                     {"pid", c.who.to_string()},
                     {"idle_seconds", static_cast<double>(now - at) / 1e9}});
    }
    return {{"grains", out}, {"total", total}, {"truncated", total > limit}};
  }

 private:
  struct waiter {
    pid asker;
    std::uint64_t request = 0;
    troupe::message carried;  // for the activation, when the locate carried one
    bool reply = false;
  };

  struct child_rec {
    cluster::grain_id id;
    troupe::pid who;
    std::int64_t ordered_ns = 0;
    bool started = false, stopping = false;
    passivation why = passivation::requested;  // unless this node stops it
  };

  // Activations are anonymous children: their id is "$" and their seq.
  static std::uint64_t seq_of(const pid& p) { return static_cast<const context*>(p.get())->seq(); }
  static std::uint64_t seq_of(std::string_view id) {
    std::uint64_t n = 0;
    if (id.size() < 2 || id[0] != '$') return 0;
    for (char ch : id.substr(1)) {
      if (ch < '0' || ch > '9') return 0;
      n = n * 10 + static_cast<std::uint64_t>(ch - '0');
    }
    return n;
  }

  // When it last got a message (its activation, before the first).
  static std::int64_t last_active(const child_rec& c) {
    const auto* cell = static_cast<const context*>(c.who.get());  // a child: always a context
    return std::max(cell->active_at_ns(), c.ordered_ns);
  }

  void passivate(context& ctx, child_rec& c, passivation why) {
    c.stopping = true;
    c.why = why;
    ctx.stop(c.who);
  }

  void answer(context& ctx, const pid& to, std::uint64_t request, gc::GrainStatus s, const cluster::activation* where,
              const std::string& detail, bool delivered = false) {
    ctx.send<gc::GrainLocated>(to, [&](FlatBufferBuilder& b) {
      return gc::CreateGrainLocatedDirect(b, request, s, where ? where->address.c_str() : nullptr,
                                          where ? where->actor.c_str() : nullptr, where ? where->generation : 0,
                                          detail.empty() ? nullptr : detail.c_str(), delivered);
    });
  }

  // The answer, then the locate's message to the activation: both leave for
  // the asker's node in this order, so its answer always comes first.
  void answer_ok(context& ctx, waiter& w, const cluster::activation& where) {
    // Here, or on the member that kept it (moved_activations: keep).
    const bool here = where.address == self_address_ && where.generation == generation_;
    const auto child = here ? children_.find(seq_of(where.actor)) : children_.end();
    const bool deliver = w.carried && child != children_.end();
    answer(ctx, w.asker, w.request, gc::GrainStatus::Ok, &where, {}, deliver);
    if (!deliver) return;
    envelope* e = for_delivery(std::move(w.carried));
    if (w.reply) {
      w.asker.get()->retain();
      e->sender = w.asker.get();
    }
    child->second.who.get()->send_user(e);
  }

  // Carries out what the directory asks: hand-over messages, activations,
  // answers, then stops (an activation stopped for a move gets the messages
  // answered to it first).
  void pump(context& ctx) {
    for (bool more = true; more;) {
      more = pump_once(ctx);
    }
    if (leave_done_ && dir_.partitions().idle()) std::exchange(leave_done_, nullptr)();
  }

  // The hand-over's gauges and counters, for the metrics thread: once a
  // tick, not on every call (a count walks every partition).
  void publish_counters() {
    const cluster::partition_table& t = dir_.partitions();
    grain_counters& k = svc_.counters();
    k.partitions_held.store(static_cast<std::int64_t>(t.count(cluster::partition_role::holding)), std::memory_order_relaxed);
    k.partitions_moving.store(static_cast<std::int64_t>(t.count(cluster::partition_role::claiming) +
                                                        t.count(cluster::partition_role::releasing)),
                              std::memory_order_relaxed);
    k.kept_here.store(static_cast<std::int64_t>(t.kept()), std::memory_order_relaxed);
    k.kept_elsewhere.store(static_cast<std::int64_t>(dir_.remote()), std::memory_order_relaxed);
    k.partitions_acquired.store(t.stats().acquired, std::memory_order_relaxed);
    k.partitions_released.store(t.stats().released, std::memory_order_relaxed);
    k.handover_rejected.store(t.stats().rejected, std::memory_order_relaxed);
    k.buffered.store(dir_.stats().buffered, std::memory_order_relaxed);
    k.overflow.store(dir_.stats().overflow, std::memory_order_relaxed);
  }

  bool pump_once(context& ctx) {
    bool did = false;
    for (const cluster::handover_message& m : dir_.take_messages()) {
      did = true;
      const pid to = ctx.system().resolve(m.address + "/troupe.grains", m.peer.generation);
      if (!to) continue;  // its node is gone: what it held goes with it
      ctx.request<gc::GrainHandover>(to, [&](FlatBufferBuilder& b) {  // the sender says which node it is
        std::vector<gc::PartitionEpoch> items;
        std::vector<std::uint64_t> seqs;
        items.reserve(m.items.size());
        seqs.reserve(m.items.size());
        bool any_seq = false;
        for (const cluster::partition_epoch& pe : m.items) {
          items.emplace_back(pe.partition, pe.epoch);
          seqs.push_back(pe.seq);
          any_seq = any_seq || pe.seq != 0;
        }
        std::vector<flatbuffers::Offset<gc::KeptActivation>> acts;
        acts.reserve(m.activations.size());
        for (const cluster::kept_activation& a : m.activations)
          acts.push_back(gc::CreateKeptActivationDirect(b, a.partition, a.identity.c_str(), a.actor.c_str()));
        return gc::CreateGrainHandoverDirect(b, static_cast<gc::HandoverOp>(m.op), svc_.options().self_name.c_str(),
                                             generation_, m.peer.generation, m.kind.c_str(), m.partitions, &items,
                                             any_seq ? &seqs : nullptr, acts.empty() ? nullptr : &acts);
      });
    }
    did = pump_grains(ctx) || did;
    for (const cluster::grain_id& id : dir_.take_stops()) {
      did = true;
      const auto it = by_grain_.find(id);
      if (it == by_grain_.end()) continue;
      const auto c = children_.find(it->second);
      if (c == children_.end() || c->second.stopping) continue;
      c->second.stopping = true;
      c->second.why = passivation::moved;
      ctx.poison(c->second.who);  // after what it was given
    }
    return did;
  }

  bool pump_grains(context& ctx) {
    bool did = false;
    for (const cluster::grain_id& id : dir_.take_activations()) {
      grain_kind_counters& k = svc_.counters().of(id.kind);
      const props_ptr p = props_of(ctx, id.kind);
      did = true;
      spawn_result r = p ? ctx.spawn_grain(p, id.identity) : spawn_result{pid(), spawn_error::unknown_kind};
      if (!r) {
        dir_.activation_failed(id, spawn_refusal(r.error, id.kind, ""), now_ms());
        continue;
      }
      k.activations.fetch_add(1, std::memory_order_relaxed);
      k.active.fetch_add(1, std::memory_order_relaxed);
      by_grain_[id] = seq_of(r.pid);
      std::lock_guard lock(mu_);
      children_.emplace(seq_of(r.pid), child_rec{id, r.pid, steady_ns()});
    }
    for (const cluster::grain_directory::answer& a : dir_.take_answers()) {
      did = true;
      const auto it = waiting_.find(a.who);
      if (it == waiting_.end()) continue;
      waiter w = std::move(it->second);
      waiting_.erase(it);
      const pid& to = w.asker;
      const std::uint64_t request = w.request;
      switch (a.error) {
        case cluster::locate_error::none: answer_ok(ctx, w, a.where); break;
        case cluster::locate_error::activation_failed:
          answer(ctx, to, request, gc::GrainStatus::ActivationFailed, nullptr,
                 "activating " + a.id.kind + "/" + a.id.identity + " failed: " + a.detail);
          break;
        case cluster::locate_error::busy:
          answer(ctx, to, request, gc::GrainStatus::Busy, nullptr, a.id.kind + "/" + a.id.identity + ": " + a.detail);
          break;
        case cluster::locate_error::not_owner:
          answer(ctx, to, request, fenced_ ? gc::GrainStatus::Fenced : gc::GrainStatus::NotOwner, nullptr, a.detail);
          break;
      }
    }
    return did;
  }

  // The kind's props as a grain: told when its constructor is through.
  props_ptr props_of(context& ctx, const std::string& kind) {
    if (const auto it = props_.find(kind); it != props_.end()) return it->second;
    props_ptr base = ctx.system().kinds().find(kind);
    if (!base) return nullptr;
    props p = *base;
    p.receive_hooks.insert(p.receive_hooks.begin(), [state = weak_from_this()](context& c, const receive_next& next) {
      next(c);
      if (c.type() == type_id_of<system::Started>() && !c.suspended()) {
        auto* m = new system_message(system_kind::continuation);
        m->fn = [state, child = c.self()](context& host) {
          if (auto s = state.lock()) s->started(host, child);
        };
        c.parent().get()->send_system(m);
      }
    });
    props_ptr shared = share(std::move(p));
    props_.emplace(kind, shared);
    return shared;
  }

  grain_service& svc_;
  cluster::grain_directory dir_;
  std::string self_address_;
  std::uint64_t generation_;
  std::unordered_map<std::uint64_t, child_rec> children_;  // by actor seq; changed under mu_
  std::unordered_map<cluster::grain_id, std::uint64_t, cluster::grain_id_hash> by_grain_;  // -> seq
  std::function<void()> leave_done_;
  std::unordered_map<std::uint64_t, waiter> waiting_;  // by the directory's caller number
  std::uint64_t next_caller_ = 0;
  std::map<std::string, props_ptr, std::less<>> props_;
  bool fenced_ = false;
  std::string fence_why_;
  context* ctx_ = nullptr;
  mutable std::mutex mu_;
};

namespace {

class grain_host_actor final : public actor {
 public:
  explicit grain_host_actor(std::shared_ptr<grain_host_state> s) : state_(std::move(s)) {}

  void receive(context& ctx) override {
    const type_id t = ctx.type();
    if (t == type_id_of<gc::GrainLocate>()) return state_->on_locate(ctx);
    if (t == type_id_of<gc::GrainHandover>()) return state_->on_handover(ctx);
    if (t == type_id_of<system::Terminated>()) return state_->terminated(ctx);
    if (t == type_id_of<system::Started>()) {
      state_->attach(&ctx);
      // A tick in this actor's turn: the hand-over's resends each time, the
      // sweep once a second.
      process_ref me(static_cast<process*>(&ctx));
      timer_ = ctx.system().loop().arm_repeating(tick_interval, tick_interval,
                                                 [me, state = std::weak_ptr<grain_host_state>(state_), n = 0u]() mutable -> bool {
        if (me->dead()) return false;
        const bool sweep = ++n % (sweep_interval / tick_interval) == 0;
        auto* m = new system_message(system_kind::continuation);
        m->fn = [state, sweep](context& c) {
          if (auto s = state.lock()) {
            s->tick(c);
            if (sweep) s->sweep(c);
          }
        };
        me->send_system(m);
        return true;
      });
      return;
    }
    if (t == type_id_of<system::Stopping>()) {
      timer_.cancel();
      state_->stopping();
    }
  }

  grain_host_state& state() { return *state_; }

 private:
  std::shared_ptr<grain_host_state> state_;
  timer_handle timer_;
};

}  // namespace

// ---------------------------------------------------------------- the service

const char* to_string(passivation p) noexcept {
  switch (p) {
    case passivation::idle: return "idle";
    case passivation::requested: return "requested";
    case passivation::limit: return "limit";
    case passivation::memory: return "memory";
    case passivation::moved: return "moved";
    case passivation::fenced: return "fenced";
    case passivation::failed: return "failed";
    case passivation::stopping: return "stopping";
  }
  return "unknown";
}

grain_service::grain_service(actor_system& sys, grain_options o)
    : sys_(sys), opts_(std::move(o)), state_(std::make_shared<grain_host_state>(*this)) {
  for (cache_shard& s : cache_) s.entries.set_capacity(std::max<std::size_t>(1, opts_.max_cached / shards));
}

grain_service::~grain_service() = default;

bool grain_service::start(std::string& why) {
  props p = props::from([s = state_] { return std::make_unique<grain_host_actor>(s); });
  p.kind = "troupe.grains";
  auto strategy = std::make_shared<supervisor_strategy>();
  strategy->decide = [state = std::weak_ptr<grain_host_state>(state_)](const pid& child, const std::string& reason) {
    const auto s = state.lock();
    return s ? s->failed(child, reason) : directive::stop;
  };
  p.supervisor = std::move(strategy);
  const spawn_result r = sys_.root().spawn_named(share(std::move(p)), "troupe.grains");
  if (!r) {
    why = "cannot start the grain service 'troupe.grains': " + spawn_refusal(r.error, "troupe.grains", "troupe.grains");
    return false;
  }
  host_ = r.pid;
  return true;
}

namespace {

// Runs `fn` in the turn of `actor`.
void run_in(const pid& actor, std::function<void(context&)> fn) {
  if (!actor) return;
  auto* m = new system_message(system_kind::continuation);
  m->fn = std::move(fn);
  actor.get()->send_system(m);
}

}  // namespace

void grain_service::set_hosts(std::shared_ptr<const cluster::grain_hosts> hosts, bool settled) {
  settled_.store(settled, std::memory_order_release);
  {
    std::lock_guard lock(hosts_mu_);
    if (*hosts_ == *hosts) return;
    hosts_ = hosts;
  }
  // The call cache stays: an activation whose partition moves stops, and
  // calls that find it gone locate the grain again.
  run_in(host_, [state = std::weak_ptr<grain_host_state>(state_), view = hosts](context& c) {
    if (auto s = state.lock()) s->set_view(c, view);
  });
}

void grain_service::hand_over(std::function<void()> done) {
  if (!host_) return done();
  run_in(host_, [state = std::weak_ptr<grain_host_state>(state_), done = std::move(done)](context& c) mutable {
    if (auto s = state.lock()) s->leave(c, std::move(done));
  });
}

std::shared_ptr<const cluster::grain_hosts> grain_service::hosts() const {
  std::lock_guard lock(hosts_mu_);
  return hosts_;
}

void grain_service::set_fenced(bool fenced, const std::string& why) {
  if (fenced_.exchange(fenced, std::memory_order_acq_rel) == fenced) return;
  const std::uint64_t n = fenced ? fences_ordered_.fetch_add(1, std::memory_order_acq_rel) + 1
                                 : fences_ordered_.load(std::memory_order_acquire);
  run_in(host_, [this, state = std::weak_ptr<grain_host_state>(state_), fenced, why, n](context& c) {
    if (auto s = state.lock()) s->fence(c, fenced, why);
    if (fenced) fence_done(n);
  });
}

nlohmann::json grain_service::list(const std::string& kind, std::size_t limit) const { return state_->list(kind, limit); }

}  // namespace troupe::node
