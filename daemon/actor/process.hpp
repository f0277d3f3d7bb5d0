#pragma once
// Everything addressable is a process behind a PID: a local actor, a future,
// dead letters, and later remote proxies and routers. A PID holds a counted
// pointer to its process, so a send resolves nothing: it calls the process.
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "actor/message.hpp"

namespace troupe {

class actor_system;
struct system_message;

// Whether a PID made in its node's start `generation` names an earlier start
// than `current` (0 on either side: not known, so not earlier).
constexpr bool earlier_start(std::uint64_t generation, std::uint64_t current) noexcept {
  return generation != 0 && current != 0 && generation != current;
}

class process {
 public:
  explicit process(actor_system& sys) noexcept : sys_(&sys) {}
  process(const process&) = delete;
  process& operator=(const process&) = delete;

  void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
  // Takes a reference unless the last one is already gone (for weak maps
  // that find a process its destructor has yet to remove).
  bool try_retain() noexcept {
    std::uint32_t n = refs_.load(std::memory_order_relaxed);
    while (n != 0)
      if (refs_.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel)) return true;
    return false;
  }

  // Delivers a user message; takes ownership of `e` whatever happens to it.
  virtual void send_user(envelope* e) noexcept = 0;
  // Delivers a system message; takes ownership of `m`.
  virtual void send_system(system_message* m) noexcept = 0;
  // The id part of the PID ("$42", "my-name").
  virtual std::string id() const = 0;
  // The address part: this node's, unless the process stands for an actor
  // of another node.
  virtual const std::string& address() const noexcept;
  // The start of the node it lives on (its generation): this node's, unless
  // it stands for an actor of another node; 0 when not known.
  virtual std::uint64_t generation() const noexcept;
  // Whether it has stopped; a stopped process turns messages into dead letters.
  virtual bool dead() const noexcept { return false; }
  // How full its mailbox is, in percent of its capacity (of
  // `unbounded_reference` messages when it has none); 0 for processes
  // without one. Any thread; a hint for back-pressure.
  virtual unsigned pressure() const noexcept { return 0; }
  static constexpr unsigned unbounded_reference = 65536;

  actor_system& system() const noexcept { return *sys_; }

 protected:
  virtual ~process() = default;

 private:
  std::atomic<std::uint32_t> refs_{1};
  actor_system* sys_;
};

// A counted reference to a process.
class process_ref {
 public:
  process_ref() noexcept = default;
  // Takes over a reference the caller owns.
  static process_ref adopt(process* p) noexcept { process_ref r; r.p_ = p; return r; }
  explicit process_ref(process* p) noexcept : p_(p) { if (p_) p_->retain(); }
  process_ref(const process_ref& o) noexcept : p_(o.p_) { if (p_) p_->retain(); }
  process_ref(process_ref&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  process_ref& operator=(process_ref o) noexcept { std::swap(p_, o.p_); return *this; }
  ~process_ref() { if (p_) p_->release(); }

  process* get() const noexcept { return p_; }
  process* operator->() const noexcept { return p_; }
  process& operator*() const noexcept { return *p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }
  process* release() noexcept { return std::exchange(p_, nullptr); }
  void reset() noexcept { process_ref().swap(*this); }
  void swap(process_ref& o) noexcept { std::swap(p_, o.p_); }

 private:
  process* p_ = nullptr;
};

// Process id: node address + id. Local processes are unique per actor, so
// two PIDs are equal when they name the same process.
class pid {
 public:
  pid() noexcept = default;
  explicit pid(process_ref p) noexcept : p_(std::move(p)) {}
  explicit pid(process* p) noexcept : p_(p) {}

  process* get() const noexcept { return p_.get(); }
  explicit operator bool() const noexcept { return static_cast<bool>(p_); }

  std::string id() const;
  const std::string& address() const;
  std::uint64_t generation() const noexcept { return p_ ? p_->generation() : 0; }
  // "address/id", for logs and the admin API.
  std::string to_string() const;

  friend bool operator==(const pid& a, const pid& b) noexcept { return a.get() == b.get(); }

 private:
  process_ref p_;
};

}  // namespace troupe

template <>
struct std::hash<troupe::pid> {
  std::size_t operator()(const troupe::pid& p) const noexcept {
    return std::hash<const void*>{}(p.get());
  }
};
