#include "plugin/plugin_host.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <unordered_map>

#define BOOST_DLL_USE_STD_FS 1
#include <boost/dll/shared_library.hpp>
#include <flatbuffers/reflection.h>

#include <troupe/abi.h>

#include "actor/actor_system.hpp"
#include "plugin/json_codec.hpp"
#include "system_generated.h"

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
};

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
  std::vector<std::vector<std::uint8_t>> schemas;
  std::vector<std::unique_ptr<json_codec>> codecs;  // one a schema
  std::unordered_map<type_id, schema_type> types;
  std::string init_failure;
};

namespace {

// The plugin whose init() runs on this thread, for calls without a context.
thread_local loaded_plugin* initialising = nullptr;

troupe_pid* to_abi(process* p) noexcept { return reinterpret_cast<troupe_pid*>(p); }
process* from_abi(const troupe_pid* p) noexcept {
  return reinterpret_cast<process*>(const_cast<troupe_pid*>(p));
}

// Makes an envelope of the plugin's bytes; builder output is trusted.
envelope* make(std::uint64_t type, const std::uint8_t* data, std::size_t size,
               std::uint32_t flags) {
  envelope* e = make_envelope(type, data, size);
  if ((flags & TROUPE_SEND_BUILT) != 0) e->flags = envelope::trusted;
  return e;
}

// ------------------------------------------------ the actor of a plugin kind

class plugin_actor final : public actor {
 public:
  plugin_actor(std::shared_ptr<host> h, std::shared_ptr<const kind_record> k) noexcept
      : h_(std::move(h)), k_(std::move(k)) {}
  ~plugin_actor() override {
    for (auto& [id, t] : timers_) t.cancel();
    if (instance_ != nullptr && k_->def.destroy(instance_) != 0) {
      h_->stats().actor_failures.fetch_add(1, std::memory_order_relaxed);
      h_->log(log_level::error, k_->name + ": an actor's destructor failed");
    }
  }

  void receive(context& ctx) override;

  std::uint64_t add_timer(timer_handle h) {
    if (timers_.size() >= 2 * timers_kept_ + 8) {
      std::erase_if(timers_, [](const auto& kv) { return !kv.second.pending(); });
      timers_kept_ = timers_.size();
    }
    const std::uint64_t id = next_timer_++;
    timers_.emplace(id, std::move(h));
    return id;
  }
  bool cancel_timer(std::uint64_t id) {
    auto it = timers_.find(id);
    if (it == timers_.end()) return false;
    const bool stopped = it->second.cancel();
    timers_.erase(it);
    return stopped;
  }

 private:
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
};

// The plugin_actor behind a callback frame.
plugin_actor* actor_of(troupe_ctx* c) {
  return c != nullptr ? static_cast<plugin_actor*>(c->actor) : nullptr;
}

void plugin_actor::receive(context& ctx) {
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
  }
  const troupe_message m{e.type, e.data, e.size};
  if (k_->def.receive(instance_, &frame, &m) != 0) failed(frame, "receive failed");
}

// ------------------------------------------------------------ host functions

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

troupe_pid* spawn(troupe_ctx* c, const char* kind, const char* name, int* status) {
  int ignored;
  if (status == nullptr) status = &ignored;
  if (c == nullptr || kind == nullptr) {
    *status = TROUPE_ERR_ARGUMENT;
    return nullptr;
  }
  if (name != nullptr && *name == '\0') {
    *status = TROUPE_ERR_ARGUMENT;  // a name, but empty
    return nullptr;
  }
  spawn_result r = c->ctx->spawn_kind(kind, name != nullptr ? name : std::string());
  if (!r) {
    *status = abi_status(r.error);
    return nullptr;
  }
  pid child = std::move(r.pid);
  *status = TROUPE_OK;
  child.get()->retain();  // the plugin's reference
  return to_abi(child.get());
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
};

}  // namespace

// ------------------------------------------------------------------ host

struct type_table {
  std::unordered_map<type_id, schema_type> types;
};

host::host(actor_system& sys, log_sink log)
    : sys_(sys), log_(std::move(log)), types_(std::make_unique<type_table>()) {}

bool host::verify(const envelope& e, std::string& why) const {
  schema_type st;
  {
    std::lock_guard lock(mu_);
    auto it = types_->types.find(e.type);
    if (it == types_->types.end()) return true;  // no schema declares it: opaque bytes
    st = it->second;
  }
  if (flatbuffers::Verify(*st.schema, *st.object, e.data, e.size)) return true;
  why = std::to_string(e.size) + " bytes do not verify as " + st.object->name()->str();
  return false;
}

std::vector<message_type_info> host::message_types() const {
  std::lock_guard lock(mu_);
  std::vector<message_type_info> out;
  for (const auto& [id, st] : types_->types) out.push_back({st.object->name()->str(), *st.plugin});
  std::sort(out.begin(), out.end(),
            [](const message_type_info& a, const message_type_info& b) { return a.name < b.name; });
  return out;
}

codec_status host::from_json(std::string_view type, std::string_view json, message& out,
                             std::string& error) const {
  schema_type st;
  {
    std::lock_guard lock(mu_);
    auto it = types_->types.find(hash_type_name(type));
    if (it == types_->types.end()) {
      error = "unknown message type '" + std::string(type) + "': no loaded plugin declares it";
      return codec_status::unknown_type;
    }
    st = it->second;
  }
  std::vector<std::uint8_t> bytes;
  if (!st.codec->encode(*st.object, json, bytes, error)) {
    error = "the body does not match " + std::string(type) + ": " + error;
    return codec_status::mismatch;
  }
  envelope* e = make_envelope(hash_type_name(type), bytes.data(), bytes.size());
  e->flags = envelope::trusted;  // built by the schema's own parser
  out = message::adopt(e);
  return codec_status::ok;
}

codec_status host::to_json(const envelope& e, std::string& type, std::string& json,
                           std::string& error) const {
  schema_type st;
  {
    std::lock_guard lock(mu_);
    auto it = types_->types.find(e.type);
    if (it == types_->types.end()) {
      error = "no loaded plugin declares the message's type";
      return codec_status::unknown_type;
    }
    st = it->second;
  }
  type = st.object->name()->str();
  if (!flatbuffers::Verify(*st.schema, *st.object, e.data, e.size)) {
    error = std::to_string(e.size) + " bytes do not verify as " + type;
    return codec_status::mismatch;
  }
  if (!st.codec->decode(*st.object, e.data, json, error)) return codec_status::mismatch;
  return codec_status::ok;
}

host::~host() {
  // Plugins are never unloaded: code of theirs may still be referenced (a
  // thread they started, a registrar they kept). They move to a list that
  // lives as long as the process.
  static auto* forever = new std::vector<std::unique_ptr<loaded_plugin>>;
  static std::mutex forever_mu;
  std::lock_guard lock(forever_mu);
  for (auto* list : {&plugins_, &refused_})
    for (auto& p : *list) forever->push_back(std::move(p));
}

void host::log(log_level l, std::string_view line) const {
  if (log_) {
    log_(l, line);
    return;
  }
  std::fprintf(stderr, "%s: %.*s\n", to_string(l), static_cast<int>(line.size()), line.data());
}

const kind_record* host::find_kind(std::string_view name) const {
  std::lock_guard lock(mu_);
  auto it = kinds_.find(std::string(name));
  return it == kinds_.end() ? nullptr : it->second.get();
}

props_ptr host::kind(std::string_view name) const { return sys_.kinds().find(name); }

int abi_status(spawn_error e) noexcept {
  switch (e) {
    case spawn_error::none: return TROUPE_OK;
    case spawn_error::name_taken: return TROUPE_ERR_NAME_TAKEN;
    case spawn_error::invalid_name: return TROUPE_ERR_ARGUMENT;
    case spawn_error::unknown_kind: return TROUPE_ERR_UNKNOWN_KIND;
    case spawn_error::unreachable: return TROUPE_ERR_UNAVAILABLE;
    case spawn_error::timed_out: return TROUPE_ERR_NOT_FOUND;
    case spawn_error::shutting_down:
    case spawn_error::refused:
    case spawn_error::not_allowed: return TROUPE_ERR_STATE;
  }
  return TROUPE_ERR_STATE;
}

std::vector<plugin_info> host::plugins() const {
  std::lock_guard lock(mu_);
  std::vector<plugin_info> out;
  for (const auto& p : plugins_)
    out.push_back({p->file, p->name, p->version, p->abi_major, p->abi_minor, p->kinds});
  return out;
}

std::vector<std::string> host::kinds() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [name, k] : kinds_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

bool host::add_kinds(loaded_plugin& p, std::string& error) {
  std::lock_guard lock(mu_);
  for (const auto& [name, def] : p.pending)
    if (kinds_.count(name) != 0 || sys_.kinds().find(name)) {
      error = "kind '" + name + "' is already registered by another plugin";
      return false;
    }
  for (auto& [name, def] : p.pending) {
    auto rec = std::make_shared<kind_record>();
    rec->h = this;
    rec->plugin = &p;
    rec->name = name;
    rec->def = def;
    // Weak: the host owns its kinds, and the kinds' Props must not own the host.
    props pr = props::from([h = weak_from_this(), k = std::weak_ptr<const kind_record>(rec)]()
                               -> std::unique_ptr<actor> {
      auto hs = h.lock();
      auto ks = k.lock();
      if (!hs || !ks) return nullptr;
      return std::make_unique<plugin_actor>(std::move(hs), std::move(ks));
    });
    pr.kind = name;
    pr.plugin = p.name;
    if (decorate_) decorate_(name, pr);
    rec->props = share(std::move(pr));
    sys_.kinds().add(name, rec->props);  // checked above, under mu_
    kinds_.emplace(name, std::move(rec));
    p.kinds.push_back(name);
  }
  p.pending.clear();
  return true;
}

load_result host::load(const std::filesystem::path& file) {
  auto refuse = [&](const std::string& reason) {
    stats_.refused.fetch_add(1, std::memory_order_relaxed);
    load_result r{false, file.string() + ": " + reason};
    log(log_level::error, r.error);
    return r;
  };
  auto p = std::make_unique<loaded_plugin>();
  p->h = this;
  p->file = file.string();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) return refuse("no such file");
  {
    // A shared object starts with the ELF magic; anything else is refused
    // before the dynamic loader tries to map it.
    std::ifstream in(file, std::ios::binary);
    char magic[4] = {};
    in.read(magic, 4);
    if (!in || std::memcmp(magic, "\x7f" "ELF", 4) != 0)
      return refuse("not a shared object (no ELF header)");
  }
  boost::dll::fs::error_code dl_ec;
  p->lib.load(file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, dl_ec);
  if (dl_ec) return refuse("cannot be loaded: " + dl_ec.message());
  // From here on the library stays mapped whatever happens: its static
  // constructors have run, and it may have kept pointers into the node.
  auto refuse_loaded = [&](const std::string& reason) {
    load_result r = refuse(reason);
    std::lock_guard lock(mu_);
    p->reg.open = false;
    refused_.push_back(std::move(p));
    return r;
  };
  if (!p->lib.has(TROUPE_PLUGIN_ENTRY_NAME))
    return refuse_loaded("no entry symbol " TROUPE_PLUGIN_ENTRY_NAME " (not a Troupe plugin?)");
  auto& entry = p->lib.get<const troupe_plugin_desc*()>(TROUPE_PLUGIN_ENTRY_NAME);
  const troupe_plugin_desc* d = entry();
  if (d == nullptr || d->size < offsetof(troupe_plugin_desc, init) + sizeof d->init)
    return refuse_loaded("malformed plugin descriptor");
  p->abi_major = d->abi_major;
  p->abi_minor = d->abi_minor;
  p->name = d->name != nullptr ? d->name : "";
  p->version = d->version != nullptr ? d->version : "";
  if (d->abi_major != TROUPE_ABI_MAJOR)
    return refuse_loaded("plugin ABI " + std::to_string(d->abi_major) + "." +
                         std::to_string(d->abi_minor) + " does not match the node's ABI " +
                         std::to_string(TROUPE_ABI_MAJOR) + "." + std::to_string(TROUPE_ABI_MINOR) +
                         " (the major versions differ)");
  if (d->abi_minor > TROUPE_ABI_MINOR)
    return refuse_loaded("plugin ABI " + std::to_string(d->abi_major) + "." +
                         std::to_string(d->abi_minor) + " is newer than the node's ABI " +
                         std::to_string(TROUPE_ABI_MAJOR) + "." + std::to_string(TROUPE_ABI_MINOR));
  if (p->name.empty() || d->init == nullptr) return refuse_loaded("plugin has no name or no init");
  std::string same_name_file;
  {
    std::lock_guard lock(mu_);
    for (const auto& other : plugins_)
      if (other->name == p->name) same_name_file = other->file;
  }
  // Refused outside the lock: refuse_loaded takes it.
  if (!same_name_file.empty())
    return refuse_loaded("a plugin named '" + p->name + "' is already loaded from " + same_name_file);
  p->reg.open = true;
  initialising = p.get();
  const int rc = d->init(&host_api, &p->reg);
  initialising = nullptr;
  p->reg.open = false;
  if (rc != 0)
    return refuse_loaded("init failed: " +
                         (p->init_failure.empty() ? std::string("no reason given") : p->init_failure));
  std::string error;
  if (!add_kinds(*p, error)) return refuse_loaded(error);
  {
    std::lock_guard lock(mu_);
    for (auto& [type, st] : p->types) types_->types.emplace(type, st);
  }
  log(log_level::info, p->file + ": plugin " + p->name + " " + p->version + " loaded (" +
                           std::to_string(p->kinds.size()) + " kinds)");
  std::lock_guard lock(mu_);
  plugins_.push_back(std::move(p));
  return {true, {}};
}

}  // namespace troupe::plugin
