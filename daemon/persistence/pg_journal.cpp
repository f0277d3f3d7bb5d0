#include "persistence/pg_journal.hpp"

#include <algorithm>
#include <cstring>
#include <deque>
#include <future>
#include <vector>

#include <libpq-fe.h>
#include <uv.h>

#include "actor/event_loop.hpp"

namespace troupe::persistence {

namespace {

using clock = std::chrono::steady_clock;

constexpr Oid text_oid = 25, int8_oid = 20, bool_oid = 16, bytea_oid = 17, int8_array_oid = 1016,
              bytea_array_oid = 1001, text_array_oid = 1009;
constexpr int schema_version = 1;

// Run in one implicit transaction, under a lock that keeps two nodes
// starting together from creating the same table at once. The last
// statement's answer is the schema version the database holds.
const char* const schema_sql[] = {
    "SELECT pg_advisory_xact_lock(7598353413436686337)",
    "CREATE TABLE IF NOT EXISTS troupe_meta (key text PRIMARY KEY, value text NOT NULL)",
    "INSERT INTO troupe_meta (key, value) VALUES ('schema', '1') ON CONFLICT (key) DO NOTHING",
    "CREATE TABLE IF NOT EXISTS troupe_heads (persistence_id text PRIMARY KEY, last_seq int8 NOT NULL)",
    "CREATE TABLE IF NOT EXISTS troupe_events (persistence_id text NOT NULL, seq int8 NOT NULL, "
    "type int8 NOT NULL, data bytea NOT NULL, PRIMARY KEY (persistence_id, seq))",
    "CREATE TABLE IF NOT EXISTS troupe_snapshots (persistence_id text NOT NULL, seq int8 NOT NULL, "
    "type int8 NOT NULL, data bytea NOT NULL, PRIMARY KEY (persistence_id, seq))",
    "SELECT value FROM troupe_meta WHERE key = 'schema'",
};
constexpr std::size_t schema_steps = sizeof(schema_sql) / sizeof(schema_sql[0]);

enum class op_kind : std::uint8_t { append, snapshot, remove, read };

struct statement {
  const char* name;
  const char* sql;
  std::vector<Oid> types;
};

// In the order of op_kind. A conflict or a refusal is a row saying nothing
// was written, never an error: in a pipeline an error would fail every
// request after it up to the commit. The others answer one row, (written,
// last): what the request wrote, and the id's last sequence number as the
// statement found it.
const statement statements[] = {
    // Appends to ids that differ, in one statement (one execution for a
    // batch: most of the server's time per append went to starting and
    // ending a statement). $1 ids, $2 expected, $3 events each; then per
    // event: $4 its append (1-based), $5 its place in it (1-based), $6
    // type, $7 data. An id's head moves from its expected number only if it
    // is still there (a second writer waits for the first's commit on the
    // row, then finds it moved); its events follow only if it did. A row
    // per append: (k, written, its last number as found).
    {"troupe_append_many",
     "WITH a AS (SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[]) WITH ORDINALITY AS a(id, expected, n, k)), "
     "ins AS (INSERT INTO troupe_heads (persistence_id, last_seq) SELECT id, n FROM a WHERE expected = 0 "
     "ORDER BY id ON CONFLICT (persistence_id) DO NOTHING RETURNING persistence_id), "
     "upd AS (UPDATE troupe_heads h SET last_seq = a.expected + a.n FROM a "
     "WHERE h.persistence_id = a.id AND h.last_seq = a.expected AND a.expected > 0 RETURNING h.persistence_id), "
     "won AS (SELECT persistence_id FROM ins UNION ALL SELECT persistence_id FROM upd), "
     "ev AS (INSERT INTO troupe_events (persistence_id, seq, type, data) "
     "SELECT a.id, a.expected + e.i, e.type, e.data FROM unnest($4::int8[], $5::int8[], $6::int8[], $7::bytea[]) "
     "AS e(k, i, type, data) JOIN a ON a.k = e.k WHERE a.id IN (SELECT persistence_id FROM won) RETURNING 1) "
     "SELECT a.k, a.id IN (SELECT persistence_id FROM won), h.last_seq "
     "FROM a LEFT JOIN troupe_heads h ON h.persistence_id = a.id",
     {text_array_oid, int8_array_oid, int8_array_oid, int8_array_oid, int8_array_oid, int8_array_oid,
      bytea_array_oid}},
    // $1 id, $2 seq, $3 type, $4 data: stored if $2 is at most the last
    // event; of the older snapshots, the newest one stays.
    {"troupe_snapshot",
     "WITH ok AS (SELECT 1 WHERE $2 = 0 OR EXISTS (SELECT 1 FROM troupe_heads "
     "WHERE persistence_id = $1 AND last_seq >= $2)), "
     "put AS (INSERT INTO troupe_snapshots (persistence_id, seq, type, data) SELECT $1, $2, $3, $4 FROM ok "
     "ON CONFLICT (persistence_id, seq) DO UPDATE SET type = EXCLUDED.type, data = EXCLUDED.data RETURNING 1), "
     "prune AS (DELETE FROM troupe_snapshots WHERE persistence_id = $1 AND EXISTS (SELECT 1 FROM put) AND seq < "
     "(SELECT seq FROM troupe_snapshots WHERE persistence_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT 1)) "
     "SELECT (SELECT count(*) FROM put), (SELECT last_seq FROM troupe_heads WHERE persistence_id = $1)",
     {text_oid, int8_oid, int8_oid, bytea_oid}},
    // $1 id, $2 to_seq: the last event stays.
    {"troupe_delete",
     "WITH d AS (DELETE FROM troupe_events WHERE persistence_id = $1 AND seq <= $2 AND seq < "
     "(SELECT last_seq FROM troupe_heads WHERE persistence_id = $1) RETURNING 1) "
     "SELECT (SELECT count(*) FROM d), (SELECT last_seq FROM troupe_heads WHERE persistence_id = $1)",
     {text_oid, int8_oid}},
    // $1 id, $2 after, $3 with the newest snapshot, $4 events at most:
    // rows (0, snapshot) then (1, event) in order.
    {"troupe_read",
     "WITH s AS (SELECT seq, type, data FROM troupe_snapshots WHERE persistence_id = $1 AND $3 "
     "ORDER BY seq DESC LIMIT 1) "
     "SELECT 0::int8, seq, type, data FROM s UNION ALL "
     "(SELECT 1::int8, seq, type, data FROM troupe_events WHERE persistence_id = $1 "
     "AND seq > greatest($2, coalesce((SELECT seq FROM s), 0)) ORDER BY seq LIMIT $4)",
     {text_oid, int8_oid, bool_oid, int8_oid}},
};

void put32(std::string& b, std::uint32_t v) {
  const char c[4] = {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
  b.append(c, 4);
}
std::string be64(std::uint64_t v) {
  std::string b;
  put32(b, static_cast<std::uint32_t>(v >> 32));
  put32(b, static_cast<std::uint32_t>(v));
  return b;
}
std::uint64_t get64(const char* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
std::uint64_t column64(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8) return 0;
  return get64(PQgetvalue(r, row, col));
}

// A one-dimensional array in PostgreSQL's binary format.
template <class F>
std::string binary_array(Oid element, std::size_t n, F&& element_at) {
  std::string b;
  put32(b, 1);  // dimensions
  put32(b, 0);  // no nulls
  put32(b, element);
  put32(b, static_cast<std::uint32_t>(n));
  put32(b, 1);  // lower bound
  for (std::size_t i = 0; i < n; ++i) {
    const auto [data, size] = element_at(i);
    put32(b, static_cast<std::uint32_t>(size));
    b.append(reinterpret_cast<const char*>(data), size);
  }
  return b;
}

std::string trimmed(const char* s) {
  std::string out = s ? s : "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

struct op {
  op_kind kind = op_kind::append;
  std::string id;
  std::uint64_t seq = 0;  // expected, snapshot seq, to_seq, or after
  bool with_snapshot = false;
  std::size_t max_events = 0;
  std::vector<event> events;
  snapshot snap;
  journal::done_fn done;
  journal::read_fn on_read;
  bool alone = false;  // sent again alone after its batch failed
  outcome out;
  read_result got;

  std::size_t bytes() const {
    std::size_t n = id.size() + snap.data.size();
    for (const event& e : events) n += e.data.size();
    return n;
  }
};
using op_ptr = std::unique_ptr<op>;

}  // namespace

struct pg_journal::impl {
  struct conn;

  pg_options opts;
  pg_stats stats;
  std::unique_ptr<event_loop> own_loop;  // when opts.loop is null
  event_loop& loop;
  std::vector<std::unique_ptr<conn>> conns;

  mutable std::mutex mu;  // guards what other threads touch
  std::vector<op_ptr> inbox;
  bool posted = false;
  bool stopped = false;
  std::string conninfo, password;
  unsigned credentials = 0;  // bumped by set_credentials
  std::string why_not;       // empty when every connection is ready

  // The loop thread's.
  bool stopping = false;
  bool outage = false;  // a connection was lost or could not be made since all were last ready
  std::promise<void> drained;
  bool drained_set = false;
  timer_handle stop_deadline;

  explicit impl(pg_options o)
      : opts(std::move(o)),
        own_loop(opts.loop ? nullptr : std::make_unique<event_loop>()),
        loop(opts.loop ? *opts.loop : *own_loop),
        conninfo(opts.conninfo),
        password(opts.password) {}

  void submit(op_ptr o);
  void drain();
  void answer(op& o);
  void fail(op& o, const std::string& why);
  void update_status();
  void check_drained();
  void tell(bool warning, const std::string& line) {
    if (opts.on_event) opts.on_event(warning, line);
  }
};

struct pg_journal::impl::conn {
  enum class state { down, connecting, setup, ready };
  struct tag {
    bool sync = false;
    std::size_t index = 0;  // the request in flight, or the setup step
    bool got = false;
    bool appends = false;  // troupe_append_many of appends[index]
  };

  impl& j;
  unsigned index;
  PGconn* pg = nullptr;
  uv_poll_t* poll = nullptr;
  int poll_fd = -1;
  state st = state::down;
  int setup_stage = 0;  // 1: schema, 2: statements
  std::string setup_error, schema_found;
  std::deque<op_ptr> queue;
  std::vector<op_ptr> flight;
  // The appends of flight, as sent: one statement per group, its requests by k.
  std::vector<std::vector<std::size_t>> appends;
  std::deque<tag> pending;
  std::string batch_error;
  clock::time_point batch_start;
  std::chrono::milliseconds backoff{100};
  timer_handle retry, connect_deadline;
  std::uint64_t attempt = 0;
  unsigned credentials = 0;
  std::string last_error = "connecting to PostgreSQL";

  conn(impl& owner, unsigned i) : j(owner), index(i) {}

  // ---- connecting ----
  void connect() {
    retry.cancel();
    std::string info, pass;
    {
      std::lock_guard lock(j.mu);
      info = j.conninfo;
      pass = j.password;
      credentials = j.credentials;
    }
    std::vector<const char*> keys{"dbname", "fallback_application_name"};
    std::vector<const char*> values{info.c_str(), "troupe-node"};
    if (!pass.empty()) {
      keys.push_back("password");
      values.push_back(pass.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    ++attempt;
    st = state::connecting;
    last_error = "connecting to PostgreSQL";
    pg = PQconnectStartParams(keys.data(), values.data(), 1);
    if (pg == nullptr) return down("out of memory");
    if (PQstatus(pg) == CONNECTION_BAD) return down(trimmed(PQerrorMessage(pg)));
    PQsetnonblocking(pg, 1);
    // "relation already exists, skipping" and the like: not for the log.
    PQsetNoticeProcessor(pg, [](void*, const char*) {}, nullptr);
    connect_deadline = j.loop.arm(j.opts.connect_timeout, [this, a = attempt] {
      if (a == attempt && (st == state::connecting || st == state::setup))
        down("no answer within " + std::to_string(j.opts.connect_timeout.count()) + " ms");
    });
    watch(UV_WRITABLE);
  }

  void continue_connect() {
    switch (PQconnectPoll(pg)) {
      case PGRES_POLLING_READING: return watch(UV_READABLE);
      case PGRES_POLLING_WRITING: return watch(UV_WRITABLE);
      case PGRES_POLLING_FAILED: return down(trimmed(PQerrorMessage(pg)));
      default: return begin_setup();
    }
  }

  void begin_setup() {
    st = state::setup;
    setup_stage = 1;
    setup_error.clear();
    schema_found.clear();
    if (PQenterPipelineMode(pg) != 1) return down("cannot enter pipeline mode: " + trimmed(PQerrorMessage(pg)));
    for (std::size_t i = 0; i < schema_steps; ++i) {
      if (PQsendQueryParams(pg, schema_sql[i], 0, nullptr, nullptr, nullptr, nullptr, 0) != 1)
        return down(trimmed(PQerrorMessage(pg)));
      pending.push_back({false, i, false});
    }
    sync();
  }

  void setup_result(std::size_t step, PGresult* r, ExecStatusType s) {
    if (s == PGRES_FATAL_ERROR && setup_error.empty()) setup_error = trimmed(PQresultErrorMessage(r));
    if (setup_stage == 1 && step == schema_steps - 1 && s == PGRES_TUPLES_OK && PQntuples(r) == 1)
      schema_found = PQgetvalue(r, 0, 0);
  }

  void setup_done() {
    if (!setup_error.empty())
      return down((setup_stage == 1 ? "creating the journal's tables failed: " : "preparing statements failed: ") +
                  setup_error);
    if (setup_stage == 1) {
      const int found = std::atoi(schema_found.c_str());
      if (found != schema_version)
        return down("the database's journal has schema version '" + schema_found + "'; this troupe-node knows " +
                    std::to_string(schema_version) + (found > schema_version ? ": use a newer troupe-node" : ""));
      setup_stage = 2;
      std::size_t i = 0;
      for (const statement& s : statements) {
        if (PQsendPrepare(pg, s.name, s.sql, static_cast<int>(s.types.size()), s.types.data()) != 1)
          return down(trimmed(PQerrorMessage(pg)));
        pending.push_back({false, i++, false});
      }
      return sync();
    }
    connect_deadline.cancel();
    st = state::ready;
    backoff = std::chrono::milliseconds(100);
    last_error.clear();
    j.stats.connects.fetch_add(1, std::memory_order_relaxed);
    j.stats.up.fetch_add(1, std::memory_order_relaxed);
    j.update_status();
    pump();
  }

  // ---- the socket ----
  void watch(int events) {
    const int fd = PQsocket(pg);
    if (fd < 0) return down("no socket");
    // While connecting, libpq may close its socket and open another (the
    // next address) under the same number: watch it afresh each time.
    if (fd != poll_fd || st == state::connecting) {
      close_poll();
      poll = new uv_poll_t;
      if (uv_poll_init(j.loop.uv(), poll, fd) != 0) {
        delete poll;
        poll = nullptr;
        return down("cannot watch the socket");
      }
      poll->data = this;
      poll_fd = fd;
    }
    uv_poll_start(poll, events, [](uv_poll_t* h, int status, int events) {
      static_cast<conn*>(h->data)->on_poll(status, events);
    });
  }

  void close_poll() {
    if (poll == nullptr) return;
    uv_poll_stop(poll);
    uv_close(reinterpret_cast<uv_handle_t*>(poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll = nullptr;
    poll_fd = -1;
  }

  void on_poll(int status, int events) {
    if (st == state::connecting) return continue_connect();  // libpq names what went wrong
    if (status < 0) return down(std::string("socket: ") + uv_strerror(status));
    if (events & UV_WRITABLE) flush();
    if (pg != nullptr && (events & UV_READABLE)) read_results();
  }

  void flush() {
    const int r = PQflush(pg);
    if (r < 0) return down(trimmed(PQerrorMessage(pg)));
    watch(r == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
  }

  void sync() {
    if (PQpipelineSync(pg) != 1) return down(trimmed(PQerrorMessage(pg)));
    pending.push_back({true, 0, false});
    flush();
  }

  void read_results() {
    if (PQconsumeInput(pg) != 1) return down(trimmed(PQerrorMessage(pg)));
    while (pg != nullptr && !pending.empty() && PQisBusy(pg) == 0) {
      PGresult* r = PQgetResult(pg);
      tag& t = pending.front();
      if (r == nullptr) {
        if (!t.sync && t.got) {
          pending.pop_front();
          continue;
        }
        break;
      }
      const ExecStatusType s = PQresultStatus(r);
      if (s == PGRES_PIPELINE_SYNC) {
        PQclear(r);
        while (!pending.empty() && !pending.front().sync) pending.pop_front();
        if (!pending.empty()) pending.pop_front();
        if (st == state::setup)
          setup_done();
        else
          batch_done();
        continue;
      }
      if (!t.sync) {
        if (st == state::setup)
          setup_result(t.index, r, s);
        else if (t.appends)
          appends_result(appends[t.index], r, s);
        else
          op_result(*flight[t.index], r, s);
        t.got = true;
      }
      PQclear(r);
    }
  }

  // ---- requests ----
  void pump() {
    if (st != state::ready || !flight.empty() || queue.empty()) return;
    if (credentials != current_credentials()) return reconnect();
    std::size_t bytes = 0;
    if (queue.front()->alone) {
      flight.push_back(std::move(queue.front()));
      queue.pop_front();
    } else {
      while (!queue.empty() && !queue.front()->alone && flight.size() < j.opts.max_batch &&
             (flight.empty() || bytes + queue.front()->bytes() <= j.opts.max_batch_bytes)) {
        bytes += queue.front()->bytes();
        flight.push_back(std::move(queue.front()));
        queue.pop_front();
      }
      // Rows locked in the same order by every node: no deadlock between
      // two batches (an id's own requests keep their order).
      std::stable_sort(flight.begin(), flight.end(), [](const op_ptr& a, const op_ptr& b) { return a->id < b->id; });
    }
    batch_start = clock::now();
    batch_error.clear();
    // What each request's rows set; a request the server gave no row for is
    // not taken for stored.
    for (op_ptr& o : flight) {
      o->out = {result::failed, 0, "PostgreSQL gave no answer for it"};
      o->got = {};
      o->got.status = result::failed;
      o->got.detail = o->out.detail;
    }
    // The appends with an id of their own in the batch go as one statement,
    // first; two to one id (rare: an actor waits for its append's answer)
    // go one statement each, in order. What else the batch holds for those
    // ids (a snapshot at or below the last event, a read) holds as well
    // after the appends.
    appends.assign(1, {});
    for (std::size_t i = 0; i < flight.size(); ++i) {
      const op& o = *flight[i];
      if (o.kind != op_kind::append) continue;
      const bool alone_id = (i == 0 || flight[i - 1]->id != o.id) && (i + 1 == flight.size() || flight[i + 1]->id != o.id);
      if (alone_id)
        appends.front().push_back(i);
      else
        appends.push_back({i});
    }
    if (appends.front().empty()) appends.erase(appends.begin());
    for (std::size_t g = 0; g < appends.size(); ++g) {
      if (!send_appends(appends[g])) return down(trimmed(PQerrorMessage(pg)));
      pending.push_back({false, g, false, true});
    }
    for (std::size_t i = 0; i < flight.size(); ++i) {
      if (flight[i]->kind == op_kind::append) continue;
      if (!send(*flight[i])) return down(trimmed(PQerrorMessage(pg)));
      pending.push_back({false, i, false});
    }
    sync();
  }

  bool send_appends(const std::vector<std::size_t>& group) {
    std::size_t events = 0;
    for (std::size_t i : group) events += flight[i]->events.size();
    std::vector<std::string> ids, expected, counts, owner, place, types;
    ids.reserve(group.size());
    for (std::size_t k = 0; k < group.size(); ++k) {
      const op& o = *flight[group[k]];
      ids.push_back(o.id);
      expected.push_back(be64(o.seq));
      counts.push_back(be64(o.events.size()));
      for (std::size_t i = 0; i < o.events.size(); ++i) {
        owner.push_back(be64(k + 1));
        place.push_back(be64(i + 1));
        types.push_back(be64(o.events[i].type));
      }
    }
    auto of = [](const std::vector<std::string>& v, Oid element) {
      return binary_array(element, v.size(), [&](std::size_t i) {
        return std::pair{reinterpret_cast<const std::uint8_t*>(v[i].data()), v[i].size()};
      });
    };
    std::vector<const bytes*> data;
    data.reserve(events);
    for (std::size_t i : group)
      for (const event& e : flight[i]->events) data.push_back(&e.data);
    std::string p[7] = {of(ids, text_oid), of(expected, int8_oid), of(counts, int8_oid), of(owner, int8_oid),
                        of(place, int8_oid), of(types, int8_oid),
                        binary_array(bytea_oid, data.size(), [&](std::size_t i) {
                          return std::pair{data[i]->data(), data[i]->size()};
                        })};
    const char* values[7];
    int lengths[7], formats[7];
    for (int i = 0; i < 7; ++i) {
      values[i] = p[i].data();
      lengths[i] = static_cast<int>(p[i].size());
      formats[i] = 1;
    }
    return PQsendQueryPrepared(pg, statements[static_cast<int>(op_kind::append)].name, 7, values, lengths, formats,
                               1) == 1;
  }

  void appends_result(const std::vector<std::size_t>& group, PGresult* r, ExecStatusType s) {
    if (s == PGRES_FATAL_ERROR) {
      if (batch_error.empty()) batch_error = trimmed(PQresultErrorMessage(r));
      return;
    }
    if (s != PGRES_TUPLES_OK) return;
    for (int row = 0; row < PQntuples(r); ++row) {
      const std::uint64_t k = column64(r, row, 0);
      if (k == 0 || k > group.size()) continue;
      op& o = *flight[group[k - 1]];
      const bool won = PQgetlength(r, row, 1) == 1 && PQgetvalue(r, row, 1)[0] != 0;
      const std::uint64_t last = column64(r, row, 2);
      o.out = {};
      if (won) {
        o.out.last_seq = o.seq + o.events.size();
        for (std::size_t i = 0; i < o.events.size(); ++i) o.events[i].seq = o.seq + 1 + i;
      } else {
        o.out = {result::conflict, last,
                 "another writer appended to " + o.id + " first: its last event is " + std::to_string(last) +
                     ", not " + std::to_string(o.seq)};
      }
    }
  }

  bool send(const op& o) {
    std::string p[4];
    p[0] = o.id;
    p[1] = be64(o.seq);
    switch (o.kind) {
      case op_kind::append: return false;  // send_appends
      case op_kind::snapshot:
        p[2] = be64(o.snap.type);
        p[3].assign(reinterpret_cast<const char*>(o.snap.data.data()), o.snap.data.size());
        break;
      case op_kind::remove: break;
      case op_kind::read:
        p[2] = std::string(1, o.with_snapshot ? '\1' : '\0');
        p[3] = be64(o.max_events + 1);
        break;
    }
    const int n = o.kind == op_kind::remove ? 2 : 4;
    const char* values[4];
    int lengths[4], formats[4] = {1, 1, 1, 1};
    for (int i = 0; i < n; ++i) {
      values[i] = p[i].data();
      lengths[i] = static_cast<int>(p[i].size());
    }
    return PQsendQueryPrepared(pg, statements[static_cast<int>(o.kind)].name, n, values, lengths, formats, 1) == 1;
  }

  void op_result(op& o, PGresult* r, ExecStatusType s) {
    if (s == PGRES_FATAL_ERROR) {
      if (batch_error.empty()) batch_error = trimmed(PQresultErrorMessage(r));
      return;
    }
    if (s != PGRES_TUPLES_OK) return;  // aborted with the batch
    if (o.kind == op_kind::read) {
      o.got = {};
      for (int row = 0; row < PQntuples(r); ++row) {
        const std::uint64_t seq = column64(r, row, 1), type = column64(r, row, 2);
        const auto* data = reinterpret_cast<const std::uint8_t*>(PQgetvalue(r, row, 3));
        bytes b(data, data + PQgetlength(r, row, 3));
        if (column64(r, row, 0) == 0)
          o.got.snap = snapshot{seq, type, std::move(b)};
        else
          o.got.events.push_back(event{seq, type, std::move(b)});
      }
      o.got.end = o.got.events.size() <= o.max_events;
      if (!o.got.end) o.got.events.resize(o.max_events);
      return;
    }
    const std::uint64_t written = PQntuples(r) == 1 ? column64(r, 0, 0) : 0;
    const std::uint64_t last = PQntuples(r) == 1 ? column64(r, 0, 1) : 0;
    o.out = {};
    switch (o.kind) {
      case op_kind::snapshot:
        o.out.last_seq = last;
        if (written == 0)
          o.out = {result::rejected, last,
                   "a snapshot as of event " + std::to_string(o.snap.seq) + " is past " + o.id + "'s last event (" +
                       std::to_string(last) + ")"};
        break;
      default: o.out.last_seq = last; break;
    }
  }

  void batch_done() {
    std::vector<op_ptr> done;
    done.swap(flight);
    if (batch_error.empty()) {
      std::size_t events = 0;
      for (const op_ptr& o : done)
        if (o->kind == op_kind::append && o->out.status == result::ok) events += o->events.size();
      j.stats.commits.fetch_add(1, std::memory_order_relaxed);
      j.stats.events.fetch_add(events, std::memory_order_relaxed);
      if (j.opts.on_batch) j.opts.on_batch(events, std::chrono::duration<double>(clock::now() - batch_start).count());
      for (op_ptr& o : done) j.answer(*o);
    } else if (done.size() == 1 && done.front()->alone) {
      j.fail(*done.front(), "PostgreSQL refused it: " + batch_error);
    } else {
      // The transaction is lost for every request in it: each goes again,
      // alone, so that only the one that fails is answered so.
      j.stats.resent.fetch_add(done.size(), std::memory_order_relaxed);
      for (auto it = done.rbegin(); it != done.rend(); ++it) {
        (*it)->alone = true;
        queue.push_front(std::move(*it));
      }
    }
    batch_error.clear();
    pump();
    j.check_drained();
  }

  // ---- going down, and back ----
  unsigned current_credentials() const {
    std::lock_guard lock(j.mu);
    return j.credentials;
  }

  void close() {
    close_poll();
    if (pg != nullptr) PQfinish(pg);
    pg = nullptr;
    pending.clear();
    connect_deadline.cancel();
    if (st == state::ready) j.stats.up.fetch_sub(1, std::memory_order_relaxed);
  }

  // New credentials: the idle connection is replaced; its queue waits.
  void reconnect() {
    close();
    connect();
    j.update_status();
  }

  void down(const std::string& why) {
    const bool was_ready = st == state::ready;
    const std::size_t in_flight = flight.size();
    close();
    st = state::down;
    last_error = why;
    j.stats.losses.fetch_add(1, std::memory_order_relaxed);
    if (!j.outage && !j.stopping) {
      j.outage = true;
      j.tell(true, (was_ready ? "lost the connection to PostgreSQL (" : "cannot connect to PostgreSQL (") + why +
                        "); " + std::to_string(in_flight + queue.size()) +
                        " requests failed, and until it is back every request fails at once; reconnecting");
    }
    for (op_ptr& o : flight)
      j.fail(*o, "the connection to PostgreSQL was lost before the commit was confirmed (" + why +
                     "): it may or may not be stored");
    flight.clear();
    for (op_ptr& o : queue) j.fail(*o, "PostgreSQL is unreachable: " + why);
    queue.clear();
    j.update_status();
    j.check_drained();
    if (j.stopping) return;
    retry = j.loop.arm(backoff, [this] {
      if (st == state::down && !j.stopping) connect();
    });
    backoff = std::min(backoff * 2, j.opts.max_backoff);
  }
};

void pg_journal::impl::submit(op_ptr o) {
  {
    std::lock_guard lock(mu);
    if (!stopped) {
      inbox.push_back(std::move(o));
      if (posted) return;
      posted = true;
    }
  }
  if (o) return fail(*o, "the journal is stopped");
  loop.post([this] { drain(); });
}

void pg_journal::impl::drain() {
  std::vector<op_ptr> batch;
  {
    std::lock_guard lock(mu);
    batch.swap(inbox);
    posted = false;
  }
  for (op_ptr& o : batch) {
    if (o->kind == op_kind::append) {
      if (o->events.empty()) {
        o->out = {result::rejected, 0, "nothing to append"};
        answer(*o);
        continue;
      }
      const auto big = std::find_if(o->events.begin(), o->events.end(),
                                    [&](const event& e) { return e.data.size() > opts.max_event_bytes; });
      if (big != o->events.end()) {
        o->out = {result::rejected, 0,
                  "an event of " + std::to_string(big->data.size()) + " bytes is over persistence.max_event_bytes (" +
                      std::to_string(opts.max_event_bytes) + ")"};
        answer(*o);
        continue;
      }
    }
    conn& c = *conns[std::hash<std::string>{}(o->id) % conns.size()];
    if (c.st == conn::state::down) {
      fail(*o, "PostgreSQL is unreachable: " + c.last_error);
      continue;
    }
    c.queue.push_back(std::move(o));
  }
  for (auto& c : conns) c->pump();
}

void pg_journal::impl::answer(op& o) {
  if (o.kind == op_kind::read) {
    if (o.on_read) o.on_read(std::move(o.got));
    return;
  }
  if (o.kind == op_kind::append) stats.count(o.out.status);
  if (o.done) o.done(o.out);
}

void pg_journal::impl::fail(op& o, const std::string& why) {
  o.out = {result::failed, 0, why};
  o.got = {};
  o.got.status = result::failed;
  o.got.detail = why;
  answer(o);
}

void pg_journal::impl::update_status() {
  std::string why;
  for (const auto& c : conns)
    if (c->st != conn::state::ready) {
      why = c->last_error.empty() ? "connecting to PostgreSQL" : c->last_error;
      break;
    }
  if (why.empty() && outage) {
    outage = false;
    tell(false, "PostgreSQL is reachable again: " + std::to_string(conns.size()) + " connections ready");
  }
  std::lock_guard lock(mu);
  why_not = std::move(why);
}

void pg_journal::impl::check_drained() {
  if (!stopping || drained_set) return;
  for (const auto& c : conns)
    if (!c->flight.empty() || !c->queue.empty()) return;
  drained_set = true;
  stop_deadline.cancel();
  for (auto& c : conns) {
    c->retry.cancel();
    c->close();
    c->st = conn::state::down;
  }
  drained.set_value();
}

pg_journal::pg_journal(std::unique_ptr<impl> i) : impl_(std::move(i)), stats_(impl_->stats) {}

std::unique_ptr<pg_journal> pg_journal::open(pg_options o) {
  auto i = std::make_unique<impl>(std::move(o));
  const unsigned n = std::max(1u, i->opts.connections);
  for (unsigned k = 0; k < n; ++k) i->conns.push_back(std::make_unique<impl::conn>(*i, k));
  i->why_not = "connecting to PostgreSQL";
  impl* raw = i.get();
  std::unique_ptr<pg_journal> j(new pg_journal(std::move(i)));
  raw->loop.post([raw] {
    for (auto& c : raw->conns) c->connect();
  });
  if (raw->own_loop) raw->own_loop->start_thread();
  return j;
}

pg_journal::~pg_journal() { stop(); }

void pg_journal::stop() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopped) return;
    impl_->stopped = true;
  }
  impl* i = impl_.get();
  if (i->loop.on_loop_thread()) {
    // On the loop itself (the node's, as it ends): nothing can be waited
    // for here. What is unanswered fails; the sockets close now.
    i->drain();
    i->stopping = true;
    for (auto& c : i->conns) {
      c->retry.cancel();
      c->down("the node is stopping");
    }
    i->check_drained();
    return;
  }
  std::future<void> drained = i->drained.get_future();
  i->loop.post([i] {
    i->drain();  // what came before the stop
    i->stopping = true;
    for (auto& c : i->conns) {
      c->retry.cancel();
      if (c->st == impl::conn::state::down) c->close();
    }
    // Requests still unanswered after this are failed: a server that stopped
    // answering must not hold the node's exit forever.
    i->stop_deadline = i->loop.arm(std::chrono::seconds(10), [i] {
      for (auto& c : i->conns) c->down("the node is stopping");
      i->check_drained();
    });
    i->check_drained();
  });
  drained.wait();
  if (i->own_loop) i->own_loop->stop();
}

void pg_journal::append(std::string id, std::uint64_t expected, std::vector<event> events, done_fn done) {
  auto o = std::make_unique<op>();
  o->kind = op_kind::append;
  o->id = std::move(id);
  o->seq = expected;
  o->events = std::move(events);
  o->done = std::move(done);
  impl_->submit(std::move(o));
}

void pg_journal::save_snapshot(std::string id, snapshot s, done_fn done) {
  auto o = std::make_unique<op>();
  o->kind = op_kind::snapshot;
  o->id = std::move(id);
  o->seq = s.seq;
  o->snap = std::move(s);
  o->done = std::move(done);
  impl_->submit(std::move(o));
}

void pg_journal::delete_events(std::string id, std::uint64_t to_seq, done_fn done) {
  auto o = std::make_unique<op>();
  o->kind = op_kind::remove;
  o->id = std::move(id);
  o->seq = to_seq;
  o->done = std::move(done);
  impl_->submit(std::move(o));
}

void pg_journal::read(std::string id, std::uint64_t after, bool with_snapshot, std::size_t max_events,
                      read_fn done) {
  auto o = std::make_unique<op>();
  o->kind = op_kind::read;
  o->id = std::move(id);
  o->seq = after;
  o->with_snapshot = with_snapshot;
  o->max_events = max_events == 0 ? impl_->opts.read_batch : std::min(max_events, impl_->opts.read_batch);
  o->on_read = std::move(done);
  impl_->submit(std::move(o));
}

std::string pg_journal::not_ready() const {
  std::lock_guard lock(impl_->mu);
  return impl_->why_not;
}

void pg_journal::set_credentials(std::string conninfo, std::string password) {
  {
    std::lock_guard lock(impl_->mu);
    if (conninfo == impl_->conninfo && password == impl_->password) return;
    impl_->conninfo = std::move(conninfo);
    impl_->password = std::move(password);
    ++impl_->credentials;
    if (impl_->stopped) return;
  }
  impl* i = impl_.get();
  i->loop.post([i] {
    for (auto& c : i->conns) {
      if (c->st == impl::conn::state::down) {
        c->backoff = std::chrono::milliseconds(100);
        c->connect();
      } else if (c->st == impl::conn::state::ready && c->flight.empty()) {
        c->reconnect();
      }
      // Connecting, or busy: pump() replaces it once its batch is answered.
    }
  });
}

std::string pg_conninfo_error(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* o = PQconninfoParse(conninfo.c_str(), &err);
  if (o != nullptr) {
    PQconninfoFree(o);
    return {};
  }
  std::string why = err ? trimmed(err) : "out of memory";
  PQfreemem(err);
  return why;
}

}  // namespace troupe::persistence
