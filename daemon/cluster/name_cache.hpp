#pragma once
// A bounded map from a two-part name (kind, identity) to a value, looked up
// by a 64-bit hash of the name that the caller already has (grain_key). Open
// addressing with linear probing over an array of (hash, entry) slots, and
// each entry one allocation holding its value and its name: a hit reads one
// slot and one entry, where a node-based map reads a bucket, the node before,
// the node, the next node and the name's own buffer. The full name is always
// compared, so two names whose hashes collide stay apart.
//
// Full (`capacity` entries), it forgets an entry to make room: the next one
// after a cursor that moves on with each eviction. A slot's place comes from
// the hash's low bits: callers that shard by hash take the shard from the
// high ones. Not thread-safe.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string_view>
#include <utility>
#include <vector>

namespace troupe::cluster {

template <class V>
class name_cache {
 public:
  explicit name_cache(std::size_t capacity = 1) : capacity_(capacity == 0 ? 1 : capacity) {}
  name_cache(const name_cache&) = delete;
  name_cache& operator=(const name_cache&) = delete;
  ~name_cache() { clear(); }

  // Changes the bound, forgetting entries beyond it.
  void set_capacity(std::size_t capacity) {
    capacity_ = capacity == 0 ? 1 : capacity;
    while (size_ > capacity_) evict_one();
  }

  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }

  // The value named (kind, identity), or null.
  const V* find(std::uint64_t key, std::string_view kind, std::string_view identity) const noexcept {
    if (size_ == 0) return nullptr;
    const std::size_t i = slot_of(key, kind, identity);
    return slots_[i].e == nullptr ? nullptr : &slots_[i].e->value;
  }

  // Sets the value named (kind, identity), replacing one it had.
  void put(std::uint64_t key, std::string_view kind, std::string_view identity, V value) {
    if (size_ != 0) {
      const std::size_t i = slot_of(key, kind, identity);
      if (slots_[i].e != nullptr) {
        slots_[i].e->value = std::move(value);
        return;
      }
    }
    if (size_ >= capacity_) evict_one();
    if ((size_ + 1) * 2 > slots_.size()) grow();
    place({key, entry::make(kind, identity, std::move(value))});
    ++size_;
  }

  // Forgets the value named (kind, identity) if `pred(value)` holds; true
  // when one was forgotten.
  template <class Pred>
  bool erase(std::uint64_t key, std::string_view kind, std::string_view identity, Pred&& pred) {
    if (size_ == 0) return false;
    const std::size_t i = slot_of(key, kind, identity);
    if (slots_[i].e == nullptr || !pred(std::as_const(slots_[i].e->value))) return false;
    remove_at(i);
    return true;
  }

  // Forgets every value for which `pred(value)` holds.
  template <class Pred>
  void erase_if(Pred&& pred) {
    std::vector<slot> old(slots_.size());
    old.swap(slots_);
    size_ = 0;
    for (slot& s : old) {
      if (s.e == nullptr) continue;
      if (pred(std::as_const(s.e->value))) {
        entry::destroy(s.e);
        continue;
      }
      place(s);
      ++size_;
    }
  }

  void clear() noexcept {
    for (slot& s : slots_)
      if (s.e != nullptr) entry::destroy(s.e);
    slots_.clear();
    size_ = 0;
  }

 private:
  struct entry {
    V value;
    std::uint32_t kind_len, identity_len;

    const char* name() const noexcept { return reinterpret_cast<const char*>(this + 1); }
    bool is(std::string_view kind, std::string_view identity) const noexcept {
      return kind_len == kind.size() && identity_len == identity.size() &&
             std::memcmp(name(), kind.data(), kind.size()) == 0 &&
             std::memcmp(name() + kind.size(), identity.data(), identity.size()) == 0;
    }
    static entry* make(std::string_view kind, std::string_view identity, V&& v) {
      void* m = ::operator new(sizeof(entry) + kind.size() + identity.size());
      auto* e = new (m) entry{std::move(v), static_cast<std::uint32_t>(kind.size()),
                              static_cast<std::uint32_t>(identity.size())};
      char* n = reinterpret_cast<char*>(e + 1);
      if (!kind.empty()) std::memcpy(n, kind.data(), kind.size());
      if (!identity.empty()) std::memcpy(n + kind.size(), identity.data(), identity.size());
      return e;
    }
    static void destroy(entry* e) noexcept {
      e->~entry();
      ::operator delete(e);
    }
  };
  struct slot {
    std::uint64_t key = 0;
    entry* e = nullptr;  // null: empty
  };

  std::size_t mask() const noexcept { return slots_.size() - 1; }

  // The slot holding (kind, identity), or the empty slot that ends its probe.
  std::size_t slot_of(std::uint64_t key, std::string_view kind, std::string_view identity) const noexcept {
    std::size_t i = key & mask();
    while (slots_[i].e != nullptr && !(slots_[i].key == key && slots_[i].e->is(kind, identity)))
      i = (i + 1) & mask();
    return i;
  }

  // Puts `s` in the first free slot from its home (one is free: the table
  // is at most half full).
  void place(const slot& s) noexcept {
    std::size_t i = s.key & mask();
    while (slots_[i].e != nullptr) i = (i + 1) & mask();
    slots_[i] = s;
  }

  // Empties slot `i`, moving back the entries after it whose probe passed it.
  void remove_at(std::size_t i) noexcept {
    entry::destroy(slots_[i].e);
    std::size_t j = i;
    for (;;) {
      j = (j + 1) & mask();
      if (slots_[j].e == nullptr) break;
      const std::size_t home = slots_[j].key & mask();
      // The entry at j may fill the hole at i when its home is not in (i, j].
      const bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
      if (!between) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i] = {};
    --size_;
  }

  void evict_one() noexcept {
    if (slots_.empty()) return;
    std::size_t i = cursor_ & mask();
    while (slots_[i].e == nullptr) i = (i + 1) & mask();
    cursor_ = i + 1;
    remove_at(i);
  }

  void grow() {
    std::vector<slot> old(slots_.empty() ? 16 : slots_.size() * 2);
    old.swap(slots_);
    for (slot& s : old) {
      if (s.e == nullptr) continue;
      place(s);
    }
  }

  std::size_t capacity_;
  std::size_t size_ = 0;
  std::size_t cursor_ = 0;
  std::vector<slot> slots_;
};

}  // namespace troupe::cluster
