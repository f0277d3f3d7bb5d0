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
  mpsc_queue() noexcept : tail_(&stub_), head_(&stub_) {}
  mpsc_queue(const mpsc_queue&) = delete;
  mpsc_queue& operator=(const mpsc_queue&) = delete;

  // Any thread. One atomic exchange, whatever the contention. seq_cst, so
  // that a producer's later look at its consumer's state (parked workers,
  // the loop's next wake-up) cannot be ordered before it.
  void push(mpsc_node* n) noexcept {
    n->next.store(nullptr, std::memory_order_relaxed);
    mpsc_node* prev = tail_.exchange(n, std::memory_order_seq_cst);
    prev->next.store(n, std::memory_order_release);
  }

  // Consumer only. Returns nullptr when empty, or when a producer is between
  // its exchange and its link (its node shows up on a later pop).
  mpsc_node* pop() noexcept {
    mpsc_node* head = head_.load(std::memory_order_relaxed);
    mpsc_node* next = head->next.load(std::memory_order_acquire);
    if (head == &stub_) {
      if (next == nullptr) return nullptr;
      head_.store(next, std::memory_order_relaxed);
      head = next;
      next = next->next.load(std::memory_order_acquire);
    }
    if (next != nullptr) {
      head_.store(next, std::memory_order_relaxed);
      return head;
    }
    if (tail_.load(std::memory_order_acquire) != head) return nullptr;
    push(&stub_);
    next = head->next.load(std::memory_order_acquire);
    if (next != nullptr) {
      head_.store(next, std::memory_order_relaxed);
      return head;
    }
    // A producer is between its exchange and its link. The tail is the stub
    // now, but `head` was never returned: the hints below must look at the
    // head too, or the queue would look empty with work in it.
    return nullptr;
  }

  // Consumer only: true when a pop may return something, including a push
  // still in progress. seq_cst pairs with push().
  bool maybe_nonempty() const noexcept {
    return head_.load(std::memory_order_relaxed) != &stub_ ||
           tail_.load(std::memory_order_seq_cst) != &stub_;
  }

  // Any thread: a hint only. Empty means both ends at the stub; the
  // consumer, which sees its own head exactly, never misses work.
  bool nonempty_hint() const noexcept {
    return tail_.load(std::memory_order_acquire) != &stub_ ||
           head_.load(std::memory_order_relaxed) != &stub_;
  }
  bool nonempty_hint_seq_cst() const noexcept {
    return tail_.load(std::memory_order_seq_cst) != &stub_ ||
           head_.load(std::memory_order_relaxed) != &stub_;
  }

 private:
  std::atomic<mpsc_node*> tail_;
  std::atomic<mpsc_node*> head_;  // written by the consumer only
  mpsc_node stub_;
};

// The user queue of a mailbox: the same algorithm, with two changes.
//  - The node popped last stays on as the queue's head (a producer may still
//    link behind it) and is handed back for release by the next pop or by
//    mark_idle(). This spares the exchange that re-inserts the stub each
//    time the last node is popped: in ping-pong, every time.
//  - The tail's lowest bit marks the queue given up by its owner: the push
//    that finds it set reports it, and its caller becomes the owner.
class mailbox_queue {
 public:
  mailbox_queue() noexcept : tail_(addr(&stub_)), head_(&stub_) {}
  mailbox_queue(const mailbox_queue&) = delete;
  mailbox_queue& operator=(const mailbox_queue&) = delete;

  // Any thread. True when the queue had been given up: the caller owns it
  // now and must see that it runs.
  bool push(mpsc_node* n) noexcept { return push_counting<false>(n); }
  // The same, counted with an atomic add, so that depth() never runs low:
  // for mailboxes that compare it with a capacity.
  bool push_exact(mpsc_node* n) noexcept { return push_counting<true>(n); }
  // Any thread: pushes `count` nodes at once, `first` to `last`, already
  // linked in order (last->next is set here): one exchange for them all,
  // counted exactly. True as for push().
  bool push_chain(mpsc_node* first, mpsc_node* last, std::uint32_t count) noexcept {
    last->next.store(nullptr, std::memory_order_relaxed);
    std::uintptr_t prev = tail_.exchange(addr(last), std::memory_order_acq_rel);
    // An atomic add: a plain one, losing a race, would lose up to a chain's
    // count until the mailbox next goes idle.
    pushed_.fetch_add(count, std::memory_order_relaxed);
    reinterpret_cast<mpsc_node*>(prev & ~tag)->next.store(first, std::memory_order_release);
    return (prev & tag) != 0;
  }

  // Any thread: about how many nodes wait. push() counts with a plain load
  // and store, which costs nothing next to the exchange but can lose a
  // count when two push at once; the owner sets the count right each time
  // it finds the queue empty. So the figure is exact for one producer (or
  // with push_exact), may run low under contention, and is right again at
  // the next idle moment.
  std::uint32_t depth() const noexcept {
    const std::int32_t d = static_cast<std::int32_t>(pushed_.load(std::memory_order_relaxed) -
                                                     popped_.load(std::memory_order_relaxed));
    return d > 0 ? static_cast<std::uint32_t>(d) : 0;
  }

  // Any thread: how many nodes the owner has taken so far (it wraps).
  std::uint32_t popped() const noexcept { return popped_.load(std::memory_order_relaxed); }

  // Owner only. The next node, or nullptr when there is none (yet: a
  // producer between its exchange and its link makes mark_idle() fail).
  // `retired` receives the previous head once nothing can reach it.
  mpsc_node* pop(mpsc_node*& retired) noexcept {
    mpsc_node* head = head_;
    mpsc_node* next = head->next.load(std::memory_order_acquire);
    if (next == nullptr) return nullptr;
    head_ = next;
    popped_.store(popped_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    retired = head == &stub_ ? nullptr : head;
    return next;
  }

  // Owner only: gives the queue up if it is empty; `retired` receives the
  // last head. After true, do not touch the queue's owner: another thread
  // may own or even free it. False if something was pushed meanwhile.
  bool mark_idle(mpsc_node*& retired) noexcept {
    mpsc_node* head = head_;
    if (head->next.load(std::memory_order_acquire) != nullptr) return false;
    // Every push linked so far counted before its link: if the exchange
    // below finds no newer push, the count read here is final, and the
    // queue is empty. Afterwards the queue is no longer ours to write.
    const std::uint32_t popped = popped_.load(std::memory_order_relaxed);
    popped_.store(pushed_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    std::uintptr_t expected = addr(head);
    if (head == &stub_) {
      retired = nullptr;
      if (tail_.compare_exchange_strong(expected, addr(&stub_) | tag, std::memory_order_acq_rel))
        return true;
      popped_.store(popped, std::memory_order_relaxed);
      return false;
    }
    // The stub becomes the head again; set it up before the exchange, since
    // after it the queue is no longer ours to write.
    stub_.next.store(nullptr, std::memory_order_relaxed);
    head_ = &stub_;
    if (tail_.compare_exchange_strong(expected, addr(&stub_) | tag, std::memory_order_acq_rel)) {
      retired = head;
      return true;
    }
    head_ = head;
    popped_.store(popped, std::memory_order_relaxed);
    return false;
  }

  // Owner only: whether anything is queued (or being pushed).
  bool owner_nonempty() const noexcept {
    return head_->next.load(std::memory_order_acquire) != nullptr ||
           (tail_.load(std::memory_order_acquire) & ~tag) != addr(head_);
  }

  // Owner only: where the queue ends now, for park(). Read it before the
  // last look for other work (the system queue): seq_cst orders the two.
  std::uintptr_t tail_seen() const noexcept { return tail_.load(std::memory_order_seq_cst); }

  // Owner only: gives the queue up even though nodes are queued (they must
  // wait: the owner is suspended); the next push reports it as from an idle
  // queue. False if anything was pushed since `seen` (from tail_seen()):
  // that push may be the wake token of a system message the owner has not
  // looked at, and must not be left behind with nobody owning the queue.
  bool park(std::uintptr_t seen) noexcept {
    return tail_.compare_exchange_strong(seen, seen | tag, std::memory_order_seq_cst);
  }

  // Owner only, when nothing runs any more (destruction): the current head
  // if it is a node, leaving the queue empty.
  mpsc_node* take_head() noexcept {
    mpsc_node* head = head_;
    if (head == &stub_) return nullptr;
    stub_.next.store(head->next.load(std::memory_order_relaxed), std::memory_order_relaxed);
    head_ = &stub_;
    return head;
  }

 private:
  template <bool Exact>
  bool push_counting(mpsc_node* n) noexcept {
    n->next.store(nullptr, std::memory_order_relaxed);
    std::uintptr_t prev = tail_.exchange(addr(n), std::memory_order_acq_rel);
    // Counted between the exchange and the link: whoever sees the link sees
    // the count (see depth()).
    if constexpr (Exact)
      pushed_.fetch_add(1, std::memory_order_relaxed);
    else
      pushed_.store(pushed_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    reinterpret_cast<mpsc_node*>(prev & ~tag)->next.store(n, std::memory_order_release);
    return (prev & tag) != 0;
  }

  static constexpr std::uintptr_t tag = 1;
  static std::uintptr_t addr(const mpsc_node* n) noexcept {
    return reinterpret_cast<std::uintptr_t>(n);
  }

  std::atomic<std::uintptr_t> tail_;
  std::atomic<std::uint32_t> pushed_{0};  // beside the tail: its line is the producer's already
  std::atomic<std::uint32_t> popped_{0};  // written by the owner only (paired with pushed_: no padding)
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

  // A hint for the consumer between messages; no ordering.
  bool nonempty_hint() const noexcept {
    return head_.load(std::memory_order_relaxed) != nullptr;
  }
  // The same, ordered with the other seq_cst operations of both queues.
  bool nonempty_seq_cst() const noexcept {
    return head_.load(std::memory_order_seq_cst) != nullptr;
  }

 private:
  std::atomic<Node*> head_{nullptr};
};

}  // namespace troupe
