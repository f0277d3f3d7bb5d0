#pragma once
// Intrusive multi-producer single-consumer FIFO (Dmitry Vyukov's design).
// A push is one atomic exchange and never fails or retries, which keeps
// fan-in to a single mailbox cheap under contention; the consumer side uses
// plain loads. The queue owns nothing: nodes belong to whoever pushed them
// until they are popped.
#include <atomic>
#include <cstdint>

namespace troupe {

struct mpsc_node {
  std::atomic<mpsc_node*> next{nullptr};
};

class mpsc_queue {
 public:
  // A queue that starts `idle` is empty with its tail tagged: the first push
  // reports it, so that the pusher schedules the queue's owner.
  explicit mpsc_queue(bool idle = false) noexcept
      : tail_(addr(&stub_) | (idle ? tag : 0)), head_(&stub_) {}
  mpsc_queue(const mpsc_queue&) = delete;
  mpsc_queue& operator=(const mpsc_queue&) = delete;

  // Any thread. Returns true when the queue was marked idle: the caller now
  // owns the consumer side and must see that it runs. One atomic exchange,
  // whatever the contention.
  bool push(mpsc_node* n) noexcept {
    n->next.store(nullptr, std::memory_order_relaxed);
    std::uintptr_t prev = tail_.exchange(addr(n), std::memory_order_acq_rel);
    reinterpret_cast<mpsc_node*>(prev & ~tag)->next.store(n, std::memory_order_release);
    return (prev & tag) != 0;
  }

  // Consumer only. Returns nullptr when empty, or when a producer is between
  // its exchange and its link; mark_idle() then fails, so nothing is lost.
  mpsc_node* pop() noexcept {
    mpsc_node* head = head_;
    mpsc_node* next = head->next.load(std::memory_order_acquire);
    if (head == &stub_) {
      if (next == nullptr) return nullptr;
      head_ = next;
      head = next;
      next = next->next.load(std::memory_order_acquire);
    }
    if (next != nullptr) {
      head_ = next;
      return head;
    }
    if (tail_.load(std::memory_order_acquire) != addr(head)) return nullptr;
    push(&stub_);
    next = head->next.load(std::memory_order_acquire);
    if (next != nullptr) {
      head_ = next;
      return head;
    }
    return nullptr;
  }

  // Consumer only: marks the queue idle if it is empty, giving up the
  // consumer side (do not touch the queue's owner afterwards: another thread
  // may own or even free it now). False if something was pushed meanwhile.
  bool mark_idle() noexcept {
    if (head_ != &stub_) return false;
    std::uintptr_t expected = addr(&stub_);
    return tail_.compare_exchange_strong(expected, addr(&stub_) | tag, std::memory_order_acq_rel);
  }

  // Consumer only: gives up the consumer side even though nodes are queued
  // (their owner cannot take them now); the next push reports it like an
  // idle queue. False if something was pushed meanwhile.
  bool park() noexcept {
    std::uintptr_t expected = tail_.load(std::memory_order_acquire);
    return tail_.compare_exchange_strong(expected, expected | tag, std::memory_order_acq_rel);
  }

  // Consumer only: true when a pop may return something, including a push
  // still in progress.
  bool maybe_nonempty() const noexcept {
    return head_ != &stub_ || (tail_.load(std::memory_order_acquire) & ~tag) != addr(&stub_);
  }

  // Any thread: a hint only. After the consumer empties the queue the tail
  // is the stub again, so a different tail means something was pushed.
  bool nonempty_hint() const noexcept {
    return (tail_.load(std::memory_order_acquire) & ~tag) != addr(&stub_);
  }
  bool nonempty_hint_seq_cst() const noexcept {
    return (tail_.load(std::memory_order_seq_cst) & ~tag) != addr(&stub_);
  }

 private:
  static constexpr std::uintptr_t tag = 1;
  static std::uintptr_t addr(const mpsc_node* n) noexcept {
    return reinterpret_cast<std::uintptr_t>(n);
  }

  std::atomic<std::uintptr_t> tail_;
  mpsc_node* head_;
  mpsc_node stub_;
};

// Intrusive multi-producer stack whose consumer takes everything at once and
// restores FIFO order. It costs one pointer; used for the rare system
// messages so that every actor stays small.
template <class Node>
class mpsc_stack {
 public:
  // Any thread.
  void push(Node* n) noexcept {
    Node* head = head_.load(std::memory_order_relaxed);
    do {
      n->next_system = head;
    } while (!head_.compare_exchange_weak(head, n, std::memory_order_seq_cst,
                                          std::memory_order_relaxed));
  }

  // Consumer: everything pushed so far, oldest first.
  Node* take_all() noexcept {
    Node* n = head_.exchange(nullptr, std::memory_order_acquire);
    Node* reversed = nullptr;
    while (n != nullptr) {
      Node* next = n->next_system;
      n->next_system = reversed;
      reversed = n;
      n = next;
    }
    return reversed;
  }

  bool maybe_nonempty() const noexcept {
    return head_.load(std::memory_order_seq_cst) != nullptr;
  }
  // A hint for the consumer between messages; no ordering.
  bool nonempty_hint() const noexcept {
    return head_.load(std::memory_order_relaxed) != nullptr;
  }

 private:
  std::atomic<Node*> head_{nullptr};
};

}  // namespace troupe
