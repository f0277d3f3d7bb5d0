// The send path, from a peer's queue to the socket: the queue (the
// doorbell, and who drains it: the loop, or the worker whose actor's turn
// sent to it), drained into Batch and control frames that are numbered and
// kept in the ledger until the peer acknowledges them (and sent again
// after a reconnection), or dropped when they cannot go; and the
// connection's write side, which queues frame bytes (encrypted with TLS)
// and writes them with one writev. In one file so that a message's way
// out compiles as one unit, as it did when the transport was one file.
#include "remote/transport_internal.hpp"

#include <cerrno>
#include <climits>


#include "actor/clock.hpp"
#include "actor/system_message.hpp"

namespace troupe::remote {

peer::peer(transport& t, std::string address) : t_(t), address_(std::move(address)) {
  t_.stats_.peers_waiting[1].fetch_add(1, std::memory_order_relaxed);  // idle
  bell_.fn = [](void* p) { static_cast<peer*>(p)->on_ring(); };
  bell_.arg = this;
  mpsc_node* retired = nullptr;
  queue_.mark_idle(retired);  // the first push hands the queue to the loop
}

void peer::drain() {
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

void peer::flush_after_run(void* self) { static_cast<peer*>(self)->flush_from_worker(); }

inline void peer::flush_from_worker() {
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

peer::drain_result peer::drain_into(connection& c, std::size_t budget, bool on_loop) {
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

inline void peer::send_message(connection& c, outbound& o) {
  auto* target = static_cast<remote_process*>(o.target.get());
  if (target->stale(c.peer_generation())) [[unlikely]] {
    // Its actor lived in an earlier start of the peer: no actor of this
    // one may get it, whatever its id.
    t_.sys_->dead_letter(std::exchange(o.e, nullptr), target, dead_letter_reason::stale);
    return;
  }
  const std::uint64_t seq = ledger_.next();
  if (!add_message(c, target, o.e, seq)) {
    // Bigger than a frame may be: it can never be sent.
    t_.sys_->dead_letter(std::exchange(o.e, nullptr), target, dead_letter_reason::invalid);
    return;
  }
  ledger_.push(sent_item(std::exchange(o.e, nullptr), std::move(o.target)));
}

inline void peer::send_control(connection& c, outbound& o) {
  const bool about_actor = o.kind == item_kind::watch || o.kind == item_kind::unwatch ||
                           o.kind == item_kind::terminated || o.kind == item_kind::stop;
  if (about_actor && o.target &&
      static_cast<remote_process*>(o.target.get())->stale(c.peer_generation())) [[unlikely]] {
    // About an actor of an earlier start of the peer: a watch of it hears
    // at once that there is no such actor; the rest has nothing to act on.
    if (o.kind == item_kind::watch) watch_failed(o, terminated_reason::not_found);
    return;
  }
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

std::size_t peer::resend(connection& c) {
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

bool peer::add_message(connection& c, remote_process* target, envelope* e, std::uint64_t seq) {
  process* sender = e->sender;
  std::string sender_pid;
  std::uint64_t sender_generation = 0;
  if (sender && !c.enc_.knows_sender(sender)) {
    if (auto* r = dynamic_cast<remote_process*>(sender)) {
      sender_pid = r->owner().address() + "/" + r->raw_id();
      sender_generation = r->generation();
    } else {
      bool exported = false;
      sender_pid = t_.opts_.self.address + "/" + t_.export_local(sender, &exported);
      sender_generation = t_.opts_.self.incarnation;
      if (exported) note_requester(sender, target);
    }
  }
  const std::span<const std::uint8_t> bytes = e->bytes();
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (c.enc_.count() == 0) c.batch_seq_ = seq;
    if (c.enc_.add(target, target->raw_id(), sender, sender_pid, sender_generation, e->type, e->hdrs, bytes))
      return true;
    if (c.enc_.count() == 0) break;
    c.queue_batch_locked();
  }
  return false;
}

void peer::encode_control(connection& c, const outbound& o, std::uint64_t seq) {
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
        auto r = wire::CreateSpawnResponse(b, o.request, b.CreateString(o.text), b.CreateString(o.text2),
                                           static_cast<wire::SpawnError>(o.status));
        return std::pair(wire::Body::SpawnResponse, r.Union());
      }));
      break;
    case item_kind::cluster:
      c.queue_bytes_locked(encode_frame(seq, c.ack_value(), [&](flatbuffers::FlatBufferBuilder& b) {
        auto data = b.CreateVector(reinterpret_cast<const std::uint8_t*>(o.text.data()), o.text.size());
        return std::pair(wire::Body::ClusterSync, wire::CreateClusterSync(b, data).Union());
      }));
      break;
    case item_kind::message:
      break;
  }
}

void peer::discard(outbound& o, dead_letter_reason reason) noexcept {
  switch (o.kind) {
    case item_kind::message:
      if (o.e) t_.sys_->dead_letter(std::exchange(o.e, nullptr), o.target.get(), reason);
      break;
    case item_kind::spawn_request:
      t_.complete_spawn(o.request, {spawn_error::unreachable, pid(),
                                    address_ + " did not confirm the spawn (" + to_string(reason) + ")"});
      break;
    case item_kind::watch:
      watch_failed(o, terminated_reason::node_lost);
      break;
    default:
      break;
  }
}

void peer::watch_failed(outbound& o, terminated_reason why) noexcept {
  if (process_ref w = std::move(o.other)) {
    static_cast<remote_process*>(o.target.get())->remove_watcher(w.get());
    auto* m = new system_message(system_kind::terminated, o.target);
    m->reason = why;
    w->send_system(m);
  }
}

void peer::drop_queued(dead_letter_reason reason) {
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

// ---------------------------------------------------------------------------

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
  close(close_reason::io_error, "write failed: " + detail::uv_text(err));
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

}  // namespace troupe::remote
