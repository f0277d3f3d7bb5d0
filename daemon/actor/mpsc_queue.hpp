#pragma once
// Intrusive multi-producer single-consumer FIFO (Dmitry Vyukov's design).
// A push is one atomic exchange and never fails or retries, which keeps
// fan-in to a single mailbox cheap under contention; the consumer side uses
// plain loads. The queue owns nothing: nodes belong to whoever pushed them
// until they are popped.
#include <atomic>

namespace troupe {

struct mpsc_node {
  std::atomic<mpsc_node*> next{nullptr};
};

class mpsc_queue {
 public:
  mpsc_queue() noexcept : tail_(&stub_), head_(&stub_) {}
  mpsc_queue(const mpsc_queue&) = delete;
  mpsc_queue& operator=(const mpsc_queue&) = delete;

  // Any thread. The exchange is seq_cst so that a producer's later check of
  // the consumer's state (mailbox status) cannot be reordered before it.
  void push(mpsc_node* n) noexcept {
    n->next.store(nullptr, std::memory_order_relaxed);
    mpsc_node* prev = tail_.exchange(n, std::memory_order_seq_cst);
    prev->next.store(n, std::memory_order_release);
  }

  // Consumer only. Returns nullptr when empty, or when a producer is between
  // its exchange and its link; that producer then re-checks the consumer
  // state itself, so nothing is lost.
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
    if (tail_.load(std::memory_order_acquire) != head) return nullptr;
    push(&stub_);
    next = head->next.load(std::memory_order_acquire);
    if (next != nullptr) {
      head_ = next;
      return head;
    }
    return nullptr;
  }

  // Consumer only: true when a pop may return something, including a push
  // still in progress. seq_cst pairs with push() for the idle/re-check
  // handshake of the mailbox.
  bool maybe_nonempty() const noexcept {
    return head_ != &stub_ ||
           tail_.load(std::memory_order_seq_cst) != &stub_;
  }

  // Any thread: a hint only. After the consumer empties the queue the tail
  // is the stub again, so a different tail means something was pushed.
  bool nonempty_hint() const noexcept {
    return tail_.load(std::memory_order_acquire) != &stub_;
  }

 private:
  std::atomic<mpsc_node*> tail_;
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
