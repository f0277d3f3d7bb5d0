#include "persistence/actor_journal.hpp"

#include <memory>
#include <utility>

#include "actor/context.hpp"
#include "actor/system_message.hpp"

namespace troupe::persistence {

namespace {

using clock = std::chrono::steady_clock;

persist_status status_of(result r) noexcept {
  switch (r) {
    case result::ok: return persist_status::ok;
    case result::rejected: return persist_status::rejected;
    case result::conflict: return persist_status::conflict;
    case result::failed: return persist_status::failed;
  }
  return persist_status::failed;
}

double since(clock::time_point t0) { return std::chrono::duration<double>(clock::now() - t0).count(); }

// Where an answer goes: the actor as it was when it asked, and the message
// it was handling then (current again when the answer runs, so that
// respond() answers that message's sender).
struct asker {
  process_ref actor;
  std::uint32_t inc = 0;
  message current;
  explicit asker(context& ctx)
      : actor(static_cast<process*>(&ctx)), inc(ctx.incarnation()), current(ctx.keep_current()) {}
};

// Runs `fn` in the asker's context, unless the actor was restarted since
// (the answer was meant for the instance that was replaced) or stopped.
template <class F>
void in_actor(const asker& a, F&& fn) {
  auto* m = new system_message(system_kind::continuation);
  m->fn = [inc = a.inc, current = a.current, fn = std::forward<F>(fn)](context& c) mutable {
    if (c.incarnation() == inc) c.with_current(current, [&] { fn(c); });
  };
  a.actor->send_system(m);
}

}  // namespace

void actor_journal::stop_actor(context& ctx, const std::string& id, const char* what, const std::string& detail) {
  stats_.stopped.fetch_add(1, std::memory_order_relaxed);
  if (hooks_.warn)
    hooks_.warn(ctx.self().to_string() + " (" + id + ") stopped: " + what + ": " + detail);
  ctx.stop(ctx.self());
}

// ---------------------------------------------------------------- persist

void actor_journal::persist(context& ctx, std::string id, std::uint64_t expected, std::vector<event_bytes> events,
                            done_fn then) {
  ctx.hold_user_messages();
  std::vector<event> out;
  out.reserve(events.size());
  for (event_bytes& e : events) out.push_back(event{0, e.type, std::move(e.data)});
  const clock::time_point t0 = clock::now();
  std::string key = id;
  store_.append(std::move(key), expected, std::move(out),
                [this, who = asker(ctx), id = std::move(id), then = std::move(then), t0](const outcome& o) mutable {
                  if (hooks_.on_append) hooks_.on_append(o.status, since(t0));
                  in_actor(who, [this, o, id = std::move(id), then = std::move(then)](context& c) {
                    c.release_user_messages();
                    if (o.status == result::failed) return stop_actor(c, id, "persist_failed", o.detail);
                    if (o.status == result::conflict) return stop_actor(c, id, "persist_conflict", o.detail);
                    then(c, persist_result{status_of(o.status), o.last_seq, o.detail});
                  });
                });
}

void actor_journal::snapshot(context& ctx, std::string id, std::uint64_t seq, event_bytes state, done_fn done) {
  store_.save_snapshot(std::move(id), persistence::snapshot{seq, state.type, std::move(state.data)},
                       [who = asker(ctx), done = std::move(done)](const outcome& o) mutable {
                         if (!done) return;
                         in_actor(who, [o, done = std::move(done)](context& c) {
                           done(c, persist_result{status_of(o.status), o.last_seq, o.detail});
                         });
                       });
}

void actor_journal::delete_events(context& ctx, std::string id, std::uint64_t to_seq, done_fn done) {
  store_.delete_events(std::move(id), to_seq,
                       [who = asker(ctx), done = std::move(done)](const outcome& o) mutable {
                         if (!done) return;
                         in_actor(who, [o, done = std::move(done)](context& c) {
                           done(c, persist_result{status_of(o.status), o.last_seq, o.detail});
                         });
                       });
}

// ---------------------------------------------------------------- recovery

struct actor_journal::recovery {
  explicit recovery(context& ctx) : who(ctx) {}
  asker who;
  std::string id;
  item_fn item;
  done_fn done;
  clock::time_point t0;
  std::uint64_t after = 0;  // the last sequence number handed over
  std::uint64_t events = 0;
  bool first = true;
};

void actor_journal::recover(context& ctx, std::string id, item_fn item, done_fn done) {
  ctx.hold_user_messages();
  stats_.recoveries.fetch_add(1, std::memory_order_relaxed);
  auto r = std::make_shared<recovery>(ctx);
  r->id = std::move(id);
  r->item = std::move(item);
  r->done = std::move(done);
  r->t0 = clock::now();
  read_next(r);
}

void actor_journal::read_next(const std::shared_ptr<recovery>& r) {
  const bool first = std::exchange(r->first, false);
  store_.read(r->id, r->after, first, 0, [this, r](read_result&& got) {
    // The next batch is read while the actor takes this one.
    if (got.status == result::ok && !got.events.empty()) r->after = got.events.back().seq;
    if (got.status == result::ok && got.snap) r->after = std::max(r->after, got.snap->seq);
    const bool more = got.status == result::ok && !got.end;
    if (more) read_next(r);
    in_actor(r->who, [this, r, more, got = std::move(got)](context& c) {
      if (got.status != result::ok) {
        stats_.recovery_failures.fetch_add(1, std::memory_order_relaxed);
        c.release_user_messages();
        return stop_actor(c, r->id, "recovery_failed", got.detail);
      }
      if (got.snap) r->item(c, recovered{true, got.snap->seq, got.snap->type, got.snap->data.data(), got.snap->data.size()});
      for (const event& e : got.events) r->item(c, recovered{false, e.seq, e.type, e.data.data(), e.data.size()});
      r->events += got.events.size();
      if (more) return;
      stats_.recovered_events.fetch_add(r->events, std::memory_order_relaxed);
      if (hooks_.on_recovered) hooks_.on_recovered(since(r->t0), r->events);
      c.release_user_messages();
      r->done(c, persist_result{persist_status::ok, r->after, {}});
    });
  });
}

}  // namespace troupe::persistence
