/* c_gate: the gate door of gate.cpp written in plain C11 against abi.h
 * alone (behaviours, stash, unhandled messages), handling the messages
 * the gate plugin declares. Closed, it stashes knocks; Open becomes `open`
 * and puts them back: each knock is answered with itself. Peek stacks a
 * `peeking` behaviour in which knocks wait again; Unpeek takes it off and
 * puts them back. Break fails the actor (its restart is closed again);
 * anything else is unhandled. */
#include <stdint.h>
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

static int init(const troupe_host_api* h, troupe_registrar* reg) {
  host = h;
  if (!TROUPE_HOST_HAS(h, unhandled)) return TROUPE_ERR_STATE;
  knock = type_of("gate.Knock");
  open_msg = type_of("gate.Open");
  peek = type_of("gate.Peek");
  unpeek = type_of("gate.Unpeek");
  brk = type_of("gate.Break");
  troupe_kind_def k;
  memset(&k, 0, sizeof k);
  k.size = sizeof k;
  k.name = "c.door";
  k.create = create;
  k.receive = closed;
  k.destroy = destroy;
  return h->register_kind(reg, &k);
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
