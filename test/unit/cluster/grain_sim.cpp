#include "grain_sim.hpp"

#include <algorithm>
#include <cstdlib>

namespace troupe::cluster::sim {

namespace {

constexpr const char* kind = "counter";
constexpr millis first_backoff{2}, max_backoff{500}, leave_budget{3000}, linger{1000};

}  // namespace

grain_world::grain_world(simulator& s, grain_world_options o) : sim_(s), opts_(o) {
  sim_.set_application(this);
  // Dead verdicts held about starts that still run (paused or not): while
  // any is held, membership is not healthy.
  sim_.on_event = [this](millis now, unsigned observer, const member_event& e) {
    if (const auto it = nodes_.find(observer); it != nodes_.end()) it->second.members_changed = true;
    if (trace)
      trace(std::to_string(now.count()) + " " + name(observer) + " sees " + e.who.id.name + "#" +
            std::to_string(e.who.id.generation) + " " + std::to_string(static_cast<int>(e.what)));
    const unsigned j = index_of(e.who.id.address);
    const auto verdict = std::make_tuple(observer, j, e.who.id.generation);
    switch (e.what) {
      case member_event::kind::dead:
        if (sim_.running(j) && sim_.generation(j) == e.who.id.generation) {
          false_verdicts_.insert(verdict);
          aftermath_ = true;
        }
        break;
      case member_event::kind::alive:
      case member_event::kind::joined:
      case member_event::kind::forgotten:
      case member_event::kind::left: false_verdicts_.erase(verdict); break;
      default: break;
    }
  };
}

unsigned grain_world::index_of(const std::string& address) const {
  // "127.0.<i/250>.<i%250+1>:7700"
  const std::size_t a = address.find('.', address.find('.') + 1);
  const std::size_t b = address.find('.', a + 1);
  const std::size_t c = address.find(':', b + 1);
  const unsigned hi = static_cast<unsigned>(std::stoul(address.substr(a + 1, b - a - 1)));
  const unsigned lo = static_cast<unsigned>(std::stoul(address.substr(b + 1, c - b - 1)));
  return hi * 250 + lo - 1;
}

void grain_world::violate(const std::string& what) {
  if (violation_.empty()) violation_ = "at " + std::to_string(sim_.now().count()) + " ms: " + what;
}

// ---------------------------------------------------------------- members

void grain_world::started(unsigned i, millis now) {
  node& n = nodes_[i];
  n = node{};
  n.up = true;
  n.generation = sim_.generation(i);
  directory_options d;
  d.partitions = opts_.partitions;
  d.max_buffered = opts_.max_buffered;
  d.max_waiting = 1000;
  d.moves = opts_.moves;
  n.dir = std::make_unique<grain_directory>(member_ref{name(i), n.generation}, std::vector<std::string>{kind}, d);
  n.declared_dead = sim_.at(i).stats().declared_dead;
  n.next_call = now + millis(1 + sim_.random() % 50);
  pump(i, now);
}

metadata grain_world::metadata_of(unsigned i) {
  const unsigned v = version_.count(i) ? version_[i] : 1 + static_cast<unsigned>(sim_.random() % opts_.versions);
  return {{"grains", std::string(kind) + "@" + std::to_string(v) + ".0"}};
}

// Healthy: no false dead verdict held, and since the last one, every
// member up (running, not paused) has seen every other up at its start,
// and no partition is held (or still being given up) on two of them. Until
// then a member's view may lack one that holds partitions it was never
// asked for, and the heal rule is still reducing those pairs to one.
bool grain_world::healthy() {
  if (!false_verdicts_.empty()) return false;
  if (!aftermath_) return true;
  const auto up = [&](unsigned i) { return sim_.running(i) && !sim_.paused(i); };
  for (const auto& [i, n] : nodes_) {
    if (!up(i)) continue;
    for (const auto& [j, other] : nodes_) {
      if (j == i || !up(j)) continue;
      const member* m = sim_.at(i).find(sim_.name(j));
      if (m == nullptr || m->id.generation != sim_.generation(j) || m->state == member_state::dead ||
          m->state == member_state::left)
        return false;
    }
  }
  std::map<std::uint32_t, unsigned> holders, holder_of;
  for (const auto& [i, n] : nodes_) {
    if (!up(i) || !n.dir) continue;
    for (std::uint32_t p = 0; p < opts_.partitions; ++p) {
      const partition_role r = n.dir->partitions().role(kind, p);
      if (r == partition_role::holding) holder_of[p] = i;
      if ((r == partition_role::holding || r == partition_role::releasing) && ++holders[p] > 1) return false;
    }
  }
  // An activation kept in a partition given up (moves: keep) that its
  // holder does not answer for: the partition is still held twice, in effect.
  for (const auto& [i, n] : nodes_) {
    if (!up(i) || !n.dir) continue;
    for (const auto& [number, a] : n.acts) {
      const std::uint32_t p = n.dir->partition(a.id);
      const auto h = holder_of.find(p);
      if (h == holder_of.end() || h->second == i || a.st == act::state::starting) continue;
      const activation* known = nodes_.at(h->second).dir->find(a.id);
      if (known == nullptr || known->address != simulator::address(i) || known->actor != std::to_string(number))
        return false;
    }
  }
  aftermath_ = false;
  return true;
}

void grain_world::killed(unsigned i) {
  node& n = nodes_[i];
  for (auto it = false_verdicts_.begin(); it != false_verdicts_.end();)
    it = std::get<0>(*it) == i || std::get<1>(*it) == i ? false_verdicts_.erase(it) : std::next(it);
  // Its activations end with it.
  for (auto& [number, a] : n.acts) {
    auto& v = alive_[a.id];
    v.erase(std::remove(v.begin(), v.end(), std::make_tuple(i, n.generation, number)), v.end());
  }
  for (auto& [id, c] : calls_)
    if (c.node == i && !c.done) finish(c, false, &call_counts::abandoned);
  n = node{};
}

void grain_world::stop(unsigned i) {
  node& n = nodes_.at(i);
  if (!n.up || n.leaving) return;
  n.leaving = true;
  n.leave_by = sim_.now() + leave_budget;
  n.dir->leave(sim_.now());
  pump(i, sim_.now());
  sim_.poke(i);
}

millis grain_world::next_wake(unsigned i) const {
  const auto it = nodes_.find(i);
  if (it == nodes_.end() || !it->second.up) return millis(-1);
  const node& n = it->second;
  millis w = n.dir->next_wake();
  if (!n.timers.empty() && (w.count() < 0 || n.timers.begin()->at < w)) w = n.timers.begin()->at;
  if (calling_ && !n.leaving && (w.count() < 0 || n.next_call < w)) w = n.next_call;
  return w;
}

// As the node does before its membership hears anything: one that heard
// nobody for as long as the others need to declare it dead may be dead to
// them, and stops its activations before it serves again.
void grain_world::before(unsigned i, millis now) {
  const auto it = nodes_.find(i);
  if (it == nodes_.end() || !it->second.up || it->second.fenced) return;
  membership& m = sim_.at(i);
  if (m.silent_for(now) >= m.earliest_verdict()) fence(i, true, now);
}

void grain_world::ran(unsigned i, millis now) {
  if (nodes_.count(i) && nodes_[i].up) pump(i, now);
}

void grain_world::fence(unsigned i, bool on, millis now) {
  node& n = nodes_[i];
  if (on) {
    // Every activation stops at once.
    std::vector<std::uint64_t> numbers;
    for (const auto& [number, a] : n.acts) numbers.push_back(number);
    for (std::uint64_t number : numbers) end_act(i, number, now, true);
  }
  n.fenced = on;
  if (trace) trace(std::to_string(now.count()) + " " + name(i) + (on ? " fenced" : " unfenced"));
  n.dir->set_fenced(on, now);
}

void grain_world::end_act(unsigned i, std::uint64_t number, millis now, bool at_once) {
  (void)at_once;
  node& n = nodes_[i];
  const auto it = n.acts.find(number);
  if (it == n.acts.end()) return;
  const act a = it->second;
  n.acts.erase(it);
  auto& v = alive_[a.id];
  v.erase(std::remove(v.begin(), v.end(), std::make_tuple(i, n.generation, number)), v.end());
  if (a.st == act::state::starting)
    n.dir->activation_stopped(a.id, "stopped before it started", now);
  else
    n.dir->deactivated(a.id, {simulator::address(i), n.generation, std::to_string(number)}, now);
}

void grain_world::pump(unsigned i, millis now) {
  node& n = nodes_[i];
  membership& m = sim_.at(i);
  // The view: rebuilt when the members up (or what they host) changed.
  // Nothing is held before the node's view is settled (membership.hpp).
  const bool settled = m.settled(now);
  if (settled != n.settled) n.members_changed = true;
  n.settled = settled;
  if (n.members_changed) {
    const std::vector<member> all = settled ? m.members() : std::vector<member>{};
    n.members_changed = false;
    std::string sig = settled ? "settled:" : "";
    for (const member& x : all) {
      if (x.state != member_state::alive && x.state != member_state::suspect) continue;
      sig += x.id.name + "#" + std::to_string(x.id.generation) + "=";
      const auto g = x.meta.find("grains");
      if (g != x.meta.end()) sig += g->second;
      sig += ";";
    }
    if (sig != n.signature) {
      n.signature = sig;
      if (trace) trace(std::to_string(now.count()) + " " + name(i) + " view " + sig);
      n.dir->set_view(std::make_shared<grain_hosts>(all, opts_.partitions), now);
    }
  }
  // Fencing, as the node does it (cluster_module.cpp).
  {
    bool told_dead = false;
    if (m.stats().declared_dead != n.declared_dead) {
      n.declared_dead = m.stats().declared_dead;
      told_dead = true;
    }
    const bool deaf = m.silent_for(now) >= m.earliest_verdict();
    const bool out = deaf || !m.in_touch(now);
    if (told_dead && !n.fenced) {
      fence(i, true, now);
      if (!out) fence(i, false, now);
    } else if (out != n.fenced) {
      fence(i, out, now);
    }
    const swim_options& o = m.options();
    const millis lease = 2 * o.probe_interval + o.probe_timeout;
    if (!out && m.hearing(now, lease)) n.lease_until = now + lease;
  }
  // Timers.
  bool exit = false;
  while (!n.timers.empty() && n.timers.begin()->at <= now) {
    const timer t = *n.timers.begin();
    n.timers.erase(n.timers.begin());
    switch (t.what) {
      case timer::kind::act: {
        const auto it = n.acts.find(t.ref);
        if (it == n.acts.end()) break;
        act& a = it->second;
        if (a.st == act::state::starting && now >= a.until) {
          a.st = act::state::running;
          n.timers.insert({a.expires, timer::kind::act, a.number});
          n.dir->activated(a.id, {simulator::address(i), n.generation, std::to_string(a.number)}, now);
        } else if (a.st == act::state::running && now >= a.expires) {
          a.st = act::state::stopping;  // passivates on its own
          a.until = now + millis(1 + sim_.random() % 5);
          n.timers.insert({a.until, timer::kind::act, a.number});
        } else if (a.st == act::state::stopping && now >= a.until) {
          end_act(i, a.number, now, false);
        }
        break;
      }
      case timer::kind::retry: {
        const auto it = calls_.find(t.ref);
        if (it != calls_.end() && !it->second.done) attempt(it->second, now);
        break;
      }
      case timer::kind::deadline: {
        const auto it = calls_.find(t.ref);
        if (it != calls_.end() && !it->second.done) finish(it->second, false, &call_counts::timeout);
        break;
      }
      case timer::kind::exit: exit = true; break;
      default: break;
    }
  }
  n.dir->advance(now);
  // Calls.
  if (calling_ && !n.leaving && now >= n.next_call) {
    std::size_t up = 0;
    for (const auto& [j, x] : nodes_) up += x.up;
    n.next_call = now + millis(1 + sim_.random() % std::max<std::uint64_t>(1, 2 * opts_.call_every.count() * up));
    start_call(i, {kind, "g" + std::to_string(sim_.random() % opts_.identities)}, now, false);
  }
  // What the directory asks for, until it asks nothing more.
  for (bool more = true; more;) {
    more = false;
    for (handover_message& h : n.dir->take_messages()) {
      more = true;
      const unsigned to = index_of(h.address);
      hand out{std::move(h), 0};
      out.to_generation = out.m.peer.generation;
      out.m.peer = {name(i), n.generation};
      out.m.address = simulator::address(i);
      if (trace) {
        std::string items;
        for (const auto& it : out.m.items) items.append(" ").append(std::to_string(it.partition)).append("@").append(std::to_string(it.epoch));
        for (const auto& a : out.m.activations)
          items += " " + a.identity + "#" + a.actor + "(p" + std::to_string(a.partition) + ")";
        trace(std::to_string(now.count()) + " " + name(i) + " -> " + name(to) + " " + to_string(out.m.op) + items);
      }
      sim_.send(i, to, std::any(std::move(out)));
    }
    for (const grain_id& id : n.dir->take_activations()) {
      more = true;
      act a;
      a.id = id;
      a.number = ++next_act_;
      a.until = now + millis(1 + sim_.random() % 5);
      a.expires = a.until + millis(100 + sim_.random() % static_cast<std::uint64_t>(opts_.lifetime_max.count()));
      ++activations_;
      auto& v = alive_[id];
      for (const auto& [j, gen, number] : v) {
        if (!healthy()) {
          ++excused_;
          continue;
        }
        violate("two activations of " + id.identity + ": #" + std::to_string(number) + " on " + name(j) + " and #" +
                std::to_string(a.number) + " on " + name(i));
      }
      v.emplace_back(i, n.generation, a.number);
      if (trace)
        trace(std::to_string(now.count()) + " " + name(i) + " activates " + id.identity + " #" +
              std::to_string(a.number) + " p" + std::to_string(n.dir->partition(id)));
      n.timers.insert({a.until, timer::kind::act, a.number});
      n.acts.emplace(a.number, a);
    }
    for (grain_directory::answer& a : n.dir->take_answers()) {
      more = true;
      const auto it = n.locates.find(a.who);
      if (it == n.locates.end()) continue;
      const auto [from, call, attempt] = it->second;
      n.locates.erase(it);
      if (a.error == locate_error::none && a.where.address != simulator::address(i)) ++elsewhere_;
      sim_.send(i, from, std::any(located_msg{call, attempt, a.error, a.where.address, a.where.actor}));
    }
    for (const grain_id& id : n.dir->take_stops()) {
      more = true;
      for (auto& [number, a] : n.acts)
        if (a.id == id && a.st == act::state::running) {
          ++moved_;
          a.st = act::state::stopping;
          a.until = now + millis(1 + sim_.random() % 5);
          n.timers.insert({a.until, timer::kind::act, a.number});
        }
    }
  }
  // Stopping: once everything is handed over (or the budget is spent), it
  // leaves, and exits a moment later.
  if (n.leaving && !n.left && (n.dir->partitions().idle() || now >= n.leave_by)) {
    n.left = true;
    n.members_changed = true;  // it sees itself left (no event tells it)
    sim_.leave(i);
    n.timers.insert({now + linger, timer::kind::exit, 0});
  }
  check(i);
  if (exit) sim_.kill(i);
}

// ---------------------------------------------------------------- calls

void grain_world::start_call(unsigned i, const grain_id& g, millis now, bool probe) {
  call c;
  c.id = ++next_call_;
  c.node = i;
  c.generation = nodes_[i].generation;
  c.g = g;
  c.deadline = now + opts_.call_timeout;
  c.probe = probe;
  if (!probe) ++counts_.started;
  nodes_[i].timers.insert({c.deadline, timer::kind::deadline, c.id});
  nodes_[i].deadlines.insert({c.deadline, c.id});
  attempt(calls_.emplace(c.id, c).first->second, now);
}

void grain_world::attempt(call& c, millis now) {
  node& n = nodes_[c.node];
  ++c.attempt;
  if (const auto it = n.cache.find(c.g); it != n.cache.end()) {
    sim_.send(c.node, it->second.first, std::any(deliver_msg{c.id, c.attempt, c.node, it->second.second}));
    return;
  }
  const grain_host* owner = n.dir->partitions().view()->owner(kind, grain_key(kind, c.g.identity));
  if (owner == nullptr) return finish(c, false, &call_counts::no_host);
  sim_.send(c.node, index_of(owner->address), std::any(locate_msg{c.id, c.attempt, c.node, c.g}));
  (void)now;
}

void grain_world::retry(call& c, millis now) {
  ++counts_.retries;
  const millis base = std::min<millis>(first_backoff * (1u << std::min(c.attempt, 10u)), max_backoff);
  const millis delay = millis(base.count() / 2 + static_cast<std::int64_t>(sim_.random() % static_cast<std::uint64_t>(base.count() / 2 + 1)));
  nodes_[c.node].timers.insert({now + delay, timer::kind::retry, c.id});
}

void grain_world::finish(call& c, bool ok, std::uint64_t call_counts::*counter) {
  c.done = true;
  c.ok = ok;
  c.how = counter;
  if (!c.probe) {
    ++(counts_.*counter);
    done_.push_back(c.id);  // forgotten at the end of the step (its messages may still come)
  }
}

void grain_world::received(unsigned to, unsigned from, const std::any& m, millis now) {
  node& n = nodes_[to];
  if (!n.up) return;
  if (const auto* h = std::any_cast<hand>(&m)) {
    if (h->to_generation == n.generation) n.dir->on_message(h->m, now);
  } else if (const auto* l = std::any_cast<locate_msg>(&m)) {
    if (n.fenced || now >= n.lease_until) {  // not serving (grains.hpp)
      sim_.send(to, from, std::any(located_msg{l->call, l->attempt, locate_error::not_owner, {}, {}}));
    } else {
      const std::uint64_t who = ++n.next_caller;
      n.locates[who] = std::make_tuple(from, l->call, l->attempt);
      n.dir->locate(l->g, who, now);
    }
  } else if (const auto* a = std::any_cast<located_msg>(&m)) {
    const auto it = calls_.find(a->call);
    if (it == calls_.end() || it->second.done || it->second.attempt != a->attempt || it->second.node != to) return;
    call& c = it->second;
    switch (a->error) {
      case locate_error::none: {
        const unsigned j = index_of(a->address);
        const std::uint64_t number = std::stoull(a->actor);
        n.cache[c.g] = {j, number};
        sim_.send(to, j, std::any(deliver_msg{c.id, c.attempt, to, number}));
        break;
      }
      case locate_error::busy: finish(c, false, &call_counts::busy); break;
      default: retry(c, now); break;
    }
  } else if (const auto* d = std::any_cast<deliver_msg>(&m)) {
    const auto it = n.acts.find(d->actor);
    const bool ok = it != n.acts.end() && it->second.st == act::state::running && !n.fenced;
    sim_.send(to, d->from, std::any(reply_msg{d->call, d->attempt, ok}));
  } else if (const auto* r = std::any_cast<reply_msg>(&m)) {
    const auto it = calls_.find(r->call);
    if (it == calls_.end() || it->second.done || it->second.attempt != r->attempt || it->second.node != to) return;
    call& c = it->second;
    if (r->ok) return finish(c, true, &call_counts::ok);
    n.cache.erase(c.g);  // gone: locate it again
    retry(c, now);
  }
}

void grain_world::undeliverable(unsigned to, unsigned from, const std::any& m, millis now) {
  (void)now;
  // A locate or a delivery to a node that is gone fails at once, as a
  // refused or reset connection does: the caller tries again.
  if (const auto* l = std::any_cast<locate_msg>(&m))
    sim_.send(to, from, std::any(located_msg{l->call, l->attempt, locate_error::not_owner, {}, {}}));
  else if (const auto* d = std::any_cast<deliver_msg>(&m))
    sim_.send(to, from, std::any(reply_msg{d->call, d->attempt, false}));
}

// ---------------------------------------------------------------- checks

void grain_world::check(unsigned i) {
  for (std::uint64_t id : done_) calls_.erase(id);
  done_.clear();
  node& n = nodes_[i];
  most_buffered_ = std::max(most_buffered_, n.dir->buffered());
  if (n.dir->buffered() > opts_.max_buffered)
    violate(name(i) + " buffers " + std::to_string(n.dir->buffered()) + " calls, over the bound " +
            std::to_string(opts_.max_buffered));
  // A call of a running, unpaused node never outlives its deadline: if
  // any does, the one with the earliest deadline among those not ended does.
  if (!sim_.paused(i)) {
    auto& open = n.deadlines;
    while (!open.empty()) {
      const auto it = calls_.find(open.begin()->second);
      if (it != calls_.end() && !it->second.done) break;
      open.erase(open.begin());
    }
    if (!open.empty() && sim_.now() > open.begin()->first + millis(1))
      violate("call " + std::to_string(open.begin()->second) + " from " + name(i) + " outlived its deadline");
  }
}

std::string grain_world::duplicates() const {
  for (const auto& [id, v] : alive_)
    if (v.size() > 1)
      return id.identity + " has " + std::to_string(v.size()) + " activations (on " + name(std::get<0>(v[0])) +
             " and " + name(std::get<0>(v[1])) + ")";
  return {};
}

std::string grain_world::claiming() const {
  std::string out;
  for (const auto& [i, n] : nodes_) {
    if (!n.up) continue;
    const std::size_t c = n.dir->partitions().count(partition_role::claiming);
    const std::size_t r = n.dir->partitions().count(partition_role::releasing);
    if (c + r != 0)
      out += name(i) + " claims " + std::to_string(c) + ", releases " + std::to_string(r) + "; ";
  }
  return out;
}

bool grain_world::all_answer(millis within, std::string* why) {
  const bool was = calling_;
  calling_ = false;
  std::vector<std::uint64_t> probes;
  const std::uint64_t first = next_call_ + 1;
  for (auto& [i, n] : nodes_) {
    if (!n.up || n.leaving || sim_.paused(i)) continue;
    for (std::size_t k = 0; k < opts_.identities; ++k) start_call(i, {kind, "g" + std::to_string(k)}, sim_.now(), true);
    sim_.poke(i);
  }
  for (std::uint64_t id = first; id <= next_call_; ++id) probes.push_back(id);
  sim_.run_for(within);
  calling_ = was;
  // The probes are forgotten once read (late answers to them are ignored).
  struct forget {
    std::map<std::uint64_t, call>& calls;
    const std::vector<std::uint64_t>& ids;
    ~forget() {
      for (std::uint64_t id : ids) calls.erase(id);
    }
  } forget_probes{calls_, probes};
  for (std::uint64_t id : probes) {
    const call& c = calls_.at(id);
    if (!c.ok) {
      std::string how = "is unanswered";
      if (c.how == &call_counts::timeout) how = "timed out after " + std::to_string(c.attempt) + " attempts";
      if (c.how == &call_counts::busy) how = "was refused: busy";
      if (c.how == &call_counts::no_host) how = "found no host";
      if (c.how == &call_counts::abandoned) how = "was abandoned";
      if (why) {
        *why = "a call from " + name(c.node) + " to " + c.g.identity + " " + how + ";";
        // What each member knows of it.
        for (const auto& [i, n] : nodes_) {
          if (!n.up) {
            *why += " " + name(i) + ": down;";
            continue;
          }
          if (sim_.paused(i)) *why += " " + name(i) + " (paused)";
          const std::uint32_t p = n.dir->partition(c.g);
          *why += " " + name(i) + ": p" + std::to_string(p) + " " + to_string(n.dir->partitions().role(kind, p));
          if (const activation* a = n.dir->find(c.g)) *why += " at " + a->address + " #" + a->actor;
          if (const auto ca = n.cache.find(c.g); ca != n.cache.end())
            *why += " cached " + name(ca->second.first) + " #" + std::to_string(ca->second.second);
          *why += ";";
        }
      }
      return false;
    }
  }
  return true;
}

}  // namespace troupe::cluster::sim
