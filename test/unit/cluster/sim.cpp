#include "sim.hpp"

#include <algorithm>

namespace troupe::cluster::sim {

simulator::simulator(std::uint64_t seed, swim_options o, network net) : rng_(seed), opts_(o), net_(net) {}

std::string simulator::address(unsigned i) {
  return "127.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) + ":7700";
}

void simulator::add(unsigned i, const std::vector<unsigned>& seeds) {
  nodes_[i].seeds = seeds;
  by_address_[address(i)] = i;
}

void simulator::start(unsigned i) {
  node& n = nodes_.at(i);
  n.generation = next_generation_++;
  std::vector<std::string> seeds;
  for (unsigned s : n.seeds) seeds.push_back(address(s));
  n.m = std::make_unique<membership>("sim", member_id{name(i), address(i), n.generation, 0}, seeds, opts_, rng_(),
                                     app_ != nullptr ? app_->metadata_of(i) : metadata{});
  n.up = true;
  n.paused_until = millis(0);
  n.wake = millis(-1);
  mix(0x5157 + i);
  n.m->start(now_);
  deliver(i);
  check(i);
  if (app_ != nullptr) app_->started(i, now_);
  schedule_wake(i);
}

void simulator::kill(unsigned i) {
  if (!nodes_.at(i).up) return;
  nodes_.at(i).up = false;
  mix(0x4b11 + i);
  if (app_ != nullptr) app_->killed(i);
}

void simulator::send(unsigned from, unsigned to, std::any m) {
  if (!nodes_.count(to) || blocked(from, to)) return;
  std::uniform_int_distribution<std::int64_t> delay(net_.delay_min.count(), net_.delay_max.count());
  millis& last = last_app_[{from, to}];
  const millis at = std::max(now_ + millis(delay(rng_)), last);
  last = at;
  event e{at, 0, event::kind::app, to, {}, {}, nodes_.at(to).generation};
  e.payload = std::move(m);
  e.sender = from;
  push(std::move(e));
}

void simulator::restart(unsigned i) {
  kill(i);
  start(i);
}

void simulator::pause(unsigned i, millis length) {
  nodes_.at(i).paused_until = now_ + length;
  mix(0x9a05 + i);
}

void simulator::leave(unsigned i) {
  node& n = nodes_.at(i);
  n.m->leave(now_);
  deliver(i);
  check(i);
  schedule_wake(i);
}

void simulator::down(unsigned by, unsigned who) {
  node& n = nodes_.at(by);
  if (const member* m = n.m->find(name(who))) downed_.insert({m->id.name, m->id.generation});
  n.m->down(name(who), now_);
  deliver(by);
  check(by);
  schedule_wake(by);
}

void simulator::partition(const std::set<unsigned>& a) {
  cut_ = a;
  mix(0xc07 + a.size());
}

bool simulator::blocked(unsigned a, unsigned b) const {
  return !cut_.empty() && cut_.count(a) != cut_.count(b);
}

void simulator::push(event e) {
  e.order = order_++;
  queue_.push(std::move(e));
}

void simulator::schedule_wake(unsigned i) {
  node& n = nodes_.at(i);
  if (!n.up) return;
  millis w = n.m->next_wake();
  if (app_ != nullptr) {
    const millis a = app_->next_wake(i);
    if (a.count() >= 0) w = std::min(w, a);
  }
  w = std::max(w, now_);
  if (n.wake.count() >= 0 && n.wake <= w) return;
  n.wake = w;
  push({w, 0, event::kind::wake, i, {}, {}, n.generation});
}

void simulator::deliver(unsigned i) {
  node& n = nodes_.at(i);
  for (outgoing& o : n.m->take_outgoing()) {
    bytes_ += o.bytes.size();
    mix(o.bytes.size());
    const auto to = by_address_.find(o.to);
    if (to == by_address_.end() || blocked(i, to->second)) {
      if (on_send) on_send(now_, i, o, true);
      continue;
    }
    std::uniform_int_distribution<std::int64_t> delay(net_.delay_min.count(), net_.delay_max.count());
    std::uniform_real_distribution<double> roll(0.0, 1.0);
    if (o.via == outgoing::channel::stream) {
      if (on_send) on_send(now_, i, o, false);
      push({now_ + millis(delay(rng_)), 0, event::kind::stream, to->second, address(i), std::move(o.bytes), 0});
      continue;
    }
    const bool lost = roll(rng_) < net_.loss;
    if (on_send) on_send(now_, i, o, lost);
    if (lost) continue;
    if (roll(rng_) < net_.duplicate)
      push({now_ + millis(delay(rng_)), 0, event::kind::datagram, to->second, address(i), o.bytes, 0});
    push({now_ + millis(delay(rng_)), 0, event::kind::datagram, to->second, address(i), std::move(o.bytes), 0});
  }
  for (const member_event& e : n.m->take_events()) {
    if (on_event) on_event(now_, i, e);
    mix(static_cast<std::uint64_t>(e.what) * 31 + e.who.id.incarnation);
    if (e.what == member_event::kind::dead) {
      dead_seen[e.who.id.name].push_back(now_);
      const auto it = by_address_.find(e.who.id.address);
      if (it != by_address_.end()) {
        const node& target = nodes_.at(it->second);
        if (target.up && target.paused_until <= now_ && target.generation == e.who.id.generation &&
            !downed_.count({e.who.id.name, e.who.id.generation}))
          false_deaths_.insert({e.who.id.name, e.who.id.generation, e.who.id.incarnation});
      }
    } else if (e.what == member_event::kind::joined) {
      joined_seen[e.who.id.name].push_back(now_);
    }
  }
}

void simulator::step(event e) {
  node& n = nodes_.at(e.to);
  if (e.what == event::kind::app && (!n.up || e.generation != n.generation)) {
    if (app_ != nullptr) app_->undeliverable(e.to, e.sender, e.payload, now_);
    return;
  }
  if (!n.up) return;
  if (n.paused_until > now_) {
    // Stopped: what comes waits in its socket buffers; its timers, too.
    if (e.what == event::kind::wake) {
      if (e.at != n.wake || e.generation != n.generation) return;
      n.wake = millis(-1);
      e.at = n.paused_until;
      n.wake = e.at;
    } else {
      e.at = n.paused_until;
    }
    push(std::move(e));
    return;
  }
  ++steps_;
  mix(static_cast<std::uint64_t>(e.at.count()) * 7 + e.to);
  if (app_ != nullptr) app_->before(e.to, now_);
  switch (e.what) {
    case event::kind::wake:
      if (e.at != n.wake || e.generation != n.generation) return;
      n.wake = millis(-1);
      n.m->advance(now_);
      break;
    case event::kind::datagram: n.m->on_datagram(e.from, e.bytes, now_); break;
    case event::kind::stream: n.m->on_stream(e.from, e.bytes, now_); break;
    case event::kind::app:
      if (app_ != nullptr) app_->received(e.to, e.sender, e.payload, now_);
      break;
  }
  deliver(e.to);
  check(e.to);
  if (app_ != nullptr) app_->ran(e.to, now_);
  schedule_wake(e.to);
}

void simulator::run_for(millis d) {
  const millis end = now_ + d;
  while (!queue_.empty() && queue_.top().at <= end) {
    event e = queue_.top();
    queue_.pop();
    now_ = std::max(now_, e.at);
    step(std::move(e));
  }
  now_ = end;
}

void simulator::violate(const std::string& what) {
  if (violation_.empty()) violation_ = "at " + std::to_string(now_.count()) + " ms: " + what;
}

void simulator::check(unsigned observer) {
  const node& n = nodes_.at(observer);
  const std::string me = name(observer);
  const millis least = millis(static_cast<std::int64_t>(opts_.suspicion_mult) * opts_.probe_interval.count());
  n.m->each_member([&](const member& m) {
    const auto who = [&] { return "view of " + m.id.name + " held by " + me; };
    if (m.id.name == me) {
      if (m.state != member_state::alive && m.state != member_state::left)
        violate(me + " sees itself " + to_string(m.state));
      return;
    }
    auto at = seen_.find(std::tie(observer, n.generation, m.id.name));
    if (at == seen_.end()) at = seen_.emplace(std::tuple(observer, n.generation, m.id.name), seen{}).first;
    seen& s = at->second;
    const auto key = std::tie(m.id.generation, m.id.incarnation);
    if (key < std::tie(s.generation, s.incarnation))
      violate(who() + " went back from (" + std::to_string(s.generation) + ", " + std::to_string(s.incarnation) +
              ") to (" + std::to_string(m.id.generation) + ", " + std::to_string(m.id.incarnation) + ")");
    s.generation = m.id.generation;
    s.incarnation = m.id.incarnation;
    switch (m.state) {
      case member_state::alive:
        if (!s.has_alive || std::tie(s.max_alive_gen, s.max_alive_inc) < key) {
          s.max_alive_gen = m.id.generation;
          s.max_alive_inc = m.id.incarnation;
        }
        s.has_alive = true;
        break;
      case member_state::suspect:
      case member_state::dead: {
        if (s.has_alive && key < std::tie(s.max_alive_gen, s.max_alive_inc))
          violate(who() + " is " + to_string(m.state) + " at an incarnation below one it held alive: a refutation lost");
        if (m.state == member_state::suspect) {
          auto [it, fresh] = first_suspected_.try_emplace({m.id.name, m.id.generation, m.id.incarnation}, now_);
          (void)it;
          (void)fresh;
        } else if (!downed_.count({m.id.name, m.id.generation})) {
          const auto it = first_suspected_.find({m.id.name, m.id.generation, m.id.incarnation});
          if (it == first_suspected_.end())
            violate(who() + " is dead with no suspicion of that incarnation before");
          else if (m.since < it->second + least)
            violate(who() + " is dead " + std::to_string((m.since - it->second).count()) +
                    " ms after the first suspicion, before the least suspicion time");
        }
        break;
      }
      case member_state::left: s.left_generations.insert(m.id.generation); break;
    }
    if ((m.state == member_state::alive || m.state == member_state::suspect) && s.left_generations.count(m.id.generation))
      violate(who() + " is back after it left, in the same generation");
  });
}

bool simulator::converged(std::string* why) const {
  for (const auto& [i, n] : nodes_) {
    if (!n.up || n.paused_until > now_) continue;
    for (const auto& [j, other] : nodes_) {
      const member* m = n.m->find(name(j));
      const bool should = other.up && other.paused_until <= now_;
      if (should && (m == nullptr || m->state != member_state::alive || m->id != other.m->self())) {
        if (why) *why = name(i) + " does not see " + name(j) + " alive as it is";
        return false;
      }
      if (!should && m != nullptr && j != i && m->id.generation == other.generation &&
          (m->state == member_state::alive || m->state == member_state::suspect)) {
        if (why) *why = name(i) + " still sees " + name(j) + " " + to_string(m->state);
        return false;
      }
    }
  }
  return true;
}

}  // namespace troupe::cluster::sim
