/*
 * Troupe plugin ABI: the plain C contract between troupe-node and a plugin.
 *
 * A plugin is a shared object that exports one function,
 * troupe_plugin_entry(), returning its descriptor. The node checks the
 * descriptor's ABI version, then calls its init() with the host function
 * table; init() registers the plugin's actor kinds and message schemas.
 *
 * Rules that keep old plugins working with newer nodes:
 *  - Every struct that may grow starts with its size (as its builder knew
 *    it); fields are only ever added at the end.
 *  - A function the node does not have is NULL, or lies beyond `size`: test
 *    with TROUPE_HOST_HAS(host, fn) before calling anything newer than 1.0.
 *  - Nothing but C crosses: no exception, no C++ type. Plugins built with the
 *    C++ SDK (troupe.hpp) get this for free.
 *
 * Most plugin authors use troupe.hpp and never touch this header directly.
 */
#ifndef TROUPE_ABI_H
#define TROUPE_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A major change breaks plugins; a minor one only adds at the end. */
#define TROUPE_ABI_MAJOR 1
#define TROUPE_ABI_MINOR 10

/* The name of the function every plugin exports. */
#define TROUPE_PLUGIN_ENTRY_NAME "troupe_plugin_entry"

/* Exports a symbol from a plugin built with hidden visibility. */
#if defined(__GNUC__)
#define TROUPE_EXPORT __attribute__((visibility("default")))
#else
#define TROUPE_EXPORT
#endif

/* An actor's context: valid only during the callback that received it. */
typedef struct troupe_ctx troupe_ctx;
/* A process id: a counted reference (see pid_retain and pid_release). */
typedef struct troupe_pid troupe_pid;
/* The handle through which init() registers kinds; valid during init only. */
typedef struct troupe_registrar troupe_registrar;

/* Results of host functions that can fail. */
enum troupe_status {
  TROUPE_OK = 0,
  TROUPE_ERR_ARGUMENT = -1,      /* a NULL or malformed argument */
  TROUPE_ERR_STATE = -2,         /* not allowed now (e.g. registering outside init) */
  TROUPE_ERR_DUPLICATE = -3,     /* a kind of that name exists */
  TROUPE_ERR_UNKNOWN_KIND = -4,  /* spawn of a kind nobody registered */
  TROUPE_ERR_NAME_TAKEN = -5,    /* spawn with a name that is in use */
  TROUPE_ERR_NOT_FOUND = -6,     /* no such timer, process, ... */
  TROUPE_ERR_UNAVAILABLE = -7,   /* another node that cannot be reached now */
  TROUPE_ERR_BUSY = -8           /* refused for now: too much waits already (ABI 1.7) */
};

/* Log levels for host->log. */
enum troupe_log_level {
  TROUPE_LOG_DEBUG = 0,
  TROUPE_LOG_INFO = 1,
  TROUPE_LOG_WARN = 2,
  TROUPE_LOG_ERROR = 3
};

/* Flags for sends. */
enum troupe_send_flags {
  /* The bytes come straight from a FlatBuffers builder, so they are valid by
   * construction and the receiver need not verify them. Leave it unset for
   * bytes of any other origin. */
  TROUPE_SEND_BUILT = 1u << 0
};

/* How a request made with grain_request ended, for its on_reply. */
enum troupe_reply_status {
  TROUPE_REPLY_OK = 0,          /* the reply is the target's (the grain's) */
  TROUPE_REPLY_TIMEOUT = 1,     /* no reply in time: for a grain, a troupe.cluster.GrainError says more */
  TROUPE_REPLY_DEAD_LETTER = 2, /* undelivered: a troupe.system.DeadLetterResponse says why */
  TROUPE_REPLY_FAILED = 3       /* not made: a troupe.cluster.GrainError says why (no member
                                   hosts the kind, its activation failed) */
};

/* How a persist ended, for its on_persisted. */
enum troupe_persist_status {
  TROUPE_PERSIST_OK = 0,       /* durable: apply the events now */
  TROUPE_PERSIST_REJECTED = 1  /* refused (an event too large, ...): `detail` says why; the actor goes on */
};

/* A binary FlatBuffers schema (.bfbs): the node verifies incoming messages
 * of these types with it, and the gateway converts JSON with it. */
typedef struct troupe_schema {
  const uint8_t* data;
  size_t size;
} troupe_schema;

/* The message a callback is about: its type id and FlatBuffers bytes,
 * valid during the callback. */
typedef struct troupe_message {
  uint64_t type;
  const uint8_t* data;
  size_t size;
} troupe_message;

/* One kind of actor. */
typedef struct troupe_kind_def {
  uint32_t size;    /* sizeof(troupe_kind_def) as the plugin was built */
  const char* name; /* dotted and unique in the node: "acme.counter" */
  void* data;       /* handed to create() */
  /* Makes an actor when it starts (the current message is Started). Returns
   * the instance, or NULL after calling host->fail(). */
  void* (*create)(void* data, troupe_ctx* ctx);
  /* Handles the current message (lifecycle messages included). Returns 0,
   * or nonzero after calling host->fail(): the actor then fails and its
   * supervisor decides. */
  int (*receive)(void* instance, troupe_ctx* ctx, const troupe_message* msg);
  /* Frees the instance (after Stopped, or before a restart). Returns 0, or
   * nonzero if its destructor failed (the node logs and counts it; the
   * instance is gone either way). */
  int (*destroy)(void* instance);
} troupe_kind_def;

/* What makes a kind persistent (register_persistent): its actors keep their
 * state as a journal of events, and snapshots, in the node's store. */
typedef struct troupe_persistent_def {
  uint32_t size; /* sizeof(troupe_persistent_def) as the plugin was built */
  /* The actor's past, before it gets Started: the newest snapshot first
   * (is_snapshot 1, `seq` the event it is as of), if there is one, then
   * every event after it in order (`seq` its number). Returns 0, or
   * nonzero after host->fail() (the actor fails). */
  int (*recover)(void* instance, troupe_ctx* ctx, const troupe_message* msg, uint64_t seq, int is_snapshot);
  /* Asked every kinds.<kind>.persistence.snapshot_every events, after the
   * last of them is applied: writes the state with host->save_snapshot().
   * May be NULL (no snapshots but those the actor saves itself). Returns
   * 0, or nonzero after host->fail(). */
  int (*snapshot)(void* instance, troupe_ctx* ctx);
} troupe_persistent_def;

/* A mailbox (ABI 1.9). */
enum troupe_mailbox {
  TROUPE_MAILBOX_NODE = 0,        /* the node's: kinds.<kind>.mailbox, else kinds.all.mailbox, else 10,000
                                     messages dropping the newest */
  TROUPE_MAILBOX_UNBOUNDED = 1,   /* never full */
  TROUPE_MAILBOX_BLOCK = 2,       /* bounded: when full, a sender outside the actors waits for room */
  TROUPE_MAILBOX_DROP_NEWEST = 3, /* bounded: when full, one more is refused (a dead letter mailbox_full) */
  TROUPE_MAILBOX_DROP_OLDEST = 4  /* bounded: when full, the oldest waiting is dropped for the new one */
};

/* How an actor supervises its children (ABI 1.9). */
enum troupe_supervision {
  TROUPE_SUPERVISE_NODE = 0,        /* the node's: one-for-one */
  TROUPE_SUPERVISE_ONE_FOR_ONE = 1, /* the directive applies to the child that failed */
  TROUPE_SUPERVISE_ALL_FOR_ONE = 2  /* the directive applies to every child */
};

/* What a supervisor does with a child that failed (ABI 1.9). */
enum troupe_directive {
  TROUPE_DIRECTIVE_RESUME = 0,   /* keep the instance and its state; go on with the next message */
  TROUPE_DIRECTIVE_RESTART = 1,  /* a fresh instance */
  TROUPE_DIRECTIVE_STOP = 2,     /* stop the child */
  TROUPE_DIRECTIVE_ESCALATE = 3  /* fail the supervisor itself, with the child's reason */
};

/* What an actor gets besides its code (ABI 1.9): its mailbox, its
 * throughput, and how it supervises its children. Zero everywhere is the
 * node's choice for each field. For a kind (register_kind_props) and for
 * one spawn (spawn_props); the node's configuration of a kind's mailbox
 * (kinds.<kind>.mailbox, kinds.all.mailbox) wins over both, so that an
 * operator can always bound what a plugin's actors take. */
typedef struct troupe_props {
  uint32_t size;         /* sizeof(troupe_props) as the plugin was built */
  int mailbox;           /* a troupe_mailbox */
  uint32_t capacity;     /* bounded mailboxes: messages, 1 to 100,000,000 (0 with another mailbox) */
  uint32_t throughput;   /* messages an actor handles before its worker moves on, 1 to 1,000,000; 0: 300 */
  int supervision;       /* a troupe_supervision */
  uint32_t max_restarts; /* restarts of one child within restart_window_ns before it is stopped instead,
                            1 to 1,000,000; 0: 10 */
  uint64_t restart_window_ns; /* 1 ms to 1 day; 0: 10 s */
  uint64_t backoff_first_ns;  /* a restart waits this long, twice as long each time after, up to
                                 backoff_max_ns (each within 20% jitter); 0: restarts at once */
  uint64_t backoff_max_ns;    /* up to 1 hour; 0 with backoff_first_ns: 30 s */
  /* Chooses the directive for a child that failed (NULL: restart), in its
   * supervisor's turn: a troupe_directive. Anything else stops the child. */
  int (*decide)(void* closure, const troupe_pid* child, const char* reason, size_t reason_len);
  void* decide_closure;
} troupe_props;

/* Why a subscriber did not get a published message (ABI 1.7). */
typedef enum troupe_delivery_failure_reason {
  TROUPE_DELIVERY_STOPPED = 0,      /* it had stopped: it is off the topic now */
  TROUPE_DELIVERY_NODE_LOST = 1,    /* its node died or left: off the topic too */
  TROUPE_DELIVERY_MAILBOX_FULL = 2, /* its mailbox was full: this message was dropped for it */
  TROUPE_DELIVERY_UNREACHABLE = 3   /* its node did not answer in time */
} troupe_delivery_failure_reason;

typedef struct troupe_delivery_failure {
  const char* subscriber; /* "address/id" of an actor, "kind/identity" of a grain */
  size_t subscriber_len;
  int reason;             /* a troupe_delivery_failure_reason */
} troupe_delivery_failure;

/* What a batch of publishes came to; valid during the callback. */
typedef struct troupe_publish_report {
  uint64_t delivered; /* messages handed to subscribers (one per subscriber) */
  size_t failure_count;
  const troupe_delivery_failure* failures;
} troupe_publish_report;

/* How a router picks the routee of a message (ABI 1.9). */
enum troupe_routing {
  TROUPE_ROUTE_ROUND_ROBIN = 0,    /* each routee in turn */
  TROUPE_ROUTE_RANDOM = 1,         /* a routee at random */
  TROUPE_ROUTE_BROADCAST = 2,      /* every routee */
  TROUPE_ROUTE_CONSISTENT_HASH = 3 /* by the key the message was sent with (send_keyed): one key, one routee,
                                      and a routee added or removed moves only the keys it must */
};

/* Router management (router_manage, ABI 1.9). */
enum troupe_router_op {
  TROUPE_ROUTER_ADD = 0,    /* `routee` becomes one */
  TROUPE_ROUTER_REMOVE = 1, /* `routee` is one no more */
  TROUPE_ROUTER_RESIZE = 2  /* a pool grows or shrinks by `change` routees */
};

/* The type ids of the node's events and system messages (ABI 1.10): the
 * FNV-1a hash of each table's full name, as for a plugin's own types. */
#define TROUPE_TYPE_DEAD_LETTER_EVENT 0x9a5c96b508d20227ull   /* troupe.system.DeadLetterEvent */
#define TROUPE_TYPE_ACTOR_FAILED_EVENT 0xd0c6b32de2f63487ull  /* troupe.system.ActorFailedEvent */
#define TROUPE_TYPE_SUPERVISION_EVENT 0x0440e16bef28ac12ull   /* troupe.system.SupervisionEvent */
#define TROUPE_TYPE_TERMINATED 0xf0c3a5d005f15846ull          /* troupe.system.Terminated */
#define TROUPE_TYPE_DEAD_LETTER_RESPONSE 0x93882dcd4f17c986ull /* troupe.system.DeadLetterResponse */
#define TROUPE_TYPE_REQUEST_TIMED_OUT 0xae530898ba003f2dull   /* troupe.system.RequestTimedOut */
#define TROUPE_TYPE_RECEIVE_TIMEOUT 0x7543ba77bd319fa3ull     /* troupe.system.ReceiveTimeout */

/* Why a message became a dead letter (troupe.system.DeadLetterReason). */
enum troupe_dead_letter_reason {
  TROUPE_DEAD_NOT_FOUND = 0,       /* no actor with that id */
  TROUPE_DEAD_STOPPED = 1,         /* the target had stopped */
  TROUPE_DEAD_MAILBOX_FULL = 2,    /* dropped by a bounded mailbox */
  TROUPE_DEAD_LATE_REPLY = 3,      /* a reply to a request that had timed out */
  TROUPE_DEAD_SHUTDOWN = 4,        /* still queued when the node stopped */
  TROUPE_DEAD_NO_ROUTEE = 5,       /* a router had no routee for it */
  TROUPE_DEAD_INVALID = 6,         /* its bytes did not verify against its schema */
  TROUPE_DEAD_NODE_LOST = 7,       /* for a node that was lost or not reached */
  TROUPE_DEAD_PEER_QUEUE_FULL = 8, /* dropped by a full queue to another node */
  TROUPE_DEAD_UNCONFIRMED = 9,     /* another node never acknowledged it */
  TROUPE_DEAD_OVER_BUDGET = 10,    /* the node's queued messages had reached their budget */
  TROUPE_DEAD_STALE = 11,          /* its PID names an earlier start of the target's node */
  TROUPE_DEAD_UNHANDLED = 12       /* the actor that got it did not handle it */
};

/* A node event or system message, as read_event reads it (ABI 1.10). */
typedef struct troupe_event {
  size_t size;           /* sizeof(troupe_event), set by the caller */
  uint64_t type;         /* one of the TROUPE_TYPE_ above */
  /* The actor it is about: a dead letter's target, the actor that failed,
   * the supervised child, the actor that terminated, the one asked by a
   * request that timed out. An owned reference (pid_release it), NULL
   * when there is none or it names no actor this node can reach. */
  troupe_pid* who;
  troupe_pid* sender;    /* a dead letter's sender (owned, as `who`), else NULL */
  uint64_t message_type; /* the type of the dead letter, of the request that timed out */
  /* A dead letter's troupe_dead_letter_reason; a supervision event's
   * troupe_directive; Terminated's: 0 stopped, 1 there was no such actor,
   * 2 its node was lost. */
  int reason;
  const char* text;      /* the failure's words (failed, supervision), valid during the handler; else "" */
  size_t text_len;
} troupe_event;

/* At most this many types in one EventStream filter, and subscriptions per actor. */
#define TROUPE_EVENT_FILTER_MAX 64
#define TROUPE_EVENT_SUBSCRIPTIONS_MAX 16

/* The functions the node offers a plugin. `size` is sizeof as the node was
 * built: a plugin built against a newer header checks it before calling
 * anything added later (TROUPE_HOST_HAS). */
typedef struct troupe_host_api {
  uint32_t size;
  uint16_t abi_major;
  uint16_t abi_minor;

  /* ---- registration, from init() only ---- */
  int (*register_kind)(troupe_registrar* reg, const troupe_kind_def* kind);
  int (*register_schema)(troupe_registrar* reg, const troupe_schema* schema);

  /* ---- the current message ---- */
  uint64_t (*message_type)(troupe_ctx* ctx);
  const uint8_t* (*message_data)(troupe_ctx* ctx, size_t* size);
  /* Borrowed references, valid during the callback; sender may be NULL. */
  troupe_pid* (*self)(troupe_ctx* ctx);
  troupe_pid* (*sender)(troupe_ctx* ctx);
  troupe_pid* (*parent)(troupe_ctx* ctx);

  /* ---- messaging: the bytes are copied, the caller keeps its buffer ---- */
  int (*send)(troupe_ctx* ctx, troupe_pid* to, uint64_t type, const uint8_t* data, size_t size,
              uint32_t flags);
  /* As send, with this actor as the sender: the reply comes as a message. */
  int (*request)(troupe_ctx* ctx, troupe_pid* to, uint64_t type, const uint8_t* data,
                 size_t size, uint32_t flags);
  /* Replies to the sender of the current message (a dead letter if none). */
  int (*respond)(troupe_ctx* ctx, uint64_t type, const uint8_t* data, size_t size,
                 uint32_t flags);
  /* Passes the current message on, keeping its sender. */
  int (*forward)(troupe_ctx* ctx, troupe_pid* to);

  /* ---- children and lifecycle ---- */
  /* Spawns a child of this actor of a registered kind; `name` may be NULL.
   * Returns an owned reference, or NULL with *status set. */
  troupe_pid* (*spawn)(troupe_ctx* ctx, const char* kind, const char* name, int* status);
  void (*stop)(troupe_ctx* ctx, troupe_pid* who);
  void (*poison)(troupe_ctx* ctx, troupe_pid* who);
  void (*watch)(troupe_ctx* ctx, troupe_pid* who);
  void (*unwatch)(troupe_ctx* ctx, troupe_pid* who);

  /* ---- timers: owned by the actor and cancelled when it stops ---- */
  /* Returns a timer id (never 0), for cancel_timer. */
  uint64_t (*send_after)(troupe_ctx* ctx, uint64_t delay_ns, troupe_pid* to, uint64_t type,
                         const uint8_t* data, size_t size, uint32_t flags);
  uint64_t (*send_every)(troupe_ctx* ctx, uint64_t initial_ns, uint64_t interval_ns,
                         troupe_pid* to, uint64_t type, const uint8_t* data, size_t size,
                         uint32_t flags);
  int (*cancel_timer)(troupe_ctx* ctx, uint64_t timer);

  /* ---- process ids ---- */
  void (*pid_retain)(troupe_pid* p);
  void (*pid_release)(troupe_pid* p);
  int (*pid_equal)(const troupe_pid* a, const troupe_pid* b);
  /* Writes "address/id" (NUL-terminated, truncated to cap); returns its full length. */
  size_t (*pid_format)(const troupe_pid* p, char* buf, size_t cap);

  /* ---- the rest ---- */
  /* Logs a line attributed to the plugin (and actor, when ctx is not NULL). */
  void (*log)(troupe_ctx* ctx, int level, const char* text);
  /* Records why the current callback fails; the callback then returns
   * nonzero (receive) or NULL (create). */
  void (*fail)(troupe_ctx* ctx, const char* reason);

  /* ---- ABI 1.1 ---- */
  /* Delivers troupe.system.ReceiveTimeout after `ns` without messages; 0
   * turns it off. */
  int (*set_receive_timeout)(troupe_ctx* ctx, uint64_t ns);

  /* ---- ABI 1.2 ---- */
  /* The PID written "address/id" (as pid_format writes it): an actor of
   * this node, or a process standing for an actor of another node (sends
   * to it cross the network). Returns an owned reference, or NULL when the
   * text is not a PID or names no actor of this node. */
  troupe_pid* (*pid_parse)(troupe_ctx* ctx, const char* text, size_t len);

  /* ---- ABI 1.3 ---- */
  /* The cluster's events come to this actor as messages, from now until it
   * stops or restarts (subscribe again in started()), or unsubscribes:
   * troupe.cluster.MemberJoined, MemberSuspect, MemberAlive, MemberDead,
   * MemberLeft and TopologyChanged (schemas/cluster.fbs). A node without a
   * cluster sends none. */
  int (*subscribe_cluster)(troupe_ctx* ctx);
  int (*unsubscribe_cluster)(troupe_ctx* ctx);
  /* Writes every member this node knows (itself included) as a
   * troupe.cluster.Members buffer into buf when it fits in cap bytes, and
   * returns its size either way (call again with a buffer that large); 0
   * when the node has no cluster. */
  size_t (*cluster_members)(troupe_ctx* ctx, uint8_t* buf, size_t cap);

  /* ---- ABI 1.4: grains (virtual actors) ---- */
  /* From init(): kind `kind` (registered by this plugin) is a grain kind,
   * passivated after `idle_timeout_ns` without messages (0: the node's
   * default; the node's config may set it too). */
  int (*register_grain)(troupe_registrar* reg, const char* kind, uint64_t idle_timeout_ns);
  /* This actor's identity when it is a grain's activation (NULL when it is
   * not), `*len` set to its length; valid during the callback. */
  const char* (*identity)(troupe_ctx* ctx, size_t* len);
  /* A message to the grain (kind, identity), activated where the cluster
   * places it. TROUPE_ERR_UNAVAILABLE when the node has no cluster. */
  int (*grain_send)(troupe_ctx* ctx, const char* kind, const char* identity, size_t identity_len,
                    uint64_t type, const uint8_t* data, size_t size, uint32_t flags);
  /* A request to the grain. `on_reply` runs later in this actor's own turn
   * (never during this call), with the reply or an error message and a
   * troupe_reply_status; `drop` (may be NULL) frees `closure` once, after
   * on_reply ran or when it never will (the actor stopped or restarted).
   * `timeout_ns` bounds the whole call, retries included. */
  int (*grain_request)(troupe_ctx* ctx, const char* kind, const char* identity, size_t identity_len,
                       uint64_t type, const uint8_t* data, size_t size, uint32_t flags, uint64_t timeout_ns,
                       void (*on_reply)(void* closure, troupe_ctx* ctx, const troupe_message* reply, int status),
                       void* closure, void (*drop)(void* closure));
  /* Ends this grain's activation once the messages already queued for it
   * are handled; the next message to the grain activates it again.
   * TROUPE_ERR_STATE when this actor is no grain. */
  int (*passivate)(troupe_ctx* ctx);

  /* ---- ABI 1.5: persistence ---- */
  /* From init(): kind `kind` (registered by this plugin) is persistent.
   * Its actors need a persistence id (a grain's is "kind/identity", a
   * named actor's "kind/name") and a node with a store
   * (persistence.provider); one without either fails at start. */
  int (*register_persistent)(troupe_registrar* reg, const char* kind, const troupe_persistent_def* def);
  /* Appends `count` events (stored together, or not at all) to this
   * actor's journal. Its next messages wait until `on_persisted` runs, in
   * its turn and with the message it handles now as the current one: once
   * the events are durable (TROUPE_PERSIST_OK, `last_seq` the number of
   * the last: apply them now), or refused (TROUPE_PERSIST_REJECTED,
   * `detail` says why). A store that fails, or another writer of the same
   * persistence id, stops the actor instead (the node's log says why).
   * `drop` as for grain_request. TROUPE_ERR_STATE when the actor's kind is
   * not persistent. */
  int (*persist)(troupe_ctx* ctx, const troupe_message* events, size_t count,
                 void (*on_persisted)(void* closure, troupe_ctx* ctx, int status, uint64_t last_seq,
                                      const char* detail),
                 void* closure, void (*drop)(void* closure));
  /* Stores a snapshot of the state as of the last event persisted: the
   * newest is where recovery starts. The actor does not wait for it. */
  int (*save_snapshot)(troupe_ctx* ctx, uint64_t type, const uint8_t* data, size_t size);
  /* Deletes this actor's events up to `to_seq` (the last one stays): those
   * a snapshot covers. */
  int (*delete_events)(troupe_ctx* ctx, uint64_t to_seq);
  /* The number of the actor's last event (0: none yet). */
  uint64_t (*last_seq)(troupe_ctx* ctx);
  /* Its persistence id, `*len` set to its length; NULL when it has none. */
  const char* (*persistence_id)(troupe_ctx* ctx, size_t* len);

  /* ---- ABI 1.6: behaviours, stash, unhandled messages ---- */
  /* From the next message on, `receive` (called with the actor's instance,
   * like the kind's own) handles this actor's messages, lifecycle ones
   * included, instead of the kind's receive or the current behaviour.
   * `stacked` 0: it replaces every behaviour; 1: it goes on top, and
   * unbecome() returns to the one below. A restart returns to the kind's
   * receive. */
  int (*become)(troupe_ctx* ctx, int (*receive)(void* instance, troupe_ctx* ctx, const troupe_message* msg),
                int stacked);
  /* Back to the behaviour below (the kind's receive when there is none).
   * TROUPE_ERR_STATE when no behaviour is set. */
  int (*unbecome)(troupe_ctx* ctx);
  /* Keeps the current message aside (sender included) ... */
  int (*stash)(troupe_ctx* ctx);
  /* ... and puts every kept one back, in order, before the messages that
   * came meanwhile (after those already being put back). */
  int (*unstash_all)(troupe_ctx* ctx);
  /* The current message is one this actor does not handle: a message of a
   * type a plugin declared becomes a dead letter with reason unhandled
   * (counted, logged at a bounded rate; a request's sender gets a
   * troupe.system.DeadLetterResponse at once instead of waiting for its
   * timeout). Other messages (lifecycle, cluster events, Terminated) are
   * let go. */
  int (*unhandled)(troupe_ctx* ctx);

  /* ---- ABI 1.7: cluster pub-sub ---- */
  /* Subscribes `who` to `topic`: an actor of any node, or when NULL this
   * actor (a grain's activation: its grain, which a delivery activates
   * wherever it is placed then). `on_done`
   * (may be NULL) runs later in this actor's own turn: TROUPE_REPLY_OK once
   * the topic has the subscription, `subscribers` being how many it has;
   * otherwise it did not answer in time or could not be reached (the
   * subscription stands on this node and is offered to the topic again
   * when it next asks). `drop` as for grain_request. TROUPE_ERR_UNAVAILABLE
   * when the node has no cluster. */
  int (*subscribe)(troupe_ctx* ctx, const char* topic, size_t topic_len, troupe_pid* who,
                   void (*on_done)(void* closure, troupe_ctx* ctx, int status, uint64_t subscribers),
                   void* closure, void (*drop)(void* closure));
  /* The same, ending the subscription. */
  int (*unsubscribe)(troupe_ctx* ctx, const char* topic, size_t topic_len, troupe_pid* who,
                     void (*on_done)(void* closure, troupe_ctx* ctx, int status, uint64_t subscribers),
                     void* closure, void (*drop)(void* closure));
  /* Publishes a message to every subscriber of `topic`, in the order this
   * node's actors publish, at most once each. TROUPE_ERR_BUSY when this
   * node has too many messages waiting for the topic already (counted). */
  int (*publish)(troupe_ctx* ctx, const char* topic, size_t topic_len, uint64_t type, const uint8_t* data,
                 size_t size, uint32_t flags);
  /* Publishes and asks for a delivery report: `on_report` runs later in
   * this actor's own turn with TROUPE_REPLY_OK and the report of the batch
   * the message went out in (the deliveries made, and each subscriber that
   * did not get it and why; a subscriber dropped since the topic's last
   * report is named in this one), or another status and NULL. */
  int (*publish_reported)(troupe_ctx* ctx, const char* topic, size_t topic_len, uint64_t type,
                          const uint8_t* data, size_t size, uint32_t flags, uint64_t timeout_ns,
                          void (*on_report)(void* closure, troupe_ctx* ctx, int status,
                                            const troupe_publish_report* report),
                          void* closure, void (*drop)(void* closure));

  /* ---- ABI 1.8: requests answered in this actor's turn ---- */
  /* A request to `to`, an actor of this node or another. `on_reply` runs
   * later in this actor's own turn (never during this call; the current
   * message there is the one handled now, so respond() answers its
   * sender) with the reply and TROUPE_REPLY_OK; with a
   * troupe.system.DeadLetterResponse and TROUPE_REPLY_DEAD_LETTER when the
   * message could not be delivered; with an empty message (type 0, size 0)
   * and TROUPE_REPLY_TIMEOUT when no reply came within `timeout_ns`. `drop`
   * as for grain_request. */
  int (*request_then)(troupe_ctx* ctx, troupe_pid* to, uint64_t type, const uint8_t* data, size_t size,
                      uint32_t flags, uint64_t timeout_ns,
                      void (*on_reply)(void* closure, troupe_ctx* ctx, const troupe_message* reply, int status),
                      void* closure, void (*drop)(void* closure));
  /* A message to `to` with `sender` as its sender (NULL: none), so that its
   * reply, or the dead letter response when it cannot be delivered, goes
   * to `sender` rather than to this actor. */
  int (*send_as)(troupe_ctx* ctx, troupe_pid* to, troupe_pid* sender, uint64_t type, const uint8_t* data,
                 size_t size, uint32_t flags);
  /* The actor of this node spawned with the name `name` (an owned
   * reference), or NULL when none is alive. */
  troupe_pid* (*lookup)(troupe_ctx* ctx, const char* name, size_t len);
  /* Spawns `kind` (named `name` unless NULL) on the node at `address` (this
   * node's own address spawns here), as that node lets its peers: a kind
   * its config marks `remote_spawn: true`. `on_done` runs later in this
   * actor's own turn with the new actor (a reference valid during the
   * call: pid_retain it to keep it) and TROUPE_OK, or NULL, a status and
   * why in words, the same words the admin API answers:
   * TROUPE_ERR_UNKNOWN_KIND, TROUPE_ERR_NAME_TAKEN, TROUPE_ERR_ARGUMENT (an
   * invalid name), TROUPE_ERR_STATE (the node does not let peers spawn the
   * kind, or is stopping), TROUPE_ERR_UNAVAILABLE (not reached, or no
   * answer within `timeout_ns`). `drop` as for grain_request. */
  int (*spawn_remote)(troupe_ctx* ctx, const char* address, const char* kind, const char* name,
                      uint64_t timeout_ns,
                      void (*on_done)(void* closure, troupe_ctx* ctx, troupe_pid* who, int status, const char* error),
                      void* closure, void (*drop)(void* closure));

  /* ---- props (ABI 1.9) ---- */
  /* Gives kind `kind` (one of this plugin's, registered before) its props;
   * from init() only. TROUPE_ERR_ARGUMENT for a field out of range
   * (last_error says which), TROUPE_ERR_UNKNOWN_KIND. */
  int (*register_kind_props)(troupe_registrar* reg, const char* kind, const troupe_props* props);
  /* spawn() with props of this spawn's own (NULL: the kind's). */
  troupe_pid* (*spawn_props)(troupe_ctx* ctx, const char* kind, const char* name, const troupe_props* props,
                             int* status);
  /* Why the last call of this thread that failed did (ABI 1.9 functions,
   * and spawn), in words; "" when it said nothing. Valid until the next
   * call to the node on this thread. */
  const char* (*last_error)(void);

  /* ---- routers (ABI 1.9) ---- */
  /* Spawns a router as a child of this actor, named `name` unless NULL.
   * A pool when `kind` is given: `size` (1 to 10,000) routees of `kind`,
   * children of the router, which stops them when it stops and supervises
   * them: `props` gives the routees their mailbox and throughput (NULL:
   * the kind's), and the router its supervision of them (one-for-one
   * restarts, unless its supervision fields say otherwise). A group
   * otherwise: the `count` actors of `routees`, which it does not own. A
   * message sent to the router goes straight from the sender to the
   * routee it picks, with no hop through the router; one it cannot place
   * (no routee, no key) is a dead letter with reason no_routee. */
  troupe_pid* (*spawn_router)(troupe_ctx* ctx, const char* name, int routing, const char* kind, uint32_t size,
                              const troupe_props* props, troupe_pid* const* routees, size_t count, int* status);
  /* A troupe_router_op for `router` (RESIZE: pools only). */
  int (*router_manage)(troupe_ctx* ctx, troupe_pid* router, int op, troupe_pid* routee, int change);
  /* A message to every routee of `router`, whatever its routing. */
  int (*router_broadcast)(troupe_ctx* ctx, troupe_pid* router, uint64_t type, const uint8_t* data, size_t size,
                          uint32_t flags);
  /* The routees of `router`, later in this actor's own turn: `on_done`
   * gets them (references valid during the call) and TROUPE_OK, or none
   * and TROUPE_ERR_UNAVAILABLE when the router did not answer within
   * `timeout_ns`. `drop` as for grain_request. */
  int (*router_routees)(troupe_ctx* ctx, troupe_pid* router, uint64_t timeout_ns,
                        void (*on_done)(void* closure, troupe_ctx* ctx, troupe_pid* const* routees, size_t count,
                                        int status),
                        void* closure, void (*drop)(void* closure));
  /* send() with a key, by which a consistent-hash router picks the routee. */
  int (*send_keyed)(troupe_ctx* ctx, troupe_pid* to, const char* key, size_t key_len, uint64_t type,
                    const uint8_t* data, size_t size, uint32_t flags);

  /* ---- the EventStream (ABI 1.10) ---- */
  /* Subscribes this actor to the node's EventStream: each event whose type
   * is one of the `count` types of `types` (count 0: every event) arrives
   * as a message of its type. The node's events are troupe.system's
   * DeadLetterEvent, ActorFailedEvent and SupervisionEvent and the cluster
   * events (troupe.cluster.MemberJoined, ...); other events are what
   * plugins publish. Lasts until this actor stops or restarts (subscribe
   * in Started), or event_unsubscribe. Returns the subscription (> 0), or
   * 0 with last_error() saying why: more than TROUPE_EVENT_FILTER_MAX
   * types, a type neither the node's nor declared by a loaded plugin's
   * schema, TROUPE_EVENT_SUBSCRIPTIONS_MAX subscriptions already. */
  uint64_t (*event_subscribe)(troupe_ctx* ctx, const uint64_t* types, size_t count);
  /* Ends a subscription of this actor's. TROUPE_ERR_NOT_FOUND for one it
   * does not have (last_error says so). */
  int (*event_unsubscribe)(troupe_ctx* ctx, uint64_t subscription);
  /* Publishes a message of the plugin's (a type a loaded plugin's schema
   * declares) to every subscriber of its type. The node's own event types
   * are refused (TROUPE_ERR_ARGUMENT, last_error says why). */
  int (*event_publish)(troupe_ctx* ctx, uint64_t type, const uint8_t* data, size_t size, uint32_t flags);
  /* Reads the current message when it is a node event or system message
   * (the TROUPE_TYPE_ ones but ReceiveTimeout): TROUPE_OK and `out` filled;
   * TROUPE_ERR_NOT_FOUND when it is none of those, TROUPE_ERR_ARGUMENT when
   * it does not verify (last_error says which). A Terminated's `who` is
   * the very actor that is gone; other events name theirs by PID text, so
   * a named actor that stopped reads as the actor of that name now, if any. */
  int (*read_event)(troupe_ctx* ctx, troupe_event* out);

  /* ---- pipe_to (ABI 1.10) ---- */
  /* A request to `to` whose outcome goes to `target` as a message, with
   * this actor as its sender: the reply; a troupe.system.DeadLetterResponse
   * when the request could not be delivered; a troupe.system.RequestTimedOut
   * when no reply came within `timeout_ns`. */
  int (*pipe_to)(troupe_ctx* ctx, troupe_pid* to, uint64_t type, const uint8_t* data, size_t size, uint32_t flags,
                 uint64_t timeout_ns, troupe_pid* target);
} troupe_host_api;

/* True if the node's table has `fn` (a plugin built against a newer header
 * may run on an older node). */
#define TROUPE_HOST_HAS(host, fn)                                              \
  ((host)->size >= offsetof(troupe_host_api, fn) + sizeof((host)->fn) && \
   (host)->fn != NULL)

/* What a plugin is; returned by troupe_plugin_entry(). */
typedef struct troupe_plugin_desc {
  uint32_t size; /* sizeof(troupe_plugin_desc) as the plugin was built */
  uint16_t abi_major;
  uint16_t abi_minor;
  const char* name;    /* "counter" */
  const char* version; /* the plugin's own version, "1.0.0" */
  /* Registers the plugin's kinds and schemas; returns 0, or nonzero after
   * host->fail(NULL, reason) to refuse loading. */
  int (*init)(const troupe_host_api* host, troupe_registrar* reg);
} troupe_plugin_desc;

/* The entry every plugin exports (see TROUPE_PLUGIN in troupe.hpp). */
typedef const troupe_plugin_desc* (*troupe_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* TROUPE_ABI_H */
