// What arrives on a connection once it is up: watches, stops, spawns and
// their answers acted on, Batch frames delivered to local actors, and
// back-pressure: reading stops while a target's mailbox or the node's
// queued messages are too full, and resumes once they drain.
#include "remote/transport_internal.hpp"


#include "actor/clock.hpp"
#include "actor/system_message.hpp"

namespace troupe::remote {

namespace {

std::string_view view(const flatbuffers::String* s) {
  return s ? std::string_view(s->data(), s->size()) : std::string_view();
}

}  // namespace

void connection::on_frame(const wire::Frame& f) {
  if (f.body_type() == wire::Body::Batch) {
    const wire::Batch& b = *f.body_as_Batch();
    const std::uint64_t n = b.envelopes() ? b.envelopes()->size() : 0;
    return deliver(b, peer_->admit(f.seq(), n));
  }
  // Every other item is one number: a resent one that arrived already is
  // dropped.
  if (peer_->admit(f.seq(), 1) != 0) return;
  switch (f.body_type()) {
    case wire::Body::Watch: {
      const wire::Watch& w = *f.body_as_Watch();
      process_ref watcher = t_.resolve_pid(view(w.watcher()), peer_generation());
      if (!watcher) return;
      process_ref target = t_.local(view(w.target()));
      if (!target) {
        // The id travels as text: there is no process for it.
        auto* o = new outbound;
        o->kind = item_kind::terminated;
        o->target = watcher;
        o->text = std::string(view(w.target()));
        o->reason = static_cast<std::uint8_t>(terminated_reason::not_found);
        if (auto* r = dynamic_cast<remote_process*>(watcher.get())) r->owner().enqueue(o);
        else delete o;
        return;
      }
      peer_->inbound_watch(target, watcher);
      target->send_system(new system_message(system_kind::watch, watcher));
      return;
    }
    case wire::Body::Unwatch: {
      const wire::Unwatch& w = *f.body_as_Unwatch();
      process_ref watcher = t_.resolve_pid(view(w.watcher()), peer_generation());
      process_ref target = t_.local(view(w.target()));
      if (!watcher || !target) return;
      peer_->inbound_unwatch(target.get(), watcher.get());
      target->send_system(new system_message(system_kind::unwatch, watcher));
      return;
    }
    case wire::Body::Terminated: {
      const wire::Terminated& t = *f.body_as_Terminated();
      process_ref watcher = t_.local(view(t.watcher()));
      // The proxy the watcher watched: a watch made from a PID as text holds
      // the one of "whichever start", not this start's.
      process_ref who = peer_->watched(view(t.target()), peer_generation(), watcher.get());
      static_cast<remote_process*>(who.get())->remove_watcher(watcher.get());
      if (!watcher) return;
      auto* m = new system_message(system_kind::terminated, who);
      m->reason = t.reason() <= static_cast<std::uint8_t>(terminated_reason::node_lost)
                      ? static_cast<terminated_reason>(t.reason())
                      : terminated_reason::stopped;
      watcher->send_system(m);
      return;
    }
    case wire::Body::ClusterSync: {
      const auto* data = f.body_as_ClusterSync()->data();
      if (t_.cluster_handler_ && data != nullptr) t_.cluster_handler_(peer_->address(), {data->data(), data->size()});
      return;
    }
    case wire::Body::Stop: {
      if (process_ref target = t_.local(view(f.body_as_Stop()->target())))
        target->send_system(new system_message(system_kind::stop));
      return;
    }
    case wire::Body::SpawnRequest: {
      const wire::SpawnRequest& r = *f.body_as_SpawnRequest();
      const std::string kind(view(r.kind()));
      spawn_reply reply;
      if (!t_.spawn_allowed(kind)) {
        reply.status = spawn_error::not_allowed;
        reply.error = "this node does not let peers spawn '" + kind + "' (kinds." + kind + ".remote_spawn)";
      } else {
        reply = t_.spawn_local(kind, std::string(view(r.name())));
      }
      // Only what the wire knows: a spawn here never times out.
      if (reply.status > spawn_error::not_allowed) reply.status = spawn_error::refused;
      auto* o = new outbound;
      o->kind = item_kind::spawn_response;
      o->request = r.request();
      o->status = static_cast<std::int32_t>(reply.status);
      o->text = reply.who ? reply.who.id() : std::string();
      o->text2 = reply.error;
      peer_->enqueue(o);
      return;
    }
    case wire::Body::SpawnResponse: {
      const wire::SpawnResponse& r = *f.body_as_SpawnResponse();
      spawn_reply reply;
      reply.error = std::string(view(r.error()));
      // A value this node does not know (a newer peer's) is a refusal, in its words.
      reply.status = r.outcome() <= wire::SpawnError::MAX ? static_cast<spawn_error>(r.outcome())
                                                          : spawn_error::refused;
      if (reply.status == spawn_error::none && r.id() && r.id()->size() > 0)
        reply.who = pid(peer_->proxy(view(r.id()), peer_generation()));
      else if (reply.status == spawn_error::none)
        reply = {spawn_error::unreachable, pid(), "the peer answered without an actor id"};
      t_.complete_spawn(r.request(), std::move(reply));
      return;
    }
    default:
      return;  // Hello, Auth, Heartbeat and Disconnect are the session's
  }
}

void connection::deliver(const wire::Batch& b, std::uint64_t skip) {
  const auto* targets = b.targets();
  const auto* senders = b.senders();
  const auto* generations = b.sender_generations();
  const auto* envs = b.envelopes();
  if (!envs || envs->size() <= skip) return;
  const std::uint32_t nt = targets ? targets->size() : 0;
  const std::uint32_t ns = senders ? senders->size() : 0;
  // Check every index before anything is delivered: a bad batch is refused whole.
  if (!batch_indexes_valid(b)) {
    t_.stats_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    close(close_reason::protocol, "a Batch envelope points past its tables, or its type ids are misaligned");
    return;
  }
  targets_.clear();
  for (std::uint32_t i = 0; i < nt; ++i) targets_.push_back(t_.local(view(targets->Get(i))));
  senders_.clear();
  for (std::uint32_t i = 0; i < ns; ++i)
    senders_.push_back(sender(view(senders->Get(i)), generations && i < generations->size() ? generations->Get(i) : 0));
  deliver_from(b, static_cast<std::uint32_t>(skip), false);
}

void connection::deliver_from(const wire::Batch& b, std::uint32_t i, bool force) {
  const auto* types = b.types();
  const auto* envs = b.envelopes();
  const std::uint32_t n = envs->size();
  actor_system& sys = *t_.sys_;
  std::uint32_t delivered = 0;
  while (i < n) {
    const wire::Envelope* w = envs->Get(i++);
    const auto* payload = w->payload();
    envelope* e = make_envelope(types->Get(w->type()), payload ? payload->data() : nullptr,
                                payload ? payload->size() : 0);
    if (w->sender() != 0) {
      if (process* s = senders_[w->sender() - 1].get()) {
        s->retain();
        e->sender = s;
      }
    }
    if (const auto* hs = w->headers(); hs && hs->size() > 0) {
      std::vector<headers::entry> entries;
      entries.reserve(hs->size());
      for (const wire::Header* h : *hs)
        entries.emplace_back(std::string(view(h->key())), std::string(view(h->value())));
      e->hdrs = headers::make(std::move(entries));
    }
    process* target = targets_[w->target()].get();
    if (target != nullptr)
      target->send_user(e);
    else
      sys.dead_letter(e, nullptr, dead_letter_reason::not_found, view(b.targets()->Get(w->target())));
    ++delivered;
    if (force) continue;
    // The target's mailbox after each message; the budget, a sum over
    // every thread, now and then and after the last.
    const bool full = target != nullptr && target->pressure() >= pause_at;
    if (!full && (delivered % 1024 != 0 && i != n)) continue;
    if (!full && sys.queue_pressure() < pause_at) continue;
    // The rest of the batch waits in the session's buffer, which nothing
    // touches until reading resumes.
    held_ = i < n ? &b : nullptr;
    held_next_ = i;
    pause(full ? target : nullptr);
    break;
  }
  t_.stats_.messages_received.fetch_add(delivered, std::memory_order_relaxed);
  peer_->count_received(delivered, 0);
}

void connection::pause(process* full) {
  paused_ = true;
  blocker_ = process_ref(full);
  paused_ns_ = steady_ns();
  s_.hold(true);
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  t_.paused(*this);
}

bool connection::drained() const noexcept {
  if (t_.sys_->queue_pressure() > resume_at) return false;
  return !blocker_ || blocker_->dead() || blocker_->pressure() <= resume_at;
}

void connection::resume() {
  paused_ = false;
  blocker_.reset();
  const std::int64_t now = steady_ns();
  t_.stats_.paused_ns.fetch_add(static_cast<std::uint64_t>(now - paused_ns_), std::memory_order_relaxed);
  // Nothing was read meanwhile, by choice: the peer is not quiet.
  last_heard_ns_ = now;
  {
    dispatcher::hold hold(t_.system().dispatcher());
    // What was read before the pause first, the rest of a batch first of
    // all; it may pause again.
    if (const wire::Batch* b = std::exchange(held_, nullptr)) {
      deliver_from(*b, held_next_, false);
      if (paused_) return;
    }
    s_.hold(false);
    if (!s_.process()) {
      if (s_.reason() == close_reason::protocol)
        t_.stats_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
      close(s_.reason(), s_.detail());
      return;
    }
  }
  if (!paused_ && !closing_) {
    send_ack_if_due(detail::ack_every);
    uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc, on_read);
  }
}

process_ref connection::sender(std::string_view pid_text, std::uint64_t generation) {
  auto it = sender_cache_.find(pid_text);
  if (it != sender_cache_.end() && it->second->generation() == generation) return it->second;
  process_ref p = t_.resolve_pid(pid_text, generation);
  // Only other nodes' actors: a PID of this node names an actor that may
  // stop and have its name taken by another, and is looked up each time.
  const std::string& self = t_.opts_.self.address;
  const bool local = pid_text.size() > self.size() && pid_text.starts_with(self) &&
                     pid_text[self.size()] == '/';
  if (p && !local) {
    constexpr std::size_t cap = 256;
    if (it != sender_cache_.end()) {
      it->second = p;
    } else {
      if (sender_cache_.size() == cap) sender_cache_.clear();
      sender_cache_.emplace(pid_text, p);
    }
  }
  return p;
}

}  // namespace troupe::remote
