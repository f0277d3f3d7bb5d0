#pragma once
// News waiting to be gossiped, each sent a limited number of times
// (memberlist's transmit-limited queue): newer news about a member replaces
// older; what was sent least goes first, the newest first among equals.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cluster/messages.hpp"

namespace troupe::cluster {

class broadcast_queue {
 public:
  void push(news n);
  // What fits in `budget` bytes; each piece is sent `limit` times in all,
  // then dropped.
  std::vector<news> take(std::size_t budget, unsigned limit);
  std::size_t size() const noexcept { return items_.size(); }
  void clear() noexcept { items_.clear(); }

 private:
  struct item {
    news n;
    std::size_t bytes;
    unsigned sent = 0;
    std::uint64_t order;
  };
  std::map<std::string, item> items_;  // by the member it is about
  std::uint64_t next_ = 0;
};

}  // namespace troupe::cluster
