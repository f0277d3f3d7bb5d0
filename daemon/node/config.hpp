#pragma once
// The node's YAML configuration. Every problem is reported with the file,
// line and key, and the node exits with EX_CONFIG (78).
#include <map>
#include <string>
#include <vector>

namespace troupe::node {

struct config {
  std::string name = "troupe";
  std::string cluster = "troupe";
  unsigned threads = 0;
  // Addresses are "host:port" ([v6]:port for IPv6). Listen addresses must
  // be IP literals; the others may be host names.
  std::string listen;       // node.listen: the node-to-node port
  std::string advertise;    // node.advertise: what peers dial
  std::string secret_file;  // node.secret_file: the cluster secrets (must be readable)
  // Its lines, one secret each (blank lines and '#' comments skipped): the
  // first is offered when dialing, all are accepted.
  std::vector<std::string> secrets;
  std::vector<std::string> seeds;
  // remote: the node-to-node transport.
  unsigned max_frame_bytes = 4u << 20;
  unsigned send_queue = 65536;  // messages waiting per peer
  unsigned heartbeat_interval_ms = 1000;
  unsigned heartbeat_timeout_ms = 5000;
  unsigned handshake_timeout_ms = 5000;
  unsigned unreachable_timeout_ms = 5000;
  std::vector<std::string> remote_spawn;  // kinds peers may spawn here; "*": any
  bool insecure_plaintext = false;  // remote.insecure_plaintext: no TLS at all
  // remote.tls: mutual TLS with certificates instead of the secret.
  std::string tls_cert_file, tls_key_file, tls_ca_file;
  unsigned max_connections = 1024;
  unsigned max_pending_connections = 64;
  unsigned max_pending_per_address = 8;
  std::string admin_listen = "127.0.0.1:7780";
  std::string admin_token_file;  // admin.token_file: bearer token, optional
  std::string admin_token;       // the file's first line
  // admin.insecure_no_token: a listener beyond loopback without a token,
  // on purpose (refused otherwise).
  bool admin_insecure_no_token = false;
  // admin.max_connections, .max_connections_per_address (0: none) and
  // .idle_timeout (seconds without a byte from the client): the bounds of
  // the admin and metrics servers.
  unsigned admin_max_connections = 4096;
  unsigned admin_max_connections_per_address = 0;
  unsigned admin_idle_timeout_seconds = 30;
  std::string metrics_listen = "127.0.0.1:7781";
  // metrics.histograms: kinds whose handler times are kept as histograms
  // (troupe_message_processing_seconds), or ["all"].
  std::vector<std::string> histogram_kinds;
  std::string log_level = "info";
  std::string log_format = "text";  // text | json
  unsigned drain_timeout_seconds = 10;  // node.drain_timeout: how long stopping actors may take
  // node.stall_timeout: every worker inside one handler this long, or the
  // event loop not running this long, and the node is stalled: /healthz
  // answers 503 and the systemd watchdog is no longer fed.
  unsigned stall_timeout_seconds = 10;
  // node.max_queued_bytes: how much memory messages waiting in mailboxes
  // may hold before sends are refused (see overload.hpp for the forms).
  std::string max_queued_bytes = "auto";
  // node.state_dir: where the node keeps what outlives it, one node per
  // folder (it is locked while the node runs). Relative paths are taken
  // from the config file's folder; unset, systemd's $STATE_DIRECTORY;
  // neither: none, and nothing is kept.
  std::string state_dir;
  bool demo = false;  // demo: true runs a ring of actors passing tokens (make run)
  // plugins: { dir, load: [name...], required: [name...] }. A name is a
  // file <dir>/<name>.so. A required plugin that does not load stops the
  // node with exit status 78; the others are logged and skipped.
  // Folders searched for NAME.so, first match wins (a list, or one folder);
  // relative paths are taken from the config file's folder.
  std::vector<std::string> plugin_dirs;
  std::vector<std::string> plugins;           // load, required included
  std::vector<std::string> required_plugins;
  // plugins.mailbox: the mailbox of every plugin kind; kinds.<kind>.mailbox:
  // one kind's. capacity 0 is unbounded; overflow says what a full one does.
  struct mailbox {
    unsigned capacity = 10000;
    std::string overflow = "drop_newest";  // drop_newest | drop_oldest | block
    bool operator==(const mailbox&) const = default;
  };
  mailbox plugin_mailbox;
  std::map<std::string, mailbox> kind_mailboxes;
};

struct config_error {
  std::string file;
  int line = 0;  // 1-based; 0 when unknown
  std::string message;
  std::string to_string() const;
};

// Parses `path`. On failure returns false and fills `errors` (all of them).
bool load_config(const std::string& path, config& out, std::vector<config_error>& errors);

}  // namespace troupe::node
