// The host functions of abi.h: what a plugin's code calls, each checking
// what it was given (a null frame, a PID of no process, a closed registrar).
#include <algorithm>
#include <cstdio>
#include <cstring>

#include "actor/pid_table.hpp"
#include "actor/router.hpp"
#include "plugin/plugin_internal.hpp"
#include "pubsub_generated.h"
#include "system_generated.h"

namespace troupe::plugin::detail {

// abi.h spells the node's event types out for C; they are these.
static_assert(TROUPE_TYPE_DEAD_LETTER_EVENT == type_id_of<system::DeadLetterEvent>());
static_assert(TROUPE_TYPE_ACTOR_FAILED_EVENT == type_id_of<system::ActorFailedEvent>());
static_assert(TROUPE_TYPE_SUPERVISION_EVENT == type_id_of<system::SupervisionEvent>());
static_assert(TROUPE_TYPE_TERMINATED == type_id_of<system::Terminated>());
static_assert(TROUPE_TYPE_DEAD_LETTER_RESPONSE == type_id_of<system::DeadLetterResponse>());
static_assert(TROUPE_TYPE_REQUEST_TIMED_OUT == type_id_of<system::RequestTimedOut>());
static_assert(TROUPE_TYPE_RECEIVE_TIMEOUT == type_id_of<system::ReceiveTimeout>());

thread_local loaded_plugin* initialising = nullptr;

namespace {

// Why the last call of this thread that failed did (host->last_error).
thread_local std::string last_error_text;

int refuse(int status, std::string why) {
  last_error_text = std::move(why);
  return status;
}

int register_kind(troupe_registrar* reg, const troupe_kind_def* def) {
  if (reg == nullptr || def == nullptr || def->name == nullptr) return TROUPE_ERR_ARGUMENT;
  loaded_plugin& p = *reg->plugin;
  if (!reg->open) {
    p.h->stats().kinds_refused.fetch_add(1, std::memory_order_relaxed);
    p.h->log(log_level::error, p.file + ": kind '" + def->name +
                                   "' registered outside init: refused");
    return TROUPE_ERR_STATE;
  }
  troupe_kind_def d{};
  std::memcpy(&d, def, std::min<std::size_t>(def->size, sizeof d));
  d.size = sizeof d;
  if (d.create == nullptr || d.receive == nullptr || d.destroy == nullptr || *def->name == '\0')
    return TROUPE_ERR_ARGUMENT;
  for (const auto& [name, k] : p.pending)
    if (name == def->name) return TROUPE_ERR_DUPLICATE;
  if (p.h->find_kind(def->name) != nullptr) return TROUPE_ERR_DUPLICATE;
  p.pending.emplace_back(def->name, d);
  return TROUPE_OK;
}

int register_grain(troupe_registrar* reg, const char* kind, std::uint64_t idle_timeout_ns) {
  if (reg == nullptr || kind == nullptr) return TROUPE_ERR_ARGUMENT;
  loaded_plugin& p = *reg->plugin;
  if (!reg->open) return TROUPE_ERR_STATE;
  for (const auto& [name, k] : p.pending)
    if (name == kind) {
      p.grains[name] = std::chrono::nanoseconds(idle_timeout_ns);
      return TROUPE_OK;
    }
  return TROUPE_ERR_UNKNOWN_KIND;  // a grain kind is one of the plugin's own
}

int register_persistent(troupe_registrar* reg, const char* kind, const troupe_persistent_def* def) {
  if (reg == nullptr || kind == nullptr || def == nullptr) return TROUPE_ERR_ARGUMENT;
  loaded_plugin& p = *reg->plugin;
  if (!reg->open) return TROUPE_ERR_STATE;
  troupe_persistent_def d{};
  std::memcpy(&d, def, std::min<std::size_t>(def->size, sizeof d));
  d.size = sizeof d;
  if (d.recover == nullptr) return TROUPE_ERR_ARGUMENT;
  for (const auto& [name, k] : p.pending)
    if (name == kind) {
      p.persistent[name] = d;
      return TROUPE_OK;
    }
  return TROUPE_ERR_UNKNOWN_KIND;  // a persistent kind is one of the plugin's own
}

int register_schema(troupe_registrar* reg, const troupe_schema* s) {
  if (reg == nullptr || s == nullptr || s->data == nullptr) return TROUPE_ERR_ARGUMENT;
  loaded_plugin& p = *reg->plugin;
  if (!reg->open) return TROUPE_ERR_STATE;
  flatbuffers::Verifier v(s->data, s->size);
  if (!reflection::VerifySchemaBuffer(v)) return TROUPE_ERR_ARGUMENT;
  p.schemas.emplace_back(s->data, s->data + s->size);
  const reflection::Schema* schema = reflection::GetSchema(p.schemas.back().data());
  p.codecs.push_back(std::make_unique<json_codec>(*schema));
  if (schema->objects() != nullptr)
    for (const reflection::Object* o : *schema->objects())
      if (!o->is_struct())
        p.types[hash_type_name(o->name()->string_view())] = {schema, o, p.codecs.back().get(),
                                                             &p.name};
  return TROUPE_OK;
}

std::uint64_t message_type(troupe_ctx* c) { return c->ctx->type(); }

const std::uint8_t* message_data(troupe_ctx* c, std::size_t* size) {
  const envelope& e = c->ctx->envelope();
  if (size != nullptr) *size = e.size;
  return e.data;
}

troupe_pid* self(troupe_ctx* c) { return to_abi(static_cast<process*>(c->ctx)); }
troupe_pid* sender(troupe_ctx* c) { return to_abi(c->ctx->envelope().sender); }
troupe_pid* parent(troupe_ctx* c) { return to_abi(c->ctx->parent().get()); }

int send_to(troupe_ctx* c, troupe_pid* to, std::uint64_t type, const std::uint8_t* data,
            std::size_t size, std::uint32_t flags, bool request) {
  if (c == nullptr || (data == nullptr && size != 0)) return TROUPE_ERR_ARGUMENT;
  c->ctx->send_envelope(from_abi(to), make(type, data, size, flags), request);
  return TROUPE_OK;
}

int send(troupe_ctx* c, troupe_pid* to, std::uint64_t type, const std::uint8_t* data,
         std::size_t size, std::uint32_t flags) {
  return send_to(c, to, type, data, size, flags, false);
}

int request(troupe_ctx* c, troupe_pid* to, std::uint64_t type, const std::uint8_t* data,
            std::size_t size, std::uint32_t flags) {
  return send_to(c, to, type, data, size, flags, true);
}

int respond(troupe_ctx* c, std::uint64_t type, const std::uint8_t* data, std::size_t size,
            std::uint32_t flags) {
  if (c == nullptr || (data == nullptr && size != 0)) return TROUPE_ERR_ARGUMENT;
  c->ctx->respond(message::adopt(make(type, data, size, flags)));
  return TROUPE_OK;
}

int forward(troupe_ctx* c, troupe_pid* to) {
  if (c == nullptr) return TROUPE_ERR_ARGUMENT;
  c->ctx->forward(pid(from_abi(to)));
  return TROUPE_OK;
}

// `base` (the props of `kind`) with a plugin's own over it; the node's
// configuration of the kind's mailbox stays.
props_ptr with_props(troupe_ctx* c, const char* kind, const props_ptr& base, const plugin_props& own) {
  const kind_record* rec = c->plugin != nullptr ? c->plugin->h->find_kind(kind) : nullptr;
  props mine = *base;
  own.apply(mine, rec == nullptr || !rec->mailbox_configured);
  return share(std::move(mine));
}

// A child of the actor, named when `name` is not empty.
spawn_result spawn_child(troupe_ctx* c, const props_ptr& p, const std::string& name) {
  spawn_result r = name.empty() ? spawn_result{c->ctx->spawn(p), spawn_error::none} : c->ctx->spawn_named(p, name);
  if (!r.pid && r.error == spawn_error::none) r.error = spawn_error::refused;
  return r;
}

troupe_pid* spawn_props(troupe_ctx* c, const char* kind, const char* name, const troupe_props* pr, int* status) {
  int ignored;
  if (status == nullptr) status = &ignored;
  last_error_text.clear();
  if (c == nullptr || c->ctx == nullptr || kind == nullptr) {
    *status = refuse(TROUPE_ERR_ARGUMENT, "spawn failed: no kind, or called outside an actor's turn");
    return nullptr;
  }
  if (name != nullptr && *name == '\0') {
    *status = refuse(TROUPE_ERR_ARGUMENT, "spawn of '" + std::string(kind) + "' failed: the name is empty");
    return nullptr;
  }
  const std::string n = name != nullptr ? name : "";
  spawn_result r;
  if (pr == nullptr) {
    r = c->ctx->spawn_kind(kind, n);
  } else {
    plugin_props own;
    std::string why;
    if (!props_of(pr, own, why)) {
      *status = refuse(TROUPE_ERR_ARGUMENT, "spawn of '" + std::string(kind) + "' failed: " + why);
      return nullptr;
    }
    const props_ptr base = c->ctx->system().kinds().find(kind);
    if (!base) {
      *status = refuse(TROUPE_ERR_UNKNOWN_KIND, "spawn of '" + std::string(kind) + "' failed: " +
                                                    spawn_refusal(spawn_error::unknown_kind, kind, n));
      return nullptr;
    }
    r = spawn_child(c, with_props(c, kind, base, own), n);
  }
  if (!r) {
    *status = refuse(abi_status(r.error), "spawn of '" + std::string(kind) + "' failed: " + spawn_refusal(r.error, kind, n));
    return nullptr;
  }
  pid child = std::move(r.pid);
  *status = TROUPE_OK;
  child.get()->retain();  // the plugin's reference
  return to_abi(child.get());
}

troupe_pid* spawn(troupe_ctx* c, const char* kind, const char* name, int* status) {
  return spawn_props(c, kind, name, nullptr, status);
}

int register_kind_props(troupe_registrar* reg, const char* kind, const troupe_props* pr) {
  last_error_text.clear();
  if (reg == nullptr || kind == nullptr || pr == nullptr)
    return refuse(TROUPE_ERR_ARGUMENT, "props refused: no kind, or no props");
  loaded_plugin& p = *reg->plugin;
  if (!reg->open) return refuse(TROUPE_ERR_STATE, "props of kind '" + std::string(kind) + "' refused: from init() only");
  if (std::none_of(p.pending.begin(), p.pending.end(), [&](const auto& k) { return k.first == kind; }))
    return refuse(TROUPE_ERR_UNKNOWN_KIND, "props of kind '" + std::string(kind) +
                                               "' refused: not a kind this plugin registered (register it first)");
  plugin_props own;
  std::string why;
  if (!props_of(pr, own, why)) {
    why = "props of kind '" + std::string(kind) + "' refused: " + why;
    p.h->log(log_level::error, p.file + ": " + why);
    return refuse(TROUPE_ERR_ARGUMENT, why);
  }
  p.kind_props[kind] = std::move(own);
  return TROUPE_OK;
}

const char* last_error() { return last_error_text.c_str(); }

// ---------------------------------------------------------------- routers

constexpr std::size_t max_routees = 10000;

troupe_pid* spawn_router(troupe_ctx* c, const char* name, int how, const char* kind, std::uint32_t size,
                         const troupe_props* pr, troupe_pid* const* routees, std::size_t count, int* status) {
  int ignored;
  if (status == nullptr) status = &ignored;
  last_error_text.clear();
  const std::string what = kind != nullptr ? "router of '" + std::string(kind) + "'" : std::string("router");
  const auto no = [&](int st, const std::string& why) {
    *status = refuse(st, "spawn of a " + what + " failed: " + why);
    return nullptr;
  };
  if (c == nullptr || c->ctx == nullptr) return no(TROUPE_ERR_ARGUMENT, "called outside an actor's turn");
  if (how < TROUPE_ROUTE_ROUND_ROBIN || how > TROUPE_ROUTE_CONSISTENT_HASH)
    return no(TROUPE_ERR_ARGUMENT, "routing " + std::to_string(how) +
                                       " is not one of TROUPE_ROUTE_ROUND_ROBIN, _RANDOM, _BROADCAST, "
                                       "_CONSISTENT_HASH (0 to 3)");
  if (name != nullptr && *name == '\0') return no(TROUPE_ERR_ARGUMENT, "the name is empty");
  const auto r = static_cast<routing>(how);
  props_ptr router;
  if (kind != nullptr) {
    if (size == 0 || size > max_routees)
      return no(TROUPE_ERR_ARGUMENT, "a pool has 1 to " + std::to_string(max_routees) + " routees, not " +
                                         std::to_string(size));
    if (routees != nullptr || count != 0) return no(TROUPE_ERR_ARGUMENT, "a pool (a kind) or a group (routees), not both");
    const props_ptr base = c->ctx->system().kinds().find(kind);
    if (!base) return no(TROUPE_ERR_UNKNOWN_KIND, spawn_refusal(spawn_error::unknown_kind, kind, ""));
    props_ptr routee = base;
    std::shared_ptr<const supervisor_strategy> supervises;
    if (pr != nullptr) {
      // The routees' mailbox and throughput; the router's supervision of them.
      plugin_props own;
      std::string why;
      if (!props_of(pr, own, why)) return no(TROUPE_ERR_ARGUMENT, "its props: " + why);
      supervises = std::exchange(own.supervisor, nullptr);
      routee = with_props(c, kind, base, own);
    }
    router_config cfg;
    cfg.strategy = r;
    cfg.routee = std::move(routee);
    cfg.pool_size = size;
    props rp = router_props(std::move(cfg));
    if (supervises) rp.supervisor = std::move(supervises);
    router = share(std::move(rp));
  } else {
    if (count > max_routees || (routees == nullptr && count != 0))
      return no(TROUPE_ERR_ARGUMENT, "a group has 0 to " + std::to_string(max_routees) + " routees");
    std::vector<pid> group;
    group.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      if (routees[i] == nullptr) return no(TROUPE_ERR_ARGUMENT, "routee " + std::to_string(i) + " is NULL");
      group.emplace_back(from_abi(routees[i]));
    }
    router = routers::group(r, std::move(group));
  }
  const spawn_result res = spawn_child(c, router, name != nullptr ? name : "");
  if (!res) return no(abi_status(res.error), spawn_refusal(res.error, kind != nullptr ? kind : "router", name ? name : ""));
  *status = TROUPE_OK;
  res.pid.get()->retain();  // the plugin's reference
  return to_abi(res.pid.get());
}

int router_manage(troupe_ctx* c, troupe_pid* router, int op, troupe_pid* routee, int change) {
  last_error_text.clear();
  if (c == nullptr || c->ctx == nullptr || router == nullptr) return refuse(TROUPE_ERR_ARGUMENT, "router_manage: no router");
  switch (op) {
    case TROUPE_ROUTER_ADD:
    case TROUPE_ROUTER_REMOVE:
      if (routee == nullptr) return refuse(TROUPE_ERR_ARGUMENT, "router_manage: no routee to add or remove");
      c->ctx->send(pid(from_abi(router)), op == TROUPE_ROUTER_ADD ? routers::add_routee(pid(from_abi(routee)))
                                                                   : routers::remove_routee(pid(from_abi(routee))));
      return TROUPE_OK;
    case TROUPE_ROUTER_RESIZE:
      if (change == 0 || change > static_cast<int>(max_routees) || change < -static_cast<int>(max_routees))
        return refuse(TROUPE_ERR_ARGUMENT, "router_manage: a pool grows or shrinks by 1 to " +
                                               std::to_string(max_routees) + " routees, not " + std::to_string(change));
      c->ctx->send(pid(from_abi(router)), routers::adjust_pool_size(change));
      return TROUPE_OK;
    default:
      return refuse(TROUPE_ERR_ARGUMENT, "router_manage: op " + std::to_string(op) +
                                             " is not one of TROUPE_ROUTER_ADD, _REMOVE, _RESIZE (0 to 2)");
  }
}

int router_broadcast(troupe_ctx* c, troupe_pid* router, std::uint64_t type, const std::uint8_t* data,
                     std::size_t size, std::uint32_t flags) {
  if (c == nullptr || c->ctx == nullptr || router == nullptr || (data == nullptr && size != 0))
    return TROUPE_ERR_ARGUMENT;
  c->ctx->send(pid(from_abi(router)), routers::broadcast(message::adopt(make(type, data, size, flags))));
  return TROUPE_OK;
}

int router_routees(troupe_ctx* c, troupe_pid* router, std::uint64_t timeout_ns,
                   void (*on_done)(void* closure, troupe_ctx* ctx, troupe_pid* const* routees, std::size_t count,
                                   int status),
                   void* closure, void (*drop)(void* closure)) {
  auto held = std::make_shared<owned_closure>(closure, drop);
  plugin_actor* a = actor_of(c);
  if (a == nullptr || c->ctx == nullptr || router == nullptr || on_done == nullptr || timeout_ns == 0)
    return TROUPE_ERR_ARGUMENT;
  future f = c->ctx->request_future(pid(from_abi(router)), routers::get_routees(), std::chrono::nanoseconds(timeout_ns));
  c->ctx->reenter_after(f, [held = std::move(held), on_done, a, alive = a->lifetime()](context& ctx,
                                                                                       const future_result& r) {
    if (alive.expired()) return;
    const bool ok = r.status == future_status::completed && r.reply;
    const std::vector<pid> pids = ok ? routers::routees_in(ctx.system(), r.reply) : std::vector<pid>{};
    std::vector<troupe_pid*> raw;
    raw.reserve(pids.size());
    for (const pid& p : pids) raw.push_back(to_abi(p.get()));
    a->run_callback(ctx, "on_done failed", [&](troupe_ctx* frame) {
      on_done(held->closure, frame, raw.data(), raw.size(), ok ? TROUPE_OK : TROUPE_ERR_UNAVAILABLE);
    });
  });
  return TROUPE_OK;
}

int send_keyed(troupe_ctx* c, troupe_pid* to, const char* key, std::size_t key_len, std::uint64_t type,
               const std::uint8_t* data, std::size_t size, std::uint32_t flags) {
  if (c == nullptr || c->ctx == nullptr || key == nullptr || (data == nullptr && size != 0)) return TROUPE_ERR_ARGUMENT;
  envelope* e = make(type, data, size, flags);
  set_header(e, hash_key_header, std::string_view(key, key_len));
  c->ctx->send_envelope(from_abi(to), e, false);
  return TROUPE_OK;
}

void stop(troupe_ctx* c, troupe_pid* who) {
  if (c != nullptr && who != nullptr) c->ctx->stop(pid(from_abi(who)));
}
void poison(troupe_ctx* c, troupe_pid* who) {
  if (c != nullptr && who != nullptr) c->ctx->poison(pid(from_abi(who)));
}
void watch(troupe_ctx* c, troupe_pid* who) {
  if (c != nullptr && who != nullptr) c->ctx->watch(pid(from_abi(who)));
}
void unwatch(troupe_ctx* c, troupe_pid* who) {
  if (c != nullptr && who != nullptr) c->ctx->unwatch(pid(from_abi(who)));
}

std::uint64_t send_after(troupe_ctx* c, std::uint64_t delay_ns, troupe_pid* to, std::uint64_t type,
                         const std::uint8_t* data, std::size_t size, std::uint32_t flags) {
  plugin_actor* a = actor_of(c);
  if (a == nullptr || (data == nullptr && size != 0)) return 0;
  message m = message::adopt(make(type, data, size, flags));
  return a->add_timer(c->ctx->scheduler().send_once(std::chrono::nanoseconds(delay_ns),
                                                    pid(from_abi(to)), std::move(m)));
}

std::uint64_t send_every(troupe_ctx* c, std::uint64_t initial_ns, std::uint64_t interval_ns,
                         troupe_pid* to, std::uint64_t type, const std::uint8_t* data,
                         std::size_t size, std::uint32_t flags) {
  plugin_actor* a = actor_of(c);
  if (a == nullptr || (data == nullptr && size != 0)) return 0;
  message m = message::adopt(make(type, data, size, flags));
  return a->add_timer(c->ctx->scheduler().send_repeatedly(std::chrono::nanoseconds(initial_ns),
                                                          std::chrono::nanoseconds(interval_ns),
                                                          pid(from_abi(to)), std::move(m)));
}

int cancel_timer(troupe_ctx* c, std::uint64_t timer) {
  plugin_actor* a = actor_of(c);
  if (a == nullptr) return TROUPE_ERR_STATE;
  return a->cancel_timer(timer) ? TROUPE_OK : TROUPE_ERR_NOT_FOUND;
}

void pid_retain(troupe_pid* p) {
  if (p != nullptr) from_abi(p)->retain();
}
void pid_release(troupe_pid* p) {
  if (p != nullptr) from_abi(p)->release();
}
int pid_equal(const troupe_pid* a, const troupe_pid* b) { return a == b ? 1 : 0; }

std::size_t pid_format(const troupe_pid* p, char* buf, std::size_t cap) {
  std::string s = p != nullptr ? pid(from_abi(p)).to_string() : std::string();
  if (buf != nullptr && cap != 0) {
    const std::size_t n = std::min(cap - 1, s.size());
    std::memcpy(buf, s.data(), n);
    buf[n] = '\0';
  }
  return s.size();
}

void log(troupe_ctx* c, int level, const char* text) {
  loaded_plugin* p = c != nullptr ? c->plugin : initialising;
  if (p == nullptr || text == nullptr) return;
  std::string line = p->name;
  if (c != nullptr && c->ctx != nullptr) {
    line += ' ';
    line += c->ctx->self().to_string();
  }
  line += ": ";
  line += text;
  // The ABI's levels (TROUPE_LOG_DEBUG..ERROR), as the node's.
  static constexpr log_level from_abi[] = {log_level::debug, log_level::info, log_level::warning,
                                           log_level::error};
  p->h->log(from_abi[std::clamp(level, 0, 3)], line);
}

void fail(troupe_ctx* c, const char* reason) {
  const char* r = reason != nullptr ? reason : "failed";
  if (c != nullptr) {
    c->failure = r;
    c->failed = true;
  } else if (initialising != nullptr) {
    initialising->init_failure = r;
  }
}

int set_receive_timeout(troupe_ctx* c, std::uint64_t ns) {
  if (c == nullptr || c->ctx == nullptr) return TROUPE_ERR_ARGUMENT;
  if (ns == 0) c->ctx->cancel_receive_timeout();
  else c->ctx->set_receive_timeout(std::chrono::nanoseconds(ns));
  return TROUPE_OK;
}

troupe_pid* pid_parse(troupe_ctx* c, const char* text, std::size_t len) {
  if (c == nullptr || c->ctx == nullptr || (text == nullptr && len != 0)) return nullptr;
  pid p = c->ctx->system().resolve(std::string_view(text, len));
  if (!p) return nullptr;
  p.get()->retain();  // the plugin's reference
  return to_abi(p.get());
}

troupe_pid* lookup(troupe_ctx* c, const char* name, std::size_t len) {
  if (c == nullptr || c->ctx == nullptr || name == nullptr || len == 0 || name[0] == '$') return nullptr;
  process_ref p = c->ctx->system().registry().lookup(std::string_view(name, len));
  if (!p) return nullptr;
  p.get()->retain();  // the plugin's reference
  return to_abi(p.get());
}

int spawn_remote(troupe_ctx* c, const char* address, const char* kind, const char* name, std::uint64_t timeout_ns,
                 void (*on_done)(void* closure, troupe_ctx* ctx, troupe_pid* who, int status, const char* error),
                 void* closure, void (*drop)(void* closure)) {
  auto held = std::make_shared<owned_closure>(closure, drop);
  plugin_actor* a = actor_of(c);
  if (a == nullptr || c->ctx == nullptr || address == nullptr || kind == nullptr || on_done == nullptr ||
      timeout_ns == 0 || (name != nullptr && *name == '\0'))
    return TROUPE_ERR_ARGUMENT;
  actor_system& sys = c->ctx->system();
  // The outcome, written on the thread that learns it, then read in the
  // actor's turn once the future says it is there.
  struct outcome {
    spawn_result result;
    std::string why;
  };
  auto out = std::make_shared<outcome>();
  process_ref done_ref = process_ref::adopt(new future_process(sys));
  auto finish = [out, done_ref](spawn_result r, const std::string& why) {
    out->result = std::move(r);
    out->why = why;
    static_cast<future_process*>(done_ref.get())->complete(future_status::completed, nullptr);
  };
  const std::string n = name != nullptr ? name : "";
  const future f(done_ref);
  if (sys.address() == address) {
    spawn_result r = sys.root().spawn_kind(kind, n);
    const std::string why = r ? std::string() : spawn_refusal(r.error, kind, n);
    finish(std::move(r), why);
  } else if (remote_resolver* remote = sys.remote()) {
    remote->spawn_remote(address, kind, n,
                         std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::nanoseconds(timeout_ns)),
                         std::move(finish));
  } else {
    finish({}, "this node has no node-to-node transport (node.listen)");
  }
  c->ctx->reenter_after(f, [held = std::move(held), on_done, a, alive = a->lifetime(), out](context& ctx,
                                                                                            const future_result&) {
    if (alive.expired()) return;  // another instance runs now
    const spawn_result& r = out->result;
    const int status = r ? TROUPE_OK : r.error == spawn_error::none ? TROUPE_ERR_STATE : abi_status(r.error);
    const std::string why = status == TROUPE_OK || !out->why.empty() ? out->why : "the spawn was refused";
    a->run_callback(ctx, "on_done failed", [&](troupe_ctx* frame) {
      on_done(held->closure, frame, r ? to_abi(r.pid.get()) : nullptr, status, why.c_str());
    });
  });
  return TROUPE_OK;
}

int subscribe_cluster(troupe_ctx* c) {
  plugin_actor* a = actor_of(c);
  if (a == nullptr || c->ctx == nullptr) return TROUPE_ERR_ARGUMENT;
  a->subscribe_cluster(*c->ctx);
  return TROUPE_OK;
}

int unsubscribe_cluster(troupe_ctx* c) {
  plugin_actor* a = actor_of(c);
  if (a == nullptr) return TROUPE_ERR_ARGUMENT;
  a->unsubscribe_cluster();
  return TROUPE_OK;
}

// ---------------------------------------------------------------- EventStream (ABI 1.10)

std::string hex_type(type_id t) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(t));
  return buf;
}

// The node's own events, which only it publishes: their names, or null.
const char* node_event(type_id t) {
  static constexpr const char* names[] = {
      "troupe.system.DeadLetterEvent", "troupe.system.ActorFailedEvent", "troupe.system.SupervisionEvent",
      "troupe.cluster.MemberJoined",   "troupe.cluster.MemberSuspect",   "troupe.cluster.MemberAlive",
      "troupe.cluster.MemberDead",     "troupe.cluster.MemberLeft",      "troupe.cluster.TopologyChanged"};
  for (const char* n : names)
    if (hash_type_name(n) == t) return n;
  return nullptr;
}

std::uint64_t event_subscribe(troupe_ctx* c, const std::uint64_t* types, std::size_t count) {
  last_error_text.clear();
  plugin_actor* a = actor_of(c);
  if (a == nullptr || c->ctx == nullptr) return refuse(0, "event_subscribe: only an actor can subscribe, in its turn");
  if (types == nullptr && count != 0) return refuse(0, "event_subscribe: no types, and a count of " + std::to_string(count));
  if (count > TROUPE_EVENT_FILTER_MAX)
    return refuse(0, "event_subscribe: a filter has at most " + std::to_string(TROUPE_EVENT_FILTER_MAX) +
                         " types, this one has " + std::to_string(count));
  std::vector<type_id> filter(types, types + count);
  for (type_id t : filter)
    if (!node_event(t) && !c->kind->h->declares(t))
      return refuse(0, "event_subscribe: type " + hex_type(t) +
                           " is not an event type: neither the node's nor one a loaded plugin's schema declares");
  std::sort(filter.begin(), filter.end());
  const std::uint64_t id = a->subscribe_events(*c->ctx, std::move(filter));
  if (id == 0)
    return refuse(0, "event_subscribe: this actor has " + std::to_string(TROUPE_EVENT_SUBSCRIPTIONS_MAX) +
                         " subscriptions already, the most it may have");
  return id;
}

int event_unsubscribe(troupe_ctx* c, std::uint64_t id) {
  last_error_text.clear();
  plugin_actor* a = actor_of(c);
  if (a == nullptr) return refuse(TROUPE_ERR_ARGUMENT, "event_unsubscribe: only an actor can unsubscribe, in its turn");
  if (!a->unsubscribe_events(id))
    return refuse(TROUPE_ERR_NOT_FOUND, "event_unsubscribe: this actor has no subscription " + std::to_string(id));
  return TROUPE_OK;
}

int event_publish(troupe_ctx* c, std::uint64_t type, const std::uint8_t* data, std::size_t size, std::uint32_t flags) {
  last_error_text.clear();
  if (c == nullptr || c->ctx == nullptr || c->kind == nullptr)
    return refuse(TROUPE_ERR_ARGUMENT, "event_publish: only an actor can publish, in its turn");
  if (data == nullptr && size != 0) return refuse(TROUPE_ERR_ARGUMENT, "event_publish: no bytes, and a size");
  std::string name = c->kind->h->type_name(type);
  if (const char* n = node_event(type)) name = n;
  if (name.starts_with("troupe."))
    return refuse(TROUPE_ERR_ARGUMENT, "event_publish: " + name + " is the node's; only the node publishes it");
  if (name.empty())
    return refuse(TROUPE_ERR_ARGUMENT,
                  "event_publish: type " + hex_type(type) + " is declared by no loaded plugin's schema");
  c->ctx->system().events().publish(message::adopt(make(type, data, size, flags)));
  return TROUPE_OK;
}

// The Pid table `p` as an owned reference, or null.
troupe_pid* pid_of(context& ctx, const system::Pid* p) {
  if (p == nullptr || p->address() == nullptr || p->id() == nullptr) return nullptr;
  const std::string text = p->address()->str() + "/" + p->id()->str();
  pid r = ctx.system().resolve(text, p->generation());
  if (!r) return nullptr;
  r.get()->retain();  // the plugin's reference
  return to_abi(r.get());
}

int read_event(troupe_ctx* c, troupe_event* out) {
  last_error_text.clear();
  if (c == nullptr || c->ctx == nullptr || out == nullptr || out->size < sizeof(troupe_event))
    return refuse(TROUPE_ERR_ARGUMENT, "read_event: no context or no event to fill, or an event of an older size");
  const envelope& e = c->ctx->envelope();
  flatbuffers::Verifier v(e.data, e.size);
  troupe_event r{};
  r.size = sizeof r;
  r.type = e.type;
  r.text = "";
  auto text = [&](const flatbuffers::String* s) {
    if (s != nullptr) {
      r.text = s->c_str();
      r.text_len = s->size();
    }
  };
  context& ctx = *c->ctx;
  if (e.type == type_id_of<system::DeadLetterEvent>()) {
    if (!v.VerifyBuffer<system::DeadLetterEvent>()) return refuse(TROUPE_ERR_ARGUMENT, "read_event: a DeadLetterEvent that does not verify");
    const auto* m = flatbuffers::GetRoot<system::DeadLetterEvent>(e.data);
    r.who = pid_of(ctx, m->target());
    r.sender = pid_of(ctx, m->sender());
    r.message_type = m->message_type();
    r.reason = static_cast<int>(m->reason());
  } else if (e.type == type_id_of<system::ActorFailedEvent>()) {
    if (!v.VerifyBuffer<system::ActorFailedEvent>()) return refuse(TROUPE_ERR_ARGUMENT, "read_event: a ActorFailedEvent that does not verify");
    const auto* m = flatbuffers::GetRoot<system::ActorFailedEvent>(e.data);
    r.who = pid_of(ctx, m->who());
    text(m->reason());
  } else if (e.type == type_id_of<system::SupervisionEvent>()) {
    if (!v.VerifyBuffer<system::SupervisionEvent>()) return refuse(TROUPE_ERR_ARGUMENT, "read_event: a SupervisionEvent that does not verify");
    const auto* m = flatbuffers::GetRoot<system::SupervisionEvent>(e.data);
    r.who = pid_of(ctx, m->child());
    r.reason = static_cast<int>(m->directive());
    text(m->reason());
  } else if (e.type == type_id_of<system::Terminated>()) {
    if (!v.VerifyBuffer<system::Terminated>()) return refuse(TROUPE_ERR_ARGUMENT, "read_event: a Terminated that does not verify");
    const auto* m = flatbuffers::GetRoot<system::Terminated>(e.data);
    // The node's Terminated comes from the actor that is gone (its name
    // may be free, or another actor's, by now).
    if (e.sender != nullptr) {
      e.sender->retain();
      r.who = to_abi(e.sender);
    } else {
      r.who = pid_of(ctx, m->who());
    }
    r.reason = static_cast<int>(m->reason());
  } else if (e.type == type_id_of<system::DeadLetterResponse>()) {
    if (!v.VerifyBuffer<system::DeadLetterResponse>()) return refuse(TROUPE_ERR_ARGUMENT, "read_event: a DeadLetterResponse that does not verify");
    const auto* m = flatbuffers::GetRoot<system::DeadLetterResponse>(e.data);
    r.who = pid_of(ctx, m->target());
    r.reason = static_cast<int>(m->reason());
  } else if (e.type == type_id_of<system::RequestTimedOut>()) {
    if (!v.VerifyBuffer<system::RequestTimedOut>()) return refuse(TROUPE_ERR_ARGUMENT, "read_event: a RequestTimedOut that does not verify");
    const auto* m = flatbuffers::GetRoot<system::RequestTimedOut>(e.data);
    r.who = pid_of(ctx, m->to());
    r.message_type = m->message_type();
  } else {
    return refuse(TROUPE_ERR_NOT_FOUND, "read_event: the current message is no node event or system message");
  }
  *out = r;
  return TROUPE_OK;
}

// ---------------------------------------------------------------- pipe_to (ABI 1.10)

int pipe_to(troupe_ctx* c, troupe_pid* to, std::uint64_t type, const std::uint8_t* data, std::size_t size,
            std::uint32_t flags, std::uint64_t timeout_ns, troupe_pid* target) {
  last_error_text.clear();
  if (c == nullptr || c->ctx == nullptr || (data == nullptr && size != 0))
    return refuse(TROUPE_ERR_ARGUMENT, "pipe_to: only an actor can pipe, in its turn");
  if (target == nullptr) return refuse(TROUPE_ERR_ARGUMENT, "pipe_to: no target to deliver the outcome to");
  if (timeout_ns == 0) return refuse(TROUPE_ERR_ARGUMENT, "pipe_to: a timeout of 0");
  const pid asked(from_abi(to));
  future f = c->ctx->request_future(asked, message::adopt(make(type, data, size, flags)),
                                    std::chrono::nanoseconds(timeout_ns));
  // The outcome goes from whichever thread completes the future: the reply
  // (a dead letter response or a failure's reply included) as it is, or a
  // RequestTimedOut; this actor is its sender.
  f.get()->on_complete([to_pid = pid(from_abi(target)), self = c->ctx->self(), asked, type](future_result r) {
    message m = std::move(r.reply);
    if (!m) {
      m = make_message<system::RequestTimedOut>([&](flatbuffers::FlatBufferBuilder& b) {
        return system::CreateRequestTimedOut(b, encode_pid(b, asked.get()), type);
      });
    }
    envelope* e = share_envelope(m.get());
    if (process* s = self.get()) {
      s->retain();
      e->sender = s;
    }
    to_pid.get()->send_user(e);
  });
  return TROUPE_OK;
}

std::size_t cluster_members(troupe_ctx* c, std::uint8_t* buf, std::size_t cap) {
  if (c == nullptr || c->ctx == nullptr || (buf == nullptr && cap != 0)) return 0;
  cluster_view* v = c->ctx->system().cluster();
  if (v == nullptr) return 0;
  const auto members = v->members();
  if (!members) return 0;
  if (members->size() <= cap) std::memcpy(buf, members->data(), members->size());
  return members->size();
}

const char* identity(troupe_ctx* c, std::size_t* len) {
  if (c == nullptr || c->ctx == nullptr) return nullptr;
  const std::string* id = c->ctx->identity();
  if (id == nullptr) return nullptr;
  if (len != nullptr) *len = id->size();
  return id->c_str();
}

// How a request's future ended, as the ABI says it.
int reply_status(future_status s) {
  switch (s) {
    case future_status::completed:
    case future_status::pending: return TROUPE_REPLY_OK;
    case future_status::timed_out: return TROUPE_REPLY_TIMEOUT;
    case future_status::dead_letter: return TROUPE_REPLY_DEAD_LETTER;
    case future_status::failed: return TROUPE_REPLY_FAILED;
  }
  return TROUPE_REPLY_FAILED;
}

int grain_send(troupe_ctx* c, const char* kind, const char* identity, std::size_t identity_len, std::uint64_t type,
               const std::uint8_t* data, std::size_t size, std::uint32_t flags) {
  if (c == nullptr || c->ctx == nullptr || kind == nullptr || (identity == nullptr && identity_len != 0) ||
      (data == nullptr && size != 0))
    return TROUPE_ERR_ARGUMENT;
  cluster_view* v = c->ctx->system().cluster();
  if (v == nullptr) return TROUPE_ERR_UNAVAILABLE;
  v->send_grain(kind, std::string_view(identity, identity_len), message::adopt(make(type, data, size, flags)));
  return TROUPE_OK;
}

// Runs `on_reply` in the actor's own turn once `f` completes: not at all
// when another instance of the actor runs by then (a restart), and the
// closure is dropped when `held` goes.
void reply_in_turn(troupe_ctx* c, plugin_actor* a, const future& f,
                   void (*on_reply)(void* closure, troupe_ctx* ctx, const troupe_message* reply, int status),
                   std::shared_ptr<owned_closure> held) {
  c->ctx->reenter_after(f, [held = std::move(held), on_reply, a, alive = a->lifetime()](context& ctx,
                                                                                        const future_result& r) {
    if (alive.expired()) return;  // another instance runs now
    troupe_message reply{0, nullptr, 0};
    if (r.reply) reply = {r.reply->type, r.reply->data, r.reply->size};
    a->run_callback(ctx, "on_reply failed", [&](troupe_ctx* frame) {
      on_reply(held->closure, frame, &reply, reply_status(r.status));
    });
  });
}

int grain_request(troupe_ctx* c, const char* kind, const char* identity, std::size_t identity_len,
                  std::uint64_t type, const std::uint8_t* data, std::size_t size, std::uint32_t flags,
                  std::uint64_t timeout_ns,
                  void (*on_reply)(void* closure, troupe_ctx* ctx, const troupe_message* reply, int status),
                  void* closure, void (*drop)(void* closure)) {
  auto held = std::make_shared<owned_closure>(closure, drop);  // dropped on a refusal too
  plugin_actor* a = actor_of(c);
  if (a == nullptr || c->ctx == nullptr || kind == nullptr || on_reply == nullptr ||
      (identity == nullptr && identity_len != 0) || (data == nullptr && size != 0) || timeout_ns == 0)
    return TROUPE_ERR_ARGUMENT;
  cluster_view* v = c->ctx->system().cluster();
  if (v == nullptr) return TROUPE_ERR_UNAVAILABLE;  // `held` drops the closure
  future f = v->call_grain(kind, std::string_view(identity, identity_len), message::adopt(make(type, data, size, flags)),
                           std::chrono::nanoseconds(timeout_ns));
  reply_in_turn(c, a, f, on_reply, std::move(held));
  return TROUPE_OK;
}

int request_then(troupe_ctx* c, troupe_pid* to, std::uint64_t type, const std::uint8_t* data, std::size_t size,
                 std::uint32_t flags, std::uint64_t timeout_ns,
                 void (*on_reply)(void* closure, troupe_ctx* ctx, const troupe_message* reply, int status),
                 void* closure, void (*drop)(void* closure)) {
  auto held = std::make_shared<owned_closure>(closure, drop);
  plugin_actor* a = actor_of(c);
  if (a == nullptr || c->ctx == nullptr || on_reply == nullptr || (data == nullptr && size != 0) || timeout_ns == 0)
    return TROUPE_ERR_ARGUMENT;
  future f = c->ctx->request_future(pid(from_abi(to)), message::adopt(make(type, data, size, flags)),
                                    std::chrono::nanoseconds(timeout_ns));
  reply_in_turn(c, a, f, on_reply, std::move(held));
  return TROUPE_OK;
}

int send_as(troupe_ctx* c, troupe_pid* to, troupe_pid* sender, std::uint64_t type, const std::uint8_t* data,
            std::size_t size, std::uint32_t flags) {
  if (c == nullptr || c->ctx == nullptr || (data == nullptr && size != 0)) return TROUPE_ERR_ARGUMENT;
  envelope* e = make(type, data, size, flags);
  if (process* s = from_abi(sender)) {
    s->retain();
    e->sender = s;
  }
  c->ctx->send_envelope(from_abi(to), e, false);
  return TROUPE_OK;
}

// Subscribe or unsubscribe: `who`, or this actor (its grain when it is one).
int subscription(troupe_ctx* c, const char* topic, std::size_t topic_len, troupe_pid* who_abi, bool on,
                 void (*on_done)(void*, troupe_ctx*, int, std::uint64_t), void* closure, void (*drop)(void*)) {
  auto held = std::make_shared<owned_closure>(closure, drop);
  plugin_actor* a = actor_of(c);
  if (a == nullptr || c->ctx == nullptr || topic == nullptr || topic_len == 0) return TROUPE_ERR_ARGUMENT;
  cluster_view* v = c->ctx->system().cluster();
  if (v == nullptr) return TROUPE_ERR_UNAVAILABLE;
  topic_subscriber who;
  if (who_abi != nullptr) {
    who.actor = pid(from_abi(who_abi));
  } else if (const std::string* id = c->ctx->identity()) {
    who.kind = c->ctx->props().kind;
    who.identity = *id;
  } else {
    who.actor = c->ctx->self();
  }
  const std::string_view t(topic, topic_len);
  constexpr auto timeout = std::chrono::seconds(10);
  future f = on ? v->subscribe(t, who, timeout) : v->unsubscribe(t, who, timeout);
  if (on_done == nullptr) return TROUPE_OK;
  c->ctx->reenter_after(f, [held, on_done, a, alive = a->lifetime()](context& ctx, const future_result& r) {
    if (alive.expired()) return;
    const auto* acked = r.reply.as<troupe::pubsub::Acked>();
    if (acked != nullptr && acked->refused() != nullptr) acked = nullptr;  // refused: it says why in the node's reply
    const int status = acked != nullptr ? TROUPE_REPLY_OK : r.ok() ? TROUPE_REPLY_FAILED : reply_status(r.status);
    a->run_callback(ctx, "on_done failed", [&](troupe_ctx* frame) {
      on_done(held->closure, frame, status, acked != nullptr ? acked->subscribers() : 0);
    });
  });
  return TROUPE_OK;
}

int subscribe(troupe_ctx* c, const char* topic, std::size_t topic_len, troupe_pid* who,
              void (*on_done)(void*, troupe_ctx*, int, std::uint64_t), void* closure, void (*drop)(void*)) {
  return subscription(c, topic, topic_len, who, true, on_done, closure, drop);
}

int unsubscribe(troupe_ctx* c, const char* topic, std::size_t topic_len, troupe_pid* who,
                void (*on_done)(void*, troupe_ctx*, int, std::uint64_t), void* closure, void (*drop)(void*)) {
  return subscription(c, topic, topic_len, who, false, on_done, closure, drop);
}

int publish(troupe_ctx* c, const char* topic, std::size_t topic_len, std::uint64_t type, const std::uint8_t* data,
            std::size_t size, std::uint32_t flags) {
  if (c == nullptr || c->ctx == nullptr || topic == nullptr || topic_len == 0 || (data == nullptr && size != 0))
    return TROUPE_ERR_ARGUMENT;
  cluster_view* v = c->ctx->system().cluster();
  if (v == nullptr) return TROUPE_ERR_UNAVAILABLE;
  return v->publish(std::string_view(topic, topic_len), message::adopt(make(type, data, size, flags))) ? TROUPE_OK
                                                                                                        : TROUPE_ERR_BUSY;
}

int publish_reported(troupe_ctx* c, const char* topic, std::size_t topic_len, std::uint64_t type,
                     const std::uint8_t* data, std::size_t size, std::uint32_t flags, std::uint64_t timeout_ns,
                     void (*on_report)(void*, troupe_ctx*, int, const troupe_publish_report*), void* closure,
                     void (*drop)(void*)) {
  auto held = std::make_shared<owned_closure>(closure, drop);
  plugin_actor* a = actor_of(c);
  if (a == nullptr || c->ctx == nullptr || topic == nullptr || topic_len == 0 || on_report == nullptr ||
      (data == nullptr && size != 0) || timeout_ns == 0)
    return TROUPE_ERR_ARGUMENT;
  cluster_view* v = c->ctx->system().cluster();
  if (v == nullptr) return TROUPE_ERR_UNAVAILABLE;
  future f = v->publish_reported(std::string_view(topic, topic_len), message::adopt(make(type, data, size, flags)),
                                 std::chrono::nanoseconds(timeout_ns));
  c->ctx->reenter_after(f, [held, on_report, a, alive = a->lifetime()](context& ctx, const future_result& r) {
    if (alive.expired()) return;
    const auto* rep = r.reply.as<troupe::pubsub::Report>();
    if (rep == nullptr || rep->stale()) {  // stale: dropped behind a later batch
      const int status = r.ok() ? TROUPE_REPLY_FAILED : reply_status(r.status);
      return a->run_callback(ctx, "on_report failed",
                             [&](troupe_ctx* frame) { on_report(held->closure, frame, status, nullptr); });
    }
    std::vector<std::string> names;
    std::vector<troupe_delivery_failure> failures;
    if (rep->failures() != nullptr) {
      names.reserve(rep->failures()->size());
      for (const troupe::pubsub::Failure* f : *rep->failures()) {
        const auto* s = f->subscriber();
        auto text = [](const flatbuffers::String* x) { return x ? x->str() : std::string(); };
        if (s == nullptr) names.emplace_back();
        else if (s->kind() != nullptr && s->kind()->size() != 0) names.push_back(text(s->kind()) + "/" + text(s->identity()));
        else names.push_back(text(s->address()) + "/" + text(s->id()));
        failures.push_back({nullptr, 0, static_cast<int>(f->reason())});
      }
      for (std::size_t i = 0; i < failures.size(); ++i) {
        failures[i].subscriber = names[i].c_str();
        failures[i].subscriber_len = names[i].size();
      }
    }
    const troupe_publish_report report{rep->delivered(), failures.size(), failures.data()};
    a->run_callback(ctx, "on_report failed",
                    [&](troupe_ctx* frame) { on_report(held->closure, frame, TROUPE_REPLY_OK, &report); });
  });
  return TROUPE_OK;
}

int passivate(troupe_ctx* c) {
  if (c == nullptr || c->ctx == nullptr) return TROUPE_ERR_ARGUMENT;
  if (c->ctx->identity() == nullptr) return TROUPE_ERR_STATE;
  c->ctx->poison(c->ctx->self());
  return TROUPE_OK;
}

int persist(troupe_ctx* c, const troupe_message* events, std::size_t count,
            void (*on_persisted)(void* closure, troupe_ctx* ctx, int status, std::uint64_t last_seq, const char* detail),
            void* closure, void (*drop)(void* closure)) {
  plugin_actor* a = actor_of(c);
  if (a == nullptr || c->ctx == nullptr || events == nullptr || count == 0 || on_persisted == nullptr) {
    if (drop != nullptr) drop(closure);
    return TROUPE_ERR_ARGUMENT;
  }
  return a->persist(c, events, count, on_persisted, closure, drop);
}

int save_snapshot(troupe_ctx* c, std::uint64_t type, const std::uint8_t* data, std::size_t size) {
  plugin_actor* a = actor_of(c);
  if (a == nullptr || c->ctx == nullptr || (data == nullptr && size != 0)) return TROUPE_ERR_ARGUMENT;
  return a->save_snapshot(c, type, data, size);
}

int delete_events(troupe_ctx* c, std::uint64_t to_seq) {
  plugin_actor* a = actor_of(c);
  if (a == nullptr || c->ctx == nullptr) return TROUPE_ERR_ARGUMENT;
  return a->delete_events(c, to_seq);
}

std::uint64_t last_seq(troupe_ctx* c) {
  plugin_actor* a = actor_of(c);
  return a != nullptr ? a->last_seq() : 0;
}

int become(troupe_ctx* c, int (*receive)(void*, troupe_ctx*, const troupe_message*), int stacked) {
  plugin_actor* a = actor_of(c);
  if (a == nullptr || c->ctx == nullptr || receive == nullptr) return TROUPE_ERR_ARGUMENT;
  return a->become(c, receive, stacked != 0);
}

int unbecome(troupe_ctx* c) {
  plugin_actor* a = actor_of(c);
  if (a == nullptr || c->ctx == nullptr) return TROUPE_ERR_ARGUMENT;
  return a->unbecome(c);
}

int stash(troupe_ctx* c) {
  if (actor_of(c) == nullptr || c->ctx == nullptr) return TROUPE_ERR_ARGUMENT;
  c->ctx->stash();
  return TROUPE_OK;
}

int unstash_all(troupe_ctx* c) {
  if (actor_of(c) == nullptr || c->ctx == nullptr) return TROUPE_ERR_ARGUMENT;
  c->ctx->unstash_all();
  return TROUPE_OK;
}

int unhandled(troupe_ctx* c) {
  plugin_actor* a = actor_of(c);
  if (a == nullptr || c->ctx == nullptr) return TROUPE_ERR_ARGUMENT;
  return a->unhandled(c);
}

const char* persistence_id(troupe_ctx* c, std::size_t* len) {
  plugin_actor* a = actor_of(c);
  if (a == nullptr || a->persistence_id().empty()) return nullptr;
  if (len != nullptr) *len = a->persistence_id().size();
  return a->persistence_id().c_str();
}

}  // namespace

extern const troupe_host_api host_api;
const troupe_host_api host_api = {
    sizeof(troupe_host_api),
    TROUPE_ABI_MAJOR,
    TROUPE_ABI_MINOR,
    &register_kind,
    &register_schema,
    &message_type,
    &message_data,
    &self,
    &sender,
    &parent,
    &send,
    &request,
    &respond,
    &forward,
    &spawn,
    &stop,
    &poison,
    &watch,
    &unwatch,
    &send_after,
    &send_every,
    &cancel_timer,
    &pid_retain,
    &pid_release,
    &pid_equal,
    &pid_format,
    &log,
    &fail,
    &set_receive_timeout,
    &pid_parse,
    &subscribe_cluster,
    &unsubscribe_cluster,
    &cluster_members,
    &register_grain,
    &identity,
    &grain_send,
    &grain_request,
    &passivate,
    &register_persistent,
    &persist,
    &save_snapshot,
    &delete_events,
    &last_seq,
    &persistence_id,
    &become,
    &unbecome,
    &stash,
    &unstash_all,
    &unhandled,
    &subscribe,
    &unsubscribe,
    &publish,
    &publish_reported,
    &request_then,
    &send_as,
    &lookup,
    &spawn_remote,
    &register_kind_props,
    &spawn_props,
    &last_error,
    &spawn_router,
    &router_manage,
    &router_broadcast,
    &router_routees,
    &send_keyed,
    &event_subscribe,
    &event_unsubscribe,
    &event_publish,
    &read_event,
    &pipe_to,
};

}  // namespace troupe::plugin::detail
