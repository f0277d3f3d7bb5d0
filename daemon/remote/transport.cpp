#include "remote/transport.hpp"

#include <csignal>

#include <algorithm>
#include <cstring>
#include <random>
#include <string_view>
#include <unordered_map>

#include <sys/uio.h>

#include <troupe/abi.h>

#include "actor/clock.hpp"
#include "actor/system_message.hpp"
#include "remote/address.hpp"
#include "remote/link.hpp"

namespace troupe::remote {

namespace {

std::string_view view(const flatbuffers::String* s) {
  return s ? std::string_view(s->data(), s->size()) : std::string_view();
}

std::string uv_text(int status) { return std::string(uv_strerror(status)); }

// A one-way flow is acknowledged by an Ack of its own every this many items
// (replies carry acknowledgements for free).
constexpr std::uint64_t ack_every = 1024;

}  // namespace

const char* to_string(connection_state s) noexcept {
  switch (s) {
    case connection_state::connecting: return "connecting";
    case connection_state::handshaking: return "handshaking";
    case connection_state::up: return "up";
  }
  return "unknown";
}

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
  remote_process(actor_system& sys, std::shared_ptr<peer> owner, std::string id)
      : process(sys), peer_(std::move(owner)), id_(std::move(id)) {}

  void send_user(envelope* e) noexcept override;
  void send_system(system_message* m) noexcept override;
  std::string id() const override { return id_; }
  const std::string& address() const noexcept override;
  const std::string& raw_id() const noexcept { return id_; }
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
  std::vector<process_ref> take_watchers() {
    std::lock_guard lock(mu_);
    return std::exchange(watchers_, {});
  }

 protected:
  ~remote_process() override;

 private:
  std::shared_ptr<peer> peer_;
  const std::string id_;
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
  std::uint64_t ack_value() noexcept;
  // Loop: an Ack frame when the peer waits for one.
  void send_ack_if_due(std::uint64_t threshold);

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
  process_ref sender(std::string_view pid_text);
};

// ---------------------------------------------------------------------------

class peer : public std::enable_shared_from_this<peer> {
 public:
  peer(transport& t, std::string address) : t_(t), address_(std::move(address)) {
    t_.stats_.peers_waiting[1].fetch_add(1, std::memory_order_relaxed);  // idle
    bell_.fn = [](void* p) { static_cast<peer*>(p)->on_ring(); };
    bell_.arg = this;
    mpsc_node* retired = nullptr;
    queue_.mark_idle(retired);  // the first push hands the queue to the loop
  }

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

  // Any thread: the one proxy for `id` on this peer.
  process_ref proxy(std::string_view id) {
    std::lock_guard lock(proxies_mu_);
    auto it = proxies_.find(std::string(id));
    if (it != proxies_.end() && it->second->try_retain()) return process_ref::adopt(it->second);
    auto* p = new remote_process(*t_.sys_, shared_from_this(), std::string(id));
    proxies_[std::string(id)] = p;
    return process_ref::adopt(p);  // the map's pointer is weak
  }
  void forget_proxy(remote_process* p) {
    std::lock_guard lock(proxies_mu_);
    auto it = proxies_.find(p->raw_id());
    if (it != proxies_.end() && it->second == p) proxies_.erase(it);
  }

  peer_info info() const {
    peer_info i;
    i.address = address_;
    std::lock_guard lock(info_mu_);
    i.node = node_;
    i.state = state_name_;
    i.inbound = inbound_;
    i.incarnation = incarnation_;
    i.last_error = last_error_;
    i.messages_sent = sent_.load(std::memory_order_relaxed);
    i.messages_received = received_.load(std::memory_order_relaxed);
    i.bytes_sent = bytes_sent_.load(std::memory_order_relaxed);
    i.bytes_received = bytes_received_.load(std::memory_order_relaxed);
    i.queued = queue_.depth();
    return i;
  }

  // ---- loop thread ----

  // Loop: dials that failed in a row.
  unsigned failures() const noexcept { return failures_; }

  // A seed (see transport::contact): connected to now, and dialed again
  // with backoff whenever it has no connection.
  void contact() {
    wanted_ = true;
    if (!conn_ && !dialing_ && pending_.empty() && !retry_.pending()) dial();
  }

  void on_ring() {
    owned_ = true;
    drain();
  }

  void drain() {
    if (!owned_) return;
    if (t_.stopped()) return drop_queued(dead_letter_reason::node_lost);
    if (!conn_) {
      if (queue_.owner_nonempty()) want_connection();
      else if (release_queue()) owned_ = false;
      return;
    }
    connection& c = *conn_;
    drain_result r;
    {
      std::lock_guard lock(c.wmu_);
      if (c.write_error_ != 0) {
        r = drain_result::failed;
      } else if (c.backlog_ > high_water) {
        return;  // on_written drains again
      } else {
        r = drain_into(c, 65536, true);
      }
    }
    switch (r) {
      case drain_result::released: owned_ = false; break;
      case drain_result::more: t_.loop_.ring(bell_); break;  // let the loop's other work go first
      case drain_result::blocked: break;                       // on_ack drains again
      case drain_result::failed: c.fail_write(); break;
    }
  }

  // A worker that took the queue over writes it at the end of the sending
  // actor's turn, straight to the socket when nothing is in the way.
  static void flush_after_run(void* self) { static_cast<peer*>(self)->flush_from_worker(); }

  void flush_from_worker() {
    // Handed to the loop already during the turn?
    if (worker_owner_.load(std::memory_order_relaxed) != &tls_owner_mark) return;
    worker_owner_.store(nullptr, std::memory_order_relaxed);
    {
      std::unique_lock io(io_mu_, std::try_to_lock);
      if (io.owns_lock() && wconn_ != nullptr && !t_.stopped()) {
        connection& c = *wconn_;
        std::lock_guard lock(c.wmu_);
        if (!c.write_busy_ && c.queued_.empty() && c.write_error_ == 0 &&
            drain_into(c, 4096, false) == drain_result::released)
          return;
      }
    }
    // The loop takes over what is left (it owns the queue from its ring on).
    t_.loop_.ring(bell_);
  }

  // A connection to this peer passed its Hello: is it the one to keep?
  session_events::verdict judge(connection& c, const peer_hello& h) {
    if (conn_ && conn_ != &c) {
      if (incarnation_ != h.incarnation) {
        conn_->close(close_reason::peer_closed, "the peer restarted (a new incarnation connected)");
      } else {
        return {false, close_reason::duplicate, "a connection to " + address_ + " is up already"};
      }
    }
    // Two connections at once. Both nodes dialed: the one accepted first
    // stays. This node has sent its proof on it, so the other node may hold
    // it as up already and have sent on it: dropping it for a later one
    // would lose that. If each node kept a different one, both are refused
    // and the nodes dial again (connection_closed). The same direction
    // twice: the newer stays (the older is a dial the peer gave up on).
    std::vector<connection*> older;
    for (connection* other : pending_) {
      if (other == &c) continue;
      if (c.dialer_ != other->dialer_)
        return {false, close_reason::duplicate, "a simultaneous connection is kept instead"};
      older.push_back(other);
    }
    // In first, so that closing the older ones does not look like a peer
    // left without a connection.
    if (std::find(pending_.begin(), pending_.end(), &c) == pending_.end()) pending_.push_back(&c);
    for (connection* other : older) other->close(close_reason::duplicate, "a newer connection is kept instead");
    return {};
  }

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

  void attach(connection& c, const peer_hello& h, std::uint64_t peer_received) {
    std::erase(pending_, &c);
    conn_ = &c;
    give_up_.cancel();
    reconnecting_ = false;
    const std::uint64_t before = window_.incarnation();
    if (before != 0 && before != h.incarnation) {
      // The peer restarted: its old incarnation is gone, with its actors.
      t_.log(log_level::info, "remote: " + address_ + " restarted (a new incarnation)");
      lost("it restarted");
    }
    window_.attach(h.incarnation);
    recv_last_.store(window_.last(), std::memory_order_relaxed);
    ack_sent_.store(0, std::memory_order_relaxed);
    std::size_t resent = 0, dropped = 0;
    int rc;
    {
      // Before any worker can write to the connection: what the peer has
      // not received goes first, in order, under its old numbers.
      std::lock_guard w(c.wmu_);
      std::lock_guard lock(ledger_mu_);
      if (ledger_.incarnation() != h.incarnation) {
        dropped = ledger_.clear([&](sent_item& i) { unconfirmed(i); });
        ledger_.set_incarnation(h.incarnation);
      } else {
        ledger_.acknowledge(peer_received, [](sent_item&) {});
        resent = resend(c);
      }
      rc = c.flush_locked(true);
    }
    if (resent != 0) {
      t_.stats_.resent.fetch_add(resent, std::memory_order_relaxed);
      t_.log(log_level::info, "remote: sent " + std::to_string(resent) + " unacknowledged items to " + address_ +
                    " again");
    }
    if (dropped != 0)
      t_.log(log_level::warning, "remote: " + std::to_string(dropped) + " items sent to " + address_ +
                    " before it restarted are unconfirmed (dead letters)");
    {
      std::lock_guard io(io_mu_);
      wconn_ = &c;
    }
    if (dialing_ == &c) dialing_ = nullptr;
    failures_ = 0;
    unreachable_since_ = 0;
    retry_.cancel();
    {
      std::lock_guard lock(info_mu_);
      node_ = h.node;
      incarnation_ = h.incarnation;
      inbound_ = !c.dialer_;
      set_state_locked("up");
      last_error_.clear();
    }
    t_.log(log_level::info, "remote: connected to " + address_ + " (node '" + h.node + "', " +
                  (c.dialer_ ? "outbound" : "inbound") + ")");
    if (rc < 0) return c.fail_write();
    drain();
  }

  void connection_closed(connection& c, close_reason reason, const std::string& detail) {
    std::erase(pending_, &c);
    const bool was_up = conn_ == &c;
    if (was_up) {
      {
        // Waits for a worker writing to it now; none finds it afterwards.
        std::lock_guard io(io_mu_);
        wconn_ = nullptr;
      }
      conn_ = nullptr;
      if (reason == close_reason::peer_left) {
        give_up("it left (it is stopping)");
      } else if (reason != close_reason::shutdown && !t_.stopped()) {
        // The link went, maybe not the peer: dial again at once, resend
        // what it has not acknowledged, and give up only if it stays away.
        reconnecting_ = true;
        std::weak_ptr<peer> self = weak_from_this();
        give_up_ = t_.loop_.arm(t_.opts_.unreachable_timeout, [self] {
          if (auto p = self.lock(); p && !p->conn_ && p->reconnecting_)
            p->give_up("it could not be reached for " +
                       std::to_string(p->t_.opts_.unreachable_timeout.count()) + " ms");
        });
      }
    } else if (reconnecting_ && c.refused_) {
      // Nothing listens at its address any more: that incarnation is gone.
      give_up("nothing listens at its address any more (connection refused)");
    }
    // Nothing left, and something to send or a seed to keep: try again
    // after a jittered backoff. This covers both nodes refusing each
    // other's connection (a collision; the jitter makes the next one
    // unlikely), whether this node reads the peer's Disconnect or only a
    // reset. A refused duplicate with another connection left is fine.
    const bool none_left = !conn_ && pending_.empty() && !t_.stopped() &&
                           reason != close_reason::shutdown;
    if (reason != close_reason::duplicate && reason != close_reason::shutdown) {
      std::lock_guard lock(info_mu_);
      last_error_ = std::string(to_string(reason)) + ": " + detail;
    }
    if (dialing_ == &c) {
      dialing_ = nullptr;
      if (!was_up && (reason != close_reason::duplicate || none_left)) dial_failed();
    } else if (was_up && reconnecting_ && none_left && !dialing_) {
      dial();
    } else if (none_left && !dialing_ && wants_connection()) {
      dial_failed();
    }
    {
      std::lock_guard lock(info_mu_);
      // down: its last dial failed and nothing makes it dial again now.
      if (!conn_)
        set_state_locked(dialing_ ? "connecting" : retry_ ? "backoff" : failures_ > 0 ? "down" : "idle");
    }
  }

  connection* up_connection() const noexcept { return conn_; }

  // Any thread: true with the reason when this peer could not be reached
  // on its last attempt (waiting to dial again, or not trying now).
  bool down(std::string& why) const {
    std::lock_guard lock(info_mu_);
    if (std::string_view(state_name_) != "backoff" && std::string_view(state_name_) != "down") return false;
    why = last_error_.empty() ? "it could not be reached" : last_error_;
    return true;
  }

  void inbound_watch(process_ref target, process_ref watcher) {
    std::lock_guard lock(watches_mu_);
    inbound_watches_.emplace_back(std::move(target), std::move(watcher));
  }
  void inbound_unwatch(process* target, process* watcher) {
    std::lock_guard lock(watches_mu_);
    std::erase_if(inbound_watches_, [&](const auto& w) {
      return w.first.get() == target && w.second.get() == watcher;
    });
  }

  // The node stops: nothing more goes out, and nothing local stays referenced.
  void shutdown() {
    retry_.cancel();
    give_up_.cancel();
    if (owned_) drop_queued(dead_letter_reason::node_lost);
    {
      std::lock_guard lock(ledger_mu_);
      ledger_.clear([&](sent_item& i) { unconfirmed(i); });
    }
    {
      std::lock_guard lock(watches_mu_);
      inbound_watches_.clear();
    }
    std::vector<process_ref> proxies;
    {
      std::lock_guard lock(proxies_mu_);
      for (auto& [id, p] : proxies_)
        if (p->try_retain()) proxies.push_back(process_ref::adopt(p));
    }
    for (process_ref& p : proxies) static_cast<remote_process*>(p.get())->take_watchers();
  }

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
  drain_result drain_into(connection& c, std::size_t budget, bool on_loop) {
    std::uint64_t sent = 0;
    drain_result r = drain_result::more;
    std::lock_guard ledger(ledger_mu_);
    for (;;) {
      const bool full = ledger_.size() >= t_.opts_.send_queue;
      mpsc_node* retired = nullptr;
      mpsc_node* n = budget == 0 || full ? nullptr : queue_.pop(retired);
      if (retired) delete static_cast<outbound*>(retired);
      if (!n) {
        if (c.enc_.count() > 0) c.queue_batch_locked();
        const int w = c.flush_locked(on_loop);
        if (w < 0) {
          r = drain_result::failed;
        } else if (full) {
          r = drain_result::blocked;
        } else if (budget == 0 || w > 0) {
          r = drain_result::more;
        } else if (!release_queue()) {
          continue;
        } else {
          r = drain_result::released;
        }
        break;
      }
      --budget;
      auto* o = static_cast<outbound*>(n);
      if (o->kind == item_kind::message) {
        send_message(c, *o);
        ++sent;
      } else {
        send_control(c, *o);
      }
    }
    sent_.fetch_add(sent, std::memory_order_relaxed);
    t_.stats_.messages_sent.fetch_add(sent, std::memory_order_relaxed);
    return r;
  }

  // The queue's item goes out as the ledger's next number (the node stays
  // the queue's until it is retired: its content moves to the ledger).
  void send_message(connection& c, outbound& o) {
    auto* target = static_cast<remote_process*>(o.target.get());
    const std::uint64_t seq = ledger_.next();
    if (!add_message(c, target, o.e, seq)) {
      // Bigger than a frame may be: it can never be sent.
      t_.sys_->dead_letter(std::exchange(o.e, nullptr), target, dead_letter_reason::invalid);
      return;
    }
    ledger_.push(sent_item(std::exchange(o.e, nullptr), std::move(o.target)));
  }

  void send_control(connection& c, outbound& o) {
    if (c.enc_.count() > 0) c.queue_batch_locked();
    const std::uint64_t seq = ledger_.next();
    encode_control(c, o, seq);
    auto copy = std::make_unique<outbound>();
    copy->kind = o.kind;
    copy->reason = o.reason;
    copy->status = o.status;
    copy->target = std::move(o.target);
    copy->other = std::move(o.other);
    copy->request = o.request;
    copy->text = std::move(o.text);
    copy->text2 = std::move(o.text2);
    ledger_.push(sent_item(std::move(copy)));
  }

  // Puts everything unacknowledged in the ledger on `c` again, in order,
  // under the numbers it had. Caller holds c.wmu_ and ledger_mu_.
  std::size_t resend(connection& c) {
    std::size_t n = 0;
    ledger_.each([&](std::uint64_t seq, sent_item& item) {
      if (item.control) {
        if (c.enc_.count() > 0) c.queue_batch_locked();
        encode_control(c, *item.control, seq);
      } else {
        add_message(c, static_cast<remote_process*>(item.target.get()), item.e, seq);
      }
      ++n;
    });
    if (c.enc_.count() > 0) c.queue_batch_locked();
    return n;
  }

  // Gives the queue back to producers; false if something came meanwhile.
  bool release_queue() {
    mpsc_node* retired = nullptr;
    if (!queue_.mark_idle(retired)) return false;
    if (retired) delete static_cast<outbound*>(retired);
    return true;
  }

  // Adds one message to the connection's batch as item `seq`; false when
  // it can never fit in a frame. Items of one batch are numbered in a row.
  bool add_message(connection& c, remote_process* target, envelope* e, std::uint64_t seq) {
    process* sender = e->sender;
    std::string sender_pid;
    if (sender && !c.enc_.knows_sender(sender)) {
      if (auto* r = dynamic_cast<remote_process*>(sender))
        sender_pid = r->owner().address() + "/" + r->raw_id();
      else
        sender_pid = t_.opts_.self.address + "/" + t_.export_local(sender);
    }
    const std::span<const std::uint8_t> bytes = e->bytes();
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (c.enc_.count() == 0) c.batch_seq_ = seq;
      if (c.enc_.add(target, target->raw_id(), sender, sender_pid, e->type, e->hdrs, bytes)) return true;
      if (c.enc_.count() == 0) break;
      c.queue_batch_locked();
    }
    return false;
  }

  void encode_control(connection& c, const outbound& o, std::uint64_t seq) {
    auto id_of = [](const process_ref& p) -> std::string_view {
      return static_cast<remote_process*>(p.get())->raw_id();
    };
    const std::string& self = t_.opts_.self.address;
    switch (o.kind) {
      case item_kind::watch:
      case item_kind::unwatch: {
        const std::string watcher = self + "/" + t_.export_local(o.other.get());
        const std::string_view target = id_of(o.target);
        const bool watch = o.kind == item_kind::watch;
        c.queue_bytes_locked(encode_frame(seq, c.ack_value(), [&](flatbuffers::FlatBufferBuilder& b) {
          auto w = b.CreateString(watcher);
          auto t = b.CreateString(target.data(), target.size());
          return watch ? std::pair(wire::Body::Watch, wire::CreateWatch(b, w, t).Union())
                       : std::pair(wire::Body::Unwatch, wire::CreateUnwatch(b, w, t).Union());
        }));
        break;
      }
      case item_kind::terminated: {
        if (o.other) inbound_unwatch(o.other.get(), o.target.get());
        const std::string_view watcher = id_of(o.target);
        c.queue_bytes_locked(encode_frame(seq, c.ack_value(), [&](flatbuffers::FlatBufferBuilder& b) {
          auto t = wire::CreateTerminated(b, b.CreateString(watcher.data(), watcher.size()),
                                          b.CreateString(o.text), o.reason);
          return std::pair(wire::Body::Terminated, t.Union());
        }));
        break;
      }
      case item_kind::stop: {
        const std::string_view target = id_of(o.target);
        c.queue_bytes_locked(encode_frame(seq, c.ack_value(), [&](flatbuffers::FlatBufferBuilder& b) {
          auto s = wire::CreateStop(b, b.CreateString(target.data(), target.size()));
          return std::pair(wire::Body::Stop, s.Union());
        }));
        break;
      }
      case item_kind::spawn_request:
        c.queue_bytes_locked(encode_frame(seq, c.ack_value(), [&](flatbuffers::FlatBufferBuilder& b) {
          auto r = wire::CreateSpawnRequest(b, o.request, b.CreateString(o.text),
                                            b.CreateString(o.text2));
          return std::pair(wire::Body::SpawnRequest, r.Union());
        }));
        break;
      case item_kind::spawn_response:
        c.queue_bytes_locked(encode_frame(seq, c.ack_value(), [&](flatbuffers::FlatBufferBuilder& b) {
          auto r = wire::CreateSpawnResponse(b, o.request, o.status, b.CreateString(o.text),
                                             b.CreateString(o.text2));
          return std::pair(wire::Body::SpawnResponse, r.Union());
        }));
        break;
      case item_kind::message:
        break;
    }
  }

  // Whatever cannot be sent: messages become dead letters, watches answer
  // at once that the node is lost.
  void drop(outbound* o, dead_letter_reason reason) noexcept {
    discard(*o, reason);
    delete o;
  }
  void discard(outbound& o, dead_letter_reason reason) noexcept {
    switch (o.kind) {
      case item_kind::message:
        if (o.e) t_.sys_->dead_letter(std::exchange(o.e, nullptr), o.target.get(), reason);
        break;
      case item_kind::spawn_request:
        t_.complete_spawn(o.request, {TROUPE_ERR_UNAVAILABLE, pid(),
                                      address_ + " did not confirm the spawn (" + to_string(reason) + ")"});
        break;
      case item_kind::watch:
        if (process_ref w = std::move(o.other)) {
          static_cast<remote_process*>(o.target.get())->remove_watcher(w.get());
          auto* m = new system_message(system_kind::terminated, o.target);
          m->reason = terminated_reason::node_lost;
          w->send_system(m);
        }
        break;
      default:
        break;
    }
  }

  void drop_queued(dead_letter_reason reason) {
    for (;;) {
      mpsc_node* retired = nullptr;
      mpsc_node* n = queue_.pop(retired);
      if (retired) delete static_cast<outbound*>(retired);
      if (!n) {
        if (release_queue()) {
          owned_ = false;
          return;
        }
        continue;
      }
      // The node stays the queue's head until the next pop: empty it now,
      // free it when it is retired.
      discard(*static_cast<outbound*>(n), reason);
    }
  }

  // The peer will not come back (it left, restarted, or stayed away too
  // long): what it has not acknowledged is unconfirmed, and it is lost.
  void give_up(const std::string& why) {
    give_up_.cancel();
    reconnecting_ = false;
    std::size_t dropped;
    {
      std::lock_guard lock(ledger_mu_);
      dropped = ledger_.clear([&](sent_item& i) { unconfirmed(i); });
    }
    t_.log(dropped ? log_level::warning : log_level::info, "remote: " + address_ + " is lost: " + why +
                                (dropped ? "; " + std::to_string(dropped) +
                                               " items it did not acknowledge are dead letters (unconfirmed)"
                                         : std::string()));
    lost(why);
  }

  // An item the peer never acknowledged: a message becomes a dead letter
  // (which fails its request at once), a watch answers node lost, a spawn
  // fails.
  void unconfirmed(sent_item& i) {
    if (i.e) {
      t_.sys_->dead_letter(std::exchange(i.e, nullptr), i.target.get(), dead_letter_reason::unconfirmed);
    } else if (i.control) {
      discard(*i.control, dead_letter_reason::unconfirmed);
    }
  }

  // Its node is lost to everyone here.
  void lost(const std::string& why) {
    t_.fail_spawns(address_, "it is lost: " + why);
    std::vector<process_ref> proxies;
    {
      std::lock_guard lock(proxies_mu_);
      for (auto& [id, p] : proxies_)
        if (p->try_retain()) proxies.push_back(process_ref::adopt(p));
    }
    for (process_ref& p : proxies) {
      for (process_ref& w : static_cast<remote_process*>(p.get())->take_watchers()) {
        auto* m = new system_message(system_kind::terminated, p);
        m->reason = terminated_reason::node_lost;
        w->send_system(m);
      }
    }
    std::vector<std::pair<process_ref, process_ref>> watches;
    {
      std::lock_guard lock(watches_mu_);
      watches = std::exchange(inbound_watches_, {});
    }
    for (auto& [target, watcher] : watches)
      target->send_system(new system_message(system_kind::unwatch, watcher));
    if (owned_) drop_queued(dead_letter_reason::node_lost);
  }

  // The backoff ended: what is queued goes (dialing first), and a seed or
  // a peer whose link went is dialed even with nothing queued.
  void retry() {
    if (t_.stopped()) return;
    if (owned_) drain();
    if ((wanted_ || reconnecting_) && !conn_ && !dialing_ && pending_.empty()) dial();
  }

  void want_connection() {
    if (dialing_ || !pending_.empty()) return;  // a connection is on its way
    const std::int64_t now = steady_ns();
    if (unreachable_since_ != 0 &&
        now - unreachable_since_ >
            std::chrono::duration_cast<std::chrono::nanoseconds>(t_.opts_.unreachable_timeout)
                .count()) {
      // Unreachable for too long: what waits becomes dead letters; the
      // next send tries again.
      unreachable_since_ = now;
      drop_queued(dead_letter_reason::node_lost);
      return;
    }
    if (retry_.pending()) return;
    if (now < next_attempt_ns_) {
      arm_retry(std::chrono::nanoseconds(next_attempt_ns_ - now));
      return;
    }
    dial();
  }

  void dial() {
    auto c = std::make_unique<connection>(t_, true, shared_from_this());
    dialing_ = c.get();
    {
      std::lock_guard lock(info_mu_);
      set_state_locked("connecting");
    }
    connection* raw = c.get();
    t_.connections_.push_back(std::move(c));
    raw->start_dial();
  }

  void dial_failed() {
    if (unreachable_since_ == 0) unreachable_since_ = steady_ns();
    ++failures_;
    {
      std::string why;
      {
        std::lock_guard lock(info_mu_);
        why = last_error_.empty() ? "it could not be reached" : last_error_;
      }
      t_.fail_spawns(address_, why);
    }
    // Exponential backoff with jitter over its upper half: a random delay
    // in [d/2, d], d = min * 2^(failures-1), capped.
    const auto min = std::chrono::duration_cast<std::chrono::nanoseconds>(t_.opts_.backoff_min);
    const auto max = std::chrono::duration_cast<std::chrono::nanoseconds>(t_.opts_.backoff_max);
    const unsigned shift = std::min(failures_ - 1, 20u);
    const std::int64_t d = std::min<std::int64_t>(max.count(), min.count() << shift);
    thread_local std::mt19937_64 rng{std::random_device{}()};
    const std::int64_t delay = d / 2 + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(d / 2 + 1));
    next_attempt_ns_ = steady_ns() + delay;
    if (owned_ && queue_.owner_nonempty()) {
      arm_retry(std::chrono::nanoseconds(delay));
      return;
    }
    if (owned_ && release_queue()) owned_ = false;
    if (wanted_ || reconnecting_) arm_retry(std::chrono::nanoseconds(delay));
  }

  // Peers without a connection are counted by state beside the
  // connections (troupe_remote_connections{state="backoff"|"idle"}).
  void set_state_locked(const char* to) {
    auto slot = [](std::string_view s) -> int {
      return s == "backoff" ? 0 : s == "idle" ? 1 : s == "down" ? 2 : -1;
    };
    if (int i = slot(state_name_); i >= 0) t_.stats_.peers_waiting[i].fetch_sub(1, std::memory_order_relaxed);
    if (int i = slot(to); i >= 0) t_.stats_.peers_waiting[i].fetch_add(1, std::memory_order_relaxed);
    state_name_ = to;
  }

  // Something waits for a connection: queued messages, or a seed.
  bool wants_connection() noexcept {
    return wanted_ || reconnecting_ || (owned_ && queue_.owner_nonempty());
  }

  void arm_retry(std::chrono::nanoseconds delay) {
    std::weak_ptr<peer> self = weak_from_this();
    retry_ = t_.loop_.arm(delay, [self] {
      if (auto p = self.lock()) p->retry();
    });
    std::lock_guard lock(info_mu_);
    set_state_locked("backoff");
  }

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

remote_process::~remote_process() { peer_->forget_proxy(this); }

const std::string& remote_process::address() const noexcept { return peer_->address(); }

void remote_process::send_user(envelope* e) noexcept {
  auto* o = new outbound;
  o->e = e;
  o->target = process_ref(this);
  peer_->enqueue(o);
}

void remote_process::send_system(system_message* m) noexcept {
  outbound* o = nullptr;
  switch (m->kind) {
    case system_kind::watch:
      if (!m->who) break;
      add_watcher(m->who);
      o = new outbound;
      o->kind = item_kind::watch;
      o->other = m->who;
      break;
    case system_kind::unwatch:
      if (!m->who) break;
      remove_watcher(m->who.get());
      o = new outbound;
      o->kind = item_kind::unwatch;
      o->other = m->who;
      break;
    case system_kind::terminated:
      // A local actor that this (remote) watcher watched has stopped.
      if (!m->who) break;
      o = new outbound;
      o->kind = item_kind::terminated;
      o->other = m->who;
      o->text = m->who->id();
      o->reason = static_cast<std::uint8_t>(m->reason);
      break;
    case system_kind::stop:
      o = new outbound;
      o->kind = item_kind::stop;
      break;
    default:
      break;
  }
  delete m;
  if (o) {
    o->target = process_ref(this);
    peer_->enqueue(o);
  }
}

// ---------------------------------------------------------------------------

connection::connection(transport& t, bool dialer, std::shared_ptr<peer> p)
    : t_(t),
      dialer_(dialer),
      peer_(std::move(p)),
      s_(t.opts_.self, *this),
      enc_(t.opts_.self.max_frame),
      opened_ns_(steady_ns()),
      last_heard_ns_(opened_ns_),
      last_write_ns_(opened_ns_) {
  tcp_.data = this;
  if (t_.tls() != nullptr) {
    tls_ = std::make_unique<tls_channel>(*t_.tls(), dialer);
    rbuf_.resize(64 << 10);
  }
  t_.connection_opened(state_);
}

void connection::end_pending() {
  if (!pending_) return;
  pending_ = false;
  t_.handshake_done(source_);
}

void connection::move_state(connection_state to) {
  t_.connection_moved(state_, to);
  state_ = to;
}

void connection::start_dial() {
  std::string host, port;
  std::string error;
  if (!split_address(peer_->address(), host, port, error)) {
    close(close_reason::io_error, "cannot dial " + peer_->address() + ": " + error);
    return;
  }
  resolve_req_.data = this;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const int rc = uv_getaddrinfo(t_.loop_.uv(), &resolve_req_, on_resolved, host.c_str(),
                                port.c_str(), &hints);
  resolving_ = rc == 0;
  if (rc != 0) close(close_reason::io_error, "cannot resolve " + peer_->address() + ": " + uv_text(rc));
}

void connection::on_resolved(uv_getaddrinfo_t* req, int status, struct addrinfo* res) {
  auto* self = static_cast<connection*>(req->data);
  self->resolving_ = false;
  if (self->closing_) {
    uv_freeaddrinfo(res);
    self->t_.forget(self);
    return;
  }
  if (status != 0 || !res) {
    uv_freeaddrinfo(res);
    self->close(close_reason::io_error,
                "cannot resolve " + self->peer_->address() + ": " + uv_text(status));
    return;
  }
  uv_tcp_init(self->t_.loop_.uv(), &self->tcp_);
  self->tcp_open_ = true;
  self->connect_req_.data = self;
  const int rc = uv_tcp_connect(&self->connect_req_, &self->tcp_, res->ai_addr, on_connected);
  uv_freeaddrinfo(res);
  if (rc != 0)
    self->close(close_reason::io_error,
                "cannot connect to " + self->peer_->address() + ": " + uv_text(rc));
}

void connection::on_connected(uv_connect_t* req, int status) {
  auto* self = static_cast<connection*>(req->data);
  if (self->closing_) return;
  if (status != 0) {
    self->refused_ = status == UV_ECONNREFUSED;
    self->close(close_reason::io_error,
                "cannot connect to " + self->peer_->address() + ": " + uv_text(status));
    return;
  }
  self->begin();
}

bool connection::accept(uv_stream_t* server) {
  uv_tcp_init(t_.loop_.uv(), &tcp_);
  tcp_open_ = true;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&tcp_)) != 0) return false;
  sockaddr_storage addr{};
  int len = sizeof addr;
  char ip[INET6_ADDRSTRLEN] = "?";
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    if (addr.ss_family == AF_INET6)
      uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&addr), ip, sizeof ip);
    else
      uv_ip4_name(reinterpret_cast<sockaddr_in*>(&addr), ip, sizeof ip);
  }
  source_ = ip;
  begin();
  return true;
}

void connection::begin() {
  uv_tcp_nodelay(&tcp_, 1);
  move_state(connection_state::handshaking);
  opened_ns_ = last_heard_ns_ = steady_ns();
  if (!tls_) {
    s_.start();
  } else if (dialer_) {
    int rc;
    {
      std::lock_guard lock(wmu_);
      tls_->handshake();  // the client's hello
      rc = flush_locked(true);
    }
    if (rc < 0) return fail_write();
  }
  uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc, on_read);
}

void connection::on_alloc(uv_handle_t* h, std::size_t hint, uv_buf_t* buf) {
  auto* self = static_cast<connection*>(h->data);
  std::span<std::uint8_t> room =
      self->tls_ ? std::span<std::uint8_t>(self->rbuf_)
                 : self->s_.prepare(std::max<std::size_t>(hint, 64 << 10));
  *buf = uv_buf_init(reinterpret_cast<char*>(room.data()), static_cast<unsigned>(room.size()));
}

void connection::on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* self = static_cast<connection*>(s->data);
  if (self->closing_) return;
  if (n > 0) {
    self->t_.stats_.bytes_received.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    if (self->peer_ && self->state_ == connection_state::up)
      self->peer_->count_received(0, static_cast<std::uint64_t>(n));
    // The first actor this read makes runnable may run here when it ends
    // (see dispatcher::hold): a reply then leaves without a thread hand-off.
    dispatcher::hold hold(self->t_.system().dispatcher());
    if (self->tls_) {
      if (self->read_tls(static_cast<std::size_t>(n))) self->send_ack_if_due(ack_every);
      return;
    }
    if (!self->read_any_) {
      self->read_any_ = true;
      // A TLS record where a frame's length should be.
      const auto* first = reinterpret_cast<const std::uint8_t*>(buf->base);
      if (n >= 2 && first[0] == 0x16 && first[1] == 0x03) {
        self->close(close_reason::tls,
                    "the peer speaks TLS, this node plaintext (remote.insecure_plaintext is set "
                    "on one side only?)");
        return;
      }
    }
    if (!self->s_.commit(static_cast<std::size_t>(n))) {
      if (self->s_.reason() == close_reason::protocol)
        self->t_.stats_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
      self->close(self->s_.reason(), self->s_.detail());
      return;
    }
    self->send_ack_if_due(ack_every);
  } else if (n == UV_EOF) {
    self->close(close_reason::peer_closed, "the peer closed the connection");
  } else if (n < 0) {
    self->close(close_reason::io_error, "read failed: " + uv_text(static_cast<int>(n)));
  }
}

bool connection::read_tls(std::size_t n) {
  if (!read_any_) {
    read_any_ = true;
    // Every TLS connection starts with a handshake record.
    if (rbuf_[0] != 0x16) {
      close(close_reason::tls,
            "the peer does not speak TLS (remote.insecure_plaintext is set on one side only?)");
      return false;
    }
  }
  bool established_now = false, plaintext = false;
  int rc;
  tls_channel::status st;
  {
    std::lock_guard lock(wmu_);
    tls_->received({rbuf_.data(), n});
    if (!tls_->established() && tls_->handshake() == tls_channel::status::established)
      established_now = true;
    if (tls_->established()) {
      for (;;) {
        std::span<std::uint8_t> room = s_.prepare(16 << 10);
        const long got = tls_->read(room);
        if (got <= 0) break;
        s_.received(static_cast<std::size_t>(got));
        plaintext = true;
      }
    }
    rc = flush_locked(true);  // handshake records, alerts
    st = tls_->state();
  }
  if (rc < 0) {
    fail_write();
    return false;
  }
  // Hello goes first, before anything the peer sent in the same read is
  // answered.
  if (established_now) {
    channel_established_ = true;
    t_.log(log_level::debug, "remote: TLS with " + (peer_ ? peer_->address() : source_) + " established (" +
                  tls_->cipher() + ")");
    s_.start();
  }
  // What arrived before the channel closed counts (a Disconnect saying why).
  if (plaintext && !s_.process()) {
    if (s_.reason() == close_reason::protocol)
      t_.stats_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    close(s_.reason(), s_.detail());
    return false;
  }
  if (st != tls_channel::status::open) {
    fail_tls();
    return false;
  }
  return true;
}

// The channel closed or failed: say why in the peer's and operator's terms.
void connection::fail_tls() {
  std::string error;
  bool unknown_key, established;
  tls_channel::status st;
  {
    std::lock_guard lock(wmu_);
    error = tls_->error();
    unknown_key = tls_->unknown_key();
    established = tls_->established();
    st = tls_->state();
  }
  if (st == tls_channel::status::closed)
    return close(close_reason::peer_closed, "the peer closed the connection");
  if (established) {
    t_.stats_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    return close(close_reason::protocol, "a TLS record does not verify: " + error);
  }
  if (unknown_key)
    return close(close_reason::secret,
                 "the peer holds none of this node's cluster secrets (a different secret_file?)");
  if (t_.tls()->certificates() && error.find("certificate") != std::string::npos)
    return close(close_reason::certificate, "the peer's certificate is refused: " + error);
  if (dialer_ && error.find("alert") != std::string::npos)
    return close(close_reason::refused,
                 "the peer refused the TLS handshake (" + error +
                     "): it holds none of this node's secrets, or trusts another CA");
  close(close_reason::tls, "the TLS handshake failed: " + error);
}

void connection::take_tls_output_locked() {
  std::vector<std::uint8_t>& out = tls_->output();
  if (out.empty()) return;
  segment s;
  s.bytes.swap(out);
  backlog_ += s.bytes.size();
  queued_.push_back(std::move(s));
}

void connection::write(std::span<const std::uint8_t> frame) {
  if (!closing_) return send_now(frame);
  // Closing: close() writes what is queued, once.
  std::lock_guard lock(wmu_);
  queue_bytes_locked(frame);
}

void connection::send_now(std::span<const std::uint8_t> bytes) {
  int rc;
  {
    std::lock_guard lock(wmu_);
    queue_bytes_locked(bytes);
    rc = flush_locked(true);
  }
  if (rc < 0) fail_write();
}

void connection::fail_write() {
  int err;
  {
    std::lock_guard lock(wmu_);
    err = write_error_;
  }
  close(close_reason::io_error, "write failed: " + uv_text(err));
}

void connection::queue_bytes_locked(std::span<const std::uint8_t> bytes) {
  if (tls_) {
    // Encrypted now, in the order frames are queued; before the channel is
    // up there is no key, and nothing of the session's is sent.
    if (tls_->established() && !tls_->write(bytes) && write_error_ == 0) write_error_ = UV_EPROTO;
    return;
  }
  segment s;
  s.bytes.assign(bytes.begin(), bytes.end());
  backlog_ += s.bytes.size();
  queued_.push_back(std::move(s));
}

void connection::queue_batch_locked() {
  enc_.finish(batch_seq_, ack_value());
  if (tls_) {
    flatbuffers::DetachedBuffer frame = enc_.release();
    if (!tls_->write({frame.data(), frame.size()}) && write_error_ == 0) write_error_ = UV_EPROTO;
    return;
  }
  segment s;
  s.fb = enc_.release();
  backlog_ += s.fb.size();
  queued_.push_back(std::move(s));
}

int connection::flush_locked(bool on_loop) {
  if (write_error_ != 0) return -1;
  if (tls_) take_tls_output_locked();
  if (write_busy_ || queued_.empty() || !tcp_open_ || closing_) return 0;
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&tcp_), &fd) != 0) return 0;
  // No uv_write is in flight, so libuv holds nothing for this socket: a
  // plain writev keeps the order, from any thread holding wmu_.
  iov_.clear();
  for (const segment& s : queued_)
    iov_.push_back({const_cast<std::uint8_t*>(s.data() + s.offset), s.size() - s.offset});
  std::size_t written = 0;
  for (std::size_t first = 0; first < iov_.size();) {
    const std::size_t count = std::min<std::size_t>(iov_.size() - first, IOV_MAX);
    std::size_t offered = 0;
    for (std::size_t i = first; i < first + count; ++i) offered += iov_[i].iov_len;
    const ssize_t n = ::writev(fd, iov_.data() + first, static_cast<int>(count));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      write_error_ = uv_translate_sys_error(errno);
      return -1;
    }
    written += static_cast<std::size_t>(n);
    if (static_cast<std::size_t>(n) < offered) break;  // the socket is full
    first += count;
  }
  last_write_ns_ = steady_ns();
  t_.stats_.bytes_sent.fetch_add(written, std::memory_order_relaxed);
  if (peer_) peer_->count_sent_bytes(written);
  backlog_ -= written;
  std::size_t done = 0;
  while (done < queued_.size() && written >= queued_[done].size() - queued_[done].offset) {
    written -= queued_[done].size() - queued_[done].offset;
    ++done;
  }
  if (done < queued_.size()) queued_[done].offset += written;
  queued_.erase(queued_.begin(), queued_.begin() + static_cast<std::ptrdiff_t>(done));
  if (queued_.empty()) return 0;
  if (!on_loop) return 1;
  // The socket is full: hand the rest to libuv and wait for it.
  writing_ = std::move(queued_);
  queued_.clear();
  bufs_.clear();
  for (const segment& s : writing_)
    bufs_.push_back(uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(s.data() + s.offset)),
                                static_cast<unsigned>(s.size() - s.offset)));
  write_req_.data = this;
  const int rc = uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), bufs_.data(),
                          static_cast<unsigned>(bufs_.size()), on_written);
  if (rc != 0) {
    write_error_ = rc;
    return -1;
  }
  write_busy_ = true;
  return 0;
}

void connection::on_written(uv_write_t* req, int status) {
  auto* self = static_cast<connection*>(req->data);
  int rc = 0;
  {
    std::lock_guard lock(self->wmu_);
    self->write_busy_ = false;
    std::size_t bytes = 0;
    for (const segment& s : self->writing_) bytes += s.size() - s.offset;
    self->writing_.clear();
    if (status == UV_ECANCELED) return;  // closing
    self->backlog_ -= bytes;
    self->t_.stats_.bytes_sent.fetch_add(bytes, std::memory_order_relaxed);
    if (self->peer_) self->peer_->count_sent_bytes(bytes);
    if (status != 0) self->write_error_ = status;
    rc = self->flush_locked(true);
  }
  if (rc < 0) return self->fail_write();
  if (self->peer_ && self->peer_->up_connection() == self) self->peer_->drain();
}

session_events::verdict connection::on_hello(const peer_hello& hello) {
  if (tls_ && t_.tls()->certificates()) {
    bool names;
    {
      std::lock_guard lock(wmu_);
      names = tls_->certificate_names(hello.node);
    }
    if (!names)
      return {false, close_reason::certificate,
              "the peer says it is node '" + hello.node + "' but its certificate names another"};
  }
  if (dialer_ && hello.address != peer_->address())
    return {false, close_reason::address,
            "dialed " + peer_->address() + " but the node there advertises " + hello.address};
  if (!peer_) peer_ = t_.peer_for(hello.address);
  verdict v = peer_->judge(*this, hello);
  if (v.accept) v.received = peer_->received_from(hello.incarnation);
  return v;
}

void connection::on_up(std::uint64_t received) {
  end_pending();
  move_state(connection_state::up);
  last_heard_ns_ = steady_ns();
  peer_->attach(*this, s_.peer(), received);
}

void connection::on_ack(std::uint64_t ack) { peer_->on_ack(ack); }

std::uint64_t connection::ack_value() noexcept { return peer_ ? peer_->ack_value() : 0; }

void connection::send_ack_if_due(std::uint64_t threshold) {
  if (closing_ || state_ != connection_state::up || !peer_->ack_due(threshold)) return;
  send_now(encode_frame(0, ack_value(), [](flatbuffers::FlatBufferBuilder& b) {
    return std::pair(wire::Body::Ack, wire::CreateAck(b).Union());
  }));
}

void connection::tick(std::int64_t now) {
  if (closing_) return;
  using std::chrono::nanoseconds;
  const auto& o = t_.opts_;
  if (state_ != connection_state::up) {
    if (now - opened_ns_ > std::chrono::duration_cast<nanoseconds>(o.handshake_timeout).count())
      close(close_reason::handshake_timeout,
            "the handshake did not finish within " +
                std::to_string(o.handshake_timeout.count()) + " ms");
    return;
  }
  if (s_.take_activity() || paused_) last_heard_ns_ = now;
  if (now - last_heard_ns_ > std::chrono::duration_cast<nanoseconds>(o.heartbeat_timeout).count()) {
    close(close_reason::heartbeat_timeout,
          "nothing heard for " + std::to_string(o.heartbeat_timeout.count()) + " ms");
    return;
  }
  std::int64_t last_write;
  {
    std::lock_guard lock(wmu_);
    last_write = last_write_ns_;
  }
  if (now - last_write >= std::chrono::duration_cast<nanoseconds>(o.heartbeat_interval).count())
    send_now(encode_frame(0, ack_value(), [](flatbuffers::FlatBufferBuilder& b) {
      return std::pair(wire::Body::Heartbeat, wire::CreateHeartbeat(b).Union());
    }));
  else
    send_ack_if_due(1);
}

void connection::on_frame(const wire::Frame& f) {
  if (f.body_type() == wire::Body::Batch) {
    const wire::Batch& b = *f.body_as_Batch();
    const std::uint64_t n = b.envelopes() ? b.envelopes()->size() : 0;
    return deliver(b, peer_->admit(f.seq(), n));
  }
  // Every other item is one number: a resent one that arrived already is
  // dropped.
  if (peer_->admit(f.seq(), 1) != 0) return;
  switch (f.body_type()) {
    case wire::Body::Watch: {
      const wire::Watch& w = *f.body_as_Watch();
      process_ref watcher = t_.resolve_pid(view(w.watcher()));
      if (!watcher) return;
      process_ref target = t_.local(view(w.target()));
      if (!target) {
        // The id travels as text: there is no process for it.
        auto* o = new outbound;
        o->kind = item_kind::terminated;
        o->target = watcher;
        o->text = std::string(view(w.target()));
        o->reason = static_cast<std::uint8_t>(terminated_reason::not_found);
        if (auto* r = dynamic_cast<remote_process*>(watcher.get())) r->owner().enqueue(o);
        else delete o;
        return;
      }
      peer_->inbound_watch(target, watcher);
      target->send_system(new system_message(system_kind::watch, watcher));
      return;
    }
    case wire::Body::Unwatch: {
      const wire::Unwatch& w = *f.body_as_Unwatch();
      process_ref watcher = t_.resolve_pid(view(w.watcher()));
      process_ref target = t_.local(view(w.target()));
      if (!watcher || !target) return;
      peer_->inbound_unwatch(target.get(), watcher.get());
      target->send_system(new system_message(system_kind::unwatch, watcher));
      return;
    }
    case wire::Body::Terminated: {
      const wire::Terminated& t = *f.body_as_Terminated();
      process_ref watcher = t_.local(view(t.watcher()));
      process_ref who = peer_->proxy(view(t.target()));
      static_cast<remote_process*>(who.get())->remove_watcher(watcher.get());
      if (!watcher) return;
      auto* m = new system_message(system_kind::terminated, who);
      m->reason = t.reason() <= static_cast<std::uint8_t>(terminated_reason::node_lost)
                      ? static_cast<terminated_reason>(t.reason())
                      : terminated_reason::stopped;
      watcher->send_system(m);
      return;
    }
    case wire::Body::Stop: {
      if (process_ref target = t_.local(view(f.body_as_Stop()->target())))
        target->send_system(new system_message(system_kind::stop));
      return;
    }
    case wire::Body::SpawnRequest: {
      const wire::SpawnRequest& r = *f.body_as_SpawnRequest();
      const std::string kind(view(r.kind()));
      spawn_reply reply;
      if (!t_.spawn_allowed(kind)) {
        reply.status = TROUPE_ERR_STATE;
        reply.error = "this node does not let peers spawn '" + kind + "' (remote.spawn)";
      } else {
        reply = t_.spawn_local(kind, std::string(view(r.name())));
      }
      auto* o = new outbound;
      o->kind = item_kind::spawn_response;
      o->request = r.request();
      o->status = reply.status;
      o->text = reply.who ? reply.who.id() : std::string();
      o->text2 = reply.error;
      peer_->enqueue(o);
      return;
    }
    case wire::Body::SpawnResponse: {
      const wire::SpawnResponse& r = *f.body_as_SpawnResponse();
      spawn_reply reply;
      reply.status = r.status();
      reply.error = std::string(view(r.error()));
      if (reply.status == 0 && r.id() && r.id()->size() > 0)
        reply.who = pid(peer_->proxy(view(r.id())));
      else if (reply.status == 0)
        reply = {TROUPE_ERR_STATE, pid(), "the peer answered without an actor id"};
      t_.complete_spawn(r.request(), std::move(reply));
      return;
    }
    default:
      return;  // Hello, Auth, Heartbeat and Disconnect are the session's
  }
}

void connection::deliver(const wire::Batch& b, std::uint64_t skip) {
  const auto* targets = b.targets();
  const auto* senders = b.senders();
  const auto* envs = b.envelopes();
  if (!envs || envs->size() <= skip) return;
  const std::uint32_t nt = targets ? targets->size() : 0;
  const std::uint32_t ns = senders ? senders->size() : 0;
  // Check every index before anything is delivered: a bad batch is refused whole.
  if (!batch_indexes_valid(b)) {
    t_.stats_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    close(close_reason::protocol, "a Batch envelope points past its tables, or its type ids are misaligned");
    return;
  }
  targets_.clear();
  for (std::uint32_t i = 0; i < nt; ++i) targets_.push_back(t_.local(view(targets->Get(i))));
  senders_.clear();
  for (std::uint32_t i = 0; i < ns; ++i) senders_.push_back(sender(view(senders->Get(i))));
  deliver_from(b, static_cast<std::uint32_t>(skip), false);
}

void connection::deliver_from(const wire::Batch& b, std::uint32_t i, bool force) {
  const auto* types = b.types();
  const auto* envs = b.envelopes();
  const std::uint32_t n = envs->size();
  actor_system& sys = *t_.sys_;
  std::uint32_t delivered = 0;
  while (i < n) {
    const wire::Envelope* w = envs->Get(i++);
    const auto* payload = w->payload();
    envelope* e = make_envelope(types->Get(w->type()), payload ? payload->data() : nullptr,
                                payload ? payload->size() : 0);
    if (w->sender() != 0) {
      if (process* s = senders_[w->sender() - 1].get()) {
        s->retain();
        e->sender = s;
      }
    }
    if (const auto* hs = w->headers(); hs && hs->size() > 0) {
      std::vector<headers::entry> entries;
      entries.reserve(hs->size());
      for (const wire::Header* h : *hs)
        entries.emplace_back(std::string(view(h->key())), std::string(view(h->value())));
      e->hdrs = headers::make(std::move(entries));
    }
    process* target = targets_[w->target()].get();
    if (target != nullptr)
      target->send_user(e);
    else
      sys.dead_letter(e, nullptr, dead_letter_reason::not_found);
    ++delivered;
    if (force) continue;
    // The target's mailbox after each message; the budget, a sum over
    // every thread, now and then and after the last.
    const bool full = target != nullptr && target->pressure() >= pause_at;
    if (!full && (delivered % 1024 != 0 && i != n)) continue;
    if (!full && sys.queue_pressure() < pause_at) continue;
    // The rest of the batch waits in the session's buffer, which nothing
    // touches until reading resumes.
    held_ = i < n ? &b : nullptr;
    held_next_ = i;
    pause(full ? target : nullptr);
    break;
  }
  t_.stats_.messages_received.fetch_add(delivered, std::memory_order_relaxed);
  peer_->count_received(delivered, 0);
}

void connection::pause(process* full) {
  paused_ = true;
  blocker_ = process_ref(full);
  paused_ns_ = steady_ns();
  s_.hold(true);
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  t_.paused(*this);
}

bool connection::drained() const noexcept {
  if (t_.sys_->queue_pressure() > resume_at) return false;
  return !blocker_ || blocker_->dead() || blocker_->pressure() <= resume_at;
}

void connection::resume() {
  paused_ = false;
  blocker_.reset();
  const std::int64_t now = steady_ns();
  t_.stats_.paused_ns.fetch_add(static_cast<std::uint64_t>(now - paused_ns_), std::memory_order_relaxed);
  // Nothing was read meanwhile, by choice: the peer is not quiet.
  last_heard_ns_ = now;
  {
    dispatcher::hold hold(t_.system().dispatcher());
    // What was read before the pause first, the rest of a batch first of
    // all; it may pause again.
    if (const wire::Batch* b = std::exchange(held_, nullptr)) {
      deliver_from(*b, held_next_, false);
      if (paused_) return;
    }
    s_.hold(false);
    if (!s_.process()) {
      if (s_.reason() == close_reason::protocol)
        t_.stats_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
      close(s_.reason(), s_.detail());
      return;
    }
  }
  if (!paused_ && !closing_) {
    send_ack_if_due(ack_every);
    uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc, on_read);
  }
}

process_ref connection::sender(std::string_view pid_text) {
  if (auto it = sender_cache_.find(pid_text); it != sender_cache_.end()) return it->second;
  process_ref p = t_.resolve_pid(pid_text);
  // Only other nodes' actors: a PID of this node names an actor that may
  // stop and have its name taken by another, and is looked up each time.
  const std::string& self = t_.opts_.self.address;
  const bool local = pid_text.size() > self.size() && pid_text.starts_with(self) &&
                     pid_text[self.size()] == '/';
  if (p && !local) {
    constexpr std::size_t cap = 256;
    if (sender_cache_.size() == cap) sender_cache_.clear();
    sender_cache_.emplace(pid_text, p);
  }
  return p;
}

void connection::close(close_reason reason, std::string detail) {
  if (closing_) return;
  closing_ = true;
  if (is_handshake_failure(reason))
    t_.stats_.handshake_failures[static_cast<std::size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
  t_.log_close(*this, reason, detail);
  // The rest of a held batch was acknowledged with it: it is delivered.
  if (const wire::Batch* b = std::exchange(held_, nullptr)) deliver_from(*b, held_next_, true);
  if (paused_) {
    paused_ = false;
    blocker_.reset();
    t_.stats_.paused_ns.fetch_add(static_cast<std::uint64_t>(steady_ns() - paused_ns_),
                                  std::memory_order_relaxed);
    t_.unpaused(*this);
  }
  // First out of the peer's reach, so that no worker writes to it any more.
  if (peer_) peer_->connection_closed(*this, reason, detail);
  t_.connection_closed(state_);
  targets_.clear();
  senders_.clear();
  sender_cache_.clear();
  if (state_ == connection_state::up && peer_ && peer_->ack_due(1)) {
    // What arrived is acknowledged before the goodbye: a peer that leaves
    // must not leave what it received counted as unconfirmed.
    std::lock_guard lock(wmu_);
    queue_bytes_locked(encode_frame(0, ack_value(), [](flatbuffers::FlatBufferBuilder& b) {
      return std::pair(wire::Body::Ack, wire::CreateAck(b).Union());
    }));
  }
  s_.close(reason, detail);  // queues a Disconnect (write() only queues now)
  end_pending();
  {
    // Tell the peer why (best effort, once): the connection goes whatever
    // happens to these bytes.
    std::lock_guard lock(wmu_);
    if (tls_) {
      tls_->shutdown();
      take_tls_output_locked();
    }
    if (tcp_open_ && !write_busy_ && !queued_.empty()) {
      bufs_.clear();
      for (const segment& seg : queued_)
        bufs_.push_back(uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(seg.data() + seg.offset)),
                                    static_cast<unsigned>(seg.size() - seg.offset)));
      uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), bufs_.data(),
                   static_cast<unsigned>(bufs_.size()));
    }
  }
  if (tcp_open_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_closed);
  } else if (resolving_) {
    // The resolver's callback forgets this connection.
    uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_req_));
  } else {
    // Nothing of libuv's holds it: forget it once the caller is done with it.
    transport* t = &t_;
    t_.loop_.post([t, self = this] { t->forget(self); });
  }
}

void connection::on_closed(uv_handle_t* h) {
  auto* self = static_cast<connection*>(h->data);
  self->t_.forget(self);
}

// ---------------------------------------------------------------------------

transport::transport(event_loop& loop, options opts) : loop_(loop), opts_(std::move(opts)) {
  opts_.self.incarnation = random_u64();
}

// shutdown() unhooked it from the system, which may be gone by now.
transport::~transport() = default;

bool transport::bind(std::string& error) {
  if (!opts_.insecure_plaintext) {
    tls_ = tls_context::make(opts_.creds, error);
    if (!tls_) return false;
  }
  if (!opts_.listen.empty()) {
    sockaddr_storage addr{};
    if (!parse_ip_address(opts_.listen, addr, error)) return false;
    uv_tcp_init(loop_.uv(), &listener_);
    listener_.data = this;
    listening_ = true;
    int rc = uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0);
    if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 256, on_connection);
    if (rc != 0) {
      error = "cannot listen on " + opts_.listen + ": " + uv_text(rc);
      return false;
    }
    sockaddr_storage bound{};
    int len = sizeof bound;
    uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&bound), &len);
    port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                              : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    if (opts_.self.address.empty())
      opts_.self.address = opts_.listen.substr(0, opts_.listen.rfind(':') + 1) + std::to_string(port_);
  }
  return true;
}

void transport::start(actor_system& sys) {
  sys_ = &sys;
  // libuv writes with write(2): a peer that went away raises SIGPIPE, whose
  // default ends the process. Ignored unless the program chose a handler.
  struct sigaction pipe {};
  if (::sigaction(SIGPIPE, nullptr, &pipe) == 0 && pipe.sa_handler == SIG_DFL)
    ::signal(SIGPIPE, SIG_IGN);
  const auto every = std::max(opts_.heartbeat_interval / 2, std::chrono::milliseconds(10));
  ticker_ = loop_.arm_repeating(every, every, [this] {
    tick();
    return true;
  });
  sys_->set_remote(this);
}

void transport::log_close(const connection& c, close_reason reason, const std::string& detail) {
  const std::string who = c.peer_ ? c.peer_->address()
                                 : "an unidentified peer" + (c.source_.empty() ? "" : " from " + c.source_);
  switch (reason) {
    case close_reason::duplicate:
      log(log_level::debug, "remote: connection to " + who + " closed: " + detail);
      return;
    case close_reason::shutdown:
      return;
    case close_reason::peer_left:
      log(log_level::info, "remote: " + who + " left (it is stopping)");
      return;
    default:
      break;
  }
  if (!c.peer_ && !c.channel_established_ && is_handshake_failure(reason)) {
    // Whoever did not get through the TLS handshake is nobody yet: a flood
    // of such connections is one event per 1,024 of a kind, not a line each.
    const std::uint64_t n = ++unidentified_refusals_[static_cast<std::size_t>(reason)];
    if (n % 1024 == 1)
      log(log_level::warning, "remote: refused " + who + " (" + to_string(reason) + ", " + std::to_string(n) +
                 (n == 1 ? " so far" : " so far, logged once per 1,024") + "): " + detail);
    return;
  }
  if (is_handshake_failure(reason)) {
    log(log_level::warning, "remote: refused " + who + " (" + to_string(reason) + "): " + detail);
  } else if (reason == close_reason::protocol) {
    log(log_level::warning, "remote: closed the connection of " + who + " (protocol error): " + detail);
  } else if (c.state_ == connection_state::up) {
    log(log_level::warning, "remote: lost " + who + " (" + to_string(reason) + "): " + detail);
  } else {
    // A peer that stays down (a seed, say) is dialed again and again: the
    // first failure is news, then one line every 64 attempts.
    const unsigned before = c.peer_ ? c.peer_->failures() : 0;
    if (before == 0)
      log(log_level::info, "remote: cannot reach " + who + ": " + detail);
    else if (before % 64 == 0)
      log(log_level::info, "remote: still cannot reach " + who + " after " + std::to_string(before + 1) +
                 " attempts: " + detail);
    else
      log(log_level::debug, "remote: cannot reach " + who + ": " + detail);
  }
}

void transport::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<transport*>(server->data);
  if (status != 0 || self->stopped()) return;
  auto c = std::make_unique<connection>(*self, false, nullptr);
  connection* raw = c.get();
  self->connections_.push_back(std::move(c));
  if (!raw->accept(server)) return raw->close(close_reason::io_error, "accept failed");
  std::string why;
  if (!self->admit(raw->source_, why)) return raw->close(close_reason::limit, why);
  raw->pending_ = true;
}

bool transport::admit(const std::string& source, std::string& why) {
  const std::uint32_t from_source = pending_by_source_[source];
  if (connections_.size() > opts_.max_connections)
    why = "this node has " + std::to_string(connections_.size() - 1) +
          " connections already (remote.max_connections)";
  else if (pending_total_ >= opts_.max_pending)
    why = std::to_string(pending_total_) +
          " connections are in their handshake already (remote.max_pending_connections)";
  else if (from_source >= opts_.max_pending_per_address)
    why = std::to_string(from_source) + " connections from " + source +
          " are in their handshake already (remote.max_pending_per_address)";
  if (why.empty()) {
    ++pending_total_;
    ++pending_by_source_[source];
    return true;
  }
  if (from_source == 0) pending_by_source_.erase(source);
  return false;
}

void transport::handshake_done(const std::string& source) {
  --pending_total_;
  auto it = pending_by_source_.find(source);
  if (it != pending_by_source_.end() && --it->second == 0) pending_by_source_.erase(it);
}

void transport::set_secrets(const std::vector<std::string>& secrets) {
  if (tls_) tls_->set_secrets(secrets);
}

void transport::paused(connection& c) {
  stats_.read_pauses.fetch_add(1, std::memory_order_relaxed);
  stats_.reads_paused.fetch_add(1, std::memory_order_relaxed);
  paused_.push_back(&c);
  if (!pressure_poll_.pending())
    pressure_poll_ = loop_.arm_repeating(std::chrono::milliseconds(1), std::chrono::milliseconds(1),
                                         [this] { return poll_paused(); });
  // The first pause at once, then a line at most every 10 s.
  const std::int64_t now = steady_ns();
  ++pauses_unlogged_;
  if (pause_logged_ns_ != 0 && now - pause_logged_ns_ < 10'000'000'000) return;
  std::string why;
  if (c.blocker_) {
    why = "actor " + c.blocker_->id();
    if (auto* ctx = dynamic_cast<context*>(c.blocker_.get()); ctx && !ctx->props().kind.empty())
      why += " (kind " + ctx->props().kind + ")";
    why += " has " + std::to_string(c.blocker_->pressure()) + "% of its mailbox full";
  } else {
    why = "the node's queued messages hold " + std::to_string(sys_->queue_pressure()) +
          "% of their budget (node.max_queued_bytes)";
  }
  log(log_level::info, "remote: stopped reading from " + (c.peer_ ? c.peer_->address() : c.source_) + ": " + why +
             "; its messages wait in its send queue until this drains" +
             (pauses_unlogged_ > 1 ? " (" + std::to_string(pauses_unlogged_) +
                                         " pauses since the last line)"
                                   : ""));
  pause_logged_ns_ = now;
  pauses_unlogged_ = 0;
}

void transport::unpaused(connection& c) noexcept {
  std::erase(paused_, &c);
  stats_.reads_paused.fetch_sub(1, std::memory_order_relaxed);
}

bool transport::poll_paused() {
  // Resuming may pause again (frames read before the pause): take the list.
  std::vector<connection*> now_paused;
  now_paused.swap(paused_);
  for (connection* c : now_paused) {
    if (!c->drained()) {
      paused_.push_back(c);
      continue;
    }
    stats_.reads_paused.fetch_sub(1, std::memory_order_relaxed);
    c->resume();
  }
  return !paused_.empty();
}

void transport::tick() {
  const std::int64_t now = steady_ns();
  for (std::size_t i = 0; i < connections_.size(); ++i) connections_[i]->tick(now);
  std::lock_guard lock(exports_mu_);
  std::erase_if(exports_, [](const auto& kv) { return kv.second->dead(); });
}

void transport::shutdown() {
  if (stopped_.exchange(true, std::memory_order_acq_rel)) return;
  if (sys_ != nullptr) sys_->set_remote(nullptr);  // null: bound, never started
  ticker_.cancel();
  pressure_poll_.cancel();
  for (std::size_t i = 0; i < connections_.size(); ++i)
    connections_[i]->close(close_reason::shutdown, "the node is stopping");
  std::vector<std::shared_ptr<peer>> ps;
  {
    std::lock_guard lock(peers_mu_);
    for (auto& [a, p] : peers_) ps.push_back(p);
  }
  for (auto& p : ps) p->shutdown();
  if (listening_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    listening_ = false;
  }
  std::vector<pending_spawn> spawns;
  {
    std::lock_guard lock(spawns_mu_);
    for (auto& [id, s] : spawns_) spawns.push_back(std::move(s));
    spawns_.clear();
  }
  for (auto& s : spawns) {
    s.timeout.cancel();
    s.done({TROUPE_ERR_STATE, pid(), "the node is stopping"});
  }
  std::lock_guard lock(exports_mu_);
  exports_.clear();
}

void transport::forget(connection* c) {
  std::erase_if(connections_, [&](const std::unique_ptr<connection>& x) { return x.get() == c; });
}

process_ref transport::resolve(std::string_view address, std::string_view id) {
  if (address == opts_.self.address) return local(id);
  return peer_for(address)->proxy(id);
}

std::shared_ptr<peer> transport::peer_for(std::string_view address) {
  std::lock_guard lock(peers_mu_);
  auto it = peers_.find(std::string(address));
  if (it != peers_.end()) return it->second;
  auto p = std::make_shared<peer>(*this, std::string(address));
  peers_.emplace(std::string(address), p);
  return p;
}

std::string transport::export_local(process* p) {
  std::string id = p->id();
  if (sys_->registry().lookup(id).get() == p) return id;
  std::lock_guard lock(exports_mu_);
  exports_.try_emplace(id, process_ref(p));
  return id;
}

process_ref transport::local(std::string_view id) {
  if (id.empty()) return {};
  if (process_ref p = sys_->registry().lookup(id)) return p;
  std::lock_guard lock(exports_mu_);
  auto it = exports_.find(std::string(id));
  return it == exports_.end() ? process_ref() : it->second;
}

process_ref transport::resolve_pid(std::string_view text) {
  const std::size_t slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == text.size()) return {};
  return resolve(text.substr(0, slash), text.substr(slash + 1));
}

void transport::connection_opened(connection_state s) noexcept {
  stats_.connections[static_cast<std::size_t>(s)].fetch_add(1, std::memory_order_relaxed);
}
void transport::connection_moved(connection_state from, connection_state to) noexcept {
  stats_.connections[static_cast<std::size_t>(from)].fetch_sub(1, std::memory_order_relaxed);
  stats_.connections[static_cast<std::size_t>(to)].fetch_add(1, std::memory_order_relaxed);
}
void transport::connection_closed(connection_state s) noexcept {
  stats_.connections[static_cast<std::size_t>(s)].fetch_sub(1, std::memory_order_relaxed);
}

bool transport::spawn_allowed(const std::string& kind) const {
  for (const std::string& k : opts_.spawnable)
    if (k == "*" || k == kind) return true;
  return false;
}

spawn_reply transport::spawn_local(const std::string& kind, const std::string& name) {
  if (!spawn_handler_) return {TROUPE_ERR_STATE, pid(), "this node spawns nothing for peers"};
  return spawn_handler_(kind, name);
}

void transport::contact(const std::string& address) {
  if (address == opts_.self.address) return;
  std::shared_ptr<peer> p = peer_for(address);
  loop_.post([this, p] {
    if (!stopped()) p->contact();
  });
}

void transport::spawn(const std::string& address, const std::string& kind, const std::string& name,
                      std::chrono::milliseconds timeout, spawn_callback done) {
  if (stopped()) {
    loop_.post([done = std::move(done)] { done({TROUPE_ERR_STATE, pid(), "the node is stopping"}); });
    return;
  }
  std::shared_ptr<peer> p = peer_for(address);
  if (std::string why; p->down(why)) {
    loop_.post([done = std::move(done), address, why] {
      done({TROUPE_ERR_UNAVAILABLE, pid(), address + " is down: " + why});
    });
    return;
  }
  std::uint64_t id;
  {
    std::lock_guard lock(spawns_mu_);
    id = next_spawn_++;
    spawns_[id].done = std::move(done);
    spawns_[id].address = address;
  }
  timer_handle t = loop_.arm(timeout, [this, id, timeout, address] {
    // No answer: the node is unreachable, or does not exist.
    complete_spawn(id, {TROUPE_ERR_NOT_FOUND, pid(),
                        "no answer from " + address + " within " + std::to_string(timeout.count()) +
                            " ms"});
  });
  {
    std::lock_guard lock(spawns_mu_);
    auto it = spawns_.find(id);
    if (it != spawns_.end()) it->second.timeout = std::move(t);
  }
  auto* o = new outbound;
  o->kind = item_kind::spawn_request;
  o->request = id;
  o->text = kind;
  o->text2 = name;
  p->enqueue(o);
}

void transport::complete_spawn(std::uint64_t request, spawn_reply r) {
  spawn_callback done;
  {
    std::lock_guard lock(spawns_mu_);
    auto it = spawns_.find(request);
    if (it == spawns_.end()) return;
    done = std::move(it->second.done);
    it->second.timeout.cancel();
    spawns_.erase(it);
  }
  done(std::move(r));
}

void transport::fail_spawns(const std::string& address, const std::string& why) {
  std::vector<std::uint64_t> ids;
  {
    std::lock_guard lock(spawns_mu_);
    for (const auto& [id, s] : spawns_)
      if (s.address == address) ids.push_back(id);
  }
  for (std::uint64_t id : ids) complete_spawn(id, {TROUPE_ERR_UNAVAILABLE, pid(), address + " is down: " + why});
}

std::vector<peer_info> transport::peers() const {
  std::vector<std::shared_ptr<peer>> ps;
  {
    std::lock_guard lock(peers_mu_);
    for (const auto& [a, p] : peers_) ps.push_back(p);
  }
  std::vector<peer_info> out;
  out.reserve(ps.size());
  for (const auto& p : ps) out.push_back(p->info());
  std::sort(out.begin(), out.end(),
            [](const peer_info& a, const peer_info& b) { return a.address < b.address; });
  return out;
}

}  // namespace troupe::remote
