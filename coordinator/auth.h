/* auth.h - the coordinator's gatekeeper: a ZAP handler (ZeroMQ RFC 27) that
 * lets in only the workers whose CURVE public keys are on its allow-list.
 *
 * What it is: a REP socket bound at inproc://zeromq.zap.01 in the
 * coordinator's ZeroMQ context, answered from the coordinator's own poll
 * loop (no thread): libzmq asks it about every CURVE handshake on the
 * context's sockets, and it says 200 for a listed key (the key's name
 * becomes the connection's User-Id) and 400 for anything else, logging the
 * refused peer's address and key prefix.  It also watches the ROUTER's
 * failed handshakes (a client without CURVE, a client with a wrong server
 * key) and logs those.  Refusal logs are rate-limited, since a refused
 * client retries ten times a second.
 *
 * What it is not: the CURVE machinery (libzmq, proto/curve.c) nor the
 * protocol (main.c).  Without auth_new, libzmq lets every client that knows
 * the server's public key in: create it before the ROUTER binds. */
#ifndef TS_AUTH_H
#define TS_AUTH_H

#include <stddef.h>

typedef struct auth auth_t;

/* Reads the allow-list at allowed_path (a directory of *.pub files or a
 * file of keys; see curve.h) and binds the ZAP handler in ctx.  Returns
 * NULL with a message on failure (no keys, a bad file, the ZAP endpoint
 * already bound). */
auth_t *auth_new(void *ctx, const char *allowed_path, char *err, size_t errlen);

/* Starts logging sock's failed handshakes (sock is not owned; auth never
 * touches it again, so it may be closed before auth_destroy).  0 or -1. */
int auth_watch(auth_t *self, void *sock, char *err, size_t errlen);

/* How many keys are allowed. */
size_t auth_n_keys(const auth_t *self);

/* The sockets to poll for ZMQ_POLLIN (the ZAP handler, and the monitor once
 * auth_watch was called): stores up to cap of them into socks, returns the
 * count. */
size_t auth_sockets(const auth_t *self, void **socks, size_t cap);

/* Answers every waiting ZAP request and logs every waiting handshake
 * failure, without blocking.  Call it whenever a socket of auth_sockets is
 * readable (calling it more often is harmless).  Returns the number of
 * requests answered. */
int auth_process(auth_t *self);

/* Counters since auth_new (for logs and tests). */
typedef struct {
    unsigned long accepted, refused, failed_handshakes;
} auth_stats_t;
auth_stats_t auth_stats(const auth_t *self);

/* Closes the handler's sockets and frees it; NULL-safe, clears *self_p.
 * Call before the context is terminated. */
void auth_destroy(auth_t **self_p);

#endif
