#pragma once
// Private to the transport's parts: what they share. Not for other code:
// it may change with the transport. Where they live:
// - remote_process.cpp: the proxy for another node's PID;
// - peer.cpp: a peer's proxies, connections, dialing and backoff, loss;
// - send_path.cpp: a peer's queue drained into frames and written (with
//   the connection's write side);
// - connection.cpp: a connection's life, its reads, heartbeats, closing;
// - inbound.cpp: what arrives once it is up, delivery, back-pressure;
// - transport.cpp: the transport itself.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <sys/uio.h>

#include "remote/link.hpp"
#include "remote/transport.hpp"

namespace troupe::remote {

namespace detail {

inline std::string uv_text(int status) { return std::string(uv_strerror(status)); }

// A one-way flow is acknowledged by an Ack of its own every this many items
// (replies carry acknowledgements for free).
inline constexpr std::uint64_t ack_every = 1024;

}  // namespace detail

// ---------------------------------------------------------------------------
// What waits in a peer's queue: a message or a control frame, in send order.

enum class item_kind : std::uint8_t {
  message,
  watch,           // target: the watched proxy; other: the local watcher
  unwatch,         // the same
  terminated,      // target: the watcher's proxy; text: the stopped local id
  stop,            // target: the proxy to stop
  spawn_request,   // text: kind, text2: name
  spawn_response,  // text: the new id, text2: the error
  cluster,         // text: the bytes of a cluster Sync
};

struct outbound : mpsc_node, pooled {
  item_kind kind = item_kind::message;
  std::uint8_t reason = 0;
  std::int32_t status = 0;
  envelope* e = nullptr;
  process_ref target;
  process_ref other;
  std::uint64_t request = 0;
  std::string text, text2;

  ~outbound() {
    if (e) e->release();
  }
};

// What was sent to a peer and waits for its acknowledgement (see link.hpp):
// a message (its envelope and target, moved out of the queue's item) or a
// control item (the item itself, moved to the heap: they are rare).
struct sent_item {
  envelope* e = nullptr;
  process_ref target;
  std::unique_ptr<outbound> control;

  sent_item() = default;
  sent_item(envelope* env, process_ref t) : e(env), target(std::move(t)) {}
  explicit sent_item(std::unique_ptr<outbound> c) : control(std::move(c)) {}
  sent_item(sent_item&& o) noexcept
      : e(std::exchange(o.e, nullptr)), target(std::move(o.target)), control(std::move(o.control)) {}
  sent_item& operator=(sent_item&&) = delete;
  ~sent_item() {
    if (e) e->release();
  }
};

// ---------------------------------------------------------------------------

class remote_process final : public process {
 public:
  // `generation`: the start of the peer the actor lives in (0: whichever
  // start is current).
  remote_process(actor_system& sys, std::shared_ptr<peer> owner, std::string id, std::uint64_t generation)
      : process(sys), peer_(std::move(owner)), id_(std::move(id)), generation_(generation) {}

  void send_user(envelope* e) noexcept override;
  void send_system(system_message* m) noexcept override;
  std::string id() const override { return id_; }
  const std::string& address() const noexcept override;
  std::uint64_t generation() const noexcept override { return generation_; }
  const std::string& raw_id() const noexcept { return id_; }
  // Whether it names an earlier start of the peer than `current`'s.
  bool stale(std::uint64_t current) const noexcept {
    return earlier_start(generation_, current);
  }
  peer& owner() const noexcept { return *peer_; }

  // Local watchers of this remote actor (for Terminated when its node is lost).
  void add_watcher(process_ref w) {
    std::lock_guard lock(mu_);
    for (const process_ref& x : watchers_)
      if (x.get() == w.get()) return;
    watchers_.push_back(std::move(w));
  }
  void remove_watcher(process* w) {
    std::lock_guard lock(mu_);
    std::erase_if(watchers_, [&](const process_ref& x) { return x.get() == w; });
  }
  bool watched_by(process* w) {
    std::lock_guard lock(mu_);
    for (const process_ref& x : watchers_)
      if (x.get() == w) return true;
    return false;
  }
  std::vector<process_ref> take_watchers() {
    std::lock_guard lock(mu_);
    return std::exchange(watchers_, {});
  }

 protected:
  ~remote_process() override;

 private:
  std::shared_ptr<peer> peer_;
  const std::string id_;
  const std::uint64_t generation_;
  std::mutex mu_;
  std::vector<process_ref> watchers_;
};

// ---------------------------------------------------------------------------

class connection final : public session_events {
 public:
  connection(transport& t, bool dialer, std::shared_ptr<peer> p);
  ~connection() = default;

  void start_dial();
  bool accept(uv_stream_t* server);
  void close(close_reason reason, std::string detail);

  // The write side, under wmu_ (workers write too, see peer::flush_from_worker).
  // Queues frame bytes (copied) / the finished batch, for the next flush.
  void queue_bytes_locked(std::span<const std::uint8_t> bytes);
  void queue_batch_locked();
  // One writev with everything queued, unless a write is in progress.
  // Returns 0 when all is written or handed to libuv, > 0 when bytes are
  // left that only the loop can hand over (called off the loop), < 0 on a
  // failed write (write_error_ holds it: the loop closes the connection).
  int flush_locked(bool on_loop);
  // Loop: queues and writes at once.
  void send_now(std::span<const std::uint8_t> bytes);
  // Loop: closes the connection for the write error recorded.
  void fail_write();
  void tick(std::int64_t now);
  // Back-pressure (loop). A read that took a target's mailbox, or the
  // node's queued messages, to `pause_at` percent stops reading the socket
  // (the peer's messages then wait in its send queue); reading goes on once
  // the mailbox (or the budget) is back down to `resume_at`.
  static constexpr unsigned pause_at = 75, resume_at = 50;
  void pause(process* full);
  bool drained() const noexcept;
  void resume();
  bool paused_ = false;
  process_ref blocker_;  // the full target; null when the budget paused it
  std::int64_t paused_ns_ = 0;
  // The batch a pause stopped in (in the session's buffer), and its next envelope.
  const wire::Batch* held_ = nullptr;
  std::uint32_t held_next_ = 0;

  // session_events
  void write(std::span<const std::uint8_t> frame) override;
  verdict on_hello(const peer_hello& hello) override;
  void on_up(std::uint64_t received) override;
  void on_frame(const wire::Frame& frame) override;
  void on_ack(std::uint64_t ack) override;
  // The acknowledgement for frames this connection writes.
  inline std::uint64_t ack_value() noexcept;  // below, with the peer
  // Loop: an Ack frame when the peer waits for one.
  void send_ack_if_due(std::uint64_t threshold);
  // The start of the node at the other end (known once it said Hello).
  std::uint64_t peer_generation() const noexcept { return s_.peer().incarnation; }

  transport& t_;
  const bool dialer_;
  std::shared_ptr<peer> peer_;
  connection_state state_ = connection_state::connecting;
  session s_;
  batch_encoder enc_;
  std::atomic<bool> closing_{false};  // set on the loop; workers only look
  std::int64_t opened_ns_;
  std::int64_t last_heard_ns_;

  std::mutex wmu_;  // guards what follows
  std::int64_t last_write_ns_;
  bool write_busy_ = false;  // a uv_write is in flight
  int write_error_ = 0;
  std::size_t backlog_ = 0;
  std::vector<iovec> iov_;

 private:
  static void on_resolved(uv_getaddrinfo_t* req, int status, struct addrinfo* res);
  static void on_connected(uv_connect_t* req, int status);
  static void on_alloc(uv_handle_t* h, std::size_t hint, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  static void on_written(uv_write_t* req, int status);
  static void on_closed(uv_handle_t* h);
  void begin();
  void move_state(connection_state to);
  void deliver(const wire::Batch& b, std::uint64_t skip);
  // Delivers from envelope `i` on; unless `force`, pauses after one that
  // takes its target (or the budget) to the high-water mark.
  void deliver_from(const wire::Batch& b, std::uint32_t i, bool force);
  // TLS: `n` bytes of ciphertext arrived in rbuf_. False once closed.
  bool read_tls(std::size_t n);
  void fail_tls();
  // Moves what the channel produced into the write queue (under wmu_).
  void take_tls_output_locked();
  void end_pending();

  struct segment {
    flatbuffers::DetachedBuffer fb;
    std::vector<std::uint8_t> bytes;
    std::size_t offset = 0;
    const std::uint8_t* data() const noexcept { return fb.data() ? fb.data() : bytes.data(); }
    std::size_t size() const noexcept { return fb.data() ? fb.size() : bytes.size(); }
  };

  std::unique_ptr<tls_channel> tls_;  // null with insecure_plaintext; under wmu_
  std::vector<std::uint8_t> rbuf_;     // ciphertext read from the socket (TLS)
  bool read_any_ = false;
 public:
  bool channel_established_ = false;  // loop: the peer passed the TLS handshake
  bool refused_ = false;              // the dial was refused: nothing listens there
  std::uint64_t batch_seq_ = 0;       // under wmu_: the number of the batch's first envelope
  std::string source_;  // the peer's IP, for accepted connections
  bool pending_ = false;  // counted as not yet through the handshake
 private:
  uv_tcp_t tcp_{};
  uv_getaddrinfo_t resolve_req_{};
  uv_connect_t connect_req_{};
  uv_write_t write_req_{};
  bool tcp_open_ = false;
  bool resolving_ = false;
 public:
  std::vector<segment> queued_;  // under wmu_
 private:
  std::vector<segment> writing_;  // owned by the uv_write in flight
  std::vector<uv_buf_t> bufs_;
  std::vector<process_ref> targets_, senders_;
  // Loop: other nodes' PIDs that sent here lately, resolved once (a proxy
  // lookup takes a lock and, for a PID seen afresh, an allocation).
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, process_ref, string_hash, std::equal_to<>> sender_cache_;
  process_ref sender(std::string_view pid_text, std::uint64_t generation);
};

// ---------------------------------------------------------------------------

class peer : public std::enable_shared_from_this<peer> {
 public:
  peer(transport& t, std::string address);

  const std::string& address() const noexcept { return address_; }

  // Any thread: queues `o`, or turns it into a dead letter.
  void enqueue(outbound* o) noexcept {
    if (t_.stopped()) return drop(o, dead_letter_reason::node_lost);
    if (o->kind == item_kind::message && queue_.depth() >= t_.opts_.send_queue) {
      return drop(o, dead_letter_reason::peer_queue_full);
    }
    // The push that finds the queue idle owns it: on a worker, the queue is
    // written once the sending actor's turn ends (no hand-off to the loop);
    // elsewhere the loop is rung. A turn that sends a lot hands the queue
    // to the loop early, so that it is written while the turn goes on.
    if (queue_.push(o)) {
      if (dispatcher::after_run(&peer::flush_after_run, this))
        worker_owner_.store(&tls_owner_mark, std::memory_order_relaxed);
      else
        t_.loop_.ring(bell_);
    } else if (worker_owner_.load(std::memory_order_relaxed) == &tls_owner_mark &&
               queue_.depth() >= handoff_depth) {
      worker_owner_.store(nullptr, std::memory_order_relaxed);
      t_.loop_.ring(bell_);
    }
  }

  // The cluster says this peer's start `generation` is gone (transport::node_lost).
  void declared_lost(std::uint64_t generation, const std::string& why);
  // Any thread: the one proxy for `id` on this peer's start `generation`
  // (0: whichever is current).
  process_ref proxy(std::string_view id, std::uint64_t generation);
  // Any thread: of the proxies for `id` (this start's, or whichever start's),
  // the one `watcher` watches; this start's when neither.
  process_ref watched(std::string_view id, std::uint64_t generation, process* watcher);
  void forget_proxy(remote_process* p) {
    std::lock_guard lock(proxies_mu_);
    auto it = proxies_.find(proxy_key(p->raw_id(), p->generation()));
    if (it != proxies_.end() && it->second == p) proxies_.erase(it);
  }
  static std::string proxy_key(std::string_view id, std::uint64_t generation) {
    std::string k(id);
    if (generation != 0) k.append(1, '\0').append(std::to_string(generation));
    return k;
  }

  peer_info info() const;

  // ---- loop thread ----

  // Loop: dials that failed in a row.
  unsigned failures() const noexcept { return failures_; }

  // A seed (see transport::contact): connected to now, and dialed again
  // with backoff whenever it has no connection.
  void contact();

  void on_ring() {
    owned_ = true;
    drain();
  }

  void drain();

  // A worker that took the queue over writes it at the end of the sending
  // actor's turn, straight to the socket when nothing is in the way.
  static void flush_after_run(void* self);

  // Defined in send_path.cpp, inline, beside flush_after_run, its one caller.
  inline void flush_from_worker();

  // A connection to this peer passed its Hello: is it the one to keep?
  session_events::verdict judge(connection& c, const peer_hello& h);

  // What Welcome tells the peer of `incarnation` this node has of it.
  std::uint64_t received_from(std::uint64_t incarnation) const noexcept {
    return window_.received_from(incarnation);
  }

  // Loop: items of a Batch (or one control item) numbered from `seq`:
  // how many at the front were delivered already (resent duplicates).
  std::uint64_t admit(std::uint64_t seq, std::uint64_t count) {
    const std::uint64_t seen = window_.admit(seq, count);
    if (seen != 0) t_.stats_.duplicates.fetch_add(seen, std::memory_order_relaxed);
    recv_last_.store(window_.last(), std::memory_order_relaxed);
    return seen;
  }
  // The acknowledgement every frame to this peer carries.
  std::uint64_t ack_value() noexcept {
    const std::uint64_t a = recv_last_.load(std::memory_order_relaxed);
    ack_sent_.store(a, std::memory_order_relaxed);
    return a;
  }
  // Loop: after a read, an Ack of its own when many items went
  // unacknowledged (a one-way flow), or at every tick when any did.
  bool ack_due(std::uint64_t threshold) const noexcept {
    return recv_last_.load(std::memory_order_relaxed) >=
           ack_sent_.load(std::memory_order_relaxed) + threshold;
  }

  // Loop: nothing waits for the peer's acknowledgement, nothing waits to be
  // sent, and everything received was acknowledged.
  bool settled() {
    if (queue_.depth() != 0 || ack_due(1)) return false;
    std::lock_guard lock(ledger_mu_);
    return ledger_.size() == 0;
  }

  // Loop: the peer has this node's items up to `upto`.
  void on_ack(std::uint64_t upto) {
    bool was_full;
    {
      std::lock_guard lock(ledger_mu_);
      was_full = ledger_.size() >= t_.opts_.send_queue;
      ledger_.acknowledge(upto, [](sent_item&) {});
    }
    if (was_full && owned_) drain();
  }

  void attach(connection& c, const peer_hello& h, std::uint64_t peer_received);

  void connection_closed(connection& c, close_reason reason, const std::string& detail);

  connection* up_connection() const noexcept { return conn_; }

  // Any thread: true with the reason when this peer could not be reached
  // on its last attempt (waiting to dial again, or not trying now).
  bool down(std::string& why) const;

  void inbound_watch(process_ref target, process_ref watcher);
  void inbound_unwatch(process* target, process* watcher);

  // The node stops: nothing more goes out, and nothing local stays referenced.
  void shutdown();

  // Received traffic, counted by connections.
  void count_received(std::uint64_t messages, std::uint64_t bytes) {
    received_.fetch_add(messages, std::memory_order_relaxed);
    bytes_received_.fetch_add(bytes, std::memory_order_relaxed);
  }
  void count_sent_bytes(std::uint64_t bytes) {
    bytes_sent_.fetch_add(bytes, std::memory_order_relaxed);
  }

 private:
  static constexpr std::size_t high_water = std::size_t{8} << 20;
  static constexpr std::uint32_t handoff_depth = 1024;
  static inline thread_local char tls_owner_mark = 0;

  enum class drain_result { released, more, blocked, failed };

  // Packs up to `budget` queued items into frames and writes them, each
  // numbered and kept in the ledger until the peer acknowledges it. The
  // caller owns the queue and holds c.wmu_. `released`: the queue is empty
  // and given back; `more`: still owned, with items or unwritten bytes
  // left for the loop; `blocked`: still owned, the ledger is full until
  // acknowledgements come.
  drain_result drain_into(connection& c, std::size_t budget, bool on_loop);

  // The queue's item goes out as the ledger's next number (the node stays
  // the queue's until it is retired: its content moves to the ledger).
  // Both are defined in send_path.cpp, inline, beside drain_into, their
  // one caller.
  inline void send_message(connection& c, outbound& o);
  inline void send_control(connection& c, outbound& o);

  // Puts everything unacknowledged in the ledger on `c` again, in order,
  // under the numbers it had. Caller holds c.wmu_ and ledger_mu_.
  std::size_t resend(connection& c);

  // Gives the queue back to producers; false if something came meanwhile.
  bool release_queue() {
    mpsc_node* retired = nullptr;
    if (!queue_.mark_idle(retired)) return false;
    if (retired) delete static_cast<outbound*>(retired);
    return true;
  }

  // Adds one message to the connection's batch as item `seq`; false when
  // it can never fit in a frame. Items of one batch are numbered in a row.
  bool add_message(connection& c, remote_process* target, envelope* e, std::uint64_t seq);

  void encode_control(connection& c, const outbound& o, std::uint64_t seq);

  // Whatever cannot be sent: messages become dead letters, watches answer
  // at once that the node is lost.
  void drop(outbound* o, dead_letter_reason reason) noexcept {
    discard(*o, reason);
    delete o;
  }
  void discard(outbound& o, dead_letter_reason reason) noexcept;
  // A watch that will never reach the peer: its watcher hears Terminated(why).
  void watch_failed(outbound& o, terminated_reason why) noexcept;

  void drop_queued(dead_letter_reason reason);

  // The peer will not come back (it left, restarted, or stayed away too
  // long): what it has not acknowledged is unconfirmed, and it is lost.
  void give_up(const std::string& why);
  // Stops waiting for the link to come back: what the peer did not
  // acknowledge becomes dead letters (unconfirmed); returns how many.
  std::size_t stop_waiting();
  static std::string unconfirmed_words(std::size_t dropped);

  // An item the peer never acknowledged: a message becomes a dead letter
  // (which fails its request at once), a watch answers node lost, a spawn
  // fails.
  void unconfirmed(sent_item& i);

  // Its node is lost to everyone here.
  void lost(const std::string& why);

  // The backoff ended: what is queued goes (dialing first), and a seed or
  // a peer whose link went is dialed even with nothing queued.
  void retry();

  void want_connection();

  void dial();

  void dial_failed();

  // Peers without a connection are counted by state beside the
  // connections (troupe_remote_connections{state="backoff"|"idle"}).
  void set_state_locked(const char* to);

  // Something waits for a connection: queued messages, or a seed.
  bool wants_connection() noexcept;

  void arm_retry(std::chrono::nanoseconds delay);

  transport& t_;
  const std::string address_;
  doorbell bell_;
  mailbox_queue queue_;

  // Delivery across connections (link.hpp): what was sent and waits for
  // the peer's acknowledgement, under ledger_mu_ (drainers and the loop)...
  std::mutex ledger_mu_;
  send_ledger<sent_item> ledger_;
  // ...and what arrived from the peer (loop), with the acknowledgement
  // frames carry (written by whoever encodes a frame).
  receive_window window_;
  std::atomic<std::uint64_t> recv_last_{0}, ack_sent_{0};

  // Loop thread only.
  bool owned_ = false;  // the loop owns the queue (it was rung and not given back)
  bool wanted_ = false;  // a seed: dialed again whenever it has no connection
  bool reconnecting_ = false;  // the link went: dialed again until give_up_ fires
  timer_handle give_up_;
  connection* conn_ = nullptr;
  connection* dialing_ = nullptr;
  std::vector<connection*> pending_;  // passed Hello, not yet up
  unsigned failures_ = 0;
  std::int64_t unreachable_since_ = 0;
  std::int64_t next_attempt_ns_ = 0;
  timer_handle retry_;
  std::mutex watches_mu_;
  std::vector<std::pair<process_ref, process_ref>> inbound_watches_;  // (local target, watcher proxy)
  // Local processes that are no registered actor (futures, mostly) and
  // sent to this peer: requests that may wait for its answer, failed when
  // it is lost. (requester, target proxy); under ledger_mu_, pruned of
  // finished ones as it grows.
  std::vector<std::pair<process_ref, process_ref>> requesters_;
  std::size_t requesters_pruned_at_ = 0;
  void note_requester(process* requester, process* target);
  void fail_requests();
  // The up connection as workers see it: they write to it under io_mu_.
  std::mutex io_mu_;
  connection* wconn_ = nullptr;
  // The worker thread that owns the queue until its actor's turn ends
  // (its thread-local mark), or null.
  std::atomic<const char*> worker_owner_{nullptr};

  std::mutex proxies_mu_;
  std::unordered_map<std::string, remote_process*> proxies_;

  mutable std::mutex info_mu_;
  std::string node_, last_error_;
  const char* state_name_ = "idle";
  std::uint64_t incarnation_ = 0;
  bool inbound_ = false;
  std::atomic<std::uint64_t> sent_{0}, received_{0}, bytes_sent_{0}, bytes_received_{0};

  friend class connection;
};

// ---------------------------------------------------------------------------

inline std::uint64_t connection::ack_value() noexcept { return peer_ ? peer_->ack_value() : 0; }

}  // namespace troupe::remote
