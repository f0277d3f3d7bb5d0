#pragma once
// Persistent actors on the SQLite journal (synchronous=full): 100-byte
// events, one persist in flight per actor, in a folder of their own under
// TROUPE_BENCH_STATE_DIR (default /var/tmp); and the same on PostgreSQL.
#include <string>
#include <vector>

namespace troupe::bench {

// Where the databases go, and what file system that is ("ext4", ...).
std::string persist_state_dir();
std::string file_system_of(const std::string& dir);

// Microseconds of a bare write of 100 bytes and fdatasync (median).
double persist_fsync_baseline_us();
// Events per second from one actor, each durable before the next.
double persist_1actor();
// 1,000 actors at once: {events/s, events per sync, append p99 in us}.
std::vector<double> persist_1000actors();
// The PostgreSQL server the pg workloads use (TROUPE_BENCH_PG, else
// TROUPE_TEST_PG: test/integration/pg_run.py starts one); empty: none.
std::string persist_pg_server();
// persist_1000actors against it (the journal's default two connections;
// TROUPE_BENCH_PG_CONNECTIONS sets another number).
std::vector<double> persist_pg_1000actors();
// Events per second replayed into an actor recovering 1,000,000 events.
double recover_1m_events();

}  // namespace troupe::bench
