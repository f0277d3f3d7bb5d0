#pragma once
// What the plugin host's files share, private to daemon/plugin: the
// records of loaded plugins and their kinds, the actor that runs a plugin
// kind (plugin_actor.cpp), and the table of host functions a plugin calls
// (host_table.cpp). The loader and the registry are plugin_host.cpp.
#include <cstdint>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#define BOOST_DLL_USE_STD_FS 1
#include <boost/dll/shared_library.hpp>
#include <flatbuffers/reflection.h>

#include <troupe/abi.h>

#include "actor/actor_system.hpp"
#include "plugin/json_codec.hpp"
#include "plugin/plugin_host.hpp"

// The opaque types of abi.h, as the node defines them.

// The frame of one callback into a plugin: the actor's context and where a
// failure reason goes.
struct troupe_ctx {
  troupe::context* ctx;
  const troupe::plugin::kind_record* kind;
  troupe::plugin::loaded_plugin* plugin;  // during init, when ctx is null
  void* actor;                            // the plugin_actor running the callback
  std::string failure;
  bool failed = false;
};

// Handed to init(); stays valid (and closed) afterwards, so that a late
// registration is refused instead of touching freed memory.
struct troupe_registrar {
  troupe::plugin::loaded_plugin* plugin;
  bool open;
};

namespace troupe::plugin {

struct schema_type {
  const reflection::Schema* schema;
  const reflection::Object* object;
  json_codec* codec;
  const std::string* plugin;  // the name of the plugin that declared it
};

struct kind_record {
  host* h;
  loaded_plugin* plugin;
  std::string name;
  troupe_kind_def def;
  props_ptr props;
  bool persistent = false;           // register_persistent
  troupe_persistent_def persistence{};
  bool mailbox_configured = false;   // the node's configuration fixed its mailbox
};

// A troupe_props, read and checked (props_of): what it changes in a props.
struct plugin_props {
  bool mailbox_set = false;
  mailbox_options mailbox{};
  std::uint32_t throughput = 0;  // 0: unchanged
  std::shared_ptr<const supervisor_strategy> supervisor;  // null: unchanged
  // Applies them; the mailbox only when `mailbox_too`.
  void apply(props& p, bool mailbox_too) const;
};

// Reads and checks `in` (plugin_props.cpp); false with `why` when a field
// is out of its range.
bool props_of(const troupe_props* in, plugin_props& out, std::string& why);

struct loaded_plugin {
  host* h;
  std::string file;
  std::string name;
  std::string version;
  unsigned abi_major = 0;
  unsigned abi_minor = 0;
  boost::dll::shared_library lib;
  troupe_registrar reg{this, false};
  // Registered during init, committed after it.
  std::vector<std::pair<std::string, troupe_kind_def>> pending;
  std::vector<std::string> kinds;
  std::map<std::string, std::chrono::nanoseconds> grains;  // register_grain
  std::map<std::string, troupe_persistent_def> persistent;  // register_persistent
  std::map<std::string, plugin_props> kind_props;           // register_kind_props
  std::vector<std::vector<std::uint8_t>> schemas;
  std::vector<std::unique_ptr<json_codec>> codecs;  // one a schema
  std::unordered_map<type_id, schema_type> types;
  std::string init_failure;
};

struct type_table {
  std::unordered_map<type_id, schema_type> types;
};

namespace detail {

// The plugin whose init() runs on this thread, for calls without a context.
extern thread_local loaded_plugin* initialising;

// The functions plugins call (host_table.cpp).
extern const troupe_host_api host_api;

inline troupe_pid* to_abi(process* p) noexcept { return reinterpret_cast<troupe_pid*>(p); }
inline process* from_abi(const troupe_pid* p) noexcept {
  return reinterpret_cast<process*>(const_cast<troupe_pid*>(p));
}

// Makes an envelope of the plugin's bytes; builder output is trusted.
inline envelope* make(std::uint64_t type, const std::uint8_t* data, std::size_t size, std::uint32_t flags) {
  envelope* e = make_envelope(type, data, size);
  if ((flags & TROUPE_SEND_BUILT) != 0) e->flags = envelope::trusted;
  return e;
}

// The actor of a plugin kind: makes the plugin's instance on its first
// message, passes it every message (checked against the kind's schema
// unless the node built it), and keeps the timers it set.
class plugin_actor final : public actor {
 public:
  plugin_actor(std::shared_ptr<host> h, std::shared_ptr<const kind_record> k) noexcept
      : h_(std::move(h)), k_(std::move(k)) {}
  ~plugin_actor() override;

  void receive(context& ctx) override;

  // Behaviours, stash and unhandled messages (ABI 1.6).
  using receive_fn = int (*)(void*, troupe_ctx*, const troupe_message*);
  int become(troupe_ctx* frame, receive_fn fn, bool stacked);
  int unbecome(troupe_ctx* frame);
  int unhandled(troupe_ctx* frame);

  std::uint64_t add_timer(timer_handle h) {
    if (timers_.size() >= 2 * timers_kept_ + 8) {
      std::erase_if(timers_, [](const auto& kv) { return !kv.second.pending(); });
      timers_kept_ = timers_.size();
    }
    const std::uint64_t id = next_timer_++;
    timers_.emplace(id, std::move(h));
    return id;
  }
  // Cluster events to this actor, until it stops or restarts (or unsubscribes).
  void subscribe_cluster(context& ctx) {
    if (cluster_sub_ != 0) return;
    events_ = &ctx.system().events();
    cluster_sub_ = events_->subscribe(ctx.self(), [](const event& e) {
      const auto* m = std::get_if<message>(&e);
      return m != nullptr && *m && is_cluster_event(m->get()->type);
    });
  }
  void unsubscribe_cluster() {
    if (cluster_sub_ != 0) events_->unsubscribe(std::exchange(cluster_sub_, 0));
  }
  // EventStream subscriptions of this actor (ABI 1.10), until it stops or
  // restarts: the events whose type is in `types` (sorted; empty: all).
  // 0 when it has as many as it may.
  std::uint64_t subscribe_events(context& ctx, std::vector<type_id> types);
  bool unsubscribe_events(std::uint64_t id);
  // Runs a continuation of the plugin's (a grain request's on_reply, a
  // subscription's on_done, ...) in this actor's turn, in a frame of its
  // own: `fn(frame)`. A failure there fails the actor, as one in receive
  // would; `what` names the callback in the log.
  template <class F>
  void run_callback(context& ctx, const char* what, F&& fn) {
    troupe_ctx frame{&ctx, k_.get(), k_->plugin, this, {}, false};
    fn(&frame);
    if (frame.failed) failed(frame, what);
  }
  // Persistence (ABI 1.5), for an actor of a persistent kind.
  int persist(troupe_ctx* frame, const troupe_message* events, std::size_t count,
              void (*on_persisted)(void*, troupe_ctx*, int, std::uint64_t, const char*), void* closure,
              void (*drop)(void*));
  int save_snapshot(troupe_ctx* frame, std::uint64_t type, const std::uint8_t* data, std::size_t size);
  int delete_events(troupe_ctx* frame, std::uint64_t to_seq);
  std::uint64_t last_seq() const noexcept { return seq_; }
  // Empty when the actor has none (or its kind is not persistent).
  const std::string& persistence_id() const noexcept { return pid_; }
  // Expires when this instance goes (a stop, a restart): replies due to
  // it are dropped then, not run on its successor.
  std::weak_ptr<void> lifetime() const { return lifetime_; }
  bool cancel_timer(std::uint64_t id) {
    auto it = timers_.find(id);
    if (it == timers_.end()) return false;
    const bool stopped = it->second.cancel();
    timers_.erase(it);
    return stopped;
  }

 private:
  // The current message through `fn` (the kind's receive or a behaviour):
  // verified, then handed to the plugin in a frame of its own.
  void receive_with(context& ctx, receive_fn fn);
  // Started, for a persistent kind: the instance is made, recovers, and
  // only then gets Started.
  void recover(context& ctx, troupe_ctx& frame);
  // A callback into the plugin outside receive (its own frame; a failure
  // there fails the actor, as one in receive would).
  template <class F>
  void call(context& ctx, const char* what, F&& fn) {
    troupe_ctx frame{&ctx, k_.get(), k_->plugin, this, {}, false};
    if (fn(frame) != 0 || frame.failed) failed(frame, what);
  }
  [[noreturn]] void failed(const troupe_ctx& frame, const char* what) {
    k_->h->stats().actor_failures.fetch_add(1, std::memory_order_relaxed);
    throw std::runtime_error(frame.failed ? frame.failure : std::string(what));
  }

  std::shared_ptr<host> h_;  // keeps the host (and so the kind) alive
  std::shared_ptr<const kind_record> k_;
  void* instance_ = nullptr;
  std::unordered_map<std::uint64_t, timer_handle> timers_;
  std::size_t timers_kept_ = 0;
  std::uint64_t next_timer_ = 1;
  event_stream* events_ = nullptr;
  std::uint64_t cluster_sub_ = 0;
  std::vector<std::uint64_t> event_subs_;
  std::shared_ptr<void> lifetime_ = std::make_shared<char>(0);
  std::string pid_;                 // persistence id
  unsigned behaviours_ = 0;         // set by become() on the context, as unbecome() can take them off
  std::uint64_t seq_ = 0;           // the last event's number
  std::uint64_t reserved_ = 0;      // ... with those on their way to the journal
};


// A plugin's closure, its until the callback that gets it has run or never
// will: then dropped (its `drop`, which may be null), once.
struct owned_closure {
  owned_closure(void* c, void (*d)(void*)) noexcept : closure(c), drop(d) {}
  owned_closure(const owned_closure&) = delete;
  owned_closure& operator=(const owned_closure&) = delete;
  ~owned_closure() {
    if (drop != nullptr) drop(closure);
  }
  void* closure;
  void (*drop)(void*);
};

// The plugin_actor behind a callback frame.
inline plugin_actor* actor_of(troupe_ctx* c) {
  return c != nullptr ? static_cast<plugin_actor*>(c->actor) : nullptr;
}

}  // namespace detail

}  // namespace troupe::plugin
