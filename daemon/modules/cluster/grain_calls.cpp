// The call side of grains: the cache of where grains run, and one process
// per call that locates, sends, and retries.
#include <algorithm>
#include <cstdio>
#include <random>

#include "cluster_generated.h"
#include "modules/cluster/grains.hpp"
#include "node/module.hpp"
#include "system_generated.h"

namespace troupe::node {

namespace {

namespace gc = troupe::cluster;
using flatbuffers::FlatBufferBuilder;

constexpr auto first_backoff = std::chrono::milliseconds(2);
constexpr auto max_backoff = std::chrono::milliseconds(500);

// Whether a request that became a dead letter for this reason may go to a
// new activation: the grain was gone, or its node, or not reached.
bool worth_retrying(system::DeadLetterReason r) {
  using R = system::DeadLetterReason;
  switch (r) {
    case R::NotFound:
    case R::Stopped:
    case R::Shutdown:
    case R::NodeLost:
    case R::PeerQueueFull:
    case R::Unconfirmed:
    case R::Stale: return true;
    default: return false;
  }
}

// One call: a process (the sender of what it sends), alive until it ends.
class grain_call final : public process, public pooled {
 public:
  grain_call(grain_service& svc, std::string_view kind, std::string_view identity, message m,
             std::chrono::nanoseconds timeout, bool one_way)
      : process(svc.system()), svc_(svc), kind_(kind), identity_(identity),
        key_(cluster::grain_key(kind, identity)), msg_(std::move(m)), one_way_(one_way),
        counters_(svc.counters().of(kind)) {
    if (!one_way) {
      result_ = new future_process(svc.system());
      result_ref_ = process_ref::adopt(result_);
    }
    timeout_ = timeout;
  }

  future result() const { return future(result_ref_); }

  // Starts the call; the caller's reference may go after this.
  void begin() {
    self_ = process_ref(static_cast<process*>(this));
    {
      std::lock_guard lock(mu_);
      deadline_ = system().loop().arm(timeout_, [me = self_] {
        static_cast<grain_call*>(me.get())->expire();
      });
    }
    attempt();
  }

  void send_user(envelope* e) noexcept override {
    std::unique_lock lock(mu_);
    if (done_) {
      lock.unlock();
      system().dead_letter(e, this, dead_letter_reason::late_reply);
      return;
    }
    if (const auto* d = verified<system::DeadLetterResponse>(*e)) {
      // About the PID this attempt used (ids repeat from node to node, and
      // from one start of a node to the next), or an earlier one's.
      const auto* t = d->target();
      const std::string_view id = t && t->id() ? t->id()->string_view() : std::string_view();
      const std::string_view address = t && t->address() ? t->address()->string_view() : std::string_view();
      const system::DeadLetterReason why = d->reason();
      // (One failure can come back more than once: unconfirmed, then its
      // node lost. Between attempts, none is about the current one.)
      const bool current = phase_ != phase::idle && target_ && address == target_.get()->address() &&
                           id == target_.get()->id() &&
                           (t->generation() == 0 || t->generation() == target_.get()->generation());
      if (!current) {
        lock.unlock();
        e->release();  // about an earlier attempt
        return;
      }
      if (phase_ == phase::calling) svc_.forget(kind_, identity_, key_, target_);
      if (worth_retrying(why)) {
        lock.unlock();
        e->release();
        return retry();
      }
      return finish(lock, future_status::dead_letter, e, call_result::undelivered);
    }
    if (phase_ == phase::locating) {
      const auto* l = verified<gc::GrainLocated>(*e);
      if (l == nullptr || l->request() != attempts_) {
        if (e->is<gc::GrainLocated>() && l == nullptr) svc_.counters().malformed.fetch_add(1, std::memory_order_relaxed);
        lock.unlock();
        e->release();
        return;
      }
      const gc::GrainStatus status = l->status();
      const std::string detail = l->detail() ? l->detail()->str() : std::string();
      if (status == gc::GrainStatus::Ok) {
        const std::string where = (l->address() ? l->address()->str() : std::string()) + "/" +
                                  (l->id() ? l->id()->str() : std::string());
        const std::uint64_t generation = l->generation();
        const bool delivered = l->delivered();
        e->release();  // `l` points into it
        pid to = system().resolve(where, generation);
        if (!to) {
          lock.unlock();
          return retry();
        }
        svc_.remember(kind_, identity_, key_, to);
        if (!delivered) return deliver(lock, std::move(to));
        // The owner handed the message over: its reply comes next.
        phase_ = phase::calling;
        target_ = std::move(to);
        if (one_way_) finish(lock, future_status::completed, nullptr, call_result::ok);
        return;
      }
      e->release();
      switch (status) {
        case gc::GrainStatus::ActivationFailed: return fail(lock, status, detail, call_result::activation_failed);
        case gc::GrainStatus::NoHost: return fail(lock, status, detail, call_result::no_host);
        // Too many wait already: an answer at once, not a retry that adds to them.
        case gc::GrainStatus::Busy: return fail(lock, status, detail, call_result::busy);
        default:
          last_refusal_ = detail;
          lock.unlock();
          return retry();
      }
    }
    // The grain's reply.
    finish(lock, future_status::completed, e, call_result::ok);
  }

  void send_system(system_message* m) noexcept override { delete m; }

  std::string id() const override {
    char buf[40];
    std::snprintf(buf, sizeof buf, "$grain-call-%p", static_cast<const void*>(this));
    return buf;
  }

  bool dead() const noexcept override { return done_flag_.load(std::memory_order_acquire); }

 private:
  enum class phase : std::uint8_t { idle, locating, calling };

  // One try: the cached activation, or the owner's answer.
  void attempt() {
    std::unique_lock lock(mu_);
    if (done_) return;
    ++attempts_;
    if (pid cached = svc_.cached(kind_, identity_, key_)) {
      if (!cached.get()->dead()) {
        // An activation of this node serves only while the node hears the
        // cluster (grains.hpp): else wait for it to hear, or to be fenced.
        if (cached.get()->address() == system().address() && !svc_.serving()) {
          last_refusal_ = "this node has not heard the cluster lately";
          lock.unlock();
          return retry();
        }
        return deliver(lock, std::move(cached));
      }
      svc_.forget(kind_, identity_, key_, cached);
    }
    const auto hosts = svc_.hosts();
    const cluster::grain_host* owner = hosts->owner(kind_, key_);
    if (owner == nullptr) {
      if (!svc_.settled()) {  // no view to place it by yet: wait for one
        last_refusal_ = "this node has not joined the cluster yet";
        lock.unlock();
        return retry();
      }
      return fail(lock, gc::GrainStatus::NoHost, "no member hosts the grain kind '" + kind_ + "'",
                  call_result::no_host);
    }
    pid to = owner->address == system().address()
                 ? svc_.host()
                 : system().resolve(owner->address + "/troupe.grains", owner->generation);
    if (!to) {
      lock.unlock();
      return retry();
    }
    phase_ = phase::locating;
    target_ = to;  // the owner's troupe.grains, until it answers
    // The message rides along: the owner hands it to the activation.
    envelope* e = build<gc::GrainLocate>([&](FlatBufferBuilder& b) {
      const auto bytes = b.CreateVector(msg_->data, msg_->size);
      return gc::CreateGrainLocate(b, b.CreateString(kind_), b.CreateString(identity_), attempts_, msg_->type, bytes,
                                   !one_way_);
    });
    retain();
    e->sender = this;
    lock.unlock();
    to.get()->send_user(e);
  }

  void deliver(std::unique_lock<std::mutex>& lock, pid to) {
    phase_ = phase::calling;
    target_ = to;
    envelope* e = share_envelope(msg_.get());
    if (one_way_) {
      finish(lock, future_status::completed, nullptr, call_result::ok);
      to.get()->send_user(e);
      return;
    }
    retain();
    e->sender = this;
    lock.unlock();
    to.get()->send_user(e);
  }

  // Again, after a backoff with jitter: 2 ms, 4 ms, ... up to 500 ms.
  void retry() {
    svc_.counters().retries.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(mu_);
    if (done_) return;
    phase_ = phase::idle;
    target_ = pid();
    const auto base = std::min<std::chrono::nanoseconds>(first_backoff * (1u << std::min(attempts_, 10u)), max_backoff);
    thread_local std::minstd_rand rng{std::random_device{}()};
    const auto delay = std::chrono::nanoseconds(
        static_cast<std::int64_t>(static_cast<double>(base.count()) * std::uniform_real_distribution<double>(0.5, 1.0)(rng)));
    retry_ = system().loop().arm(delay, [me = self_] { static_cast<grain_call*>(me.get())->attempt(); });
  }

  void expire() {
    std::unique_lock lock(mu_);
    if (done_) return;
    std::string why = "no answer from " + kind_ + "/" + identity_ + " within " +
                      std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(timeout_).count()) +
                      " ms";
    why += " (" + std::to_string(attempts_) + (attempts_ == 1 ? " attempt" : " attempts");
    if (phase_ == phase::locating) why += ", waiting for its owner's answer";
    if (phase_ == phase::calling && target_) why += ", waiting for " + target_.to_string();
    why += last_refusal_.empty() ? std::string(")") : ", last refusal: " + last_refusal_ + ")";
    if (one_way_) return finish(lock, future_status::timed_out, nullptr, call_result::timeout);
    envelope* e = error_message(gc::GrainStatus::Timeout, why);
    finish(lock, future_status::timed_out, e, call_result::timeout);
  }

  envelope* error_message(gc::GrainStatus s, const std::string& why) {
    return build<gc::GrainError>([&](FlatBufferBuilder& b) {
      return gc::CreateGrainErrorDirect(b, kind_.c_str(), identity_.c_str(), s, why.c_str());
    });
  }

  void fail(std::unique_lock<std::mutex>& lock, gc::GrainStatus s, const std::string& why, call_result r) {
    finish(lock, future_status::failed, error_message(s, why), r);
  }

  // Ends the call (under mu_, which it gives up): the future completes.
  void finish(std::unique_lock<std::mutex>& lock, future_status s, envelope* reply, call_result r) {
    done_ = true;
    done_flag_.store(true, std::memory_order_release);
    counters_.calls[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed);
    timer_handle deadline = std::move(deadline_), retry = std::move(retry_);
    process_ref self = std::move(self_);
    lock.unlock();
    deadline.cancel();
    retry.cancel();
    if (result_ != nullptr) {
      result_->complete(s, reply);
    } else if (reply != nullptr) {
      reply->release();
    }
  }

  grain_service& svc_;
  const std::string kind_, identity_;
  const std::uint64_t key_;
  const message msg_;
  const bool one_way_;
  grain_kind_counters& counters_;
  future_process* result_ = nullptr;
  process_ref result_ref_;
  std::chrono::nanoseconds timeout_{0};

  std::mutex mu_;
  bool done_ = false;
  std::atomic<bool> done_flag_{false};
  phase phase_ = phase::idle;
  std::uint32_t attempts_ = 0;
  pid target_;
  std::string last_refusal_;
  process_ref self_;  // the call keeps itself alive until it ends
  timer_handle deadline_, retry_;
};

}  // namespace

future grain_service::call(std::string_view kind, std::string_view identity, message m,
                           std::chrono::nanoseconds timeout) {
  auto* c = new grain_call(*this, kind, identity, std::move(m), timeout, false);
  process_ref hold = process_ref::adopt(c);
  future f = c->result();
  c->begin();
  return f;
}

void grain_service::send(std::string_view kind, std::string_view identity, message m,
                         std::chrono::nanoseconds timeout) {
  auto* c = new grain_call(*this, kind, identity, std::move(m), timeout, true);
  process_ref hold = process_ref::adopt(c);
  c->begin();
}

// ---------------------------------------------------------------- cache

pid grain_service::cached(std::string_view kind, std::string_view identity, std::uint64_t key) const {
  cache_shard& s = shard_of(key);
  std::lock_guard lock(s.mu);
  const pid* p = s.entries.find(key, kind, identity);
  return p != nullptr ? *p : pid();
}

void grain_service::remember(std::string_view kind, std::string_view identity, std::uint64_t key, const pid& where) {
  cache_shard& s = shard_of(key);
  std::lock_guard lock(s.mu);
  // Bounded: a full shard forgets an entry (the next call to that grain
  // locates it again).
  s.entries.put(key, kind, identity, where);
}

void grain_service::forget(std::string_view kind, std::string_view identity, std::uint64_t key, const pid& where) {
  cache_shard& s = shard_of(key);
  std::lock_guard lock(s.mu);
  s.entries.erase(key, kind, identity, [&](const pid& p) { return !where || p == where; });
}

void grain_service::forget_at(const std::vector<std::string>& addresses) {
  if (addresses.empty()) return;
  for (cache_shard& s : cache_) {
    std::lock_guard lock(s.mu);
    s.entries.erase_if([&](const pid& where) {
      return where && std::find(addresses.begin(), addresses.end(), where.address()) != addresses.end();
    });
  }
}

// ---------------------------------------------------------------- counters

const char* to_string(call_result r) noexcept {
  switch (r) {
    case call_result::ok: return "ok";
    case call_result::timeout: return "timeout";
    case call_result::no_host: return "no_host";
    case call_result::activation_failed: return "activation_failed";
    case call_result::undelivered: return "undelivered";
    case call_result::busy: return "busy";
  }
  return "unknown";
}

grain_kind_counters& grain_counters::of(std::string_view kind) {
  {
    std::shared_lock lock(mu_);
    if (const auto it = kinds_.find(kind); it != kinds_.end()) return *it->second;
  }
  std::unique_lock lock(mu_);
  auto& slot = kinds_[std::string(kind)];
  if (!slot) slot = std::make_unique<grain_kind_counters>();
  return *slot;
}

void grain_counters::observe_activation(double seconds) {
  std::lock_guard lock(hist_mu_);
  std::size_t i = 0;
  while (i < bounds.size() && seconds > bounds[i]) ++i;
  ++buckets_[i];
  sum_ += seconds;
}

void grain_counters::collect(std::vector<prometheus::MetricFamily>& out) const {
  using prometheus::MetricType;
  auto active = metric_family("troupe_grains_active", "Grain activations on this node, by kind", MetricType::Gauge);
  auto activations = metric_family("troupe_grain_activations_total", "Grains activated on this node, by kind",
                                   MetricType::Counter);
  auto passivations = metric_family("troupe_grain_passivations_total",
                                    "Grain activations ended on this node, by kind and why", MetricType::Counter);
  auto calls = metric_family("troupe_grain_calls_total", "Grain calls made from this node, by kind and how they ended",
                             MetricType::Counter);
  {
    std::shared_lock lock(mu_);
    for (const auto& [kind, k] : kinds_) {
      add_metric(active, static_cast<double>(k->active.load(std::memory_order_relaxed)), {{"kind", kind}});
      add_metric(activations, static_cast<double>(k->activations.load(std::memory_order_relaxed)), {{"kind", kind}});
      for (std::size_t p = 0; p < passivation_count; ++p)
        add_metric(passivations, static_cast<double>(k->passivations[p].load(std::memory_order_relaxed)),
                   {{"kind", kind}, {"reason", to_string(static_cast<passivation>(p))}});
      for (std::size_t r = 0; r < call_result_count; ++r)
        add_metric(calls, static_cast<double>(k->calls[r].load(std::memory_order_relaxed)),
                   {{"kind", kind}, {"result", to_string(static_cast<call_result>(r))}});
    }
  }
  out.push_back(std::move(active));
  out.push_back(std::move(activations));
  out.push_back(std::move(passivations));
  out.push_back(std::move(calls));
  out.push_back(single_metric("troupe_grain_call_retries_total",
                              "Grain calls tried again: the activation had gone, or its owner was not ready",
                              MetricType::Counter, static_cast<double>(retries.load(std::memory_order_relaxed))));
  out.push_back(single_metric("troupe_grain_messages_malformed_total",
                              "Grain protocol messages from other nodes that did not verify", MetricType::Counter,
                              static_cast<double>(malformed.load(std::memory_order_relaxed) +
                                                  handover_rejected.load(std::memory_order_relaxed))));
  auto partitions = metric_family("troupe_grain_partitions",
                                  "Grain partitions of this node: held (grains are activated here), or moving "
                                  "(claimed and waiting for grants, or stopping their activations to move away)",
                                  MetricType::Gauge);
  add_metric(partitions, static_cast<double>(partitions_held.load(std::memory_order_relaxed)), {{"state", "held"}});
  add_metric(partitions, static_cast<double>(partitions_moving.load(std::memory_order_relaxed)), {{"state", "moving"}});
  out.push_back(std::move(partitions));
  auto kept = metric_family("troupe_grain_activations_kept",
                            "With cluster.moved_activations: keep, activations that stay where they run after "
                            "their partition moved: run here for partitions another node holds now (here), or "
                            "answered for by this node, which holds their partition, and run elsewhere (elsewhere)",
                            MetricType::Gauge);
  add_metric(kept, static_cast<double>(kept_here.load(std::memory_order_relaxed)), {{"where", "here"}});
  add_metric(kept, static_cast<double>(kept_elsewhere.load(std::memory_order_relaxed)), {{"where", "elsewhere"}});
  out.push_back(std::move(kept));
  auto moves = metric_family("troupe_grain_partition_moves_total",
                             "Grain partitions that came to be held here, and that moved away", MetricType::Counter);
  add_metric(moves, static_cast<double>(partitions_acquired.load(std::memory_order_relaxed)), {{"direction", "in"}});
  add_metric(moves, static_cast<double>(partitions_released.load(std::memory_order_relaxed)), {{"direction", "out"}});
  out.push_back(std::move(moves));
  out.push_back(single_metric("troupe_grain_calls_buffered_total",
                              "Grain calls that waited for their partition to move to this node", MetricType::Counter,
                              static_cast<double>(buffered.load(std::memory_order_relaxed))));
  out.push_back(single_metric("troupe_grain_buffer_overflow_total",
                              "Grain calls answered busy: too many waited for partitions moving to this node",
                              MetricType::Counter, static_cast<double>(overflow.load(std::memory_order_relaxed))));
  prometheus::MetricFamily hist{"troupe_grain_activation_seconds",
                                "From the first call to a grain's constructor being through", MetricType::Histogram,
                                {}};
  {
    std::lock_guard lock(hist_mu_);
    hist.metric.push_back(histogram_metric(std::vector<std::uint64_t>(buckets_.begin(), buckets_.end()),
                                           std::vector<double>(bounds.begin(), bounds.end()), sum_));
  }
  out.push_back(std::move(hist));
}

}  // namespace troupe::node
