/* c_gate: the gate door of gate.cpp written in plain C11 against abi.h
 * alone (behaviours, stash, unhandled messages), handling the messages
 * the gate plugin declares. Closed, it stashes knocks; Open becomes `open`
 * and puts them back: each knock is answered with itself. Peek stacks a
 * `peeking` behaviour in which knocks wait again; Unpeek takes it off and
 * puts them back. Break fails the actor (its restart is closed again);
 * anything else is unhandled. The relay and the keeper are the gate's
 * (gate.cpp) in C: requests answered in the actor's turn, lookup,
 * spawn_remote; props of a kind and of a spawn, and last_error. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <troupe/abi.h>

static const troupe_host_api* host;
static uint64_t knock, open_msg, peek, unpeek, brk;

/* The node's type ids: FNV-1a of the table's full name. */
static uint64_t type_of(const char* name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char* p = (const unsigned char*)name; *p; ++p) {
    h ^= *p;
    h *= 0x100000001b3ull;
  }
  return h;
}

typedef struct door {
  int entered;
} door;

static void* create(void* data, troupe_ctx* ctx) {
  (void)data;
  door* d = calloc(1, sizeof *d);
  if (d == NULL) host->fail(ctx, "out of memory");
  return d;
}

static int destroy(void* instance) {
  free(instance);
  return 0;
}

static int fail_on_break(troupe_ctx* ctx, const troupe_message* m) {
  if (m->type != brk) return 0;
  host->fail(ctx, "the door broke");
  return 1;
}

static int open_door(void* instance, troupe_ctx* ctx, const troupe_message* m);

static int peeking(void* instance, troupe_ctx* ctx, const troupe_message* m) {
  (void)instance;
  if (m->type == knock) return host->stash(ctx);
  if (m->type == unpeek) {
    host->unbecome(ctx);
    return host->unstash_all(ctx);
  }
  return host->unhandled(ctx);
}

static int open_door(void* instance, troupe_ctx* ctx, const troupe_message* m) {
  door* d = instance;
  if (m->type == knock) {
    ++d->entered;
    return host->respond(ctx, m->type, m->data, m->size, 0);
  }
  if (m->type == peek) return host->become(ctx, peeking, 1);
  if (fail_on_break(ctx, m)) return 1;
  return host->unhandled(ctx);
}

/* Closed: the kind's own receive. Lifecycle messages are let go. */
static int closed(void* instance, troupe_ctx* ctx, const troupe_message* m) {
  (void)instance;
  if (m->type == knock) return host->stash(ctx);
  if (m->type == open_msg) {
    int s = host->become(ctx, open_door, 0);
    return s != TROUPE_OK ? s : host->unstash_all(ctx);
  }
  if (fail_on_break(ctx, m)) return 1;
  return host->unhandled(ctx);
}

/* ---- the relay (ABI 1.8), reading and writing FlatBuffers by hand ---- */

static uint32_t u32_at(const uint8_t* p) {
  uint32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* Where field `i` of the root table of `buf` is, or NULL when absent. */
static const uint8_t* field(const uint8_t* buf, size_t size, unsigned i) {
  if (buf == NULL || size < 8) return NULL;
  const uint8_t* table = buf + u32_at(buf);
  int32_t back;
  memcpy(&back, table, sizeof back);
  const uint8_t* vtable = table - back;
  uint16_t vsize, off;
  memcpy(&vsize, vtable, sizeof vsize);
  if (4 + 2 * (size_t)i + 2 > vsize) return NULL;
  memcpy(&off, vtable + 4 + 2 * i, sizeof off);
  return off != 0 ? table + off : NULL;
}

static int32_t int_field(const uint8_t* buf, size_t size, unsigned i, int32_t otherwise) {
  const uint8_t* f = field(buf, size, i);
  int32_t v = otherwise;
  if (f != NULL) memcpy(&v, f, sizeof v);
  return v;
}

/* A table of `count` (1 or 2) int fields, laid out as FlatBuffers does: the
 * root offset, the vtable (its size, the table's, each field's offset),
 * then the table (the way back to its vtable, the fields). Returns its size. */
static size_t ints_table(uint8_t out[24], const int32_t* v, unsigned count) {
  const uint32_t root = 12;
  const uint16_t vtable[4] = {(uint16_t)(4 + 2 * count), (uint16_t)(4 + 4 * count), 4, 8};
  const int32_t back = 12 - 4;
  memset(out, 0, 24);
  memcpy(out, &root, 4);
  memcpy(out + 4, vtable, 4 + 2 * count);
  memcpy(out + 12, &back, 4);
  memcpy(out + 16, v, 4 * count);
  return 16 + 4 * count;
}

static uint64_t entered, relay, relayed_type, spawn_on, spawned_on;

/* gate.SpawnedOn { status, text }: its table, then the string. Returns its
 * size (at most `cap`: longer text is cut). */
static size_t status_text_table(uint8_t* out, size_t cap, int32_t status, const char* text) {
  const uint32_t root = 12, to_string = 4;
  const uint16_t vtable[4] = {8, 12, 4, 8};
  const int32_t back = 12 - 4;
  size_t len = strlen(text);
  if (len > cap - 32) len = cap - 32;
  const uint32_t n = (uint32_t)len;
  memset(out, 0, cap);
  memcpy(out, &root, 4);
  memcpy(out + 4, vtable, 8);
  memcpy(out + 12, &back, 4);
  memcpy(out + 16, &status, 4);
  memcpy(out + 20, &to_string, 4); /* from here to the string at 24 */
  memcpy(out + 24, &n, 4);
  memcpy(out + 28, text, len); /* then its NUL, already there */
  return (28 + len + 1 + 3) & ~(size_t)3;
}

/* A string field of the root table, copied with its NUL ("" if absent). */
static void string_field(const uint8_t* buf, size_t size, unsigned i, char* out, size_t cap) {
  const uint8_t* f = field(buf, size, i);
  out[0] = 0;
  if (f == NULL) return;
  const uint8_t* s = f + u32_at(f);
  size_t len = u32_at(s);
  if (len >= cap) len = cap - 1;
  memcpy(out, s + 4, len);
  out[len] = 0;
}

static void on_spawned(void* closure, troupe_ctx* ctx, troupe_pid* who, int status, const char* error) {
  (void)closure;
  char text[512];
  if (who != NULL) host->pid_format(who, text, sizeof text);
  uint8_t out[600];
  host->respond(ctx, spawned_on, out, status_text_table(out, sizeof out, status, who != NULL ? text : error), 0);
}

static int spawn_elsewhere(troupe_ctx* ctx, const troupe_message* m) {
  char address[256], kind[256], name[256];
  string_field(m->data, m->size, 0, address, sizeof address);
  string_field(m->data, m->size, 1, kind, sizeof kind);
  string_field(m->data, m->size, 2, name, sizeof name);
  return host->spawn_remote(ctx, address, kind, name[0] ? name : NULL, 2000000000u, on_spawned, NULL, NULL);
}

/* Runs in the relay's own turn: the current message is the Relay, so
 * respond() answers whoever asked for it. */
static void on_reply(void* closure, troupe_ctx* ctx, const troupe_message* reply, int status) {
  (void)closure;
  /* The n of the door's answer: Entered (a C++ door) or the Knock itself. */
  const int32_t n = status == TROUPE_REPLY_OK && (reply->type == entered || reply->type == knock)
                        ? int_field(reply->data, reply->size, 0, -1)
                        : -1;
  const int32_t fields[2] = {n, status};
  uint8_t out[24];
  host->respond(ctx, relayed_type, out, ints_table(out, fields, 2), 0);
}

static int relay_receive(void* instance, troupe_ctx* ctx, const troupe_message* m) {
  (void)instance;
  if (m->type == spawn_on) return spawn_elsewhere(ctx, m);
  if (m->type != relay) return 0;
  const uint8_t* to = field(m->data, m->size, 0);
  const int32_t n = int_field(m->data, m->size, 1, 0);
  const int32_t timeout_ms = int_field(m->data, m->size, 2, 5000);
  const uint8_t* direct = field(m->data, m->size, 3);
  troupe_pid* door = NULL;
  if (to != NULL) { /* a PID's text, or the name of an actor of this node */
    const uint8_t* s = to + u32_at(to);
    const char* text = (const char*)s + 4;
    const size_t len = u32_at(s);
    door = memchr(text, '/', len) != NULL ? host->pid_parse(ctx, text, len) : host->lookup(ctx, text, len);
  }
  uint8_t k[24];
  const size_t k_size = ints_table(k, &n, 1); /* gate.Knock { n } */
  int rc;
  if (direct != NULL && *direct)
    rc = host->send_as(ctx, door, host->sender(ctx), knock, k, k_size, 0);
  else
    rc = host->request_then(ctx, door, knock, k, k_size, 0,
                            (uint64_t)(timeout_ms > 0 ? timeout_ms : 5000) * 1000000u, on_reply, NULL, NULL);
  if (door != NULL) host->pid_release(door);
  return rc;
}

/* ---- props (ABI 1.9): a keeper with props of its kind's, which spawns
 * children with props of theirs (gate.SpawnWith) ---- */

static uint64_t spawn_with;

static int contains(const char* s, size_t len, const char* word) {
  const size_t n = strlen(word);
  for (size_t i = 0; i + n <= len; ++i)
    if (memcmp(s + i, word, n) == 0) return 1;
  return 0;
}

/* The keeper's decider: the failure's reason says what to do. */
static int by_reason(void* closure, const troupe_pid* child, const char* reason, size_t len) {
  (void)closure;
  (void)child;
  if (contains(reason, len, "resume")) return TROUPE_DIRECTIVE_RESUME;
  if (contains(reason, len, "stop")) return TROUPE_DIRECTIVE_STOP;
  if (contains(reason, len, "nonsense")) return 42; /* not a directive: the child stops */
  return TROUPE_DIRECTIVE_RESTART;
}

static int keeper_receive(void* instance, troupe_ctx* ctx, const troupe_message* m) {
  (void)instance;
  if (m->type != spawn_with) return 0;
  char kind[256], name[256], text[512];
  string_field(m->data, m->size, 0, kind, sizeof kind);
  string_field(m->data, m->size, 1, name, sizeof name);
  const uint8_t* with = field(m->data, m->size, 2);
  troupe_props p;
  memset(&p, 0, sizeof p);
  p.size = sizeof p;
  p.mailbox = int_field(m->data, m->size, 3, 0);
  p.capacity = (uint32_t)int_field(m->data, m->size, 4, 0);
  p.throughput = (uint32_t)int_field(m->data, m->size, 5, 0);
  p.supervision = int_field(m->data, m->size, 6, 0);
  int status = TROUPE_OK;
  troupe_pid* child = host->spawn_props(ctx, kind, name[0] ? name : NULL, with != NULL && *with ? &p : NULL, &status);
  if (child != NULL) {
    host->pid_format(child, text, sizeof text);
    host->pid_release(child);
  } else {
    snprintf(text, sizeof text, "%s", host->last_error());
  }
  uint8_t out[600];
  return host->respond(ctx, spawned_on, out, status_text_table(out, sizeof out, status, text), 0);
}

/* ---- routers (ABI 1.9), driven by name (gate.MakePool, ...) ---- */

static uint64_t tick, make_pool, make_group, manage, blast, keyed, list_routees;

static int answer(troupe_ctx* ctx, int status, const char* text) {
  uint8_t out[2100];
  return host->respond(ctx, spawned_on, out, status_text_table(out, sizeof out, status, text), 0);
}

/* An empty table (gate.Tick): the root offset, a vtable of no field, the table. */
static size_t empty_table(uint8_t out[12]) {
  const uint32_t root = 8;
  const uint16_t vtable[2] = {4, 4};
  const int32_t back = 8 - 4;
  memcpy(out, &root, 4);
  memcpy(out + 4, vtable, 4);
  memcpy(out + 8, &back, 4);
  return 12;
}

static troupe_pid* by_name(troupe_ctx* ctx, const uint8_t* buf, size_t size, unsigned i) {
  char name[256];
  string_field(buf, size, i, name, sizeof name);
  return host->lookup(ctx, name, strlen(name));
}

static void on_routees(void* closure, troupe_ctx* ctx, troupe_pid* const* routees, size_t count, int status) {
  (void)closure;
  char text[2048] = "", one[256];
  for (size_t i = 0; i < count; ++i) {
    host->pid_format(routees[i], one, sizeof one);
    if (strlen(text) + strlen(one) + 2 >= sizeof text) break;
    if (i != 0) strcat(text, ",");
    strcat(text, one);
  }
  answer(ctx, status, text);
}

static int dispatcher_receive(void* instance, troupe_ctx* ctx, const troupe_message* m) {
  (void)instance;
  const uint8_t* d = m->data;
  const size_t n = m->size;
  char name[256], kind[256], text[512] = "";
  int status = TROUPE_OK;
  troupe_pid* made = NULL;
  if (m->type == make_pool || m->type == make_group) {
    const int pool = m->type == make_pool;
    string_field(d, n, pool ? 3 : 2, name, sizeof name);
    const int routing = int_field(d, n, pool ? 2 : 1, 0);
    if (pool) {
      string_field(d, n, 0, kind, sizeof kind);
      made = host->spawn_router(ctx, name[0] ? name : NULL, routing, kind, (uint32_t)int_field(d, n, 1, 0), NULL,
                                NULL, 0, &status);
    } else {
      char names[512];
      troupe_pid* routees[16] = {0};
      size_t count = 0;
      string_field(d, n, 0, names, sizeof names);
      for (char* at = names; *at && count < 16;) {
        char* end = strchr(at, ',');
        const size_t len = end != NULL ? (size_t)(end - at) : strlen(at);
        routees[count++] = host->lookup(ctx, at, len);
        at += len + (end != NULL);
      }
      made = host->spawn_router(ctx, name[0] ? name : NULL, routing, NULL, 0, NULL, routees, count, &status);
      for (size_t i = 0; i < count; ++i)
        if (routees[i] != NULL) host->pid_release(routees[i]);
    }
    if (made != NULL) {
      host->pid_format(made, text, sizeof text);
      host->pid_release(made);
    } else {
      snprintf(text, sizeof text, "%s", host->last_error());
    }
    return answer(ctx, status, text);
  }
  if (m->type == list_routees) {
    troupe_pid* router = by_name(ctx, d, n, 0);
    status = host->router_routees(ctx, router, 2000000000u, on_routees, NULL, NULL);
    if (router != NULL) host->pid_release(router);
    return status == TROUPE_OK ? 0 : answer(ctx, status, host->last_error());
  }
  if (m->type != manage && m->type != blast && m->type != keyed) return 0;
  troupe_pid* router = by_name(ctx, d, n, 0);
  uint8_t t[12];
  const size_t t_size = empty_table(t);
  if (m->type == manage) {
    troupe_pid* routee = by_name(ctx, d, n, 2);
    status = host->router_manage(ctx, router, int_field(d, n, 1, 0), routee, int_field(d, n, 3, 0));
    if (routee != NULL) host->pid_release(routee);
  } else if (m->type == blast) {
    status = host->router_broadcast(ctx, router, tick, t, t_size, 0);
  } else {
    char key[256];
    string_field(d, n, 1, key, sizeof key);
    for (int32_t i = 0; i < int_field(d, n, 2, 0) && status == TROUPE_OK; ++i)
      status = host->send_keyed(ctx, router, key, strlen(key), tick, t, t_size, 0);
  }
  if (router != NULL) host->pid_release(router);
  return answer(ctx, status, status == TROUPE_OK ? "" : host->last_error());
}

/* ---- the EventStream and pipe_to (ABI 1.10): a listener writes down
 * what it hears, a line each, in the words of gate.cpp's ---- */

static uint64_t listen, unlisten, shout, announce, heard, pipe_msg;

typedef struct listener {
  char heard[8192];
  size_t len;
  int lines;
} listener;

static void* listener_create(void* data, troupe_ctx* ctx) {
  (void)data;
  listener* l = calloc(1, sizeof *l);
  if (l == NULL) host->fail(ctx, "out of memory");
  return l;
}

static void note(listener* l, const char* line) {
  const size_t n = strlen(line);
  if (l->len + n + 2 > sizeof l->heard) return;
  memcpy(l->heard + l->len, line, n);
  l->len += n;
  l->heard[l->len++] = '\n';
  l->heard[l->len] = 0;
  ++l->lines;
}

static void pid_text(troupe_pid* p, char* out, size_t cap) {
  if (p == NULL) snprintf(out, cap, "none");
  else host->pid_format(p, out, cap);
}

/* The actor named by string field `i`, or NULL. */
static troupe_pid* named(troupe_ctx* ctx, const troupe_message* m, unsigned i) {
  char name[256];
  string_field(m->data, m->size, i, name, sizeof name);
  return name[0] ? host->lookup(ctx, name, strlen(name)) : NULL;
}

static int listener_receive(void* instance, troupe_ctx* ctx, const troupe_message* m) {
  listener* l = instance;
  char text[600], line[1024], who[256], from[256];
  if (m->type == listen) {
    char names[4096];
    uint64_t types[80];
    size_t count = 0;
    string_field(m->data, m->size, 0, names, sizeof names);
    for (char* at = names; *at && count < 80;) {
      char* end = strchr(at, ',');
      if (end != NULL) *end = 0;
      types[count++] = type_of(at);
      at = end != NULL ? end + 1 : at + strlen(at);
    }
    const uint64_t id = host->event_subscribe(ctx, types, count);
    snprintf(text, sizeof text, "%llu", (unsigned long long)id);
    return answer(ctx, id != 0 ? TROUPE_OK : TROUPE_ERR_ARGUMENT, id != 0 ? text : host->last_error());
  }
  if (m->type == unlisten) {
    uint64_t id = 0;
    const uint8_t* f = field(m->data, m->size, 0);
    if (f != NULL) memcpy(&id, f, sizeof id);
    const int st = host->event_unsubscribe(ctx, id);
    return answer(ctx, st, st == TROUPE_OK ? "" : host->last_error());
  }
  if (m->type == shout) {
    char name[256];
    string_field(m->data, m->size, 0, name, sizeof name);
    int32_t n = int_field(m->data, m->size, 1, 0);
    uint8_t out[24];
    int st;
    if (name[0] == 0) st = host->event_publish(ctx, announce, out, ints_table(out, &n, 1), 0);
    else st = host->event_publish(ctx, type_of(name), out, empty_table(out), 0);
    return answer(ctx, st, st == TROUPE_OK ? "" : host->last_error());
  }
  if (m->type == heard) return answer(ctx, l->lines, l->heard);
  if (m->type == pipe_msg) {
    troupe_pid* to = named(ctx, m, 0);
    troupe_pid* target = named(ctx, m, 3);
    int32_t n = int_field(m->data, m->size, 1, 0);
    uint8_t k[24];
    const int st = host->pipe_to(ctx, to, knock, k, ints_table(k, &n, 1), 0,
                                 (uint64_t)int_field(m->data, m->size, 2, 0) * 1000000u, target);
    if (to != NULL) host->pid_release(to);
    if (target != NULL) host->pid_release(target);
    return answer(ctx, st, st == TROUPE_OK ? "" : host->last_error());
  }
  /* What was heard: an announcement, a piped reply, or a node event. */
  troupe_pid* sender = host->sender(ctx);
  pid_text(sender, from, sizeof from);
  if (m->type == announce) {
    snprintf(line, sizeof line, "announce n=%d", int_field(m->data, m->size, 0, 0));
    note(l, line);
    return 0;
  }
  if (m->type == entered || m->type == knock) {
    snprintf(line, sizeof line, "reply n=%d from=%s", int_field(m->data, m->size, 0, 0), from);
    note(l, line);
    return 0;
  }
  troupe_event e;
  memset(&e, 0, sizeof e);
  e.size = sizeof e;
  if (host->read_event(ctx, &e) != TROUPE_OK) return 0;
  pid_text(e.who, who, sizeof who);
  switch (e.type) {
    case TROUPE_TYPE_DEAD_LETTER_EVENT:
      snprintf(line, sizeof line, "dead_letter who=%s type=%016llx reason=%d", who,
               (unsigned long long)e.message_type, e.reason);
      break;
    case TROUPE_TYPE_ACTOR_FAILED_EVENT:
      snprintf(line, sizeof line, "failed who=%s text=%.*s", who, (int)e.text_len, e.text);
      break;
    case TROUPE_TYPE_SUPERVISION_EVENT:
      snprintf(line, sizeof line, "supervision who=%s reason=%d text=%.*s", who, e.reason, (int)e.text_len, e.text);
      break;
    case TROUPE_TYPE_DEAD_LETTER_RESPONSE:
      snprintf(line, sizeof line, "dead_letter_response who=%s reason=%d from=%s", who, e.reason, from);
      break;
    case TROUPE_TYPE_REQUEST_TIMED_OUT:
      snprintf(line, sizeof line, "timed_out who=%s type=%016llx from=%s", who, (unsigned long long)e.message_type,
               from);
      break;
    default: line[0] = 0;
  }
  if (e.who != NULL) host->pid_release(e.who);
  if (e.sender != NULL) host->pid_release(e.sender);
  if (line[0]) note(l, line);
  return 0;
}

/* A kind whose instances are doors (the relay keeps nothing in its own). */
static int register_kind(troupe_registrar* reg, const char* name,
                         int (*receive)(void* instance, troupe_ctx* ctx, const troupe_message* m)) {
  troupe_kind_def k;
  memset(&k, 0, sizeof k);
  k.size = sizeof k;
  k.name = name;
  k.create = create;
  k.receive = receive;
  k.destroy = destroy;
  return host->register_kind(reg, &k);
}

static int init(const troupe_host_api* h, troupe_registrar* reg) {
  host = h;
  if (!TROUPE_HOST_HAS(h, unhandled) || !TROUPE_HOST_HAS(h, spawn_remote)) return TROUPE_ERR_STATE;
  knock = type_of("gate.Knock");
  open_msg = type_of("gate.Open");
  peek = type_of("gate.Peek");
  unpeek = type_of("gate.Unpeek");
  brk = type_of("gate.Break");
  entered = type_of("gate.Entered");
  relay = type_of("gate.Relay");
  relayed_type = type_of("gate.Relayed");
  spawn_on = type_of("gate.SpawnOn");
  spawned_on = type_of("gate.SpawnedOn");
  spawn_with = type_of("gate.SpawnWith");
  int s = register_kind(reg, "c.door", closed);
  if (s == TROUPE_OK) s = register_kind(reg, "c.relay", relay_receive);
  if (s != TROUPE_OK || !TROUPE_HOST_HAS(h, register_kind_props)) return s;
  if ((s = register_kind(reg, "c.keeper", keeper_receive)) != TROUPE_OK) return s;
  tick = type_of("gate.Tick");
  make_pool = type_of("gate.MakePool");
  make_group = type_of("gate.MakeGroup");
  manage = type_of("gate.Manage");
  blast = type_of("gate.Blast");
  keyed = type_of("gate.Keyed");
  list_routees = type_of("gate.ListRoutees");
  if ((s = register_kind(reg, "c.dispatcher", dispatcher_receive)) != TROUPE_OK) return s;
  if (TROUPE_HOST_HAS(h, pipe_to)) {
    listen = type_of("gate.Listen");
    unlisten = type_of("gate.Unlisten");
    shout = type_of("gate.Shout");
    announce = type_of("gate.Announce");
    heard = type_of("gate.Heard");
    pipe_msg = type_of("gate.Pipe");
    troupe_kind_def k;
    memset(&k, 0, sizeof k);
    k.size = sizeof k;
    k.name = "c.listener";
    k.create = listener_create;
    k.receive = listener_receive;
    k.destroy = destroy;
    if ((s = host->register_kind(reg, &k)) != TROUPE_OK) return s;
  }
  troupe_props p;
  memset(&p, 0, sizeof p);
  p.size = sizeof p;
  p.mailbox = TROUPE_MAILBOX_DROP_NEWEST;
  p.capacity = 8;
  p.throughput = 5;
  p.supervision = TROUPE_SUPERVISE_ONE_FOR_ONE;
  p.max_restarts = 2;
  p.restart_window_ns = 1000000000u;
  p.decide = by_reason;
  /* A refusal first: a bounded mailbox without a capacity. */
  troupe_props bad = p;
  bad.capacity = 0;
  if (host->register_kind_props(reg, "c.keeper", &bad) != TROUPE_ERR_ARGUMENT ||
      strcmp(host->last_error(), "props of kind 'c.keeper' refused: a bounded mailbox needs a capacity of 1 to "
                                 "100000000 messages, not 0") != 0)
    return TROUPE_ERR_STATE;
  return host->register_kind_props(reg, "c.keeper", &p);
}

TROUPE_EXPORT const troupe_plugin_desc* troupe_plugin_entry(void) {
  static troupe_plugin_desc desc;
  desc.size = sizeof desc;
  desc.abi_major = TROUPE_ABI_MAJOR;
  desc.abi_minor = TROUPE_ABI_MINOR;
  desc.name = "c_gate";
  desc.version = "1.0.0";
  desc.init = init;
  return &desc;
}
