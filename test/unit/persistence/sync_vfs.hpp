#pragma once
// A SQLite VFS over the default one that watches the write-ahead log: its
// writes, numbered, which of them the last sync covered, and in which write
// given byte strings (events' contents) first appeared. A test asserts
// that no append is acknowledged before a sync covers the write that
// carried it: `kill -9` alone cannot catch a missing sync, since the page
// cache outlives the process. It can also fail writes on demand, as a full
// or broken disk would.
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace troupe::persistence::test {

struct sync_watch {
  std::atomic<std::int64_t> writes{0};  // WAL writes so far, numbered from 1
  std::atomic<std::int64_t> synced{0};  // every WAL write up to this one is synced
  std::atomic<std::int64_t> syncs{0};   // of the WAL
  std::atomic<bool> fail_writes{false};  // every write fails (SQLITE_IOERR_WRITE)

  // Byte strings to look for in WAL writes; for each, the write it first
  // appeared in (0: not yet).
  void watch_for(std::vector<std::string> markers);
  // Whether marker k was written, and that write synced since.
  bool durable(std::size_t k);

  std::mutex mu;
  std::vector<std::string> markers;
  std::vector<std::int64_t> seen_in;
};

// Registers the VFS `name` (once per process), reporting to `watch`.
void register_sync_vfs(const char* name, sync_watch* watch);

}  // namespace troupe::persistence::test
