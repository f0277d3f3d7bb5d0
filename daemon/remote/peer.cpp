// A peer: the proxies of its PIDs, which of its connections is kept and
// what attaching one resends, dialing with backoff when it has none, and
// giving it up (what it never acknowledged becomes dead letters, its
// watchers hear it is lost). What goes out to it is in send_path.cpp.
#include "remote/transport_internal.hpp"

#include <algorithm>
#include <random>

#include "actor/clock.hpp"
#include "actor/system_message.hpp"

namespace troupe::remote {

process_ref peer::proxy(std::string_view id, std::uint64_t generation) {
  std::string key = proxy_key(id, generation);
  std::lock_guard lock(proxies_mu_);
  auto it = proxies_.find(key);
  if (it != proxies_.end() && it->second->try_retain()) return process_ref::adopt(it->second);
  auto* p = new remote_process(*t_.sys_, shared_from_this(), std::string(id), generation);
  proxies_[std::move(key)] = p;
  return process_ref::adopt(p);  // the map's pointer is weak
}

process_ref peer::watched(std::string_view id, std::uint64_t generation, process* watcher) {
  if (generation != 0 && watcher != nullptr) {
    process_ref any;
    {
      std::lock_guard lock(proxies_mu_);
      auto it = proxies_.find(proxy_key(id, 0));
      if (it != proxies_.end() && it->second->try_retain()) any = process_ref::adopt(it->second);
    }
    if (any && static_cast<remote_process*>(any.get())->watched_by(watcher)) return any;
  }
  return proxy(id, generation);
}

peer_info peer::info() const {
  peer_info i;
  i.address = address_;
  std::lock_guard lock(info_mu_);
  i.node = node_;
  i.state = state_name_;
  i.inbound = inbound_;
  i.incarnation = incarnation_;
  i.last_error = last_error_;
  i.messages_sent = sent_.load(std::memory_order_relaxed);
  i.messages_received = received_.load(std::memory_order_relaxed);
  i.bytes_sent = bytes_sent_.load(std::memory_order_relaxed);
  i.bytes_received = bytes_received_.load(std::memory_order_relaxed);
  i.queued = queue_.depth();
  return i;
}

void peer::contact() {
  wanted_ = true;
  if (!conn_ && !dialing_ && pending_.empty() && !retry_.pending()) dial();
}

session_events::verdict peer::judge(connection& c, const peer_hello& h) {
  if (conn_ && conn_ != &c) {
    if (incarnation_ != h.incarnation) {
      conn_->close(close_reason::peer_closed, "the peer restarted (a new incarnation connected)");
    } else {
      return {false, close_reason::duplicate, "a connection to " + address_ + " is up already"};
    }
  }
  // Two connections at once. Both nodes dialed: the one accepted first
  // stays. This node has sent its proof on it, so the other node may hold
  // it as up already and have sent on it: dropping it for a later one
  // would lose that. If each node kept a different one, both are refused
  // and the nodes dial again (connection_closed). The same direction
  // twice: the newer stays (the older is a dial the peer gave up on).
  std::vector<connection*> older;
  for (connection* other : pending_) {
    if (other == &c) continue;
    if (c.dialer_ != other->dialer_)
      return {false, close_reason::duplicate, "a simultaneous connection is kept instead"};
    older.push_back(other);
  }
  // In first, so that closing the older ones does not look like a peer
  // left without a connection.
  if (std::find(pending_.begin(), pending_.end(), &c) == pending_.end()) pending_.push_back(&c);
  for (connection* other : older) other->close(close_reason::duplicate, "a newer connection is kept instead");
  return {};
}

void peer::attach(connection& c, const peer_hello& h, std::uint64_t peer_received) {
  std::erase(pending_, &c);
  conn_ = &c;
  give_up_.cancel();
  reconnecting_ = false;
  const std::uint64_t before = window_.incarnation();
  if (before != 0 && before != h.incarnation) {
    // The peer restarted: its old incarnation is gone, with its actors.
    t_.log(log_level::info, "remote: " + address_ + " restarted (a new incarnation)");
    lost("it restarted");
  }
  window_.attach(h.incarnation);
  recv_last_.store(window_.last(), std::memory_order_relaxed);
  ack_sent_.store(0, std::memory_order_relaxed);
  std::size_t resent = 0, dropped = 0;
  int rc;
  {
    // Before any worker can write to the connection: what the peer has
    // not received goes first, in order, under its old numbers.
    std::lock_guard w(c.wmu_);
    std::lock_guard lock(ledger_mu_);
    if (ledger_.incarnation() != h.incarnation) {
      dropped = ledger_.clear([&](sent_item& i) { unconfirmed(i); });
      ledger_.set_incarnation(h.incarnation);
    } else {
      ledger_.acknowledge(peer_received, [](sent_item&) {});
      resent = resend(c);
    }
    rc = c.flush_locked(true);
  }
  if (resent != 0) {
    t_.stats_.resent.fetch_add(resent, std::memory_order_relaxed);
    t_.log(log_level::info, "remote: sent " + std::to_string(resent) + " unacknowledged items to " + address_ +
                  " again");
  }
  if (dropped != 0)
    t_.log(log_level::warning, "remote: " + std::to_string(dropped) + " items sent to " + address_ +
                  " before it restarted are unconfirmed (dead letters)");
  {
    std::lock_guard io(io_mu_);
    wconn_ = &c;
  }
  if (dialing_ == &c) dialing_ = nullptr;
  failures_ = 0;
  unreachable_since_ = 0;
  retry_.cancel();
  {
    std::lock_guard lock(info_mu_);
    node_ = h.node;
    incarnation_ = h.incarnation;
    inbound_ = !c.dialer_;
    set_state_locked("up");
    last_error_.clear();
  }
  t_.log(log_level::info, "remote: connected to " + address_ + " (node '" + h.node + "', " +
                (c.dialer_ ? "outbound" : "inbound") + ")");
  if (rc < 0) return c.fail_write();
  drain();
}

void peer::connection_closed(connection& c, close_reason reason, const std::string& detail) {
  std::erase(pending_, &c);
  const bool was_up = conn_ == &c;
  if (was_up) {
    {
      // Waits for a worker writing to it now; none finds it afterwards.
      std::lock_guard io(io_mu_);
      wconn_ = nullptr;
    }
    conn_ = nullptr;
    if (reason == close_reason::peer_left) {
      // It said it is stopping: lost now, whatever the cluster says later.
      declared_lost(0, "it left (it is stopping)");
    } else if (reason != close_reason::shutdown && !t_.stopped()) {
      // The link went, maybe not the peer: dial again at once, resend
      // what it has not acknowledged, and give up only if it stays away.
      reconnecting_ = true;
      std::weak_ptr<peer> self = weak_from_this();
      give_up_ = t_.loop_.arm(t_.opts_.unreachable_timeout, [self] {
        if (auto p = self.lock(); p && !p->conn_ && p->reconnecting_)
          p->give_up("it could not be reached for " +
                     std::to_string(p->t_.opts_.unreachable_timeout.count()) + " ms");
      });
    }
  } else if (reconnecting_ && c.refused_) {
    // Nothing listens at its address any more: that incarnation is gone.
    give_up("nothing listens at its address any more (connection refused)");
  }
  // Nothing left, and something to send or a seed to keep: try again
  // after a jittered backoff. This covers both nodes refusing each
  // other's connection (a collision; the jitter makes the next one
  // unlikely), whether this node reads the peer's Disconnect or only a
  // reset. A refused duplicate with another connection left is fine.
  const bool none_left = !conn_ && pending_.empty() && !t_.stopped() &&
                         reason != close_reason::shutdown;
  if (reason != close_reason::duplicate && reason != close_reason::shutdown) {
    std::lock_guard lock(info_mu_);
    last_error_ = std::string(to_string(reason)) + ": " + detail;
  }
  if (dialing_ == &c) {
    dialing_ = nullptr;
    if (!was_up && (reason != close_reason::duplicate || none_left)) dial_failed();
  } else if (was_up && reconnecting_ && none_left && !dialing_) {
    dial();
  } else if (none_left && !dialing_ && wants_connection()) {
    dial_failed();
  }
  {
    std::lock_guard lock(info_mu_);
    // down: its last dial failed and nothing makes it dial again now.
    // Without a connection, whoever dialed the last one, this node is
    // the one that dials.
    if (!conn_) {
      inbound_ = false;
      set_state_locked(dialing_ ? "connecting" : retry_ ? "backoff" : failures_ > 0 ? "down" : "idle");
    }
  }
}

bool peer::down(std::string& why) const {
  std::lock_guard lock(info_mu_);
  if (std::string_view(state_name_) != "backoff" && std::string_view(state_name_) != "down") return false;
  why = last_error_.empty() ? "it could not be reached" : last_error_;
  return true;
}

void peer::inbound_watch(process_ref target, process_ref watcher) {
  std::lock_guard lock(watches_mu_);
  inbound_watches_.emplace_back(std::move(target), std::move(watcher));
}

void peer::inbound_unwatch(process* target, process* watcher) {
  std::lock_guard lock(watches_mu_);
  std::erase_if(inbound_watches_, [&](const auto& w) {
    return w.first.get() == target && w.second.get() == watcher;
  });
}

void peer::shutdown() {
  retry_.cancel();
  give_up_.cancel();
  if (owned_) drop_queued(dead_letter_reason::node_lost);
  {
    std::lock_guard lock(ledger_mu_);
    ledger_.clear([&](sent_item& i) { unconfirmed(i); });
  }
  {
    std::lock_guard lock(watches_mu_);
    inbound_watches_.clear();
  }
  std::vector<process_ref> proxies;
  {
    std::lock_guard lock(proxies_mu_);
    for (auto& [id, p] : proxies_)
      if (p->try_retain()) proxies.push_back(process_ref::adopt(p));
  }
  for (process_ref& p : proxies) static_cast<remote_process*>(p.get())->take_watchers();
}

std::size_t peer::stop_waiting() {
  give_up_.cancel();
  reconnecting_ = false;
  std::lock_guard lock(ledger_mu_);
  return ledger_.clear([&](sent_item& i) { unconfirmed(i); });
}

void peer::give_up(const std::string& why) {
  const std::size_t dropped = stop_waiting();
  const std::string unacked = unconfirmed_words(dropped);
  if (t_.cluster_decides(address_)) {
    // A link that stays down is not a lost node: the cluster's verdict
    // (transport::node_lost) says that, for every node at once.
    t_.fail_spawns(address_, why);
    t_.log(dropped ? log_level::warning : log_level::info,
           "remote: the link to " + address_ + " is down: " + why + unacked +
               "; its actors' watchers wait for the cluster's verdict");
    return;
  }
  t_.log(dropped ? log_level::warning : log_level::info, "remote: " + address_ + " is lost: " + why + unacked);
  lost(why);
}

void peer::declared_lost(std::uint64_t generation, const std::string& why) {
  {
    std::lock_guard lock(info_mu_);
    // That start was given up when a newer one connected (attach).
    if (earlier_start(generation, incarnation_)) return;
  }
  const std::size_t dropped = stop_waiting();
  t_.log(dropped ? log_level::warning : log_level::info,
         "remote: " + address_ + " is lost: " + why + unconfirmed_words(dropped));
  lost(why);
}

std::string peer::unconfirmed_words(std::size_t dropped) {
  return dropped ? "; " + std::to_string(dropped) + " items it did not acknowledge are dead letters (unconfirmed)"
                 : std::string();
}

void peer::note_requester(process* requester, process* target) {
  // Caller holds ledger_mu_.
  if (requesters_.size() >= 2 * requesters_pruned_at_ + 64) {
    std::erase_if(requesters_, [](const auto& r) { return r.first->dead(); });
    requesters_pruned_at_ = requesters_.size();
  }
  requesters_.emplace_back(process_ref(requester), process_ref(target));
}

void peer::fail_requests() {
  std::vector<std::pair<process_ref, process_ref>> waiting;
  {
    std::lock_guard lock(ledger_mu_);
    waiting = std::exchange(requesters_, {});
    requesters_pruned_at_ = 0;
  }
  for (auto& [requester, target] : waiting)
    if (!requester->dead()) t_.sys_->answer_undelivered(requester.get(), target.get(), dead_letter_reason::node_lost);
}

void peer::unconfirmed(sent_item& i) {
  if (i.e) {
    t_.sys_->dead_letter(std::exchange(i.e, nullptr), i.target.get(), dead_letter_reason::unconfirmed);
  } else if (i.control) {
    discard(*i.control, dead_letter_reason::unconfirmed);
  }
}

void peer::lost(const std::string& why) {
  t_.fail_spawns(address_, "it is lost: " + why);
  fail_requests();
  std::vector<process_ref> proxies;
  {
    std::lock_guard lock(proxies_mu_);
    for (auto& [id, p] : proxies_)
      if (p->try_retain()) proxies.push_back(process_ref::adopt(p));
  }
  for (process_ref& p : proxies) {
    for (process_ref& w : static_cast<remote_process*>(p.get())->take_watchers()) {
      auto* m = new system_message(system_kind::terminated, p);
      m->reason = terminated_reason::node_lost;
      w->send_system(m);
    }
  }
  std::vector<std::pair<process_ref, process_ref>> watches;
  {
    std::lock_guard lock(watches_mu_);
    watches = std::exchange(inbound_watches_, {});
  }
  for (auto& [target, watcher] : watches)
    target->send_system(new system_message(system_kind::unwatch, watcher));
  if (owned_) drop_queued(dead_letter_reason::node_lost);
}

void peer::retry() {
  if (t_.stopped()) return;
  if (owned_) drain();
  if ((wanted_ || reconnecting_) && !conn_ && !dialing_ && pending_.empty()) dial();
}

void peer::want_connection() {
  if (dialing_ || !pending_.empty()) return;  // a connection is on its way
  const std::int64_t now = steady_ns();
  if (unreachable_since_ != 0 &&
      now - unreachable_since_ >
          std::chrono::duration_cast<std::chrono::nanoseconds>(t_.opts_.unreachable_timeout)
              .count()) {
    // Unreachable for too long: what waits becomes dead letters; the
    // next send tries again.
    unreachable_since_ = now;
    drop_queued(dead_letter_reason::node_lost);
    return;
  }
  if (retry_.pending()) return;
  if (now < next_attempt_ns_) {
    arm_retry(std::chrono::nanoseconds(next_attempt_ns_ - now));
    return;
  }
  dial();
}

void peer::dial() {
  auto c = std::make_unique<connection>(t_, true, shared_from_this());
  dialing_ = c.get();
  {
    std::lock_guard lock(info_mu_);
    set_state_locked("connecting");
  }
  connection* raw = c.get();
  t_.connections_.push_back(std::move(c));
  raw->start_dial();
}

void peer::dial_failed() {
  if (unreachable_since_ == 0) unreachable_since_ = steady_ns();
  ++failures_;
  {
    std::string why;
    {
      std::lock_guard lock(info_mu_);
      why = last_error_.empty() ? "it could not be reached" : last_error_;
    }
    t_.fail_spawns(address_, why);
  }
  // Exponential backoff with jitter over its upper half: a random delay
  // in [d/2, d], d = min * 2^(failures-1), capped.
  const auto min = std::chrono::duration_cast<std::chrono::nanoseconds>(t_.opts_.backoff_min);
  const auto max = std::chrono::duration_cast<std::chrono::nanoseconds>(t_.opts_.backoff_max);
  const unsigned shift = std::min(failures_ - 1, 20u);
  const std::int64_t d = std::min<std::int64_t>(max.count(), min.count() << shift);
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const std::int64_t delay = d / 2 + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(d / 2 + 1));
  next_attempt_ns_ = steady_ns() + delay;
  if (owned_ && queue_.owner_nonempty()) {
    arm_retry(std::chrono::nanoseconds(delay));
    return;
  }
  if (owned_ && release_queue()) owned_ = false;
  if (wanted_ || reconnecting_) arm_retry(std::chrono::nanoseconds(delay));
}

void peer::set_state_locked(const char* to) {
  auto slot = [](std::string_view s) -> int {
    return s == "backoff" ? 0 : s == "idle" ? 1 : s == "down" ? 2 : -1;
  };
  if (int i = slot(state_name_); i >= 0) t_.stats_.peers_waiting[i].fetch_sub(1, std::memory_order_relaxed);
  if (int i = slot(to); i >= 0) t_.stats_.peers_waiting[i].fetch_add(1, std::memory_order_relaxed);
  state_name_ = to;
}

bool peer::wants_connection() noexcept {
  return wanted_ || reconnecting_ || (owned_ && queue_.owner_nonempty());
}

void peer::arm_retry(std::chrono::nanoseconds delay) {
  std::weak_ptr<peer> self = weak_from_this();
  retry_ = t_.loop_.arm(delay, [self] {
    if (auto p = self.lock()) p->retry();
  });
  std::lock_guard lock(info_mu_);
  set_state_locked("backoff");
}

}  // namespace troupe::remote
