// The plugin host: loading plugins (Boost.DLL), registering their kinds
// and message types, and the JSON codec of those types for the admin API.
#include "plugin/plugin_host.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "plugin/plugin_internal.hpp"

namespace troupe::plugin {

using detail::host_api;
using detail::initialising;
using detail::plugin_actor;

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

bool host::declares(type_id type) const {
  std::lock_guard lock(mu_);
  return types_->types.count(type) != 0;
}

std::string host::type_name(type_id type) const {
  std::lock_guard lock(mu_);
  auto it = types_->types.find(type);
  return it != types_->types.end() ? it->second.object->name()->str() : std::string();
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
    case spawn_error::unreachable:
    case spawn_error::timed_out: return TROUPE_ERR_UNAVAILABLE;
    case spawn_error::shutting_down:
    case spawn_error::refused:
    case spawn_error::not_allowed: return TROUPE_ERR_STATE;
  }
  return TROUPE_ERR_STATE;
}

std::vector<plugin_info> host::plugins() const {
  std::lock_guard lock(mu_);
  std::vector<plugin_info> out;
  for (const auto& p : plugins_) {
    std::vector<std::string> persistent;
    for (const auto& [kind, def] : p->persistent) persistent.push_back(kind);
    out.push_back({p->file, p->name, p->version, p->abi_major, p->abi_minor, p->kinds, p->grains, std::move(persistent)});
  }
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
    if (const auto it = p.persistent.find(name); it != p.persistent.end()) {
      rec->persistent = true;
      rec->persistence = it->second;
    }
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
    // The plugin's props, then the node's configuration over them.
    const auto own = p.kind_props.find(name);
    if (own != p.kind_props.end()) own->second.apply(pr, true);
    if (decorate_) rec->mailbox_configured = decorate_(name, pr, own != p.kind_props.end() && own->second.mailbox_set);
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
