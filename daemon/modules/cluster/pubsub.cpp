// Cluster pub-sub (pubsub.hpp): the topic actor, each node's agent, and the
// publishing side's batches.
#include "modules/cluster/pubsub.hpp"

#include <algorithm>
#include <set>

#include "actor/clock.hpp"
#include "actor/journal_service.hpp"
#include "cluster_generated.h"
#include "modules/cluster/grains.hpp"
#include "node/module.hpp"
#include "pubsub_generated.h"
#include "system_generated.h"

namespace troupe::node {

namespace ps = troupe::pubsub;
using flatbuffers::FlatBufferBuilder;
using flatbuffers::Offset;

const char* to_string(delivery_failure f) noexcept {
  switch (f) {
    case delivery_failure::stopped: return "stopped";
    case delivery_failure::node_lost: return "node_lost";
    case delivery_failure::mailbox_full: return "mailbox_full";
    case delivery_failure::unreachable: return "unreachable";
    case delivery_failure::queue_full: return "queue_full";
    case delivery_failure::not_sent: return "not_sent";
  }
  return "unknown";
}

void pubsub_counters::collect(std::vector<prometheus::MetricFamily>& out) {
  using prometheus::MetricType;
  out.push_back(single_metric("troupe_pubsub_published_total", "Messages this node's actors published",
                              MetricType::Counter, static_cast<double>(published.load(std::memory_order_relaxed))));
  out.push_back(single_metric("troupe_pubsub_delivered_total",
                              "Published messages handed to this node's subscribers (one per subscriber)",
                              MetricType::Counter, static_cast<double>(delivered.load(std::memory_order_relaxed))));
  auto f = metric_family("troupe_pubsub_delivery_failures_total",
                         "Published messages a subscriber did not get, by why: it had stopped, its node was lost, "
                         "its mailbox was full, its node did not answer; or none got them: the publishing node's "
                         "queue for the topic was full, or the batch reached no topic",
                         MetricType::Counter);
  for (std::size_t i = 0; i < delivery_failure_count; ++i)
    add_metric(f, static_cast<double>(failures[i].load(std::memory_order_relaxed)),
               {{"reason", to_string(static_cast<delivery_failure>(i))}});
  out.push_back(std::move(f));
  out.push_back(single_metric("troupe_pubsub_malformed_total", "Pub-sub frames from other nodes that did not verify",
                              MetricType::Counter, static_cast<double>(malformed.load(std::memory_order_relaxed))));
  std::lock_guard lock(mu);
  if (subscribers.empty()) return;
  auto s = metric_family("troupe_pubsub_subscribers",
                         "This node's subscribers of each topic listed in pubsub.metric_topics", MetricType::Gauge);
  for (const auto& [topic, n] : subscribers) add_metric(s, static_cast<double>(n), {{"topic", topic}});
  out.push_back(std::move(s));
}

namespace {

// The bytes of a string field, or empty.
std::string_view str(const flatbuffers::String* s) { return s ? s->string_view() : std::string_view(); }

// A subscriber as the topic and the agents keep it.
struct sub {
  std::string address, id;  // an actor's
  std::uint64_t generation = 0;
  std::string kind, identity;  // a grain's

  bool grain() const noexcept { return !kind.empty(); }
  std::string key() const {
    return grain() ? "grain " + kind + "/" + identity
                   : address + "/" + id + "@" + std::to_string(generation);
  }
  static sub of(const ps::Subscriber* s) {
    sub out;
    if (s == nullptr) return out;
    out.address = str(s->address());
    out.id = str(s->id());
    out.generation = s->generation();
    out.kind = str(s->kind());
    out.identity = str(s->identity());
    return out;
  }
  static sub of(const topic_subscriber& s) {
    sub out;
    if (s.actor) {
      out.address = s.actor.address();
      out.id = s.actor.id();
      out.generation = s.actor.generation();
    } else {
      out.kind = s.kind;
      out.identity = s.identity;
    }
    return out;
  }
  bool valid() const noexcept { return grain() ? !identity.empty() : !address.empty() && !id.empty(); }
  Offset<ps::Subscriber> write(FlatBufferBuilder& b) const {
    return ps::CreateSubscriber(b, address.empty() ? 0 : b.CreateString(address), id.empty() ? 0 : b.CreateString(id),
                                generation, kind.empty() ? 0 : b.CreateString(kind),
                                identity.empty() ? 0 : b.CreateString(identity));
  }
};

struct failure {
  sub who;
  ps::FailureReason reason;
};

Offset<flatbuffers::Vector<Offset<ps::Failure>>> write_failures(FlatBufferBuilder& b, const std::vector<failure>& f) {
  std::vector<Offset<ps::Failure>> v;
  v.reserve(f.size());
  for (const failure& x : f) v.push_back(ps::CreateFailure(b, x.who.write(b), x.reason));
  return b.CreateVector(v);
}

// Copies the items of a Publish into a Deliver.
Offset<flatbuffers::Vector<Offset<ps::Item>>> copy_items(FlatBufferBuilder& b,
                                                         const flatbuffers::Vector<Offset<ps::Item>>* items) {
  std::vector<Offset<ps::Item>> v;
  if (items != nullptr) {
    v.reserve(items->size());
    for (const ps::Item* i : *items) {
      const auto* m = i->message();
      v.push_back(ps::CreateItem(b, i->type(), m ? b.CreateVector(m->data(), m->size()) : 0));
    }
  }
  return b.CreateVector(v);
}

// ------------------------------------------------------------------ topic

// The activation of troupe.topic/<topic>: the subscriber list, by node.
class topic_actor final : public actor {
 public:
  topic_actor(grain_service& grains, std::shared_ptr<pubsub_counters> counters, std::chrono::milliseconds timeout)
      : grains_(grains), counters_(std::move(counters)), timeout_(timeout) {}

  void receive(context& ctx) override {
    const envelope& e = ctx.envelope();
    if (e.is<system::Started>()) return started(ctx);
    if (const auto* t = e.as<system::Terminated>()) return terminated(ctx, t);
    if (e.is<ps::Publish>()) {
      // Until every member has said who subscribes here, a batch would
      // miss some: it waits.
      if (rolling_) return ctx.stash();
      if (const auto* p = verified<ps::Publish>(e)) return publish(ctx, p);
    } else if (const auto* s = verified<ps::Subscribe>(e)) {
      return subscribe(ctx, s);
    } else if (const auto* u = verified<ps::Unsubscribe>(e)) {
      return unsubscribe(ctx, u);
    } else if (const auto* r = verified<ps::Roll>(e)) {
      return rolled(ctx, r);
    } else if (const auto* r = verified<ps::Report>(e)) {
      return reported(ctx, r);
    } else if (const auto* t = verified<ps::Timeout>(e)) {
      return timed_out(ctx, t->batch());
    } else if (const auto* d = verified<system::DeadLetterResponse>(e)) {
      return undelivered(ctx, d);
    } else if (e.is<ps::ListSubscribers>()) {
      return list(ctx);
    }
    if (e.is<ps::Publish>() || e.is<ps::Subscribe>() || e.is<ps::Unsubscribe>() || e.is<ps::Roll>() ||
        e.is<ps::Report>())
      counters_->malformed.fetch_add(1, std::memory_order_relaxed);
  }

 private:
  struct node_rec {
    pid agent;
    std::vector<sub> subs;
  };
  struct report_rec {
    pid to;
    std::uint64_t delivered = 0;
    std::vector<failure> failures;
    std::set<std::string> waiting;  // node addresses
    timer_handle timer;
  };

  void started(context& ctx) {
    topic_ = ctx.identity() ? *ctx.identity() : std::string();
    rolling_ = true;  // publishes wait for the roll call (and the recovery)
    // With a shared store, the grain subscribers are kept there: they
    // belong to no node, and the roll call may find nobody who remembers
    // them. Its user messages wait while it recovers.
    journal_ = ctx.system().journal();
    if (journal_ != nullptr && journal_->shared()) {
      id_ = std::string(pubsub_service::topic_kind) + "/" + topic_;
      journal_->recover(
          ctx, id_, [this](context&, const recovered& r) { apply(r); },
          [this](context& c, const persist_result& r) {
            seq_ = next_seq_ = r.last_seq;
            roll_call(c);
          });
      return;
    }
    journal_ = nullptr;
    roll_call(ctx);
  }

  // A snapshot (the grain subscribers) or an event (one came or went).
  void apply(const recovered& r) {
    flatbuffers::Verifier v(r.data, r.size);
    if (r.type == type_id_of<ps::Roll>() && v.VerifyBuffer<ps::Roll>(nullptr)) {
      grain_subs_.clear();
      stored_.clear();
      if (const auto* list = flatbuffers::GetRoot<ps::Roll>(r.data)->subscribers())
        for (const ps::Subscriber* x : *list) add_stored(sub::of(x));
    } else if (r.type == type_id_of<ps::Subscribe>() && v.VerifyBuffer<ps::Subscribe>(nullptr)) {
      add_stored(sub::of(flatbuffers::GetRoot<ps::Subscribe>(r.data)->subscriber()));
    } else if (r.type == type_id_of<ps::Unsubscribe>() && v.VerifyBuffer<ps::Unsubscribe>(nullptr)) {
      const std::string key = sub::of(flatbuffers::GetRoot<ps::Unsubscribe>(r.data)->subscriber()).key();
      grain_subs_.erase(key);
      stored_.erase(key);
    }
  }

  void add_stored(sub who) {
    std::string key = who.key();
    if (add_grain(std::move(who))) stored_.insert(std::move(key));
  }

  bool add_grain(sub who) {
    if (!who.grain() || !who.valid()) return false;
    std::string key = who.key();
    return grain_subs_.emplace(std::move(key), std::move(who)).second;
  }

  void roll_call(context& ctx) {
    const auto hosts = grains_.hosts();
    if (const auto* all = hosts->hosts(pubsub_service::topic_kind))
      for (const cluster::grain_host& h : *all) {
        const pid agent = agent_of(ctx, h.address, h.generation);
        if (!agent) continue;
        waiting_.insert(h.address);
        ctx.request(agent, make_message<ps::RollCall>([&](FlatBufferBuilder& b) {
          return ps::CreateRollCall(b, b.CreateString(topic_));
        }));
      }
    if (waiting_.empty()) {
      rolling_ = false;
      ctx.unstash_all();
      return;
    }
    roll_timer_ = ctx.scheduler().send_once(timeout_, ctx.self(), timeout_message(0));
  }

  static message timeout_message(std::uint64_t batch) {
    return make_message<ps::Timeout>([&](FlatBufferBuilder& b) { return ps::CreateTimeout(b, batch); });
  }

  pid agent_of(context& ctx, const std::string& address, std::uint64_t generation) {
    return ctx.system().resolve(address + "/" + pubsub_service::agent_name, generation);
  }

  node_rec* node(context& ctx, const std::string& address, std::uint64_t generation) {
    auto it = nodes_.find(address);
    if (it != nodes_.end() && generation != 0 && it->second.agent.generation() != 0 &&
        it->second.agent.generation() != generation) {
      // A new start of that node: the old one's subscribers are gone.
      lose(it->second, ps::FailureReason::NodeLost);
      ctx.unwatch(it->second.agent);
      nodes_.erase(it);
      it = nodes_.end();
    }
    if (it == nodes_.end()) {
      pid agent = agent_of(ctx, address, generation);
      if (!agent) return nullptr;
      ctx.watch(agent);
      it = nodes_.emplace(address, node_rec{std::move(agent), {}}).first;
    }
    return &it->second;
  }

  void lose(node_rec& n, ps::FailureReason why) {
    counters_->fail(delivery_failure::node_lost, n.subs.size());
    for (sub& s : n.subs) lost_.push_back({std::move(s), why});
    n.subs.clear();
    // Kept for the next report, which may never be asked for: the oldest
    // go beyond a bound (they were counted just now).
    if (lost_.size() > max_lost) lost_.erase(lost_.begin(), lost_.begin() + (lost_.size() - max_lost));
  }

  std::size_t count() const {
    std::size_t n = grain_subs_.size();
    for (const auto& [a, r] : nodes_) n += r.subs.size();
    return n;
  }

  void ack(context& ctx) {
    ctx.respond(make_message<ps::Acked>([&](FlatBufferBuilder& b) { return ps::CreateAcked(b, count()); }));
  }

  void subscribe(context& ctx, const ps::Subscribe* s) {
    sub who = sub::of(s->subscriber());
    if (who.grain()) {
      // Known already (a roll call may have brought it first) is not
      // stored yet: only what the store has is acknowledged.
      add_grain(who);
      if (journal_ == nullptr || stored_.count(who.key()) != 0) return ack(ctx);
      return store(ctx, who, true, ctx.keep_current());
    }
    node_rec* n = who.valid() ? node(ctx, std::string(str(s->node_address())), s->node_generation()) : nullptr;
    if (n == nullptr) {
      return ctx.respond(make_message<ps::Acked>([&](FlatBufferBuilder& b) {
        return ps::CreateAcked(b, count(), b.CreateString("not a subscriber this topic can deliver to"));
      }));
    }
    const std::string key = who.key();
    if (std::none_of(n->subs.begin(), n->subs.end(), [&](const sub& x) { return x.key() == key; }))
      n->subs.push_back(std::move(who));
    ack(ctx);
  }

  void unsubscribe(context& ctx, const ps::Unsubscribe* u) {
    const sub who = sub::of(u->subscriber());
    const std::string key = who.key();
    if (who.grain()) {
      grain_subs_.erase(key);
      // The node it subscribed from may be another: every agent forgets it.
      const message forget = make_message<ps::Forget>([&](FlatBufferBuilder& b) {
        return ps::CreateForget(b, b.CreateString(topic_), who.write(b));
      });
      if (const auto* all = grains_.hosts()->hosts(pubsub_service::topic_kind))
        for (const cluster::grain_host& h : *all)
          if (pid agent = agent_of(ctx, h.address, h.generation)) ctx.send(agent, forget);
      if (journal_ == nullptr || stored_.count(key) == 0) return ack(ctx);
      return store(ctx, who, false, ctx.keep_current());
    }
    if (auto it = nodes_.find(std::string(str(u->node_address()))); it != nodes_.end())
      std::erase_if(it->second.subs, [&](const sub& x) { return x.key() == key; });
    ack(ctx);
  }

  // A grain came (`on`) or went: kept in the shared store before the
  // subscriber hears it is done (`asker`: the request to answer then; empty
  // for a grain a roll call brought). The topic's next messages wait.
  void store(context& ctx, const sub& who, bool on, message asker) {
    FlatBufferBuilder& b = thread_builder();
    if (on) b.Finish(ps::CreateSubscribe(b, b.CreateString(topic_), who.write(b)));
    else b.Finish(ps::CreateUnsubscribe(b, b.CreateString(topic_), who.write(b)));
    event_bytes e;
    e.type = on ? type_id_of<ps::Subscribe>() : type_id_of<ps::Unsubscribe>();
    e.data.assign(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
    std::vector<event_bytes> events;
    events.push_back(std::move(e));
    // After those still on their way: each appends after the one before.
    const std::uint64_t expected = next_seq_++;
    journal_->persist(ctx, id_, expected, std::move(events),
                      [this, key = who.key(), on, asker = std::move(asker)](context& c, const persist_result& r) {
                        if (r.status != persist_status::ok) return;  // a failed store stops this activation
                        seq_ = r.last_seq;
                        if (on) stored_.insert(key);
                        else stored_.erase(key);
                        if (++since_snapshot_ >= snapshot_every) snapshot(c);
                        if (asker) c.with_current(asker, [&] { ack(c); });
                      });
  }

  // The grain subscribers as of seq_, and the events before it gone.
  void snapshot(context& ctx) {
    since_snapshot_ = 0;
    FlatBufferBuilder& b = thread_builder();
    std::vector<Offset<ps::Subscriber>> v;
    for (const auto& [key, s] : grain_subs_)
      if (stored_.count(key) != 0) v.push_back(s.write(b));
    b.Finish(ps::CreateRoll(b, b.CreateString(topic_), 0, 0, b.CreateVector(v)));
    event_bytes state;
    state.type = type_id_of<ps::Roll>();
    state.data.assign(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
    const std::uint64_t at = seq_;
    journal_->snapshot(ctx, id_, at, std::move(state), [this, at](context& c, const persist_result& r) {
      if (r.status == persist_status::ok) journal_->delete_events(c, id_, at, {});
    });
  }

  // A member's answer to the roll call.
  void rolled(context& ctx, const ps::Roll* r) {
    const std::string address(str(r->node_address()));
    if (r->subscribers() != nullptr && r->subscribers()->size() != 0)
      if (node_rec* n = node(ctx, address, r->node_generation())) {
        std::set<std::string> have;
        for (const sub& s : n->subs) have.insert(s.key());
        for (const ps::Subscriber* s : *r->subscribers()) {
          sub x = sub::of(s);
          if (x.grain()) {
            if (add_grain(x) && journal_ != nullptr && stored_.count(x.key()) == 0) store(ctx, x, true, message());
          }
          else if (x.valid() && have.insert(x.key()).second) n->subs.push_back(std::move(x));
        }
      }
    done_waiting(ctx, address);
  }

  void done_waiting(context& ctx, const std::string& address) {
    if (!rolling_ || waiting_.erase(address) == 0 || !waiting_.empty()) return;
    rolling_ = false;
    roll_timer_.cancel();
    ctx.unstash_all();
  }

  void publish(context& ctx, const ps::Publish* p) {
    // A batch behind a later one of its source (it was retried) is dropped:
    // at most once, never out of order.
    const std::string source = std::string(str(p->source())) + "@" + std::to_string(p->source_generation());
    std::uint64_t& last = sources_[source];
    if (p->seq() != 0 && p->seq() <= last) {
      return ctx.respond(make_message<ps::Report>([&](FlatBufferBuilder& b) {
        return ps::CreateReport(b, 0, 0, 0, 0, true);
      }));
    }
    last = p->seq();
    const std::size_t items = p->items() ? p->items()->size() : 0;
    const bool report = p->report();
    const std::uint64_t batch = report ? ++batches_ : 0;
    // One frame for every node: the same bytes.
    const message deliver = make_message<ps::Deliver>([&](FlatBufferBuilder& b) {
      return ps::CreateDeliver(b, b.CreateString(topic_), batch, copy_items(b, p->items()), report);
    });
    report_rec rec;
    for (auto& [address, n] : nodes_) {
      if (n.subs.empty()) continue;
      if (report) {
        ctx.request(n.agent, deliver);
        rec.waiting.insert(address);
      } else {
        ctx.send(n.agent, deliver);
      }
    }
    // Grain subscribers get theirs from here: a delivery activates each
    // where the cluster places it.
    std::uint64_t to_grains = 0;
    if (!grain_subs_.empty() && p->items() != nullptr)
      for (const ps::Item* item : *p->items()) {
        const auto* bytes = item->message();
        const message m = message::adopt(
            make_envelope(item->type(), bytes ? bytes->data() : nullptr, bytes ? bytes->size() : 0));
        for (const auto& [key, g] : grain_subs_) {
          grains_.send(g.kind, g.identity, m, timeout_);
          ++to_grains;
        }
      }
    counters_->delivered.fetch_add(to_grains, std::memory_order_relaxed);
    if (!report) {
      return ctx.respond(make_message<ps::Report>([&](FlatBufferBuilder& b) {
        return ps::CreateReport(b, 0, count() * items, 0);
      }));
    }
    rec.to = ctx.sender();
    rec.delivered = to_grains;
    rec.failures = std::move(lost_);
    lost_.clear();
    if (rec.waiting.empty()) return answer(ctx, rec);
    rec.timer = ctx.scheduler().send_once(timeout_, ctx.self(), timeout_message(batch));
    reports_.emplace(batch, std::move(rec));
  }

  void answer(context& ctx, report_rec& rec) {
    rec.timer.cancel();
    ctx.send(rec.to, make_message<ps::Report>([&](FlatBufferBuilder& b) {
      return ps::CreateReport(b, 0, rec.delivered, write_failures(b, rec.failures));
    }));
  }

  // An agent's report on one Deliver.
  void reported(context& ctx, const ps::Report* r) {
    auto it = reports_.find(r->batch());
    if (it == reports_.end()) return;
    report_rec& rec = it->second;
    rec.delivered += r->delivered();
    if (r->failures() != nullptr)
      for (const ps::Failure* f : *r->failures()) {
        sub who = sub::of(f->subscriber());
        // Stopped subscribers are gone from their agent's list: from this
        // one too.
        if (f->reason() == ps::FailureReason::Stopped)
          if (auto n = nodes_.find(std::string(str(r->node()))); n != nodes_.end()) {
            const std::string key = who.key();
            std::erase_if(n->second.subs, [&](const sub& x) { return x.key() == key; });
          }
        rec.failures.push_back({std::move(who), f->reason()});
      }
    rec.waiting.erase(std::string(str(r->node())));
    if (rec.waiting.empty()) {
      answer(ctx, rec);
      reports_.erase(it);
    }
  }

  void timed_out(context& ctx, std::uint64_t batch) {
    if (batch == 0) {
      if (!rolling_) return;
      rolling_ = false;
      waiting_.clear();
      ctx.unstash_all();
      return;
    }
    auto it = reports_.find(batch);
    if (it == reports_.end()) return;
    for (const std::string& address : it->second.waiting)
      if (auto n = nodes_.find(address); n != nodes_.end()) {
        counters_->fail(delivery_failure::unreachable, n->second.subs.size());
        for (const sub& s : n->second.subs) it->second.failures.push_back({s, ps::FailureReason::Unreachable});
      }
    answer(ctx, it->second);
    reports_.erase(it);
  }

  // A request of ours that reached no agent: its node is gone (or going).
  void undelivered(context& ctx, const system::DeadLetterResponse* d) {
    const std::string address(d->target() ? str(d->target()->address()) : std::string_view());
    if (address.empty()) return;
    done_waiting(ctx, address);
    auto n = nodes_.find(address);
    const bool lost = d->reason() == system::DeadLetterReason::NodeLost;
    const std::vector<sub>* subs = n != nodes_.end() ? &n->second.subs : nullptr;
    const bool reported = stop_waiting(ctx, address, subs, lost ? ps::FailureReason::NodeLost : ps::FailureReason::Unreachable);
    if (!lost && reported) counters_->fail(delivery_failure::unreachable, subs->size());
    if (lost && n != nodes_.end()) {
      ctx.unwatch(n->second.agent);
      drop_lost(n, reported);
    }
  }

  // An agent stopped: its node stopped, died or left. Its subscribers go,
  // and the next report names them.
  void terminated(context& ctx, const system::Terminated* t) {
    const std::string address(t->who() ? str(t->who()->address()) : std::string_view());
    auto n = nodes_.find(address);
    if (n == nodes_.end()) return;
    if (t->who()->generation() != 0 && n->second.agent.generation() != 0 &&
        t->who()->generation() != n->second.agent.generation())
      return;  // about an earlier start
    done_waiting(ctx, address);
    drop_lost(n, stop_waiting(ctx, address, &n->second.subs, ps::FailureReason::NodeLost));
  }

  // The reports waiting on the node at `address` wait no more: its
  // subscribers (`subs`, when known) are named in them for `why`, and those
  // with nothing left to wait for are answered. True when some report
  // named them.
  bool stop_waiting(context& ctx, const std::string& address, const std::vector<sub>* subs, ps::FailureReason why) {
    bool named = false;
    for (auto it = reports_.begin(); it != reports_.end();) {
      if (it->second.waiting.erase(address) != 0 && subs != nullptr) {
        named = true;
        for (const sub& s : *subs) it->second.failures.push_back({s, why});
      }
      if (it->second.waiting.empty()) {
        answer(ctx, it->second);
        it = reports_.erase(it);
      } else {
        ++it;
      }
    }
    return named;
  }

  // A node lost: its subscribers are counted, and named in the next report
  // unless a report named them just now.
  void drop_lost(std::map<std::string, node_rec>::iterator n, bool named) {
    if (named) {
      counters_->fail(delivery_failure::node_lost, n->second.subs.size());
      n->second.subs.clear();
    } else {
      lose(n->second, ps::FailureReason::NodeLost);
    }
    nodes_.erase(n);
  }

  void list(context& ctx) {
    ctx.respond(make_message<ps::Roll>([&](FlatBufferBuilder& b) {
      std::vector<Offset<ps::Subscriber>> v;
      for (const auto& [a, n] : nodes_)
        for (const sub& s : n.subs) v.push_back(s.write(b));
      for (const auto& [key, s] : grain_subs_) v.push_back(s.write(b));
      return ps::CreateRoll(b, b.CreateString(topic_), 0, 0, b.CreateVector(v));
    }));
  }

  grain_service& grains_;
  std::shared_ptr<pubsub_counters> counters_;
  std::chrono::milliseconds timeout_;
  std::string topic_;
  std::map<std::string, node_rec> nodes_;  // by node address
  std::vector<failure> lost_;              // dropped since the last report
  static constexpr std::size_t max_lost = 10000;
  std::map<std::uint64_t, report_rec> reports_;
  std::uint64_t batches_ = 0;
  std::unordered_map<std::string, std::uint64_t> sources_;  // "address@generation" -> last batch taken
  std::map<std::string, sub> grain_subs_;  // by key: they belong to no node
  std::set<std::string> stored_;           // keys of those the shared store has
  journal_service* journal_ = nullptr;     // set when the store is shared
  std::string id_;                         // its persistence id: troupe.topic/<topic>
  std::uint64_t seq_ = 0;       // of the last event stored
  std::uint64_t next_seq_ = 0;  // of the last event on its way to the store
  unsigned since_snapshot_ = 0;
  static constexpr unsigned snapshot_every = 100;
  bool rolling_ = false;
  std::set<std::string> waiting_;  // members yet to answer the roll call
  timer_handle roll_timer_;
};

// ------------------------------------------------------------------ agent

// troupe.pubsub: this node's subscribers, and their deliveries.
class agent_actor final : public actor {
 public:
  agent_actor(grain_service& grains, std::shared_ptr<pubsub_counters> counters, std::chrono::milliseconds timeout,
              std::vector<std::string> metric_topics)
      : grains_(grains), counters_(std::move(counters)), timeout_(timeout),
        metric_topics_(metric_topics.begin(), metric_topics.end()) {}

  void receive(context& ctx) override {
    const envelope& e = ctx.envelope();
    if (const auto* d = verified<ps::Deliver>(e)) return deliver(ctx, d);
    if (const auto* r = verified<ps::RollCall>(e)) return roll(ctx, std::string(str(r->topic())));
    if (const auto* f = verified<ps::Forget>(e)) return drop(ctx, std::string(str(f->topic())), sub::of(f->subscriber()).key());
    if (const auto* t = e.as<system::Terminated>()) return terminated(ctx, t);
    // From this node's service, or another's (an actor of this node
    // subscribed from there): the subscriber must be an actor of this node.
    if (const auto* s = verified<ps::Subscribe>(e)) return subscribe(ctx, s);
    if (const auto* u = verified<ps::Unsubscribe>(e)) return unsubscribe(ctx, u);
    if (e.is<ps::Deliver>() || e.is<ps::RollCall>() || e.is<ps::Forget>() || e.is<ps::Subscribe>() ||
        e.is<ps::Unsubscribe>())
      counters_->malformed.fetch_add(1, std::memory_order_relaxed);
  }

 private:
  struct local {
    sub who;
    std::string key;
    pid actor;  // resolved once, for an actor
  };

  void count(const std::string& topic) {
    if (metric_topics_.count(topic) == 0) return;
    const auto it = topics_.find(topic);
    std::lock_guard lock(counters_->mu);
    counters_->subscribers[topic] = it == topics_.end() ? 0 : static_cast<std::int64_t>(it->second.size());
  }

  void subscribe(context& ctx, const ps::Subscribe* s) {
    const std::string topic(str(s->topic()));
    local l{sub::of(s->subscriber()), {}, {}};
    if (!l.who.grain()) {
      l.actor = ctx.system().resolve(l.who.address + "/" + l.who.id, l.who.generation);
      if (!l.actor || l.actor.address() != ctx.system().address()) {
        // Subscribers are an actor of this node, or a grain.
        return ctx.respond(make_message<ps::Acked>([&](FlatBufferBuilder& b) {
          return ps::CreateAcked(b, 0, b.CreateString("no actor " + l.who.address + "/" + l.who.id + " on this node"));
        }));
      }
      // Named as Terminated will name it: this start of this node.
      l.who.generation = ctx.system().generation();
    }
    l.key = l.who.key();
    auto& list = topics_[topic];
    if (std::none_of(list.begin(), list.end(), [&](const local& x) { return x.key == l.key; })) {
      if (l.actor && watched_[l.key].insert(topic).second && watched_[l.key].size() == 1) ctx.watch(l.actor);
      list.push_back(l);
      count(topic);
    }
    forward(ctx, topic, make_message<ps::Subscribe>([&](FlatBufferBuilder& b) {
              return ps::CreateSubscribe(b, b.CreateString(topic), l.who.write(b),
                                         b.CreateString(ctx.system().address()), ctx.system().generation());
            }));
  }

  void unsubscribe(context& ctx, const ps::Unsubscribe* u) {
    const std::string topic(str(u->topic()));
    sub who = sub::of(u->subscriber());
    if (!who.grain()) who.generation = ctx.system().generation();  // as subscribe named it
    drop(ctx, topic, who.key());
    forward(ctx, topic, make_message<ps::Unsubscribe>([&](FlatBufferBuilder& b) {
              return ps::CreateUnsubscribe(b, b.CreateString(topic), who.write(b),
                                           b.CreateString(ctx.system().address()), ctx.system().generation());
            }));
  }

  // Takes `key` off `topic` here.
  void drop(context& ctx, const std::string& topic, const std::string& key) {
    auto it = topics_.find(topic);
    if (it == topics_.end()) return;
    auto& list = it->second;
    for (auto l = list.begin(); l != list.end(); ++l) {
      if (l->key != key) continue;
      if (l->actor)
        if (auto w = watched_.find(key); w != watched_.end() && w->second.erase(topic) != 0 && w->second.empty()) {
          ctx.unwatch(l->actor);
          watched_.erase(w);
        }
      list.erase(l);
      break;
    }
    if (list.empty()) topics_.erase(it);
    count(topic);
  }

  // Tells the topic, and answers with what it said.
  void forward(context& ctx, const std::string& topic, message m) {
    future f = grains_.call(pubsub_service::topic_kind, topic, std::move(m), timeout_);
    ctx.reenter_after(f, [kept = ctx.keep_current()](context& c, const future_result& r) {
      if (!r.reply) return;  // the asker's own timeout answers it
      c.with_current(kept, [&] { c.respond(r.reply); });
    });
  }

  void deliver(context& ctx, const ps::Deliver* d) {
    const std::string topic(str(d->topic()));
    const auto it = topics_.find(topic);
    std::vector<failure> failures;
    std::uint64_t delivered = 0;
    if (it != topics_.end() && d->items() != nullptr) {
      auto& list = it->second;
      std::vector<std::string> stopped, full;  // each named once in the report
      for (const ps::Item* item : *d->items()) {
        const auto* bytes = item->message();
        // One copy of the payload on this node, shared by every subscriber.
        envelope* payload = make_envelope(item->type(), bytes ? bytes->data() : nullptr, bytes ? bytes->size() : 0);
        for (const local& l : list) {
          if (l.who.grain()) continue;  // the topic delivers to grains
          process* p = l.actor.get();
          if (p->dead()) {
            if (std::find(stopped.begin(), stopped.end(), l.key) == stopped.end()) {
              stopped.push_back(l.key);
              failures.push_back({l.who, ps::FailureReason::Stopped});
            }
            counters_->fail(delivery_failure::stopped);
          } else if (p->pressure() >= 100) {
            if (std::find(full.begin(), full.end(), l.key) == full.end()) {
              full.push_back(l.key);
              failures.push_back({l.who, ps::FailureReason::MailboxFull});
            }
            counters_->fail(delivery_failure::mailbox_full);
          } else {
            p->send_user(share_envelope(payload));
            ++delivered;
          }
        }
        payload->release();
      }
      for (const std::string& key : stopped) drop(ctx, topic, key);
    }
    counters_->delivered.fetch_add(delivered, std::memory_order_relaxed);
    if (!d->report()) return;
    ctx.respond(make_message<ps::Report>([&](FlatBufferBuilder& b) {
      return ps::CreateReport(b, d->batch(), delivered, write_failures(b, failures),
                              b.CreateString(ctx.system().address()));
    }));
  }

  void roll(context& ctx, const std::string& topic) {
    ctx.respond(make_message<ps::Roll>([&](FlatBufferBuilder& b) {
      std::vector<Offset<ps::Subscriber>> v;
      if (const auto it = topics_.find(topic); it != topics_.end())
        for (const local& l : it->second) v.push_back(l.who.write(b));
      return ps::CreateRoll(b, b.CreateString(topic), b.CreateString(ctx.system().address()),
                            ctx.system().generation(), b.CreateVector(v));
    }));
  }

  // A subscriber stopped: off every topic, and each topic is told.
  void terminated(context& ctx, const system::Terminated* t) {
    if (t->who() == nullptr) return;
    sub who;
    who.address = str(t->who()->address());
    who.id = str(t->who()->id());
    who.generation = t->who()->generation() != 0 ? t->who()->generation() : ctx.system().generation();
    const std::string key = who.key();
    const auto w = watched_.find(key);
    if (w == watched_.end()) return;
    const std::set<std::string> topics = w->second;
    for (const std::string& topic : topics) {
      drop(ctx, topic, key);
      grains_.send(pubsub_service::topic_kind, topic, make_message<ps::Unsubscribe>([&](FlatBufferBuilder& b) {
                     return ps::CreateUnsubscribe(b, b.CreateString(topic), who.write(b),
                                                  b.CreateString(ctx.system().address()), ctx.system().generation());
                   }),
                   timeout_);
    }
    watched_.erase(key);
  }

  grain_service& grains_;
  std::shared_ptr<pubsub_counters> counters_;
  std::chrono::milliseconds timeout_;
  std::set<std::string> metric_topics_;
  std::unordered_map<std::string, std::vector<local>> topics_;
  std::unordered_map<std::string, std::set<std::string>> watched_;  // actor key -> its topics
};

}  // namespace

// ------------------------------------------------------------------ service

pubsub_service::pubsub_service(actor_system& sys, grain_service& grains, pubsub_options o)
    : sys_(sys), grains_(grains), opts_(std::move(o)) {
  std::lock_guard lock(counters_->mu);
  for (const std::string& t : opts_.metric_topics) counters_->subscribers[t] = 0;
}

pubsub_service::~pubsub_service() { alive_->store(false, std::memory_order_release); }

props_ptr pubsub_service::topic_props() {
  props p = props::from([g = &grains_, c = counters_, t = opts_.timeout] {
    return std::make_unique<topic_actor>(*g, c, t);
  });
  p.kind = topic_kind;
  return share(std::move(p));
}

bool pubsub_service::start(std::string& why) {
  props p = props::from([g = &grains_, c = counters_, t = opts_.timeout, m = opts_.metric_topics] {
    return std::make_unique<agent_actor>(*g, c, t, m);
  });
  p.kind = agent_name;
  const spawn_result r = sys_.root().spawn_named(share(std::move(p)), agent_name);
  if (!r) {
    why = "cannot start the pub-sub service '" + std::string(agent_name) + "': " +
          spawn_refusal(r.error, agent_name, agent_name);
    return false;
  }
  agent_ = r.pid;
  return true;
}

future pubsub_service::agent_request(const topic_subscriber& s, message m, std::chrono::nanoseconds timeout) {
  // An actor of another node is that node's agent's to keep.
  pid agent = agent_;
  if (s.actor && s.actor.address() != sys_.address())
    agent = sys_.resolve(s.actor.address() + "/" + agent_name, s.actor.generation());
  return sys_.root().request_future(agent, std::move(m), timeout);
}

future pubsub_service::subscribe(std::string_view topic, const topic_subscriber& s, std::chrono::nanoseconds timeout) {
  const sub who = sub::of(s);
  return agent_request(s, make_message<ps::Subscribe>([&](FlatBufferBuilder& b) {
                         return ps::CreateSubscribe(b, b.CreateString(topic), who.write(b),
                                                    b.CreateString(node_of(s)), generation_of(s));
                       }),
                       timeout);
}

future pubsub_service::unsubscribe(std::string_view topic, const topic_subscriber& s,
                                   std::chrono::nanoseconds timeout) {
  const sub who = sub::of(s);
  return agent_request(s, make_message<ps::Unsubscribe>([&](FlatBufferBuilder& b) {
                         return ps::CreateUnsubscribe(b, b.CreateString(topic), who.write(b),
                                                      b.CreateString(node_of(s)), generation_of(s));
                       }),
                       timeout);
}

future pubsub_service::subscribers(std::string_view topic, std::chrono::nanoseconds timeout) {
  return grains_.call(topic_kind, topic,
                      make_message<ps::ListSubscribers>([](FlatBufferBuilder& b) { return ps::CreateListSubscribers(b); }),
                      timeout);
}

bool pubsub_service::publish(std::string_view topic, message m) {
  bool refused = false;
  enqueue(topic, std::move(m), process_ref(), refused);
  return !refused;
}

future pubsub_service::publish_reported(std::string_view topic, message m, std::chrono::nanoseconds timeout) {
  auto* f = new future_process(sys_);
  process_ref ref = process_ref::adopt(f);
  f->set_timeout(sys_.loop().arm(timeout, [ref] {
    static_cast<future_process*>(ref.get())->complete(future_status::timed_out, nullptr);
  }));
  bool refused = false;
  enqueue(topic, std::move(m), ref, refused);
  if (refused) f->complete(future_status::failed, nullptr);  // no reply: refused here
  return future(ref);
}

void pubsub_service::enqueue(std::string_view topic, message m, process_ref report, bool& refused) {
  std::unique_lock lock(mu_);
  auto it = out_.find(std::string(topic));
  if (it == out_.end()) it = out_.emplace(std::string(topic), outgoing{}).first;
  outgoing& o = it->second;
  if (o.items.size() >= opts_.max_pending) {
    refused = true;
    counters_->fail(delivery_failure::queue_full);
    return;
  }
  counters_->published.fetch_add(1, std::memory_order_relaxed);
  if (o.items.empty()) o.oldest_ns = steady_ns();
  o.items.push_back({std::move(m), std::move(report)});
  if (due(o)) return flush(lock, it->first);
  if (!o.timer_armed && o.in_flight < max_in_flight) {
    o.timer_armed = true;
    lock.unlock();
    flush_later(std::string(topic));
  }
}

bool pubsub_service::due(const outgoing& o) const {
  if (o.items.empty() || o.in_flight >= max_in_flight) return false;
  // Nothing on its way: no reason to wait. Else a full batch, or one that
  // has waited long enough, goes beside those on their way.
  return o.in_flight == 0 || o.items.size() >= opts_.batch_size ||
         steady_ns() - o.oldest_ns >= std::chrono::duration_cast<std::chrono::nanoseconds>(opts_.batch_delay).count();
}

void pubsub_service::flush_later(const std::string& topic) {
  sys_.loop().arm(opts_.batch_delay, [this, alive = alive_, topic] {
    if (!alive->load(std::memory_order_acquire)) return;
    std::unique_lock lock(mu_);
    auto it = out_.find(topic);
    if (it == out_.end()) return;
    it->second.timer_armed = false;
    if (due(it->second)) flush(lock, it->first);
  });
}

void pubsub_service::flush(std::unique_lock<std::mutex>& lock, const std::string& topic) {
  outgoing& o = out_[topic];
  const std::size_t n = std::min(o.items.size(), opts_.batch_size);
  std::vector<pending> batch(std::make_move_iterator(o.items.begin()), std::make_move_iterator(o.items.begin() + n));
  o.items.erase(o.items.begin(), o.items.begin() + n);
  if (!o.items.empty()) o.oldest_ns = steady_ns();
  ++o.in_flight;
  const std::uint64_t seq = seq_.fetch_add(1, std::memory_order_relaxed) + 1;
  lock.unlock();
  bool report = false;
  for (const pending& p : batch) report = report || static_cast<bool>(p.report);
  message m = make_message<ps::Publish>([&](FlatBufferBuilder& b) {
    std::vector<Offset<ps::Item>> items;
    items.reserve(batch.size());
    for (const pending& p : batch) items.push_back(ps::CreateItem(b, p.m->type, b.CreateVector(p.m->data, p.m->size)));
    return ps::CreatePublish(b, b.CreateVector(items), report, b.CreateString(sys_.address()), sys_.generation(),
                             seq);
  });
  std::vector<process_ref> reporters;
  for (pending& p : batch)
    if (p.report) reporters.push_back(std::move(p.report));
  const std::size_t sent = batch.size();
  batch.clear();
  future f = grains_.call(topic_kind, topic, std::move(m), opts_.timeout);
  f.get()->on_complete([this, alive = alive_, topic, reporters = std::move(reporters), sent](future_result r) {
    if (!alive->load(std::memory_order_acquire)) return;
    const auto* rep = r.status == future_status::completed ? r.reply.as<ps::Report>() : nullptr;
    const bool reached = rep != nullptr && !rep->stale();
    if (!reached) counters_->fail(delivery_failure::not_sent, sent);
    for (const process_ref& p : reporters) {
      auto* fp = static_cast<future_process*>(p.get());
      message copy = r.reply;  // each reporter's own reference
      if (rep != nullptr && rep->stale()) {
        fp->complete(future_status::failed, copy.release());  // dropped: it came after a later batch
      } else if (copy) {
        fp->complete(reached ? future_status::completed : r.status, copy.release());
      } else {
        fp->complete(r.status == future_status::pending ? future_status::failed : r.status, nullptr);
      }
    }
    std::unique_lock lock(mu_);
    auto it = out_.find(topic);
    if (it == out_.end()) return;
    outgoing& o = it->second;
    --o.in_flight;
    if (o.items.empty()) {
      if (o.in_flight == 0) out_.erase(it);  // no memory kept for a topic nobody publishes to now
      return;
    }
    if (due(o)) return flush(lock, topic);
    if (!o.timer_armed) {
      o.timer_armed = true;
      lock.unlock();
      flush_later(topic);
    }
  });
}

}  // namespace troupe::node
