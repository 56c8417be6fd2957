/* curve.h - CURVE security for tokshift's ZeroMQ sockets: key pairs, key
 * files, allow-lists, socket options and handshake events.
 *
 * What it is: everything about CURVE keys (ZeroMQ RFC 26, CurveZMQ) that
 * the coordinator, the worker and `tokshift keygen` share.  Keys are
 * Curve25519 keys written as Z85 text (ZeroMQ RFC 32: 32 bytes as 40
 * printable characters).  Key files are text:
 *
 *   # a comment
 *   <40 Z85 characters>[ <whitespace> a name for logs]
 *
 * blank lines and comments anywhere (no key starts with '#': the first of
 * five Z85 characters encodes at most 82, and '#' is number 84).  PREFIX.key (secret) holds exactly one
 * key and must be mode 0600 or stricter: a secret key file that group or
 * others may read or write is refused, as ssh refuses a private key.
 * PREFIX.pub (public) holds exactly one key, optionally named.  An
 * allow-list is a file with any number of public keys (one per line, each
 * optionally named), or a directory whose *.pub files are read (a key
 * without a name is named after its file).  Files holding public keys must
 * not be writable by group or others (whoever could write them could add
 * a key or replace the server's).
 *
 * What it is not: the authentication policy (coordinator/auth.c decides
 * who is let in), nor the message framing (wire.c). */
#ifndef TS_CURVE_H
#define TS_CURVE_H

#include <stddef.h>
#include <stdint.h>

#define CURVE_Z85_LEN 40   /* characters of a key in Z85 */
#define CURVE_KEY_BYTES 32 /* bytes of a Curve25519 key */
#define CURVE_NAME_MAX 64  /* bytes of a key's name (longer names are cut) */

/* A key pair, both halves in Z85 (NUL-terminated). */
typedef struct {
    char secret[CURVE_Z85_LEN + 1];
    char public_key[CURVE_Z85_LEN + 1];
} curve_keypair_t;

/* A public key and the name logs call it by. */
typedef struct {
    char z85[CURVE_Z85_LEN + 1];
    uint8_t key[CURVE_KEY_BYTES];
    char name[CURVE_NAME_MAX + 1];
} curve_pubkey_t;

/* A handshake event of a monitored socket (see curve_monitor_open). */
typedef struct {
    int event;        /* ZMQ_EVENT_HANDSHAKE_FAILED_* */
    uint32_t value;   /* errno, ZMQ_PROTOCOL_ERROR_* or ZAP status code */
    char endpoint[256]; /* the socket's endpoint the event concerns */
} curve_event_t;

/* Whether this libzmq was built with CURVE (libsodium).  1 or 0. */
int curve_available(void);

/* Generates a key pair and writes PREFIX.key (the secret, mode 0600) and
 * PREFIX.pub (the public key named after PREFIX's last component, mode
 * 0644).  Refuses (-1, message naming the file) when either exists: keys
 * are never overwritten.  On failure nothing is left behind.  Copies the
 * public key into public_out (may be NULL).  Returns 0 or -1. */
int curve_keygen(const char *prefix, char public_out[CURVE_Z85_LEN + 1], char *err, size_t errlen);

/* Reads a secret key file and derives its public half.  Refuses a file that
 * is not a regular file, that group or others may access (message with the
 * mode and `chmod 600 FILE`), or that does not hold exactly one key.
 * Returns 0 with *kp filled, or -1 with a message naming the file (and the
 * line); *kp is then zeroed. */
int curve_read_secret(const char *path, curve_keypair_t *kp, char *err, size_t errlen);

/* Reads a file holding exactly one public key (a PREFIX.pub).  Refuses a file
 * writable by group or others.  Returns 0 with *out filled, or -1. */
int curve_read_public(const char *path, curve_pubkey_t *out, char *err, size_t errlen);

/* Reads an allow-list: a file of public keys, or a directory of *.pub files
 * (read in name order; other files are ignored).  Duplicate keys are kept
 * once.  An allow-list without any key is an error.  Returns 0 with *keys
 * (malloc'd, the caller frees) and *n set, or -1 with a message naming the
 * file and line; *keys is then NULL. */
int curve_read_allowed(const char *path, curve_pubkey_t **keys, size_t *n, char *err, size_t errlen);

/* Makes sock a CURVE server with the key pair (ZMQ_CURVE_SERVER,
 * ZMQ_CURVE_SECRETKEY, ZAP domain "tokshift").  Clients are then checked by
 * the ZAP handler bound at inproc://zeromq.zap.01 in the socket's context;
 * bind that handler before sock binds, or libzmq lets every client with the
 * server's public key in.  Call before bind.  Returns 0 or -1. */
int curve_setup_server(void *sock, const curve_keypair_t *kp, char *err, size_t errlen);

/* Makes sock a CURVE client with its key pair that accepts only the server
 * whose public key (Z85) is server_public.  Call before connect.  0 or -1. */
int curve_setup_client(void *sock, const curve_keypair_t *kp, const char *server_public, char *err,
                       size_t errlen);

/* Whether a ZeroMQ endpoint stays on this machine: ipc://, inproc://, or tcp
 * on a loopback address (127.x.y.z, ::1, localhost).  tcp://\*:N and every
 * other address are not.  1 or 0. */
int curve_endpoint_is_local(const char *endpoint);

/* Starts watching sock's handshakes: returns a PAIR socket (in ctx) that
 * receives sock's handshake-failure events; read it with curve_monitor_next,
 * close it with curve_monitor_close before sock is closed or ctx ends.
 * NULL with a message on failure. */
void *curve_monitor_open(void *ctx, void *sock, char *err, size_t errlen);

/* Reads one event without blocking.  Returns 1 with *ev filled, 0 when none
 * is waiting, -1 on a socket error. */
int curve_monitor_next(void *mon, curve_event_t *ev);

/* Says in words why a handshake failed ("security mechanism mismatch: ...").
 * Writes into buf (cap bytes) and returns it. */
const char *curve_event_describe(const curve_event_t *ev, char *buf, size_t cap);

/* Stops watching sock (may be NULL when it is already closed) and closes
 * *mon; NULL-safe, clears *mon. */
void curve_monitor_close(void *sock, void **mon);

/* Overwrites a key pair's secret in memory (explicit_bzero). NULL-safe. */
void curve_keypair_wipe(curve_keypair_t *kp);

#endif
