/* wire.h - the messages between coordinator and workers, and their framing
 * on ZeroMQ sockets.
 *
 * What it is: plain C structs for every message, and the one module that
 * turns them into protobuf-c bytes (proto/tokshift.proto) and ZeroMQ frames
 * and back.  Nothing else in the project includes the generated protobuf-c
 * header.  Every received frame is size-limited and decoded defensively: a
 * garbage frame, a wrong protocol version, an unknown message type or absurd
 * field values give -1 and a message, never a crash.
 *
 * What it is not: the protocol's state machine (coordinator/ and worker/).
 *
 * The conversation (worker DEALER <-> coordinator ROUTER):
 *
 *   worker                         coordinator
 *     HELLO  ------------------------>            (version, model identity)
 *            <------------------------  WELCOME   (run id, model identity, settings)
 *     READY  ------------------------>            (credit: "give me a job")
 *            <------------------------  JOB       (job id, attempt token, documents)
 *     HEARTBEAT <-------------------->  HEARTBEAT (both ways, every interval)
 *     DONE | FAILED ----------------->            (job id, attempt token, ...)
 *            <------------------------  SHUTDOWN  (reason; also: model mismatch)
 *
 * Any message counts as a sign of life. */
#ifndef TS_WIRE_H
#define TS_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* Bumped on any incompatible change; a peer with another version is refused
 * with a message naming both. */
#define WIRE_PROTOCOL_VERSION 1

/* No frame larger than this is accepted (also set as ZMQ_MAXMSGSIZE). */
#define WIRE_MAX_FRAME (256u << 20)
/* Bounds on decoded values, beyond which a message is rejected as absurd. */
#define WIRE_MAX_DOCS_PER_JOB 100000
#define WIRE_MAX_STRING (64u << 20)
#define WIRE_MAX_CUTS 4096
#define WIRE_MAX_SAMPLES_PER_DOC (1u << 20)
#define WIRE_MAX_SAMPLE_TOKENS (1u << 20)

typedef enum {
    WIRE_HELLO = 1,
    WIRE_WELCOME = 2,
    WIRE_READY = 3,
    WIRE_JOB = 4,
    WIRE_HEARTBEAT = 5,
    WIRE_DONE = 6,
    WIRE_FAILED = 7,
    WIRE_SHUTDOWN = 8,
} wire_type_t;

/* The default window (W) of a run (tokshift-coordinator --window) and of
 * `tokshift score`, so that scoring a text by hand reproduces a run's rows
 * by default; both default the stride to W / 2. */
#define WIRE_DEFAULT_WINDOW 512

/* Why a SHUTDOWN (tokshift.proto's ShutdownCode); the worker's exit status
 * follows it, never the reason text. */
typedef enum {
    WIRE_SHUTDOWN_OTHER = 0,
    WIRE_SHUTDOWN_RUN_COMPLETE = 1,
    WIRE_SHUTDOWN_MODEL_MISMATCH = 2,
} wire_shutdown_code_t;

/* The settings of a run: how each document is measured. */
typedef struct {
    int32_t window;          /* W */
    int32_t stride;          /* S */
    int32_t *prefix_lengths; /* fixed cut points (tokens of prefix, BOS included) */
    size_t n_prefix_lengths;
    int32_t cut_every;       /* also cut every N tokens (0 = off) */
    int32_t cont_len;        /* C: tokens per continuation */
    int32_t n_samples;       /* K */
    float temperature;       /* tau */
    int32_t top_k;           /* 0 = off */
    float top_p;             /* 1 = off */
    uint64_t seed;           /* run seed */
    int64_t score_run;       /* cross-scoring: the source run (0 = none) */
    char *vocab_digest;      /* its model's vocabulary digest ("" or NULL when none) */
    char *chat_template;     /* the run's template file text (tpltext.h); "" or NULL when none */
    int32_t cut_every_bytes; /* > 0: cut at word starts every N bytes instead (tokshift.proto) */
} wire_settings_t;

/* Another run's sample, for a cross-scoring run's worker to observe. */
typedef struct {
    int32_t cut;
    int32_t sample_idx;
    uint64_t seed;
    int32_t *tokens;
    size_t n_tokens;
} wire_sample_t;

typedef struct {
    int64_t doc_id;  /* the database id */
    char *text;      /* UTF-8, NUL-terminated, text_len bytes */
    size_t text_len;
    wire_sample_t *samples; /* cross-scoring runs only */
    size_t n_samples;
} wire_doc_t;

typedef struct {
    wire_type_t type;
    uint32_t version; /* filled by wire_decode; wire_encode always writes WIRE_PROTOCOL_VERSION */
    union {
        struct { /* HELLO */
            char *worker;   /* a name for logs: host:pid unless given */
            char *host;
            int32_t pid;
            int32_t threads;
            char *model_identity; /* sha256 of the model file(s), hex */
            char *model_name;
            int32_t observes; /* 1: can observe given samples (cross-scoring) */
            int32_t templates; /* 1: reads documents through settings.chat_template */
            int32_t cuts_by_bytes; /* 1: can cut by bytes (RunSettings.cut_every_bytes) */
        } hello;
        struct { /* WELCOME */
            int64_t run_id;
            char *model_identity;
            wire_settings_t settings;
            int32_t heartbeat_ms; /* the interval the coordinator expects */
            int32_t liveness;     /* intervals of silence before a peer is dead */
        } welcome;
        struct { /* JOB */
            int64_t run_id;
            int64_t job_id;
            uint64_t attempt_token;
            wire_doc_t *docs;
            size_t n_docs;
        } job;
        struct { /* DONE */
            int64_t job_id;
            uint64_t attempt_token;
            int64_t n_tokens;  /* token rows written */
            int64_t n_docs;
            double compute_s;  /* forward passes and statistics */
            double write_s;    /* PostgreSQL */
            int32_t stale;     /* 1: the token had changed; nothing was written */
        } done;
        struct { /* FAILED */
            int64_t job_id;
            uint64_t attempt_token;
            char *error;
            int32_t retryable; /* 0: the job itself is bad (e.g. model mismatch) */
        } failed;
        struct { /* HEARTBEAT: a worker's progress in its job (all 0 when idle) */
            int32_t busy;   /* 1: the worker holds job_id */
            int64_t job_id;
            int64_t tokens; /* token rows measured so far */
            int64_t bytes;  /* text bytes of the documents measured */
            int32_t docs;   /* documents measured */
        } heartbeat;
        struct { /* SHUTDOWN */
            char *reason;
            wire_shutdown_code_t code;
        } shutdown;
    } u;
} wire_msg_t;

/* Encodes m (any type) into a malloc'd buffer the caller frees.  Every field
 * is checked against the same bounds wire_decode applies (see
 * tokshift.proto), so an encoded message is one the peer accepts; NULL
 * strings are sent as empty.  Returns 0, or -1 with a message naming the
 * field and value (out of memory, a field over its bound, a frame over
 * WIRE_MAX_FRAME); *buf is then NULL. */
int wire_encode(const wire_msg_t *m, uint8_t **buf, size_t *len, char *err, size_t errlen);

/* Decodes len bytes into *m (every pointer in *m is owned by *m afterwards:
 * release with wire_msg_clear; strings are never NULL, "" when absent; each
 * doc text is NUL-terminated; m->version is WIRE_PROTOCOL_VERSION).  buf is
 * only read.  Returns 0, or -1 with a message naming what was wrong (frame
 * empty or over WIRE_MAX_FRAME, not protobuf, wrong version naming both,
 * unknown or missing payload, a field out of its bounds naming field and
 * value, an element count that would need more than ~2 x len + 32 MiB to
 * unpack); *m is then empty (all zero). */
int wire_decode(const uint8_t *buf, size_t len, wire_msg_t *m, char *err, size_t errlen);

/* Frees what m owns (everything wire_decode allocated; a message built by
 * hand qualifies when all its pointers came from malloc) and zeroes it;
 * NULL-safe, and safe to call twice. */
void wire_msg_clear(wire_msg_t *m);

/* A short name for a type ("HELLO", ..., "type 99"); never NULL.  The
 * "type N" form lives in a thread-local buffer, valid until the next call. */
const char *wire_type_name(int type);

/* Sends m on a ZeroMQ socket: on a ROUTER, peer/peer_len (1..255 bytes) is
 * the routing identity frame sent first; on a DEALER, peer is NULL.  m is
 * encoded (and so checked) first; m stays the caller's.  Sends never block
 * (ZMQ_DONTWAIT; EINTR is retried): one that would block (a DEALER with no
 * connected peer, a full queue) is an error (-1, message), as are socket
 * errors and EHOSTUNREACH (a ROUTER with ZMQ_ROUTER_MANDATORY and an unknown
 * peer; without that option ZeroMQ drops such a message silently).  After a
 * failed send errno is ZeroMQ's error (EAGAIN, EHOSTUNREACH, ...), or
 * EINVAL when m or the arguments were at fault. */
int wire_send(void *sock, const void *peer, size_t peer_len, const wire_msg_t *m, char *err, size_t errlen);

/* Receives one message (blocking unless flags has ZMQ_DONTWAIT).  On a ROUTER
 * (peer != NULL) the routing identity is stored into peer (capacity
 * *peer_len, updated to its length; ZeroMQ identities are at most 255 bytes,
 * so 256 always suffices).  Returns 0 with *m filled (release with
 * wire_msg_clear); 1 when ZMQ_DONTWAIT found nothing, the socket's
 * ZMQ_RCVTIMEO expired, or a signal interrupted the wait (EINTR), *m empty;
 * -1 when the message was malformed (all its frames are consumed, the
 * message names the problem and the peer - its routing identity and, over
 * TCP, its address - and *peer still says who sent it;
 * the socket stays usable) or on a socket error, *m empty.  Malformed means:
 * not exactly one payload frame after the identity, a frame over
 * WIRE_MAX_FRAME, or a payload wire_decode refuses.  A frame over the
 * socket's ZMQ_MAXMSGSIZE (wire_socket_setup) never arrives here: ZeroMQ
 * drops that connection, and a DEALER peer reconnects (with a new identity
 * unless it set ZMQ_ROUTING_ID). */
int wire_recv(void *sock, void *peer, size_t *peer_len, wire_msg_t *m, int flags, char *err, size_t errlen);

/* Applies the project's socket options: ZMQ_MAXMSGSIZE = WIRE_MAX_FRAME and
 * linger 0 for prompt shutdown.  CURVE keys are set by proto/curve.h.
 * Call it before bind/connect.  Returns 0, or -1 with a message. */
int wire_socket_setup(void *sock, char *err, size_t errlen);

/* Replaces, in place, every byte of the NUL-terminated s that is not part of
 * well-formed UTF-8 with '?', so that free text (an error message quoting a
 * file name, say) can go into a string field, which wire_encode refuses
 * when it is not UTF-8.  Returns the number of bytes replaced; NULL-safe. */
size_t wire_utf8_sanitize(char *s);

/* Checks the module's internals (UTF-8 validator, the exact bytes of a
 * HEARTBEAT, version refusal).  Returns 0, or -1 when something is wrong. */
int wire_selftest(void);

#endif
