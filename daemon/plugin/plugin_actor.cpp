// The actor that runs a plugin kind.
#include <algorithm>

#include "plugin/plugin_internal.hpp"
#include "system_generated.h"

namespace troupe::plugin::detail {

plugin_actor::~plugin_actor() {
  for (auto& [id, t] : timers_) t.cancel();
  unsubscribe_cluster();
  for (std::uint64_t id : event_subs_) events_->unsubscribe(id);
  if (instance_ != nullptr && k_->def.destroy(instance_) != 0) {
    h_->stats().actor_failures.fetch_add(1, std::memory_order_relaxed);
    h_->log(log_level::error, k_->name + ": an actor's destructor failed");
  }
}

void plugin_actor::receive(context& ctx) { receive_with(ctx, k_->def.receive); }

void plugin_actor::receive_with(context& ctx, receive_fn fn) {
  envelope& e = ctx.envelope();
  std::string why;
  if ((e.flags & envelope::trusted) == 0 && !k_->h->verify(e, why)) {
    // Rejected before the plugin sees it: counted, logged, dead-lettered.
    k_->h->stats().invalid_messages.fetch_add(1, std::memory_order_relaxed);
    k_->h->log(log_level::warning, k_->name + " " + ctx.self().to_string() +
                                    ": message rejected: " + why);
    envelope* copy = share_envelope(&e);
    if (e.sender != nullptr) {
      e.sender->retain();
      copy->sender = e.sender;
    }
    ctx.system().dead_letter(copy, &ctx, dead_letter_reason::invalid);
    return;
  }
  troupe_ctx frame{&ctx, k_.get(), k_->plugin, this, {}, false};
  if (instance_ == nullptr) {
    instance_ = k_->def.create(k_->def.data, &frame);
    if (instance_ == nullptr) failed(frame, "create returned no instance");
    if (k_->persistent && ctx.type() == type_id_of<troupe::system::Started>()) return recover(ctx, frame);
  }
  const troupe_message m{e.type, e.data, e.size};
  if (fn(instance_, &frame, &m) != 0) failed(frame, "receive failed");
}

int plugin_actor::become(troupe_ctx* frame, receive_fn fn, bool stacked) {
  context& ctx = *frame->ctx;
  // The behaviour lives in the context; it reaches this actor through its
  // lifetime, so that one left over never runs on a successor.
  behavior b = [this, fn, alive = lifetime()](context& c) {
    if (!alive.expired()) receive_with(c, fn);
  };
  if (stacked)
    ctx.become_stacked(std::move(b));
  else
    ctx.become(std::move(b));
  ++behaviours_;
  if (!stacked) behaviours_ = 1;
  return TROUPE_OK;
}

int plugin_actor::unbecome(troupe_ctx* frame) {
  if (behaviours_ == 0) return TROUPE_ERR_STATE;
  --behaviours_;
  frame->ctx->unbecome();
  return TROUPE_OK;
}

int plugin_actor::unhandled(troupe_ctx* frame) {
  context& ctx = *frame->ctx;
  envelope& e = ctx.envelope();
  // Only what some plugin declared is a user's message to answer for;
  // lifecycle messages, cluster events and Terminated are let go.
  if (!k_->h->declares(e.type)) return TROUPE_OK;
  envelope* copy = share_envelope(&e);
  if (e.sender != nullptr) {
    e.sender->retain();
    copy->sender = e.sender;
  }
  ctx.system().dead_letter(copy, &ctx, dead_letter_reason::unhandled);
  return TROUPE_OK;
}

// ---------------------------------------------------------------- EventStream

std::uint64_t plugin_actor::subscribe_events(context& ctx, std::vector<type_id> types) {
  if (event_subs_.size() >= TROUPE_EVENT_SUBSCRIPTIONS_MAX) return 0;
  events_ = &ctx.system().events();
  const std::uint64_t id = events_->subscribe(ctx.self(), std::move(types));
  event_subs_.push_back(id);
  return id;
}

bool plugin_actor::unsubscribe_events(std::uint64_t id) {
  auto it = std::find(event_subs_.begin(), event_subs_.end(), id);
  if (it == event_subs_.end()) return false;
  event_subs_.erase(it);
  events_->unsubscribe(id);
  return true;
}

// ---------------------------------------------------------------- persistence

void plugin_actor::recover(context& ctx, troupe_ctx& frame) {
  journal_service* j = ctx.system().journal();
  if (j == nullptr) {
    frame.failure = "kind " + k_->name + " is persistent, and this node keeps no journal (persistence.provider is none)";
    frame.failed = true;
    failed(frame, "");
  }
  if (const std::string* id = ctx.identity()) pid_ = k_->name + "/" + *id;
  else if (const std::string* name = ctx.name()) pid_ = k_->name + "/" + *name;
  else {
    frame.failure = "a persistent actor of kind " + k_->name + " needs a name (or to be a grain)";
    frame.failed = true;
    failed(frame, "");
  }
  j->recover(
      ctx, pid_,
      [this](context& c, const recovered& r) {
        const troupe_message m{r.type, r.data, r.size};
        seq_ = reserved_ = r.seq;
        call(c, "recover failed", [&](troupe_ctx& f) {
          return k_->persistence.recover(instance_, &f, &m, r.seq, r.snapshot ? 1 : 0);
        });
      },
      [this](context& c, const persist_result& r) {
        seq_ = reserved_ = r.last_seq;
        // Now it starts: the current message is Started again.
        const envelope& e = c.envelope();
        const troupe_message m{e.type, e.data, e.size};
        call(c, "receive failed", [&](troupe_ctx& f) { return k_->def.receive(instance_, &f, &m); });
      });
}

int plugin_actor::persist(troupe_ctx* frame, const troupe_message* events, std::size_t count,
                          void (*on_persisted)(void*, troupe_ctx*, int, std::uint64_t, const char*), void* closure,
                          void (*drop)(void*)) {
  auto held = std::make_shared<owned_closure>(closure, drop);
  context& ctx = *frame->ctx;
  if (!k_->persistent || pid_.empty()) return TROUPE_ERR_STATE;
  journal_service* j = ctx.system().journal();
  if (j == nullptr) return TROUPE_ERR_UNAVAILABLE;
  std::vector<event_bytes> out;
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    if (events[i].data == nullptr && events[i].size != 0) return TROUPE_ERR_ARGUMENT;
    out.push_back({events[i].type, std::vector<std::uint8_t>(events[i].data, events[i].data + events[i].size)});
  }
  // Several persists in one turn follow one another in the journal.
  const std::uint64_t expected = reserved_;
  reserved_ += count;
  j->persist(ctx, pid_, expected, std::move(out),
             [this, held, on_persisted, count](context& c, const persist_result& r) {
               const bool ok = r.status == persist_status::ok;
               if (ok) seq_ = r.last_seq;
               else reserved_ -= count;
               call(c, "on_persisted failed", [&](troupe_ctx& f) {
                 on_persisted(held->closure, &f, ok ? TROUPE_PERSIST_OK : TROUPE_PERSIST_REJECTED, r.last_seq,
                              r.detail.c_str());
                 return 0;
               });
               // A snapshot each time the numbering passes a multiple of
               // snapshot_every (whichever instance stored the events).
               const std::uint32_t every = c.props().snapshot_every;
               if (!ok || every == 0 || k_->persistence.snapshot == nullptr) return;
               if (r.last_seq / every == (r.last_seq - count) / every) return;
               call(c, "snapshot failed", [&](troupe_ctx& f) { return k_->persistence.snapshot(instance_, &f); });
             });
  return TROUPE_OK;
}

int plugin_actor::save_snapshot(troupe_ctx* frame, std::uint64_t type, const std::uint8_t* data, std::size_t size) {
  if (!k_->persistent || pid_.empty() || seq_ == 0) return TROUPE_ERR_STATE;
  journal_service* j = frame->ctx->system().journal();
  if (j == nullptr) return TROUPE_ERR_UNAVAILABLE;
  j->snapshot(*frame->ctx, pid_, seq_, {type, std::vector<std::uint8_t>(data, data + size)}, {});
  return TROUPE_OK;
}

int plugin_actor::delete_events(troupe_ctx* frame, std::uint64_t to_seq) {
  if (!k_->persistent || pid_.empty()) return TROUPE_ERR_STATE;
  journal_service* j = frame->ctx->system().journal();
  if (j == nullptr) return TROUPE_ERR_UNAVAILABLE;
  j->delete_events(*frame->ctx, pid_, to_seq, {});
  return TROUPE_OK;
}


}  // namespace troupe::plugin::detail
