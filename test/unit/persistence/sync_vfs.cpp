#include "sync_vfs.hpp"

#include <sqlite3.h>

#include <cstring>
#include <string_view>

namespace troupe::persistence::test {

namespace {

sqlite3_vfs* base = nullptr;
sqlite3_vfs wrapper{};
sync_watch* watch = nullptr;

// Our file, with the default VFS's file right behind it.
struct file {
  sqlite3_file head;
  bool wal;
  sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
};

file* of(sqlite3_file* f) { return reinterpret_cast<file*>(f); }

int x_close(sqlite3_file* f) { return of(f)->real()->pMethods->xClose(of(f)->real()); }
int x_read(sqlite3_file* f, void* p, int n, sqlite3_int64 at) {
  return of(f)->real()->pMethods->xRead(of(f)->real(), p, n, at);
}
int x_write(sqlite3_file* f, const void* p, int n, sqlite3_int64 at) {
  if (watch->fail_writes.load()) return SQLITE_IOERR_WRITE;
  const int rc = of(f)->real()->pMethods->xWrite(of(f)->real(), p, n, at);
  if (rc == SQLITE_OK && of(f)->wal) {
    std::lock_guard lock(watch->mu);
    const std::int64_t number = watch->writes.fetch_add(1) + 1;
    const std::string_view bytes(static_cast<const char*>(p), static_cast<std::size_t>(n));
    for (std::size_t k = 0; k < watch->markers.size(); ++k)
      if (watch->seen_in[k] == 0 && bytes.find(watch->markers[k]) != std::string_view::npos) watch->seen_in[k] = number;
  }
  return rc;
}
int x_truncate(sqlite3_file* f, sqlite3_int64 size) {
  return of(f)->real()->pMethods->xTruncate(of(f)->real(), size);
}
int x_sync(sqlite3_file* f, int flags) {
  // Taken before the sync: a write that lands meanwhile is not covered.
  const std::int64_t before = of(f)->wal ? watch->writes.load() : 0;
  const int rc = of(f)->real()->pMethods->xSync(of(f)->real(), flags);
  if (rc == SQLITE_OK && of(f)->wal) {
    std::int64_t s = watch->synced.load();
    while (s < before && !watch->synced.compare_exchange_weak(s, before)) {
    }
    watch->syncs.fetch_add(1);
  }
  return rc;
}
int x_size(sqlite3_file* f, sqlite3_int64* size) { return of(f)->real()->pMethods->xFileSize(of(f)->real(), size); }
int x_lock(sqlite3_file* f, int l) { return of(f)->real()->pMethods->xLock(of(f)->real(), l); }
int x_unlock(sqlite3_file* f, int l) { return of(f)->real()->pMethods->xUnlock(of(f)->real(), l); }
int x_reserved(sqlite3_file* f, int* out) {
  return of(f)->real()->pMethods->xCheckReservedLock(of(f)->real(), out);
}
int x_control(sqlite3_file* f, int op, void* arg) {
  return of(f)->real()->pMethods->xFileControl(of(f)->real(), op, arg);
}
int x_sector(sqlite3_file* f) { return of(f)->real()->pMethods->xSectorSize(of(f)->real()); }
int x_device(sqlite3_file* f) { return of(f)->real()->pMethods->xDeviceCharacteristics(of(f)->real()); }
int x_shm_map(sqlite3_file* f, int page, int size, int extend, void volatile** out) {
  return of(f)->real()->pMethods->xShmMap(of(f)->real(), page, size, extend, out);
}
int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  return of(f)->real()->pMethods->xShmLock(of(f)->real(), offset, n, flags);
}
void x_shm_barrier(sqlite3_file* f) { of(f)->real()->pMethods->xShmBarrier(of(f)->real()); }
int x_shm_unmap(sqlite3_file* f, int del) { return of(f)->real()->pMethods->xShmUnmap(of(f)->real(), del); }
int x_fetch(sqlite3_file* f, sqlite3_int64 at, int n, void** out) {
  return of(f)->real()->pMethods->xFetch(of(f)->real(), at, n, out);
}
int x_unfetch(sqlite3_file* f, sqlite3_int64 at, void* p) {
  return of(f)->real()->pMethods->xUnfetch(of(f)->real(), at, p);
}

const sqlite3_io_methods methods = {
    3,        x_close,   x_read,     x_write,    x_truncate,    x_sync,      x_size,   x_lock,   x_unlock,
    x_reserved, x_control, x_sector, x_device, x_shm_map, x_shm_lock, x_shm_barrier, x_shm_unmap, x_fetch,
    x_unfetch,
};

int x_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  file* mine = of(f);
  const int rc = base->xOpen(base, name, mine->real(), flags, out_flags);
  if (rc != SQLITE_OK) {
    f->pMethods = nullptr;
    return rc;
  }
  mine->wal = (flags & SQLITE_OPEN_WAL) != 0;
  f->pMethods = &methods;
  return rc;
}

int x_delete(sqlite3_vfs*, const char* name, int sync) { return base->xDelete(base, name, sync); }
int x_access(sqlite3_vfs*, const char* name, int flags, int* out) { return base->xAccess(base, name, flags, out); }
int x_full(sqlite3_vfs*, const char* name, int n, char* out) { return base->xFullPathname(base, name, n, out); }
int x_random(sqlite3_vfs*, int n, char* out) { return base->xRandomness(base, n, out); }
int x_sleep(sqlite3_vfs*, int us) { return base->xSleep(base, us); }
int x_time(sqlite3_vfs*, double* out) { return base->xCurrentTime(base, out); }
int x_error(sqlite3_vfs*, int n, char* out) { return base->xGetLastError(base, n, out); }
int x_time64(sqlite3_vfs*, sqlite3_int64* out) { return base->xCurrentTimeInt64(base, out); }

}  // namespace

void sync_watch::watch_for(std::vector<std::string> m) {
  std::lock_guard lock(mu);
  markers = std::move(m);
  seen_in.assign(markers.size(), 0);
}

bool sync_watch::durable(std::size_t k) {
  std::lock_guard lock(mu);
  return k < seen_in.size() && seen_in[k] != 0 && seen_in[k] <= synced.load();
}

void register_sync_vfs(const char* name, sync_watch* w) {
  watch = w;
  if (sqlite3_vfs_find(name) != nullptr) return;
  base = sqlite3_vfs_find(nullptr);
  wrapper.iVersion = 2;
  wrapper.szOsFile = static_cast<int>(sizeof(file)) + base->szOsFile;
  wrapper.mxPathname = base->mxPathname;
  wrapper.zName = name;
  wrapper.xOpen = x_open;
  wrapper.xDelete = x_delete;
  wrapper.xAccess = x_access;
  wrapper.xFullPathname = x_full;
  wrapper.xRandomness = x_random;
  wrapper.xSleep = x_sleep;
  wrapper.xCurrentTime = x_time;
  wrapper.xGetLastError = x_error;
  wrapper.xCurrentTimeInt64 = x_time64;
  sqlite3_vfs_register(&wrapper, 0);
}

}  // namespace troupe::persistence::test
