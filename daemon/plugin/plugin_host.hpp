#pragma once
// The node side of the plugin ABI: loads plugins (Boost.DLL, RTLD_NOW |
// RTLD_LOCAL, never unloaded), keeps the kinds they register, and makes
// Props that run a plugin kind as an ordinary actor.
//
// A plugin that does not fit is refused with one line naming the file and
// the reason, and the node goes on without it: not a shared object, no entry
// symbol, another ABI major (both versions named), a newer ABI minor than
// the node's, a kind name already taken, an init that fails. A kind
// registered after init is refused the same way.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "actor/log_level.hpp"
#include "actor/message.hpp"
#include "actor/props.hpp"

namespace troupe {

class actor_system;

namespace plugin {

struct loaded_plugin;
struct kind_record;
struct type_table;

// What `load` did.
struct load_result {
  bool ok = false;
  std::string error;  // one line: "<file>: <reason>"
};

// A loaded plugin, for listings.
struct plugin_info {
  std::string file;
  std::string name;
  std::string version;
  unsigned abi_major = 0;
  unsigned abi_minor = 0;
  std::vector<std::string> kinds;
  // The kinds it made grain kinds (register_grain), with their idle
  // timeout (0: the node's default).
  std::map<std::string, std::chrono::nanoseconds> grains;
  // The kinds it made persistent (register_persistent).
  std::vector<std::string> persistent;
};

// A message type a plugin declared in its schema.
struct message_type_info {
  std::string name;    // fully qualified table name
  std::string plugin;  // the plugin that declared it
};

// How a JSON conversion went.
enum class codec_status {
  ok,
  unknown_type,  // no loaded plugin declares the type
  mismatch,      // the JSON (or the bytes) do not fit the type
};

using log_level = troupe::log_level;
using log_sink = std::function<void(log_level, std::string_view line)>;

// Counters, read by metrics.
struct host_stats {
  std::atomic<std::uint64_t> refused{0};            // plugins refused at load
  std::atomic<std::uint64_t> kinds_refused{0};      // kinds refused after load
  std::atomic<std::uint64_t> invalid_messages{0};   // rejected by schema verification
  std::atomic<std::uint64_t> actor_failures{0};     // plugin callbacks that failed
};

// Held by shared_ptr (std::make_shared<plugin::host>(sys)): every actor of a
// plugin kind keeps the host alive, so the host may go before the system.
class host : public std::enable_shared_from_this<host> {
 public:
  explicit host(actor_system& sys, log_sink log = {});
  ~host();
  host(const host&) = delete;
  host& operator=(const host&) = delete;

  // Loads the shared object at `file`. The library stays loaded for the
  // life of the process, even when refused after its code ran.
  load_result load(const std::filesystem::path& file);

  // Called with each kind's Props as it is registered, before anything can
  // spawn it: the node adds middleware here (timing, for metrics). Set it
  // before loading plugins.
  // Gives a plugin kind what the node's configuration says of it;
  // `plugin_mailbox`: the plugin chose the kind's mailbox (props.mailbox),
  // which only the configuration overrides. Returns whether the
  // configuration fixed the mailbox (then a spawn's own props do not
  // change it either).
  using kind_decorator = std::function<bool(const std::string& kind, props&, bool plugin_mailbox)>;
  void set_kind_decorator(kind_decorator d) { decorate_ = std::move(d); }

  // Props that spawn an actor of kind `name` (from the system's kind
  // registry, where plugins register theirs); null when there is none.
  props_ptr kind(std::string_view name) const;
  std::vector<plugin_info> plugins() const;
  std::vector<std::string> kinds() const;

  actor_system& system() noexcept { return sys_; }
  host_stats& stats() noexcept { return stats_; }
  void log(log_level l, std::string_view line) const;

  // Checks a message of untrusted origin against the schema of its type,
  // when a plugin declared one; false (with the reason) if it does not verify.
  bool verify(const envelope& e, std::string& why) const;
  // Whether a loaded plugin's schema declares the type (a user's message).
  bool declares(type_id type) const;
  // The full name of a type a loaded plugin declares; empty for another.
  std::string type_name(type_id type) const;

  // Message types the loaded plugins declare, sorted by name.
  std::vector<message_type_info> message_types() const;
  // Builds a message of `type` (fully qualified name) from JSON text.
  codec_status from_json(std::string_view type, std::string_view json, message& out,
                         std::string& error) const;
  // Renders a message as JSON: its type's name and one line of JSON.
  codec_status to_json(const envelope& e, std::string& type, std::string& json,
                       std::string& error) const;

  // Internal, for the ABI functions.
  const kind_record* find_kind(std::string_view name) const;

 private:
  actor_system& sys_;
  log_sink log_;
  kind_decorator decorate_;
  host_stats stats_;
  mutable std::mutex mu_;
  bool add_kinds(loaded_plugin& p, std::string& error);

  std::vector<std::unique_ptr<loaded_plugin>> plugins_;
  // Refused after their code ran: kept mapped, their registrars closed.
  std::vector<std::unique_ptr<loaded_plugin>> refused_;
  std::unique_ptr<type_table> types_;
  std::unordered_map<std::string, std::shared_ptr<const kind_record>> kinds_;
};

// A spawn's outcome as the plugin ABI says it (TROUPE_OK, TROUPE_ERR_*):
// the one place where the runtime's spawn errors become ABI numbers.
int abi_status(spawn_error e) noexcept;

}  // namespace plugin
}  // namespace troupe
