/* auth.c - see auth.h.
 *
 * The ZAP exchange (RFC 27), as the REP socket sees it:
 *
 *   request:  "1.0" | request id | domain | address | routing id | mechanism | credentials...
 *   reply:    "1.0" | request id | status ("200" | "400" | "500") | text | user id | metadata ("")
 *
 * For CURVE the one credential is the client's 32-byte public key.  A REP
 * socket must answer every request it receives, so even a malformed one
 * gets a reply (500). */
#include "auth.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "curve.h"
#include "log.h"
#include "now.h"
#include "ratelimit.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_MAX_FRAMES 16
#define ZAP_FRAME_MAX 1024 /* bytes of a frame we look at (a key is 32) */
#define PROCESS_BUDGET 256 /* requests answered per auth_process call */

/* One ZAP request's frames (each cut at ZAP_FRAME_MAX bytes; size is the
 * frame's real size). */
typedef struct {
    uint8_t data[ZAP_MAX_FRAMES][ZAP_FRAME_MAX];
    size_t size[ZAP_MAX_FRAMES];
    size_t n; /* frames kept (at most ZAP_MAX_FRAMES; the rest are read and dropped) */
} zap_req_t;

struct auth {
    void *ctx;     /* not owned */
    void *zap;     /* REP, bound at ZAP_ENDPOINT */
    void *monitor; /* PAIR receiving the watched socket's handshake failures, or NULL */
    curve_pubkey_t *keys; /* sorted by key bytes */
    size_t n_keys;
    ratelimit_keyed_t refusals, accepts; /* per peer and key */
    auth_stats_t stats;
    zap_req_t req; /* the request being answered (kept here: 16 KiB) */
};

static int key_cmp(const void *a, const void *b) {
    return memcmp(((const curve_pubkey_t *)a)->key, ((const curve_pubkey_t *)b)->key, CURVE_KEY_BYTES);
}

auth_t *auth_new(void *ctx, const char *allowed_path, char *err, size_t errlen) {
    auth_t *a = calloc(1, sizeof *a);
    if (!a) {
        log_seterr(err, errlen, "auth: out of memory");
        return NULL;
    }
    if (curve_read_allowed(allowed_path, &a->keys, &a->n_keys, err, errlen)) goto error;
    qsort(a->keys, a->n_keys, sizeof *a->keys, key_cmp);
    a->ctx = ctx;
    int linger = 0;
    a->zap = zmq_socket(ctx, ZMQ_REP);
    if (!a->zap || zmq_setsockopt(a->zap, ZMQ_LINGER, &linger, sizeof linger) || zmq_bind(a->zap, ZAP_ENDPOINT)) {
        log_seterr(err, errlen, "auth: binding the ZAP handler at %s: %s", ZAP_ENDPOINT, zmq_strerror(zmq_errno()));
        goto error;
    }
    /* Each refused peer and key: 3 lines, then one per 10 s; all of them
     * together 2 a second.  Acceptances: 5 per key, then one a minute. */
    ratelimit_keyed_init(&a->refusals, 0.1, 3, 2.0, 30, now_ms());
    ratelimit_keyed_init(&a->accepts, 1.0 / 60, 5, 2.0, 30, now_ms());
    return a;
error:
    auth_destroy(&a);
    return NULL;
}

int auth_watch(auth_t *a, void *sock, char *err, size_t errlen) {
    if (a->monitor) return log_seterr(err, errlen, "auth: already watching a socket");
    a->monitor = curve_monitor_open(a->ctx, sock, err, errlen);
    return a->monitor ? 0 : -1;
}

size_t auth_n_keys(const auth_t *a) { return a->n_keys; }

size_t auth_sockets(const auth_t *a, void **socks, size_t cap) {
    size_t n = 0;
    if (n < cap && a->zap) socks[n++] = a->zap;
    if (n < cap && a->monitor) socks[n++] = a->monitor;
    return n;
}

auth_stats_t auth_stats(const auth_t *a) { return a->stats; }

/* Receives one request without blocking.  1 got one, 0 none, -1 error. */
static int zap_recv(void *sock, zap_req_t *r) {
    r->n = 0;
    int more = 1, first = 1;
    while (more) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, sock, first ? ZMQ_DONTWAIT : 0) < 0) {
            int e = zmq_errno();
            zmq_msg_close(&f);
            if (first && (e == EAGAIN || e == EINTR)) return 0;
            return -1;
        }
        first = 0;
        if (r->n < ZAP_MAX_FRAMES) {
            size_t sz = zmq_msg_size(&f);
            r->size[r->n] = sz;
            memcpy(r->data[r->n], zmq_msg_data(&f), sz < ZAP_FRAME_MAX ? sz : ZAP_FRAME_MAX);
            r->n++;
        }
        more = zmq_msg_more(&f);
        zmq_msg_close(&f);
    }
    return 1;
}

/* Whether frame i of r is exactly the string s. */
static int frame_is(const zap_req_t *r, size_t i, const char *s) {
    size_t n = strlen(s);
    return i < r->n && r->size[i] == n && !memcmp(r->data[i], s, n);
}

/* Frame i as printable text in out (for logs). */
static const char *frame_text(const zap_req_t *r, size_t i, char *out, size_t cap) {
    size_t o = 0;
    if (i >= r->n) {
        snprintf(out, cap, "?");
        return out;
    }
    size_t n = r->size[i] < ZAP_FRAME_MAX ? r->size[i] : ZAP_FRAME_MAX;
    for (size_t k = 0; k < n && o + 1 < cap; k++) {
        uint8_t c = r->data[i][k];
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[o] = 0;
    if (!o) snprintf(out, cap, "?");
    return out;
}

static void zap_reply(void *sock, const zap_req_t *r, const char *status, const char *text, const char *user) {
    const void *id = r->n > 1 ? (const void *)r->data[1] : (const void *)"";
    size_t id_len = r->n > 1 ? (r->size[1] < ZAP_FRAME_MAX ? r->size[1] : ZAP_FRAME_MAX) : 0;
    if (zmq_send(sock, "1.0", 3, ZMQ_SNDMORE) < 0 || zmq_send(sock, id, id_len, ZMQ_SNDMORE) < 0 ||
        zmq_send(sock, status, strlen(status), ZMQ_SNDMORE) < 0 ||
        zmq_send(sock, text, strlen(text), ZMQ_SNDMORE) < 0 ||
        zmq_send(sock, user, strlen(user), ZMQ_SNDMORE) < 0 || zmq_send(sock, "", 0, 0) < 0)
        log_error("auth: answering a ZAP request: %s", zmq_strerror(zmq_errno()));
}

/* Logs a refusal, rate-limited per address and reason. */
static void refused(auth_t *a, const char *fmt_addr, const char *why) {
    uint64_t held = 0;
    char key[RATELIMIT_KEY_MAX];
    a->stats.refused++;
    /* A key is the address and the start of the reason (RATELIMIT_KEY_MAX
     * bytes in all): enough to tell refusals apart. */
    _Static_assert(40 + 1 + 54 < RATELIMIT_KEY_MAX, "the key's parts must fit");
    snprintf(key, sizeof key, "%.40s %.54s", fmt_addr, why);
    if (!ratelimit_keyed_allow(&a->refusals, key, now_ms(), &held)) return;
    if (held)
        log_warn("refused a worker at %s: %s (%llu more times since the last such line)", fmt_addr, why,
                 (unsigned long long)held);
    else
        log_warn("refused a worker at %s: %s", fmt_addr, why);
}

static void zap_handle(auth_t *a, const zap_req_t *r) {
    char addr[80], mech[32], why[256];
    frame_text(r, 3, addr, sizeof addr);
    if (r->n < 6 || !frame_is(r, 0, "1.0")) {
        refused(a, addr, "malformed ZAP request");
        zap_reply(a->zap, r, "500", "malformed ZAP request", "");
        return;
    }
    if (!frame_is(r, 5, "CURVE")) {
        snprintf(why, sizeof why, "security mechanism %s (only CURVE is accepted)", frame_text(r, 5, mech, sizeof mech));
        refused(a, addr, why);
        zap_reply(a->zap, r, "400", "only CURVE clients are accepted", "");
        return;
    }
    if (r->n != 7 || r->size[6] != CURVE_KEY_BYTES) {
        refused(a, addr, "CURVE request without a 32-byte client key");
        zap_reply(a->zap, r, "400", "bad CURVE credentials", "");
        return;
    }
    curve_pubkey_t probe;
    memcpy(probe.key, r->data[6], CURVE_KEY_BYTES);
    const curve_pubkey_t *k = bsearch(&probe, a->keys, a->n_keys, sizeof *a->keys, key_cmp);
    char z85[CURVE_Z85_LEN + 1];
    if (!zmq_z85_encode(z85, r->data[6], CURVE_KEY_BYTES)) snprintf(z85, sizeof z85, "?");
    if (!k) {
        snprintf(why, sizeof why, "CURVE key %.8s... is not in --curve-clients (%zu keys allowed)", z85, a->n_keys);
        refused(a, addr, why);
        zap_reply(a->zap, r, "400", "unknown client key", "");
        return;
    }
    a->stats.accepted++;
    uint64_t held = 0;
    if (ratelimit_keyed_allow(&a->accepts, k->name, now_ms(), &held))
        log_info("accepted worker key '%s' (%.8s...) from %s%s", k->name, z85, addr,
                 held ? " (earlier acceptances not logged)" : "");
    zap_reply(a->zap, r, "200", "OK", k->name);
}

/* Logs the watched socket's handshake failures.  Refusals by the ZAP
 * handler were logged when they were decided. */
static void monitor_drain(auth_t *a) {
    curve_event_t ev;
    char what[256];
    for (int i = 0; i < PROCESS_BUDGET; i++) {
        int r = curve_monitor_next(a->monitor, &ev);
        if (r <= 0) return;
        if (ev.event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) continue;
        a->stats.failed_handshakes++;
        uint64_t held = 0;
        char key[RATELIMIT_KEY_MAX];
        snprintf(key, sizeof key, "event %d %u %.64s", ev.event, (unsigned)ev.value, ev.endpoint);
        if (!ratelimit_keyed_allow(&a->refusals, key, now_ms(), &held)) continue;
        log_warn("refused a peer connecting to %s: %s%s", ev.endpoint, curve_event_describe(&ev, what, sizeof what),
                 held ? " (repeated; not every time logged)" : "");
    }
}

int auth_process(auth_t *a) {
    int answered = 0;
    zap_req_t *r = &a->req;
    while (answered < PROCESS_BUDGET) {
        int got = zap_recv(a->zap, r);
        if (got < 0) log_error("auth: receiving a ZAP request: %s", zmq_strerror(zmq_errno()));
        if (got <= 0) break;
        zap_handle(a, r);
        answered++;
    }
    if (a->monitor) monitor_drain(a);
    return answered;
}

void auth_destroy(auth_t **self_p) {
    if (!self_p || !*self_p) return;
    auth_t *a = *self_p;
    curve_monitor_close(NULL, &a->monitor);
    if (a->zap) zmq_close(a->zap);
    free(a->keys);
    free(a);
    *self_p = NULL;
}
