/* link.h - the worker's connection to its coordinator.
 *
 * What it is: a thread that owns the worker's ZeroMQ DEALER socket, so that
 * heartbeats go out on time however long a forward pass takes.  It sends the
 * worker's HELLO on every (re)connection, answers nothing itself, drops the
 * coordinator's HEARTBEATs (they only prove it is alive) and passes every
 * other message to the worker's thread.  When the coordinator has been
 * silent for heartbeat x liveness, it reconnects with a backoff that doubles
 * up to a cap (Paranoid Pirate).  What it is not: the job loop (main.c).
 *
 * Threads: link_send/link_recv are for the one thread that created the
 * link; the link thread talks to it over an inproc PAIR socket. */
#ifndef TS_LINK_H
#define TS_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "curve.h"
#include "wire.h"

typedef struct {
    int heartbeat_ms;    /* interval of our heartbeats (default 1000) */
    int liveness;        /* silent intervals before the coordinator is presumed dead (default 5) */
    int reconnect_ms;    /* first reconnect delay (default 500) */
    int reconnect_max_ms; /* backoff cap (default 32000) */
    const char *alive_file; /* touched (created if missing) at every heartbeat and reconnection
                             * attempt, so at least every max(heartbeat_ms, reconnect_max_ms):
                             * what a liveness probe checks; NULL: none.  Copied. */
} link_opts_t;

typedef struct link link_t;

/* Starts the link thread connecting to endpoint, introducing itself with
 * hello (copied).  Returns NULL with a message on failure. */
link_t *link_new(const char *endpoint, const wire_msg_t *hello, const link_opts_t *opts, char *err, size_t errlen);

/* CURVE keys for the link: this worker's key pair and the coordinator's
 * public key (Z85). */
typedef struct {
    curve_keypair_t keys;
    char server_key[CURVE_Z85_LEN + 1];
} link_curve_t;

/* As link_new; when curve is not NULL the DEALER is a CURVE client with
 * those keys (copied; the copy is wiped by link_destroy), which talks only
 * to the coordinator holding the server key's secret half.  Either way the
 * link logs handshakes the coordinator refuses (rate-limited), with what to
 * do about them. */
link_t *link_new_curve(const char *endpoint, const wire_msg_t *hello, const link_opts_t *opts,
                       const link_curve_t *curve, char *err, size_t errlen);

/* Stops the thread and closes the sockets; NULL-safe, clears *self_p. */
void link_destroy(link_t **self_p);

/* Sets what the next heartbeats say of the job in hand: busy with job_id,
 * tokens token rows and docs documents (bytes of text) measured so far; or
 * idle (busy 0: the rest is ignored).  For the thread that created the
 * link; the link thread reads it under a lock. */
void link_progress(link_t *self, int busy, int64_t job_id, int64_t tokens, int64_t bytes, int32_t docs);

/* Queues m for the coordinator.  0, or -1 with a message. */
int link_send(link_t *self, const wire_msg_t *m, char *err, size_t errlen);

/* Waits up to timeout_ms (-1: forever) for a message from the coordinator.
 * Returns 0 with *m filled (release with wire_msg_clear), 1 on timeout or
 * signal, -1 on error. */
int link_recv(link_t *self, wire_msg_t *m, int timeout_ms, char *err, size_t errlen);

/* How many times the link has reconnected so far, and the current backoff
 * delay (for tests and logs). */
int link_reconnects(const link_t *self);

#endif
