#pragma once
// A SQLite VFS over the default one that watches the write-ahead log: how
// many writes to it are not synced yet, and how many syncs there were. A
// test asserts that no append is acknowledged while its commit's WAL
// writes are unsynced: `kill -9` alone cannot catch a missing sync, since
// the page cache outlives the process. It can also fail writes on demand,
// as a full or broken disk would.
#include <atomic>
#include <cstdint>

namespace troupe::persistence::test {

struct sync_watch {
  std::atomic<std::int64_t> unsynced{0};  // WAL writes since its last sync
  std::atomic<std::int64_t> syncs{0};     // of the WAL
  std::atomic<bool> fail_writes{false};   // every write fails (SQLITE_IOERR_WRITE)
};

// Registers the VFS `name` (once per process), reporting to `watch`.
void register_sync_vfs(const char* name, sync_watch* watch);

}  // namespace troupe::persistence::test
