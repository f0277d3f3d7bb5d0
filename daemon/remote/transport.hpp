#pragma once
// The node-to-node transport on the node's libuv loop. Actors send to PIDs
// of other nodes through remote processes (proxies); what they send waits in
// a bounded queue per peer until the loop packs it into Batch frames and
// writes them, one writev per peer per loop turn. One connection per peer
// pair; frames from a peer reach actors only after the handshake.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <uv.h>

#include "actor/actor_system.hpp"
#include "actor/log_level.hpp"
#include "remote/session.hpp"
#include "remote/tls.hpp"

namespace troupe::remote {

struct options {
  // cluster, node name, advertised address, frame cap. An empty address
  // is taken from the listen address once bound (port 0 included).
  identity self;
  // How peers prove membership (TLS 1.3): cluster secrets or certificates.
  credentials creds;
  // No TLS at all: anyone who reaches the port is a member. For tests of
  // the protocol itself and trusted networks only; logged loudly.
  bool insecure_plaintext = false;
  std::string listen;            // "ip:port" to accept peers on; empty: dial out only
  // Connections in total (both directions), and those not yet through
  // the handshake, in total and per source address; more are refused at once.
  std::uint32_t max_connections = 1024;
  std::uint32_t max_pending = 64;
  std::uint32_t max_pending_per_address = 8;
  std::uint32_t send_queue = 65536;  // messages waiting per peer before sends are dropped
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds heartbeat_timeout{5000};
  std::chrono::milliseconds handshake_timeout{5000};
  std::chrono::milliseconds backoff_min{100};
  std::chrono::milliseconds backoff_max{5000};
  // How long messages wait for an unreachable peer before they become dead
  // letters; and how long a peer whose link went may take to come back
  // before what it did not acknowledge becomes dead letters (unconfirmed).
  std::chrono::milliseconds unreachable_timeout{5000};
  // Kinds peers may spawn here: those of `spawnable`, or with `spawn_any`
  // every kind but those of `not_spawnable`.
  std::vector<std::string> spawnable;
  bool spawn_any = false;
  std::vector<std::string> not_spawnable;
  // The transport's log lines: level 0 debug, 1 info, 2 warning, 3 error.
  std::function<void(log_level level, const std::string& line)> log;
};

enum class connection_state : std::uint8_t { connecting, handshaking, up };
inline constexpr std::size_t connection_state_count = 3;
const char* to_string(connection_state s) noexcept;

// Plain counters, read by metrics.
struct stats {
  std::atomic<std::uint64_t> messages_sent{0};
  std::atomic<std::uint64_t> messages_received{0};
  std::atomic<std::uint64_t> bytes_sent{0};
  std::atomic<std::uint64_t> bytes_received{0};
  std::atomic<std::uint64_t> protocol_errors{0};
  // Items sent again after a reconnection, and resent items the receiver
  // had already (dropped).
  std::atomic<std::uint64_t> resent{0};
  std::atomic<std::uint64_t> duplicates{0};
  std::array<std::atomic<std::uint64_t>, close_reason_count> handshake_failures{};
  std::array<std::atomic<std::int64_t>, connection_state_count> connections{};
  // Peers with no connection: waiting to dial again after a failure
  // (backoff), with nothing to send (idle), or whose last dial failed
  // and which nothing makes dial again now (down).
  std::array<std::atomic<std::int64_t>, 3> peers_waiting{};
  // Back-pressure: times a connection stopped reading because a local
  // target's mailbox or the node's queued messages were over their
  // high-water mark, connections paused now, and the time spent paused.
  std::atomic<std::uint64_t> read_pauses{0};
  std::atomic<std::int64_t> reads_paused{0};
  std::atomic<std::uint64_t> paused_ns{0};
};

// What /v1/peers shows of one peer.
struct peer_info {
  std::string address;
  std::string node;           // empty until a handshake told it
  std::string state;          // up | connecting | backoff | down | idle
  bool inbound = false;       // the peer dialed
  std::uint64_t incarnation = 0;
  std::uint64_t messages_sent = 0, messages_received = 0;
  std::uint64_t bytes_sent = 0, bytes_received = 0;
  std::uint32_t queued = 0;
  std::string last_error;
};

// The result of a remote spawn.
struct spawn_reply {
  spawn_error status = spawn_error::none;
  pid who;             // the new actor, when status is none
  std::string error;   // why not, in words
};
using spawn_callback = std::function<void(spawn_reply)>;
// Spawns a local actor for a peer: (kind, name) -> result. Runs on the loop.
using spawn_handler = std::function<spawn_reply(const std::string& kind, const std::string& name)>;
// A cluster state exchange from the peer at `from` (its address). On the loop.
using cluster_handler = std::function<void(const std::string& from, std::span<const std::uint8_t> bytes)>;

class peer;
class connection;

class transport final : public remote_resolver {
 public:
  transport(event_loop& loop, options opts);
  ~transport();
  transport(const transport&) = delete;
  transport& operator=(const transport&) = delete;

  // Sets up TLS and binds the listener (if any), before the actor system
  // exists: the address peers use is the first half of every PID. Returns
  // false with `error` set when the credentials are unusable or the address
  // cannot be bound.
  bool bind(std::string& error);
  // Any thread: the cluster secrets handshakes offer and accept from now on.
  void set_secrets(const std::vector<std::string>& secrets);
  // The address of this node's PIDs.
  const std::string& address() const noexcept { return opts_.self.address; }
  // Starts serving peers for `sys` (accepting, heartbeats, resolving PIDs).
  void start(actor_system& sys);
  // The port bound (useful with port 0).
  int port() const noexcept { return port_; }
  // Loop thread: says goodbye to every peer, closes every connection and the
  // listener; what is still queued becomes dead letters. Sends afterwards
  // are dead letters at once.
  void shutdown();

  // Any thread.
  process_ref resolve(std::string_view address, std::string_view id, std::uint64_t generation) override;
  void set_spawn_handler(spawn_handler h) { spawn_handler_ = std::move(h); }
  // Where the cluster's state exchanges go (set before start()).
  void set_cluster_handler(cluster_handler h) { cluster_handler_ = std::move(h); }
  // Sends a cluster state exchange to the node at `address`, over its link
  // (dialed if need be): in order, resent after a reconnection, dropped
  // when the node stays unreachable.
  void send_cluster(const std::string& address, std::vector<std::uint8_t> bytes);
  // Any thread: spawns `kind` on the node at `address`; `done` runs on the
  // loop thread with the outcome (a timeout included).
  void spawn(const std::string& address, const std::string& kind, const std::string& name,
             std::chrono::milliseconds timeout, spawn_callback done);
  void spawn_remote(const std::string& address, const std::string& kind, const std::string& name,
                    std::chrono::milliseconds timeout,
                    std::function<void(spawn_result, const std::string& why)> done) override;
  // Any thread: keeps a connection to the node at `address` (a seed, a
  // node the operator expects to reach): dialed now, and again with
  // backoff whenever there is none. How it goes shows in peers().
  void contact(const std::string& address);
  // Loop: the cluster says the node at `address`, in its start
  // `generation`, is dead or has left. Its actors' watchers get
  // Terminated(node_lost), requests waiting for its answers fail
  // (DeadLetterResponse node_lost), what it did not acknowledge is
  // unconfirmed. News about a start older than the one connected now is
  // ignored: that start was given up when the new one connected.
  void node_lost(const std::string& address, std::uint64_t generation, const std::string& why);
  // Loop: the cluster decides when one of its members is lost
  // (node_lost); `is_member(address)` says whether the node at an address
  // is an alive or suspect member. For other peers, and without this, a
  // link that stays down for unreachable_timeout decides.
  void set_membership(std::function<bool(const std::string& address)> is_member) {
    is_member_ = std::move(is_member);
  }
  bool cluster_decides(const std::string& address) const { return is_member_ && is_member_(address); }
  // Any thread.
  std::vector<peer_info> peers() const;
  const remote::stats& counters() const noexcept { return stats_; }
  const options& config() const noexcept { return opts_; }

  // Internal, for peers and connections.
  actor_system& system() noexcept { return *sys_; }
  event_loop& loop() noexcept { return loop_; }
  remote::stats& counters() noexcept { return stats_; }
  bool stopped() const noexcept { return stopped_.load(std::memory_order_acquire); }
  std::shared_ptr<peer> peer_for(std::string_view address);
  // A local process as peers address it: registered actors by id, others
  // (futures) exported under their id until they are done.
  // `exported` (when given) is set when it is not a registered actor.
  std::string export_local(process* p, bool* exported = nullptr);
  process_ref local(std::string_view id);
  // A PID string from a peer: local or remote, of the node's start
  // `generation` (0: whichever is current).
  process_ref resolve_pid(std::string_view text, std::uint64_t generation);
  void connection_opened(connection_state s) noexcept;
  void connection_moved(connection_state from, connection_state to) noexcept;
  void connection_closed(connection_state s) noexcept;
  bool spawn_allowed(const std::string& kind) const;
  spawn_reply spawn_local(const std::string& kind, const std::string& name);
  void complete_spawn(std::uint64_t request, spawn_reply r);
  // Loop: the peer at `address` could not be reached; its spawns fail now.
  void fail_spawns(const std::string& address, const std::string& why);
  void forget(connection* c);
  void log(log_level level, const std::string& line) const {
    if (opts_.log) opts_.log(level, line);
  }
  void log_close(const connection& c, close_reason reason, const std::string& detail);
  tls_context* tls() const noexcept { return tls_.get(); }
  // Loop: a connection not yet through its handshake, from `source` (empty
  // for dials); false when a limit refuses it.
  bool admit(const std::string& source, std::string& why);
  void handshake_done(const std::string& source);

 private:
  static void on_connection(uv_stream_t* server, int status);
  void tick();
  // Back-pressure (loop): `c` stopped reading; the poll resumes it once
  // what blocked it has drained.
  void paused(connection& c);
  void unpaused(connection& c) noexcept;
  bool poll_paused();

  actor_system* sys_ = nullptr;
  event_loop& loop_;
  options opts_;
  std::unique_ptr<tls_context> tls_;
  // Loop thread: connections not yet through the handshake.
  std::uint32_t pending_total_ = 0;
  std::unordered_map<std::string, std::uint32_t> pending_by_source_;
  std::array<std::uint64_t, close_reason_count> unidentified_refusals_{};
  remote::stats stats_;
  uv_tcp_t listener_{};
  bool listening_ = false;
  sockaddr_storage dial_from_{};  // the listen address, port 0; family 0: any
  int port_ = 0;
  std::atomic<bool> stopped_{false};
  std::function<bool(const std::string&)> is_member_;  // loop
  timer_handle ticker_;
  spawn_handler spawn_handler_;
  cluster_handler cluster_handler_;
  std::vector<connection*> paused_;  // loop thread only
  timer_handle pressure_poll_;
  std::int64_t pause_logged_ns_ = 0;
  std::uint64_t pauses_unlogged_ = 0;

  mutable std::mutex peers_mu_;
  std::unordered_map<std::string, std::shared_ptr<peer>> peers_;

  // Local processes outside the registry (futures, grain calls) named as
  // senders to other nodes, so that replies find them. Swept of the dead at
  // each tick, and also whenever the map has doubled since the last sweep:
  // requests at hundreds of thousands a second would otherwise keep a tick's
  // worth of finished calls (and their messages) alive.
  std::mutex exports_mu_;
  std::unordered_map<std::string, process_ref> exports_;
  std::size_t exports_sweep_at_ = 1024;
  void sweep_exports_locked();

  std::mutex spawns_mu_;
  std::uint64_t next_spawn_ = 1;
  struct pending_spawn {
    spawn_callback done;
    timer_handle timeout;
    std::string address;
  };
  std::unordered_map<std::uint64_t, pending_spawn> spawns_;

  std::vector<std::unique_ptr<connection>> connections_;  // loop thread only
  friend class peer;
  friend class connection;
};

}  // namespace troupe::remote
