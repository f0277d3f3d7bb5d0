#pragma once
// The Troupe C++ SDK: header-only C++20 on top of abi.h. A plugin writes
// actors as classes and registers them in TROUPE_PLUGIN:
//
//   struct Counter : troupe::Actor {
//     int64_t value = 0;
//     void receive(troupe::Context& ctx) override {
//       if (auto add = ctx.message<counter::Add>()) value += add->by();
//       else if (ctx.message<counter::Get>())
//         ctx.respond<counter::Value>([&](auto& b) { return counter::CreateValue(b, value); });
//     }
//   };
//   TROUPE_PLUGIN(counter, "1.0.0") {
//     plugin.kind<Counter>("counter");
//     plugin.schema(counter_bfbs);
//   }
//
// Exceptions never cross into the node: one thrown by a constructor, a
// handler or a destructor fails that actor only, and its supervisor decides.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <flatbuffers/flatbuffers.h>

#include <troupe/abi.h>
#include <troupe/type_id.hpp>

namespace troupe {

namespace detail {
// The node's function table, set once when the plugin is initialised. Each
// plugin (built with hidden visibility) has its own copy.
inline const troupe_host_api* host = nullptr;

// The FlatBufferBuilder of the calling thread, cleared: a message is built
// here and its finished bytes copied once by the node. The pointer uses the
// initial-exec TLS model, so that a plugin (a dlopen'ed library) reaches it
// with one load instead of a call to __tls_get_addr per message.
struct builder_holder {
  flatbuffers::FlatBufferBuilder builder{256};
};
inline flatbuffers::FlatBufferBuilder& builder() {
  static thread_local flatbuffers::FlatBufferBuilder* tls
      __attribute__((tls_model("initial-exec"))) = nullptr;
  if (tls == nullptr) [[unlikely]] {
    thread_local builder_holder holder;
    tls = &holder.builder;
  }
  tls->Clear();
  return *tls;
}

// Builds a T with `fill(builder) -> flatbuffers::Offset<T>`.
template <class T, class F>
std::span<const std::uint8_t> build(F&& fill) {
  flatbuffers::FlatBufferBuilder& b = builder();
  flatbuffers::Offset<T> root = fill(b);
  b.Finish(root);
  return {b.GetBufferPointer(), b.GetSize()};
}

inline constexpr type_id started_type = hash_type_name("troupe.system.Started");
inline constexpr type_id stopping_type = hash_type_name("troupe.system.Stopping");
inline constexpr type_id stopped_type = hash_type_name("troupe.system.Stopped");
inline constexpr type_id restarting_type = hash_type_name("troupe.system.Restarting");
}  // namespace detail

// Type ids of system messages a plugin may receive in Actor::receive.
inline constexpr type_id receive_timeout_type = hash_type_name("troupe.system.ReceiveTimeout");
inline constexpr type_id terminated_type = hash_type_name("troupe.system.Terminated");
// The node's events (ABI 1.10: Context::subscribe_event_types, Context::event).
inline constexpr type_id dead_letter_event_type = hash_type_name("troupe.system.DeadLetterEvent");
inline constexpr type_id actor_failed_event_type = hash_type_name("troupe.system.ActorFailedEvent");
inline constexpr type_id supervision_event_type = hash_type_name("troupe.system.SupervisionEvent");
inline constexpr type_id dead_letter_response_type = hash_type_name("troupe.system.DeadLetterResponse");
inline constexpr type_id request_timed_out_type = hash_type_name("troupe.system.RequestTimedOut");

// Log levels.
enum class level : int {
  debug = TROUPE_LOG_DEBUG,
  info = TROUPE_LOG_INFO,
  warn = TROUPE_LOG_WARN,
  error = TROUPE_LOG_ERROR,
};

// A process id: a counted reference to an actor (or any process) of the node.
class Pid {
 public:
  Pid() noexcept = default;
  // Takes over a reference the caller owns.
  static Pid adopt(troupe_pid* p) noexcept {
    Pid r;
    r.p_ = p;
    return r;
  }
  // Adds a reference to a borrowed one.
  static Pid borrow(troupe_pid* p) noexcept {
    if (p != nullptr) detail::host->pid_retain(p);
    return adopt(p);
  }
  Pid(const Pid& o) noexcept : p_(o.p_) {
    if (p_ != nullptr) detail::host->pid_retain(p_);
  }
  Pid(Pid&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  Pid& operator=(Pid o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~Pid() {
    if (p_ != nullptr) detail::host->pid_release(p_);
  }

  // The raw reference, still owned by this Pid.
  troupe_pid* get() const noexcept { return p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }
  // "address/id", for logs.
  std::string to_string() const {
    if (p_ == nullptr) return {};
    char buf[128];
    std::size_t n = detail::host->pid_format(p_, buf, sizeof buf);
    if (n < sizeof buf) return std::string(buf, n);
    std::string s(n, '\0');
    detail::host->pid_format(p_, s.data(), n + 1);
    return s;
  }
  friend bool operator==(const Pid& a, const Pid& b) noexcept {
    if (a.p_ == b.p_) return true;
    if (a.p_ == nullptr || b.p_ == nullptr) return false;
    return detail::host->pid_equal(a.p_, b.p_) != 0;
  }

 private:
  troupe_pid* p_ = nullptr;
};

// A timer of an actor's, for Context::cancel.
struct Timer {
  std::uint64_t id = 0;
  explicit operator bool() const noexcept { return id != 0; }
};

// Thrown by Context calls that cannot do what they were asked (a spawn of a
// kind nobody registered, ...). Uncaught, it fails the actor like any other.
class Error : public std::exception {
 public:
  Error(std::string what, int status) : what_(std::move(what)), status_(status) {}
  const char* what() const noexcept override { return what_.c_str(); }
  // A troupe_status value.
  int status() const noexcept { return status_; }

 private:
  std::string what_;
  int status_;
};

namespace detail {
// What the node said of the call that just failed (ABI 1.9's last_error),
// else `what`; then "(status N)".
inline std::string refusal(const std::string& what, int status) {
  std::string out = what;
  if (TROUPE_HOST_HAS(host, last_error))
    if (const char* why = host->last_error(); why != nullptr && *why != '\0') out = why;
  return out + " (status " + std::to_string(status) + ")";
}
}  // namespace detail

// A mailbox (see troupe_mailbox in abi.h).
enum class Mailbox : int {
  node = TROUPE_MAILBOX_NODE,
  unbounded = TROUPE_MAILBOX_UNBOUNDED,
  block = TROUPE_MAILBOX_BLOCK,
  drop_newest = TROUPE_MAILBOX_DROP_NEWEST,
  drop_oldest = TROUPE_MAILBOX_DROP_OLDEST,
};
// How an actor supervises its children.
enum class Supervision : int {
  node = TROUPE_SUPERVISE_NODE,
  one_for_one = TROUPE_SUPERVISE_ONE_FOR_ONE,
  all_for_one = TROUPE_SUPERVISE_ALL_FOR_ONE,
};
// How a router picks the routee of a message.
enum class Routing : int {
  round_robin = TROUPE_ROUTE_ROUND_ROBIN,
  random = TROUPE_ROUTE_RANDOM,
  broadcast = TROUPE_ROUTE_BROADCAST,
  consistent_hash = TROUPE_ROUTE_CONSISTENT_HASH,  // by the key of send_keyed
};
// What a supervisor does with a child that failed.
enum class Directive : int {
  resume = TROUPE_DIRECTIVE_RESUME,
  restart = TROUPE_DIRECTIVE_RESTART,
  stop = TROUPE_DIRECTIVE_STOP,
  escalate = TROUPE_DIRECTIVE_ESCALATE,
};

// What an actor gets besides its code: its mailbox, its throughput, and
// how it supervises its children (ABI 1.9). For a kind
// (Plugin::kind<A>(name, props)) or one spawn (Context::spawn(kind, name,
// props)); what is left out is the node's. The node checks it and says
// what is out of range; its configuration of a kind's mailbox wins.
//
//   troupe::Props().mailbox(troupe::Mailbox::drop_oldest, 1000)
//                  .supervise(troupe::Supervision::all_for_one)
//                  .restarts(3, std::chrono::seconds(10))
//                  .backoff(std::chrono::milliseconds(10), std::chrono::seconds(1))
//                  .decide([](const troupe::Pid&, std::string_view reason) {
//                    return reason.find("transient") != std::string_view::npos ? troupe::Directive::resume
//                                                                               : troupe::Directive::restart;
//                  })
class Props {
 public:
  // Chooses a failed child's directive, in its supervisor's turn. A plain
  // function (a lambda without captures): it outlives any actor. What it
  // throws stops the child.
  using Decider = Directive (*)(const Pid& child, std::string_view reason);

  Props() noexcept { p_.size = sizeof p_; }
  // A bounded kind needs a capacity (1 to 100,000,000 messages).
  Props& mailbox(Mailbox kind, std::uint32_t capacity = 0) noexcept {
    p_.mailbox = static_cast<int>(kind);
    p_.capacity = capacity;
    return *this;
  }
  // Messages handled in one turn before the worker moves on (1 to 1,000,000).
  Props& throughput(std::uint32_t messages) noexcept {
    p_.throughput = messages;
    return *this;
  }
  Props& supervise(Supervision s) noexcept {
    p_.supervision = static_cast<int>(s);
    return *this;
  }
  // More than `max` restarts of one child within `window` stop it instead.
  Props& restarts(std::uint32_t max, std::chrono::nanoseconds window) noexcept {
    p_.max_restarts = max;
    p_.restart_window_ns = static_cast<std::uint64_t>(window.count());
    return *this;
  }
  // A restart waits `first`, then twice as long each time, up to `max`
  // (0: 30 s), each within 20% jitter.
  Props& backoff(std::chrono::nanoseconds first, std::chrono::nanoseconds max = std::chrono::nanoseconds(0)) noexcept {
    p_.backoff_first_ns = static_cast<std::uint64_t>(first.count());
    p_.backoff_max_ns = static_cast<std::uint64_t>(max.count());
    return *this;
  }
  Props& decide(Decider fn) noexcept {
    p_.decide = fn != nullptr ? &trampoline : nullptr;
    p_.decide_closure = fn != nullptr ? reinterpret_cast<void*>(fn) : nullptr;
    return *this;
  }
  const troupe_props& c() const noexcept { return p_; }

 private:
  static int trampoline(void* closure, const troupe_pid* child, const char* reason, std::size_t len) noexcept {
    try {
      const Pid who = Pid::borrow(const_cast<troupe_pid*>(child));
      return static_cast<int>(reinterpret_cast<Decider>(closure)(who, std::string_view(reason, len)));
    } catch (...) {
      return TROUPE_DIRECTIVE_STOP;
    }
  }
  troupe_props p_{};
};

class Context;

// How a grain request ended (Grain::request's on_reply): the grain's reply,
// or why there is none.
class Reply {
 public:
  enum class status : int {
    ok = TROUPE_REPLY_OK,
    timeout = TROUPE_REPLY_TIMEOUT,          // no reply within the timeout
    dead_letter = TROUPE_REPLY_DEAD_LETTER,  // it could not be delivered
    failed = TROUPE_REPLY_FAILED,            // no member hosts the kind, or its activation failed
  };
  Reply(const troupe_message* m, int s) noexcept : m_(m), s_(static_cast<status>(s)) {}

  bool ok() const noexcept { return s_ == status::ok; }
  status result() const noexcept { return s_; }
  type_id type() const noexcept { return m_ != nullptr ? m_->type : 0; }
  // The reply as a T (when ok() and it is one), or nullptr.
  template <class T>
  const T* as() const noexcept {
    if (!ok() || m_ == nullptr || m_->type != type_id_of<T>()) return nullptr;
    return flatbuffers::GetRoot<T>(m_->data);
  }
  std::span<const std::uint8_t> bytes() const noexcept {
    return m_ != nullptr ? std::span<const std::uint8_t>(m_->data, m_->size) : std::span<const std::uint8_t>();
  }
  // Why there is no reply, in words (empty when ok()).
  std::string error() const {
    if (ok()) return {};
    constexpr type_id grain_error = hash_type_name("troupe.cluster.GrainError");
    if (m_ != nullptr && m_->type == grain_error && m_->size != 0) {
      // GrainError.detail: field 3 (vtable offset 10).
      const auto* t = flatbuffers::GetRoot<flatbuffers::Table>(m_->data);
      if (const auto* d = t->GetPointer<const flatbuffers::String*>(10)) return d->str();
    }
    switch (s_) {
      case status::timeout: return "the grain did not answer in time";
      case status::dead_letter: return "the request could not be delivered";
      default: return "the request failed";
    }
  }

 private:
  const troupe_message* m_;
  status s_;
};

// How a persist ended (Context::persist's then): durable, or refused.
struct Persisted {
  bool ok() const noexcept { return status == TROUPE_PERSIST_OK; }
  int status = TROUPE_PERSIST_OK;
  std::uint64_t last_seq = 0;  // the number of the last event persisted
  std::string detail;          // why it was refused
};

// Several events to persist together: stored all, or none
// (Context::persist_all).
class Events {
 public:
  // Adds event T (fill(builder) returns its Offset).
  template <class T, class F>
  Events& add(F&& fill) {
    const auto b = detail::build<T>(std::forward<F>(fill));
    bytes_.emplace_back(b.begin(), b.end());
    types_.push_back(type_id_of<T>());
    return *this;
  }
  std::size_t size() const noexcept { return bytes_.size(); }
  // As the ABI takes them (valid while this lives).
  std::vector<troupe_message> messages() const {
    std::vector<troupe_message> out;
    for (std::size_t i = 0; i < bytes_.size(); ++i) out.push_back({types_[i], bytes_[i].data(), bytes_[i].size()});
    return out;
  }

 private:
  std::vector<std::vector<std::uint8_t>> bytes_;
  std::vector<type_id> types_;
};

// What recovery hands a persistent actor with each message: the event's
// number, or the one the snapshot is as of.
struct Recovered {
  std::uint64_t seq = 0;
  bool snapshot = false;
};

// How a subscribe or unsubscribe ended (Context::subscribe's then).
struct Subscribed {
  bool ok() const noexcept { return status == TROUPE_REPLY_OK; }
  int status = TROUPE_REPLY_OK;   // a troupe_reply_status
  std::uint64_t subscribers = 0;  // the topic's, once ok()
};

// What Context::spawn_remote's then gets: the new actor, or why not.
struct Spawned {
  bool ok() const noexcept { return status == TROUPE_OK; }
  Pid pid;                 // the new actor, once ok()
  int status = TROUPE_OK;  // a troupe_status
  std::string_view error;  // why not, in words (valid during the call)
};

// A delivery report (Context::publish_reported's then): what the batch the
// message went out in came to.
struct Report {
  struct Failure {
    std::string subscriber;  // "address/id" of an actor, "kind/identity" of a grain
    troupe_delivery_failure_reason reason;
  };
  bool ok() const noexcept { return status == TROUPE_REPLY_OK; }
  int status = TROUPE_REPLY_OK;  // not ok: no report (timeout, no topic reached, refused here)
  std::uint64_t delivered = 0;   // messages handed to subscribers, one per subscriber
  std::vector<Failure> failures;
};

namespace detail {
struct no_then {};  // a subscribe with no continuation
template <class R>
void on_reply(void* closure, troupe_ctx* c, const troupe_message* reply, int status);
template <class R>
void on_subscribed(void* closure, troupe_ctx* c, int status, std::uint64_t subscribers);
template <class R>
void on_spawned(void* closure, troupe_ctx* c, troupe_pid* who, int status, const char* error);
template <class R>
void on_report(void* closure, troupe_ctx* c, int status, const troupe_publish_report* report);
template <class R>
void on_persisted(void* closure, troupe_ctx* c, int status, std::uint64_t last_seq, const char* why);
template <class R>
void on_routees(void* closure, troupe_ctx* c, troupe_pid* const* routees, std::size_t count, int status);
template <class R>
void drop(void* closure) {
  delete static_cast<R*>(closure);
}
}  // namespace detail

// A grain: (kind, identity), activated where the cluster places it on its
// first message. From Context::grain; valid during the callback.
class Grain {
 public:
  Grain(troupe_ctx* c, std::string kind, std::string identity) : c_(c), kind_(std::move(kind)), identity_(std::move(identity)) {}

  // A message with no reply.
  template <class T, class F>
  void send(F&& fill) {
    auto b = detail::build<T>(std::forward<F>(fill));
    check(detail::host->grain_send(c_, kind_.c_str(), identity_.data(), identity_.size(), type_id_of<T>(),
                                   b.data(), b.size(), TROUPE_SEND_BUILT),
          "grain send");
  }
  // A request: on_reply(Context&, const Reply&) runs later, in this actor's
  // own turn (never during this call), with the grain's reply or the reason
  // there is none; there, ctx is this actor's and its current message the
  // one being handled now (respond() answers its sender). Dropped if this
  // actor stops or restarts first. `timeout` bounds the whole call.
  template <class T, class F, class R>
  void request(F&& fill, R&& on_reply, std::chrono::nanoseconds timeout = std::chrono::seconds(5)) {
    using fn = std::decay_t<R>;
    auto b = detail::build<T>(std::forward<F>(fill));
    auto* closure = new fn(std::forward<R>(on_reply));
    const int status = detail::host->grain_request(
        c_, kind_.c_str(), identity_.data(), identity_.size(), type_id_of<T>(), b.data(), b.size(), TROUPE_SEND_BUILT,
        static_cast<std::uint64_t>(timeout.count()), &detail::on_reply<fn>, closure, &detail::drop<fn>);
    check(status, "grain request");  // the node dropped the closure already
  }

  const std::string& kind() const noexcept { return kind_; }
  const std::string& identity() const noexcept { return identity_; }

 private:
  void check(int status, const char* what) const;

  troupe_ctx* c_;
  std::string kind_, identity_;
};

// An EventStream subscription of an actor's (Context::subscribe_events).
struct EventSubscription {
  std::uint64_t id = 0;
  explicit operator bool() const noexcept { return id != 0; }
};

// A node event or system message, read (Context::event): DeadLetterEvent,
// ActorFailedEvent, SupervisionEvent, Terminated, DeadLetterResponse or
// RequestTimedOut of troupe.system.
struct Event {
  type_id type = 0;
  // The actor it is about: a dead letter's target, the actor that failed,
  // the supervised child, the actor that terminated, the one a timed-out
  // request asked. Empty when none, or none this node can reach.
  Pid who;
  Pid sender;                 // a dead letter's sender
  type_id message_type = 0;   // the dead letter's type, the timed-out request's
  // A dead letter's troupe_dead_letter_reason, a supervision event's
  // Directive, Terminated's reason (0 stopped, 1 no such actor, 2 node lost).
  int reason = 0;
  std::string_view text;      // the failure's words; valid during the handler
};

class Context;
namespace detail {
// A behaviour's entry point (become): the actor's method M.
template <auto M>
int behave(void* instance, troupe_ctx* c, const troupe_message* m);
}  // namespace detail

// What an actor's handler works with: the current message, sending,
// spawning, timers. Valid during the call that received it only.
class Context {
 public:
  // The message comes with the callback (read in place: copying the
  // node's freshly written struct would stall on store forwarding); without
  // it, it is asked for.
  Context(troupe_ctx* c, const troupe_message* m) noexcept : c_(c), m_(m) {
    if (m_ == nullptr) {
      own_.type = detail::host->message_type(c);
      own_.data = detail::host->message_data(c, &own_.size);
      m_ = &own_;
    }
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  explicit Context(troupe_ctx* c) noexcept : Context(c, nullptr) {}

  // ---- the current message ----
  // Its type id.
  type_id type() const noexcept { return m_->type; }
  // The message as a T, or nullptr when it is another type.
  template <class T>
  const T* message() const noexcept {
    if (m_->type != type_id_of<T>()) return nullptr;
    took_ = true;
    return flatbuffers::GetRoot<T>(m_->data);
  }
  // Its bytes (a FlatBuffers buffer).
  std::span<const std::uint8_t> bytes() const noexcept {
    took_ = true;
    return {m_->data, m_->size};
  }
  // Whether the handler took the message: read it (message<T>() found it,
  // or bytes()), answered, forwarded or stashed it. A message the handler
  // did not take goes to Actor::unhandled().
  bool took_message() const noexcept { return took_; }
  // Who sent it: set for requests, empty for plain sends.
  Pid sender() const noexcept { return Pid::borrow(detail::host->sender(c_)); }
  Pid self() const noexcept { return Pid::borrow(detail::host->self(c_)); }
  Pid parent() const noexcept { return Pid::borrow(detail::host->parent(c_)); }

  // ---- sending: fill(builder) returns the Offset<T> of the message ----
  template <class T, class F>
  void send(const Pid& to, F&& fill) {
    auto b = detail::build<T>(std::forward<F>(fill));
    check(detail::host->send(c_, to.get(), type_id_of<T>(), b.data(), b.size(), TROUPE_SEND_BUILT),
          "send");
  }
  // As send, with this actor as the sender: the reply arrives as a message.
  template <class T, class F>
  void request(const Pid& to, F&& fill) {
    auto b = detail::build<T>(std::forward<F>(fill));
    check(detail::host->request(c_, to.get(), type_id_of<T>(), b.data(), b.size(),
                                TROUPE_SEND_BUILT),
          "request");
  }
  // A request whose answer comes back to this handler rather than as a
  // message (ABI 1.8): on_reply(Context&, const Reply&) runs later in this
  // actor's own turn (never during this call), with the reply, or with
  // why there is none (Reply::status: timeout, dead_letter). There, ctx's
  // current message is the one handled now: respond() answers its sender.
  // Dropped if this actor stops or restarts first.
  template <class T, class F, class R>
  void request(const Pid& to, F&& fill, R&& on_reply, std::chrono::nanoseconds timeout = std::chrono::seconds(5)) {
    require(TROUPE_HOST_HAS(detail::host, request_then), "request with a reply handler", "1.8");
    using fn = std::decay_t<R>;
    auto b = detail::build<T>(std::forward<F>(fill));
    auto* closure = new fn(std::forward<R>(on_reply));
    check(detail::host->request_then(c_, to.get(), type_id_of<T>(), b.data(), b.size(), TROUPE_SEND_BUILT,
                                     static_cast<std::uint64_t>(timeout.count()), &detail::on_reply<fn>, closure,
                                     &detail::drop<fn>),
          "request");  // the node dropped the closure already
  }
  // A message whose sender is `sender` (ABI 1.8): its reply, or the dead
  // letter response when it cannot be delivered, goes there, not here.
  template <class T, class F>
  void send_as(const Pid& to, const Pid& sender, F&& fill) {
    require(TROUPE_HOST_HAS(detail::host, send_as), "send_as", "1.8");
    auto b = detail::build<T>(std::forward<F>(fill));
    check(detail::host->send_as(c_, to.get(), sender.get(), type_id_of<T>(), b.data(), b.size(), TROUPE_SEND_BUILT),
          "send_as");
  }
  // Replies to the sender of the current message (a dead letter if none).
  template <class T, class F>
  void respond(F&& fill) {
    took_ = true;
    auto b = detail::build<T>(std::forward<F>(fill));
    check(detail::host->respond(c_, type_id_of<T>(), b.data(), b.size(), TROUPE_SEND_BUILT),
          "respond");
  }
  // Sends bytes that were not built here (they will be verified on delivery).
  void send_bytes(const Pid& to, type_id type, std::span<const std::uint8_t> bytes) {
    check(detail::host->send(c_, to.get(), type, bytes.data(), bytes.size(), 0), "send");
  }
  // Replies with bytes that were not built here.
  void respond_bytes(type_id type, std::span<const std::uint8_t> bytes) {
    took_ = true;
    check(detail::host->respond(c_, type, bytes.data(), bytes.size(), 0), "respond");
  }
  // Passes the current message on, keeping its sender.
  void forward(const Pid& to) {
    took_ = true;
    check(detail::host->forward(c_, to.get()), "forward");
  }

  // ---- behaviours and stash (ABI 1.6) ----
  // From the next message on, method M of this actor's class (a
  // `void M(troupe::Context&)`) handles its messages instead of receive();
  // the lifecycle ones still go to stopping(), stopped(), restarting().
  //   ctx.become<&Connection::connected>();
  template <auto M>
  void become() {
    require_16("become");
    check(detail::host->become(c_, &detail::behave<M>, 0), "become");
  }
  // As become, on top of the current behaviour: unbecome() returns to it.
  template <auto M>
  void become_stacked() {
    require_16("become_stacked");
    check(detail::host->become(c_, &detail::behave<M>, 1), "become_stacked");
  }
  // Back to the behaviour below (receive() when there is none).
  void unbecome() {
    require_16("unbecome");
    check(detail::host->unbecome(c_), "unbecome");
  }
  // Keeps the current message (and its sender) aside ...
  void stash() {
    require_16("stash");
    took_ = true;
    check(detail::host->stash(c_), "stash");
  }
  // ... and puts every kept one back, in order, ahead of what came since.
  void unstash_all() {
    require_16("unstash_all");
    check(detail::host->unstash_all(c_), "unstash_all");
  }
  // The current message is not this actor's to handle: a message of a type a
  // plugin declared becomes a dead letter with reason unhandled (a
  // request's sender hears at once). Actor::unhandled()'s default.
  void unhandled() {
    if (TROUPE_HOST_HAS(detail::host, unhandled)) detail::host->unhandled(c_);
  }

  // ---- children and lifecycle ----
  // Spawns a child of a registered kind (this plugin's or another's).
  Pid spawn(const char* kind, const char* name = nullptr) {
    int status = TROUPE_OK;
    troupe_pid* p = detail::host->spawn(c_, kind, name, &status);
    if (p == nullptr) throw Error(detail::refusal(std::string("spawn of '") + kind + "' failed", status), status);
    return Pid::adopt(p);
  }
  // A child with props of its own (ABI 1.9): mailbox, throughput,
  // supervision of its children; what they leave out is its kind's.
  Pid spawn(const char* kind, const char* name, const Props& props) {
    if (!TROUPE_HOST_HAS(detail::host, spawn_props))
      throw Error(std::string("spawn of '") + kind + "' with props needs a node with ABI 1.9", TROUPE_ERR_STATE);
    int status = TROUPE_OK;
    troupe_pid* p = detail::host->spawn_props(c_, kind, name, &props.c(), &status);
    if (p == nullptr) throw Error(detail::refusal(std::string("spawn of '") + kind + "' failed", status), status);
    return Pid::adopt(p);
  }
  // Stops `who` at once; poison() stops it after what it already has queued.
  void stop(const Pid& who) { detail::host->stop(c_, who.get()); }
  void poison(const Pid& who) { detail::host->poison(c_, who.get()); }
  // Delivers troupe.system.Terminated when `who` stops.
  void watch(const Pid& who) { detail::host->watch(c_, who.get()); }
  void unwatch(const Pid& who) { detail::host->unwatch(c_, who.get()); }

  // ---- timers (cancelled when this actor stops) ----
  template <class T, class F>
  Timer send_after(std::chrono::nanoseconds delay, const Pid& to, F&& fill) {
    auto b = detail::build<T>(std::forward<F>(fill));
    return Timer{detail::host->send_after(c_, static_cast<std::uint64_t>(delay.count()), to.get(),
                                          type_id_of<T>(), b.data(), b.size(), TROUPE_SEND_BUILT)};
  }
  template <class T, class F>
  Timer send_every(std::chrono::nanoseconds initial, std::chrono::nanoseconds interval,
                   const Pid& to, F&& fill) {
    auto b = detail::build<T>(std::forward<F>(fill));
    return Timer{detail::host->send_every(c_, static_cast<std::uint64_t>(initial.count()),
                                          static_cast<std::uint64_t>(interval.count()), to.get(),
                                          type_id_of<T>(), b.data(), b.size(), TROUPE_SEND_BUILT)};
  }
  // True if this stopped the timer from firing (again).
  bool cancel(Timer t) noexcept { return detail::host->cancel_timer(c_, t.id) == TROUPE_OK; }

  // Delivers a message of type receive_timeout_type after `d` without
  // messages; zero turns it off. Needs a node with ABI 1.1.
  // The PID written "address/id" (as Pid::to_string writes it): an actor of
  // this node, or one of another node, reached over the network. Empty when
  // the text is not a PID or names no actor of this node.
  Pid resolve(std::string_view text) const {
    if (!TROUPE_HOST_HAS(detail::host, pid_parse))
      throw Error("resolve needs a node with ABI 1.2", TROUPE_ERR_STATE);
    return Pid::adopt(detail::host->pid_parse(c_, text.data(), text.size()));
  }

  // The actor of this node spawned with the name `name`; empty when none
  // is alive (ABI 1.8).
  Pid lookup(std::string_view name) const {
    require(TROUPE_HOST_HAS(detail::host, lookup), "lookup", "1.8");
    return Pid::adopt(detail::host->lookup(c_, name.data(), name.size()));
  }

  // Spawns `kind` (named `name` unless null) on the node at `address`, as
  // that node lets its peers (kinds marked remote_spawn: true there); then
  // then(Context&, const Spawned&) runs later in this actor's own turn with
  // the new actor, or why not in the admin API's words (ABI 1.8).
  template <class Then>
  void spawn_remote(std::string_view address, const char* kind, const char* name, Then&& then,
                    std::chrono::nanoseconds timeout = std::chrono::seconds(5)) {
    require(TROUPE_HOST_HAS(detail::host, spawn_remote), "spawn_remote", "1.8");
    using fn = std::decay_t<Then>;
    const std::string at(address);
    auto* closure = new fn(std::forward<Then>(then));
    check(detail::host->spawn_remote(c_, at.c_str(), kind, name, static_cast<std::uint64_t>(timeout.count()),
                                     &detail::on_spawned<fn>, closure, &detail::drop<fn>),
          "spawn_remote");  // the node dropped the closure already
  }

  // ---- routers (ABI 1.9) ----
  // A pool router, a child of this actor: `size` routees of `kind`, its own
  // children. `props` gives the routees their mailbox and throughput (else
  // the kind's), and the router its supervision of them (else one-for-one
  // restarts). A send to the router goes straight to the routee it picks.
  Pid spawn_pool(const char* kind, std::uint32_t size, Routing routing = Routing::round_robin,
                 const char* name = nullptr, const Props* props = nullptr) {
    return router(name, routing, kind, size, props != nullptr ? &props->c() : nullptr, nullptr, 0);
  }
  // A group router in front of actors that exist (it does not own them).
  Pid spawn_group(std::span<const Pid> routees, Routing routing = Routing::round_robin, const char* name = nullptr) {
    std::vector<troupe_pid*> raw;
    raw.reserve(routees.size());
    for (const Pid& p : routees) raw.push_back(p.get());
    return router(name, routing, nullptr, 0, nullptr, raw.data(), raw.size());
  }
  void add_routee(const Pid& router, const Pid& routee) { manage(router, TROUPE_ROUTER_ADD, routee, 0); }
  void remove_routee(const Pid& router, const Pid& routee) { manage(router, TROUPE_ROUTER_REMOVE, routee, 0); }
  // A pool grows (change > 0) or shrinks by `change` routees.
  void resize_pool(const Pid& router, int change) { manage(router, TROUPE_ROUTER_RESIZE, Pid(), change); }
  // A message to every routee of `router`, whatever its routing.
  template <class T, class F>
  void broadcast(const Pid& router, F&& fill) {
    require(TROUPE_HOST_HAS(detail::host, router_broadcast), "broadcast", "1.9");
    auto b = detail::build<T>(std::forward<F>(fill));
    check(detail::host->router_broadcast(c_, router.get(), type_id_of<T>(), b.data(), b.size(), TROUPE_SEND_BUILT),
          "broadcast");
  }
  // The routees of `router`: then(Context&, bool answered, std::span<const
  // Pid>) runs later in this actor's own turn.
  template <class Then>
  void routees(const Pid& router, Then&& then, std::chrono::nanoseconds timeout = std::chrono::seconds(5)) {
    require(TROUPE_HOST_HAS(detail::host, router_routees), "routees", "1.9");
    using fn = std::decay_t<Then>;
    auto* closure = new fn(std::forward<Then>(then));
    check(detail::host->router_routees(c_, router.get(), static_cast<std::uint64_t>(timeout.count()),
                                       &detail::on_routees<fn>, closure, &detail::drop<fn>),
          "routees");
  }
  // send() with the key by which a consistent-hash router picks.
  template <class T, class F>
  void send_keyed(const Pid& to, std::string_view key, F&& fill) {
    require(TROUPE_HOST_HAS(detail::host, send_keyed), "send_keyed", "1.9");
    auto b = detail::build<T>(std::forward<F>(fill));
    check(detail::host->send_keyed(c_, to.get(), key.data(), key.size(), type_id_of<T>(), b.data(), b.size(),
                                   TROUPE_SEND_BUILT),
          "send_keyed");
  }

  // ---- the cluster (ABI 1.3) ----
  // Cluster events arrive as messages from now until this actor stops or
  // restarts (subscribe in started()): troupe::cluster::MemberJoined,
  // MemberSuspect, MemberAlive, MemberDead, MemberLeft, TopologyChanged,
  // from <troupe/cluster_generated.h>, which the SDK carries.
  void subscribe_cluster() {
    require(TROUPE_HOST_HAS(detail::host, subscribe_cluster), "subscribe_cluster");
    check(detail::host->subscribe_cluster(c_), "subscribe_cluster");
  }
  void unsubscribe_cluster() {
    require(TROUPE_HOST_HAS(detail::host, unsubscribe_cluster), "unsubscribe_cluster");
    check(detail::host->unsubscribe_cluster(c_), "unsubscribe_cluster");
  }
  // Every member the node knows, itself included: a troupe.cluster.Members
  // buffer (flatbuffers::GetRoot<troupe::cluster::Members>(bytes.data())),
  // empty when the node has no cluster.
  std::vector<std::uint8_t> cluster_members() const {
    require(TROUPE_HOST_HAS(detail::host, cluster_members), "cluster_members");
    std::vector<std::uint8_t> buf(4096);
    for (;;) {
      const std::size_t n = detail::host->cluster_members(c_, buf.data(), buf.size());
      if (n <= buf.size()) {
        buf.resize(n);
        return buf;
      }
      buf.resize(n);
    }
  }

  // ---- grains (ABI 1.4) ----
  // A grain of any kind the cluster hosts: ctx.grain("counter", "c42").
  Grain grain(std::string_view kind, std::string_view identity) const {
    if (!TROUPE_HOST_HAS(detail::host, grain_request))
      throw Error("grains need a node with ABI 1.4", TROUPE_ERR_STATE);
    return Grain(c_, std::string(kind), std::string(identity));
  }
  // This actor's identity when it is a grain's activation; empty otherwise.
  std::string_view identity() const {
    if (!TROUPE_HOST_HAS(detail::host, identity)) return {};
    std::size_t n = 0;
    const char* id = detail::host->identity(c_, &n);
    return id != nullptr ? std::string_view(id, n) : std::string_view();
  }
  // Ends this grain's activation once the messages already queued for it
  // are handled; its next message activates it again.
  void passivate() {
    if (!TROUPE_HOST_HAS(detail::host, passivate))
      throw Error("passivate needs a node with ABI 1.4", TROUPE_ERR_STATE);
    check(detail::host->passivate(c_), "passivate");
  }

  // ---- pub-sub (ABI 1.7) ----
  // Subscribes this actor (a grain's activation: its grain, which a
  // delivery activates) to `topic`: published messages arrive as messages
  // of their own type. then(Context&, const Subscribed&), optional, runs
  // later in this actor's own turn once the topic has it.
  void subscribe(std::string_view topic) { subscription<detail::no_then>(topic, nullptr, true, nullptr); }
  template <class Then>
  void subscribe(std::string_view topic, Then&& then) {
    subscription(topic, nullptr, true, new std::decay_t<Then>(std::forward<Then>(then)));
  }
  void unsubscribe(std::string_view topic) { subscription<detail::no_then>(topic, nullptr, false, nullptr); }
  template <class Then>
  void unsubscribe(std::string_view topic, Then&& then) {
    subscription(topic, nullptr, false, new std::decay_t<Then>(std::forward<Then>(then)));
  }
  // The same for another actor, of this node or another: `who` gets the
  // topic's messages.
  template <class Then>
  void subscribe_actor(std::string_view topic, const Pid& who, Then&& then) {
    subscription(topic, who.get(), true, new std::decay_t<Then>(std::forward<Then>(then)));
  }
  template <class Then>
  void unsubscribe_actor(std::string_view topic, const Pid& who, Then&& then) {
    subscription(topic, who.get(), false, new std::decay_t<Then>(std::forward<Then>(then)));
  }
  // Publishes message T to every subscriber of `topic`, wherever it lives:
  // at most once each, in the order this node's actors publish. Throws
  // Error (TROUPE_ERR_BUSY) when this node has too many messages waiting
  // for the topic already.
  template <class T, class F>
  void publish(std::string_view topic, F&& fill) {
    if (!TROUPE_HOST_HAS(detail::host, publish)) throw Error("pub-sub needs a node with ABI 1.7", TROUPE_ERR_STATE);
    auto b = detail::build<T>(std::forward<F>(fill));
    check(detail::host->publish(c_, topic.data(), topic.size(), type_id_of<T>(), b.data(), b.size(),
                                TROUPE_SEND_BUILT),
          "publish");
  }
  // Publishes, and then(Context&, const Report&) runs later in this actor's
  // own turn with the delivery report of the batch the message went out in.
  template <class T, class F, class Then>
  void publish_reported(std::string_view topic, F&& fill, Then&& then,
                        std::chrono::nanoseconds timeout = std::chrono::seconds(5)) {
    if (!TROUPE_HOST_HAS(detail::host, publish_reported))
      throw Error("pub-sub needs a node with ABI 1.7", TROUPE_ERR_STATE);
    using fn = std::decay_t<Then>;
    auto b = detail::build<T>(std::forward<F>(fill));
    auto* closure = new fn(std::forward<Then>(then));
    check(detail::host->publish_reported(c_, topic.data(), topic.size(), type_id_of<T>(), b.data(), b.size(),
                                         TROUPE_SEND_BUILT, static_cast<std::uint64_t>(timeout.count()),
                                         &detail::on_report<fn>, closure, &detail::drop<fn>),
          "publish_reported");  // the node dropped the closure already
  }

  // ---- the EventStream (ABI 1.10) ----
  // Subscribes this actor to the events of types Ts (none: every event):
  // each arrives as a message of its type. The node's are
  // troupe::system::DeadLetterEvent, ActorFailedEvent, SupervisionEvent
  // (<troupe/system_generated.h>) and the cluster events; the others are
  // what plugins publish (publish_event). Lasts until this actor stops or
  // restarts (subscribe in started()), or unsubscribe_events.
  //   ctx.subscribe_events<troupe::system::DeadLetterEvent>();
  template <class... Ts>
  EventSubscription subscribe_events() {
    const type_id types[] = {0, type_id_of<Ts>()...};
    return subscribe_event_types(std::span<const type_id>(types + 1, sizeof...(Ts)));
  }
  EventSubscription subscribe_event_types(std::span<const type_id> types) {
    require(TROUPE_HOST_HAS(detail::host, event_subscribe), "subscribe_events", "1.10");
    const std::uint64_t id = detail::host->event_subscribe(c_, types.data(), types.size());
    if (id == 0) throw Error(detail::refusal("subscribe_events failed", TROUPE_ERR_ARGUMENT), TROUPE_ERR_ARGUMENT);
    return EventSubscription{id};
  }
  void unsubscribe_events(EventSubscription s) {
    require(TROUPE_HOST_HAS(detail::host, event_unsubscribe), "unsubscribe_events", "1.10");
    const int status = detail::host->event_unsubscribe(c_, s.id);
    if (status != TROUPE_OK) throw Error(detail::refusal("unsubscribe_events failed", status), status);
  }
  // Publishes message T (a type of a plugin's schema) as an event: every
  // actor subscribed to its type gets it.
  template <class T, class F>
  void publish_event(F&& fill) {
    require(TROUPE_HOST_HAS(detail::host, event_publish), "publish_event", "1.10");
    auto b = detail::build<T>(std::forward<F>(fill));
    const int status = detail::host->event_publish(c_, type_id_of<T>(), b.data(), b.size(), TROUPE_SEND_BUILT);
    if (status != TROUPE_OK) throw Error(detail::refusal("publish_event failed", status), status);
  }
  // The current message read as a node event or system message (see
  // Event); nothing when it is another message.
  std::optional<Event> event() const {
    require(TROUPE_HOST_HAS(detail::host, read_event), "event", "1.10");
    troupe_event e{};
    e.size = sizeof e;
    if (detail::host->read_event(c_, &e) != TROUPE_OK) return std::nullopt;
    took_ = true;
    return Event{e.type, Pid::adopt(e.who), Pid::adopt(e.sender), e.message_type, e.reason,
                 std::string_view(e.text, e.text_len)};
  }

  // ---- pipe_to (ABI 1.10) ----
  // Requests T of `to` and delivers the outcome to `target` as a message
  // (this actor its sender): the reply; a troupe::system::DeadLetterResponse
  // when the request could not be delivered; a
  // troupe::system::RequestTimedOut when no reply came within `timeout`.
  template <class T, class F>
  void pipe_to(const Pid& to, F&& fill, const Pid& target, std::chrono::nanoseconds timeout = std::chrono::seconds(5)) {
    require(TROUPE_HOST_HAS(detail::host, pipe_to), "pipe_to", "1.10");
    auto b = detail::build<T>(std::forward<F>(fill));
    const int status = detail::host->pipe_to(c_, to.get(), type_id_of<T>(), b.data(), b.size(), TROUPE_SEND_BUILT,
                                             static_cast<std::uint64_t>(timeout.count()), target.get());
    if (status != TROUPE_OK) throw Error(detail::refusal("pipe_to failed", status), status);
  }

  // ---- persistence (ABI 1.5): actors of a persistent kind ----
  // Stores event T (fill(builder) returns its Offset) in this actor's
  // journal. Its next messages wait until then(Context&, const Persisted&)
  // runs, in its own turn, once the event is durable: apply it there (and
  // answer: the current message is still the one being handled now). A
  // refused event (too large) comes with ok() false and the reason; a
  // failing store, or another writer of this persistence id, stops the
  // actor instead. Several persists in one turn are stored in that order.
  template <class T, class F, class Then>
  void persist(F&& fill, Then&& then) {
    if (!TROUPE_HOST_HAS(detail::host, persist))
      throw Error("persist needs a node with ABI 1.5", TROUPE_ERR_STATE);
    using fn = std::decay_t<Then>;
    auto b = detail::build<T>(std::forward<F>(fill));
    const troupe_message event{type_id_of<T>(), b.data(), b.size()};
    auto* closure = new fn(std::forward<Then>(then));
    check(detail::host->persist(c_, &event, 1, &detail::on_persisted<fn>, closure, &detail::drop<fn>),
          "persist");  // the node dropped the closure already
  }
  // As persist, for several events stored together (all, or none); then
  // gets the number of the last.
  template <class Then>
  void persist_all(const Events& events, Then&& then) {
    if (!TROUPE_HOST_HAS(detail::host, persist))
      throw Error("persist needs a node with ABI 1.5", TROUPE_ERR_STATE);
    using fn = std::decay_t<Then>;
    const std::vector<troupe_message> list = events.messages();
    auto* closure = new fn(std::forward<Then>(then));
    check(detail::host->persist(c_, list.data(), list.size(), &detail::on_persisted<fn>, closure, &detail::drop<fn>),
          "persist");  // the node dropped the closure already
  }
  // Stores a snapshot (message T) of the state as of the last event
  // persisted; recovery starts from the newest. The actor does not wait.
  template <class T, class F>
  void save_snapshot(F&& fill) {
    if (!TROUPE_HOST_HAS(detail::host, save_snapshot))
      throw Error("save_snapshot needs a node with ABI 1.5", TROUPE_ERR_STATE);
    auto b = detail::build<T>(std::forward<F>(fill));
    check(detail::host->save_snapshot(c_, type_id_of<T>(), b.data(), b.size()), "save_snapshot");
  }
  // Deletes this actor's events up to `to_seq` (those a snapshot covers).
  void delete_events(std::uint64_t to_seq) {
    if (!TROUPE_HOST_HAS(detail::host, delete_events))
      throw Error("delete_events needs a node with ABI 1.5", TROUPE_ERR_STATE);
    check(detail::host->delete_events(c_, to_seq), "delete_events");
  }
  // The number of this actor's last event (0: none yet).
  std::uint64_t last_seq() const {
    return TROUPE_HOST_HAS(detail::host, last_seq) ? detail::host->last_seq(c_) : 0;
  }
  // "kind/identity" for a grain, "kind/name" for a named actor.
  std::string_view persistence_id() const {
    if (!TROUPE_HOST_HAS(detail::host, persistence_id)) return {};
    std::size_t n = 0;
    const char* id = detail::host->persistence_id(c_, &n);
    return id != nullptr ? std::string_view(id, n) : std::string_view();
  }

  void set_receive_timeout(std::chrono::nanoseconds d) {
    if (!TROUPE_HOST_HAS(detail::host, set_receive_timeout))
      throw Error("set_receive_timeout needs a node with ABI 1.1", TROUPE_ERR_STATE);
    check(detail::host->set_receive_timeout(c_, static_cast<std::uint64_t>(d.count())),
          "set_receive_timeout");
  }

  // ---- the rest ----
  void log(level l, const std::string& text) const {
    detail::host->log(c_, static_cast<int>(l), text.c_str());
  }
  troupe_ctx* raw() const noexcept { return c_; }

 private:
  static void require(bool has, const char* what, const char* abi = "1.3") {
    if (!has) throw Error(std::string(what) + " needs a node with ABI " + abi, TROUPE_ERR_STATE);
  }
  static void require_16(const char* what) {
    if (!TROUPE_HOST_HAS(detail::host, unhandled))
      throw Error(std::string(what) + " needs a node with ABI 1.6", TROUPE_ERR_STATE);
  }
  void check(int status, const char* what) const {
    if (status != TROUPE_OK)
      throw Error(std::string(what) + " failed (status " + std::to_string(status) + ")", status);
  }
  Pid router(const char* name, Routing routing, const char* kind, std::uint32_t size, const troupe_props* props,
             troupe_pid* const* routees, std::size_t count) {
    require(TROUPE_HOST_HAS(detail::host, spawn_router), "a router", "1.9");
    int status = TROUPE_OK;
    troupe_pid* p = detail::host->spawn_router(c_, name, static_cast<int>(routing), kind, size, props, routees, count,
                                               &status);
    if (p == nullptr) throw Error(detail::refusal("spawn of a router failed", status), status);
    return Pid::adopt(p);
  }
  void manage(const Pid& router, int op, const Pid& routee, int change) {
    require(TROUPE_HOST_HAS(detail::host, router_manage), "router management", "1.9");
    const int status = detail::host->router_manage(c_, router.get(), op, routee.get(), change);
    if (status != TROUPE_OK) throw Error(detail::refusal("router management failed", status), status);
  }
  // Fn: the continuation's type (none when `then` is null).
  template <class Fn>
  void subscription(std::string_view topic, troupe_pid* who, bool on, Fn* then) {
    if (!TROUPE_HOST_HAS(detail::host, subscribe)) {
      delete then;
      throw Error("pub-sub needs a node with ABI 1.7", TROUPE_ERR_STATE);
    }
    const auto call = on ? detail::host->subscribe : detail::host->unsubscribe;
    int status;
    if constexpr (std::is_same_v<Fn, detail::no_then>)
      status = call(c_, topic.data(), topic.size(), who, nullptr, nullptr, nullptr);
    else
      status = call(c_, topic.data(), topic.size(), who, &detail::on_subscribed<Fn>, then, &detail::drop<Fn>);
    check(status, on ? "subscribe" : "unsubscribe");  // the node dropped the closure already
  }

  troupe_ctx* c_;
  const troupe_message* m_;
  troupe_message own_{};
  mutable bool took_ = false;
};

// What a plugin's actor classes derive from. One instance handles one
// message at a time; a restart replaces it with a fresh one.
class Actor {
 public:
  // May throw: the exception is caught at the boundary, logged and counted.
  virtual ~Actor() noexcept(false) = default;
  // Every message but the lifecycle ones below.
  virtual void receive(Context& ctx) = 0;
  virtual void started(Context&) {}
  virtual void stopping(Context&) {}
  virtual void stopped(Context&) {}
  virtual void restarting(Context&) {}
  // A message the handler did not take (Context::took_message): by default
  // a dead letter with reason unhandled, when a plugin declared its type.
  virtual void unhandled(Context& ctx) { ctx.unhandled(); }
};

// What the classes of persistent kinds derive from (Plugin::persistent).
// Before started(), recover() gets the newest snapshot, if any
// (r.snapshot), then every event after it, in order, as the current
// message: rebuild the state from them. snapshot() is asked every
// kinds.<kind>.persistence.snapshot_every events: save_snapshot() there.
class PersistentActor : public Actor {
 public:
  virtual void recover(Context& ctx, const Recovered& r) = 0;
  virtual void snapshot(Context&) {}
};

// A typed call's outcome (the clients troupe-embed-schema --services
// writes): the answer as a T, or why there is none.
template <class T>
class TypedReply {
 public:
  explicit TypedReply(const Reply& r) noexcept : r_(r), v_(r.as<T>()) {}
  // The answer is the node's, valid during the callback that got it.
  bool ok() const noexcept { return v_ != nullptr; }
  const T* get() const noexcept { return v_; }
  const T* operator->() const noexcept { return v_; }
  const T& operator*() const noexcept { return *v_; }
  const Reply& reply() const noexcept { return r_; }
  // Why there is no answer, in words (empty when ok()).
  std::string error() const {
    if (ok()) return {};
    if (r_.ok()) return "the answer was not a " + std::string(T::GetFullyQualifiedName());
    return r_.error();
  }

 private:
  Reply r_;
  const T* v_;
};

// Answers one call of a service (the servers troupe-embed-schema
// --services writes): now, or from a later turn of the same actor (keep
// it, and pass that turn's ctx). A call that came as a plain send has no
// caller: answering it does nothing.
template <class T>
class Responder {
 public:
  explicit Responder(Context& ctx) : caller_(ctx.sender()) {}
  template <class F>
  void operator()(Context& ctx, F&& fill) const {
    if (caller_) ctx.send<T>(caller_, std::forward<F>(fill));
  }
  // Who called: empty for a plain send.
  const Pid& caller() const noexcept { return caller_; }

 private:
  Pid caller_;
};

// What the typed clients of services derive from: a grain (kind,
// identity), or an actor by its PID. Valid during the callback that made it.
class ServiceClient {
 protected:
  ServiceClient(Context& ctx, std::string_view kind, std::string_view identity)
      : ctx_(ctx), grain_(ctx.grain(kind, identity)) {}
  ServiceClient(Context& ctx, Pid actor) : ctx_(ctx), actor_(std::move(actor)) {}

  // A one-way call: a plain send.
  template <class Req, class F>
  void tell(F&& fill) {
    if (grain_)
      grain_->template send<Req>(std::forward<F>(fill));
    else
      ctx_.send<Req>(actor_, std::forward<F>(fill));
  }
  template <class Req, class Resp, class F, class R>
  void call(F&& fill, R&& on_reply, std::chrono::nanoseconds timeout) {
    auto typed = [fn = std::forward<R>(on_reply)](Context& c, const Reply& r) mutable {
      fn(c, TypedReply<Resp>(r));
    };
    if (grain_)
      grain_->template request<Req>(std::forward<F>(fill), std::move(typed), timeout);
    else
      ctx_.request<Req>(actor_, std::forward<F>(fill), std::move(typed), timeout);
  }

 private:
  Context& ctx_;
  std::optional<Grain> grain_;
  Pid actor_;
};

inline void Grain::check(int status, const char* what) const {
  if (status != TROUPE_OK)
    throw Error(std::string(what) + " to " + kind_ + "/" + identity_ + " failed (status " + std::to_string(status) +
                    (status == TROUPE_ERR_UNAVAILABLE ? ": the node has no cluster)" : ")"),
                status);
}

namespace detail {

inline void fail(troupe_ctx* c, const char* reason) noexcept { host->fail(c, reason); }

// Runs `fn`, turning an exception into a failure reported to the node.
template <class F>
bool guarded(troupe_ctx* c, F&& fn) noexcept {
  try {
    fn();
    return true;
  } catch (const std::exception& e) {
    fail(c, e.what());
  } catch (...) {
    fail(c, "unknown exception");
  }
  return false;
}

template <class A>
void* create(void*, troupe_ctx* c) {
  A* a = nullptr;
  guarded(c, [&] {
    if constexpr (std::is_constructible_v<A, Context&>) {
      Context ctx(c);
      a = new A(ctx);
    } else {
      a = new A();
    }
  });
  return a;
}

// The lifecycle messages to their hooks; any other to `handle`, then to
// unhandled() when the handler did not take it.
template <class A, class H>
int dispatch(void* instance, troupe_ctx* c, const troupe_message* m, H&& handle) {
  bool ok = guarded(c, [&] {
    Context ctx(c, m);
    A& a = *static_cast<A*>(instance);
    switch (ctx.type()) {
      case started_type: a.started(ctx); break;
      case stopping_type: a.stopping(ctx); break;
      case stopped_type: a.stopped(ctx); break;
      case restarting_type: a.restarting(ctx); break;
      default:
        handle(a, ctx);
        if (!ctx.took_message()) a.unhandled(ctx);
        break;
    }
  });
  return ok ? 0 : 1;
}

template <class A>
int receive(void* instance, troupe_ctx* c, const troupe_message* m) {
  return dispatch<A>(instance, c, m, [](A& a, Context& ctx) { a.receive(ctx); });
}

template <class M>
struct method_class;
template <class A>
struct method_class<void (A::*)(Context&)> {
  using type = A;
};

template <auto M>
int behave(void* instance, troupe_ctx* c, const troupe_message* m) {
  using A = typename method_class<decltype(M)>::type;
  return dispatch<A>(instance, c, m, [](A& a, Context& ctx) { (a.*M)(ctx); });
}

template <class R>
void on_reply(void* closure, troupe_ctx* c, const troupe_message* reply, int status) {
  guarded(c, [&] {
    Context ctx(c);
    const Reply r(reply, status);
    (*static_cast<R*>(closure))(ctx, r);
  });
}

template <class R>
void on_spawned(void* closure, troupe_ctx* c, troupe_pid* who, int status, const char* error) {
  guarded(c, [&] {
    Context ctx(c);
    const Spawned s{Pid::borrow(who), status, error != nullptr ? error : ""};
    (*static_cast<R*>(closure))(ctx, s);
  });
}

template <class R>
void on_routees(void* closure, troupe_ctx* c, troupe_pid* const* routees, std::size_t count, int status) {
  guarded(c, [&] {
    Context ctx(c);
    std::vector<Pid> pids;
    pids.reserve(count);
    for (std::size_t i = 0; i < count; ++i) pids.push_back(Pid::borrow(routees[i]));
    (*static_cast<R*>(closure))(ctx, status == TROUPE_OK, std::span<const Pid>(pids));
  });
}

template <class R>
void on_subscribed(void* closure, troupe_ctx* c, int status, std::uint64_t subscribers) {
  guarded(c, [&] {
    Context ctx(c);
    const Subscribed s{status, subscribers};
    (*static_cast<R*>(closure))(ctx, s);
  });
}

template <class R>
void on_report(void* closure, troupe_ctx* c, int status, const troupe_publish_report* report) {
  guarded(c, [&] {
    Context ctx(c);
    Report r;
    r.status = status;
    if (report != nullptr) {
      r.delivered = report->delivered;
      for (std::size_t i = 0; i < report->failure_count; ++i)
        r.failures.push_back({std::string(report->failures[i].subscriber, report->failures[i].subscriber_len),
                              static_cast<troupe_delivery_failure_reason>(report->failures[i].reason)});
    }
    (*static_cast<R*>(closure))(ctx, r);
  });
}

template <class R>
void on_persisted(void* closure, troupe_ctx* c, int status, std::uint64_t last_seq, const char* why) {
  guarded(c, [&] {
    Context ctx(c);
    const Persisted p{status, last_seq, why != nullptr ? why : ""};
    (*static_cast<R*>(closure))(ctx, p);
  });
}

template <class A>
int recover(void* instance, troupe_ctx* c, const troupe_message* m, std::uint64_t seq, int is_snapshot) {
  const bool ok = guarded(c, [&] {
    Context ctx(c, m);
    static_cast<A*>(instance)->recover(ctx, Recovered{seq, is_snapshot != 0});
  });
  return ok ? 0 : 1;
}

template <class A>
int snapshot(void* instance, troupe_ctx* c) {
  const bool ok = guarded(c, [&] {
    Context ctx(c);
    static_cast<A*>(instance)->snapshot(ctx);
  });
  return ok ? 0 : 1;
}

template <class A>
int destroy(void* instance) {
  try {
    delete static_cast<A*>(instance);
    return 0;
  } catch (...) {
    // The memory is freed even so; the node reports the failure.
    return 1;
  }
}

}  // namespace detail

// What TROUPE_PLUGIN's body registers things with.
class Plugin {
 public:
  Plugin(const troupe_host_api* host, troupe_registrar* reg) noexcept : host_(host), reg_(reg) {}

  // Registers actor class A as kind `name` ("acme.counter").
  template <class A>
  void kind(const char* name) {
    static_assert(std::is_base_of_v<Actor, A>, "a kind's class derives from troupe::Actor");
    troupe_kind_def def{};
    def.size = sizeof def;
    def.name = name;
    def.data = nullptr;
    def.create = &detail::create<A>;
    def.receive = &detail::receive<A>;
    def.destroy = &detail::destroy<A>;
    int status = host_->register_kind(reg_, &def);
    if (status != TROUPE_OK)
      throw Error(std::string("kind '") + name + "' refused (status " + std::to_string(status) +
                      ")",
                  status);
  }
  // Registers actor class A as kind `name`, with its props (ABI 1.9).
  template <class A>
  void kind(const char* name, const Props& props) {
    if (!TROUPE_HOST_HAS(host_, register_kind_props))
      throw Error(std::string("kind '") + name + "' with props needs a node with ABI 1.9", TROUPE_ERR_STATE);
    kind<A>(name);
    props_of(name, props);
  }
  // Gives kind `name` (registered before) its props (ABI 1.9).
  void props_of(const char* name, const Props& props) {
    if (!TROUPE_HOST_HAS(host_, register_kind_props))
      throw Error(std::string("props of kind '") + name + "' need a node with ABI 1.9", TROUPE_ERR_STATE);
    const int status = host_->register_kind_props(reg_, name, &props.c());
    if (status != TROUPE_OK)
      throw Error(detail::refusal(std::string("props of kind '") + name + "' refused", status), status);
  }
  // Registers actor class A as kind `name` and makes it a grain kind (a
  // virtual actor: named by kind and identity, activated by the cluster),
  // passivated after `idle_timeout` without messages (0: the node's
  // default, 10 minutes, or the node's kinds.<name>.grain). Needs ABI 1.4.
  template <class A>
  void grain(const char* name, std::chrono::nanoseconds idle_timeout = std::chrono::nanoseconds(0)) {
    if (!TROUPE_HOST_HAS(host_, register_grain))
      throw Error(std::string("grain kind '") + name + "' needs a node with ABI 1.4", TROUPE_ERR_STATE);
    kind<A>(name);
    const int status = host_->register_grain(reg_, name, static_cast<std::uint64_t>(idle_timeout.count()));
    if (status != TROUPE_OK)
      throw Error(std::string("grain kind '") + name + "' refused (status " + std::to_string(status) + ")", status);
  }
  // Makes kind `name` (registered with kind<A> or grain<A>) persistent:
  // its actors keep their state as a journal of events in the node's
  // store (persistence.provider), and get it back when they start. A
  // persistent actor needs a persistence id: a grain has one
  // ("kind/identity"), as does a named actor ("kind/name"). Needs ABI 1.5.
  template <class A>
  void persistent(const char* name) {
    static_assert(std::is_base_of_v<PersistentActor, A>, "a persistent kind's class derives from troupe::PersistentActor");
    if (!TROUPE_HOST_HAS(host_, register_persistent))
      throw Error(std::string("persistent kind '") + name + "' needs a node with ABI 1.5", TROUPE_ERR_STATE);
    troupe_persistent_def def{};
    def.size = sizeof def;
    def.recover = &detail::recover<A>;
    def.snapshot = &detail::snapshot<A>;
    const int status = host_->register_persistent(reg_, name, &def);
    if (status != TROUPE_OK)
      throw Error(std::string("persistent kind '") + name + "' refused (status " + std::to_string(status) + ")",
                  status);
  }
  // Registers a binary schema (.bfbs) of the plugin's messages.
  void schema(const troupe_schema& s) {
    int status = host_->register_schema(reg_, &s);
    if (status != TROUPE_OK)
      throw Error("schema refused (status " + std::to_string(status) + ")", status);
  }
  void schema(const std::uint8_t* data, std::size_t size) { schema(troupe_schema{data, size}); }

  const troupe_host_api& host() const noexcept { return *host_; }
  // The raw registrar, valid until init returns.
  troupe_registrar* registrar() const noexcept { return reg_; }

 private:
  const troupe_host_api* host_;
  troupe_registrar* reg_;
};

namespace detail {
template <void (*Body)(Plugin&)>
int init(const troupe_host_api* h, troupe_registrar* reg) {
  host = h;
  bool ok = guarded(nullptr, [&] {
    Plugin p(h, reg);
    Body(p);
  });
  return ok ? 0 : 1;
}
}  // namespace detail

}  // namespace troupe

// Defines the plugin `NAME` (an identifier) of version `VERSION` (a string);
// the block that follows registers its kinds and schemas with `plugin`.
// `NAME_bfbs` is declared for the schema that troupe-embed-schema generates
// from NAME.fbs (see the README's meson snippet).
#define TROUPE_PLUGIN(NAME, VERSION)                                                     \
  extern "C" const troupe_schema NAME##_bfbs;                                            \
  static void troupe_plugin_body_(::troupe::Plugin& plugin);                             \
  extern "C" TROUPE_EXPORT const troupe_plugin_desc* troupe_plugin_entry(void) {         \
    static const troupe_plugin_desc desc = {sizeof(troupe_plugin_desc), TROUPE_ABI_MAJOR, \
                                            TROUPE_ABI_MINOR, #NAME, VERSION,             \
                                            &::troupe::detail::init<&troupe_plugin_body_>}; \
    return &desc;                                                                        \
  }                                                                                      \
  static void troupe_plugin_body_(::troupe::Plugin& plugin)
