#pragma once
// The journal service persistent actors see (actor/journal_service.hpp),
// over a journal store: it holds an actor's user messages while it
// persists or recovers, hands it the store's answers in its own context,
// and stops it when the store failed or another writer came first.
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "actor/journal_service.hpp"
#include "persistence/journal.hpp"

namespace troupe::persistence {

struct actor_journal_stats {
  std::atomic<std::uint64_t> recoveries{0}, recovered_events{0}, recovery_failures{0};
  std::atomic<std::uint64_t> stopped{0};  // actors stopped: the store failed, or a second writer
};

class actor_journal final : public journal_service {
 public:
  struct hooks {
    // A line for the node's log (warnings: an actor stopped, and why).
    std::function<void(const std::string&)> warn;
    // An append answered: its outcome, and seconds from the call.
    std::function<void(result, double seconds)> on_append;
    // A recovery over: seconds from its start, events replayed.
    std::function<void(double seconds, std::uint64_t events)> on_recovered;
  };

  actor_journal(journal& store, hooks h = {}) : store_(store), hooks_(std::move(h)) {}

  void recover(context& ctx, std::string id, item_fn item, done_fn done) override;
  void persist(context& ctx, std::string id, std::uint64_t expected, std::vector<event_bytes> events,
               done_fn then) override;
  void snapshot(context& ctx, std::string id, std::uint64_t seq, event_bytes state, done_fn done) override;
  void delete_events(context& ctx, std::string id, std::uint64_t to_seq, done_fn done) override;

  bool shared() const noexcept override { return store_.shared(); }
  const actor_journal_stats& stats() const noexcept { return stats_; }

 private:
  struct recovery;
  void read_next(const std::shared_ptr<recovery>& r);
  void stop_actor(context& ctx, const std::string& id, const char* what, const std::string& detail);

  journal& store_;
  hooks hooks_;
  actor_journal_stats stats_;
};

}  // namespace troupe::persistence
