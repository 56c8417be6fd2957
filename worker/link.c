/* link.c - see link.h. */
#include "link.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "log.h"
#include "now.h"
#include "ratelimit.h"

struct link {
    void *ctx;
    void *pipe; /* our end of the inproc PAIR */
    pthread_t thread;
    int started;
    char *endpoint;
    uint8_t *hello;
    size_t hello_len;
    link_opts_t o;
    atomic_int reconnects;
    char pipe_name[64];
    /* Security (link thread only, after link_new): CURVE keys when secure,
     * the DEALER's handshake monitor, and limits on what a peer can make us
     * log. */
    int secure;
    link_curve_t curve;
    void *mon;
    ratelimit_t bad_log, handshake_log, alive_log;
    char *alive_file; /* link_opts_t.alive_file, ours */
    /* The job's progress, set by the worker's thread (link_progress) and
     * sent with every heartbeat by the link thread. */
    pthread_mutex_t progress_mu;
    wire_msg_t progress; /* a HEARTBEAT */
};

/* Opens a DEALER to the coordinator and sends HELLO; NULL on failure. */
static void *dealer_open(link_t *l) {
    char err[LOG_ERRLEN];
    void *s = zmq_socket(l->ctx, ZMQ_DEALER);
    if (!s) return NULL;
    err[0] = 0;
    if (wire_socket_setup(s, err, sizeof err) ||
        (l->secure && curve_setup_client(s, &l->curve.keys, l->curve.server_key, err, sizeof err)) ||
        zmq_connect(s, l->endpoint) != 0) {
        log_error("cannot connect to %s: %s", l->endpoint, err[0] ? err : zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    if (!(l->mon = curve_monitor_open(l->ctx, s, err, sizeof err))) log_warn("link: %s", err);
    if (zmq_send(s, l->hello, l->hello_len, ZMQ_DONTWAIT) < 0)
        log_debug("HELLO queued later: %s", zmq_strerror(zmq_errno()));
    return s;
}

/* Closes the DEALER s and its monitor. */
static void dealer_close(link_t *l, void *s) {
    curve_monitor_close(s, &l->mon);
    zmq_close(s);
}

/* Logs the DEALER's failed handshakes (rate-limited: libzmq retries a
 * refused connection ten times a second), with what to do about them. */
static void handshake_events(link_t *l) {
    curve_event_t ev;
    char what[256];
    while (l->mon && curve_monitor_next(l->mon, &ev) == 1) {
        uint64_t held = 0;
        if (!ratelimit_allow(&l->handshake_log, now_ms(), &held)) continue;
        const char *hint = "";
        int mismatch = ev.event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
                       ev.value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH;
        if (ev.event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            hint = l->secure ? ": add this worker's public key to the coordinator's --curve-clients" : "";
        else if (!l->secure && (mismatch || ev.event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL))
            hint = ": if the coordinator uses CURVE, give --curve-secret and --curve-server-key";
        else if (mismatch)
            hint = ": the coordinator does not use CURVE";
        else if (ev.event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            hint = ": the coordinator closed the handshake (is --curve-server-key its public key?)";
        log_error("the handshake with the coordinator at %s failed: %s%s%s", l->endpoint,
                  curve_event_describe(&ev, what, sizeof what), hint, held ? " (repeated; not all logged)" : "");
    }
}

/* Touches the alive file, creating it if missing.  A file we cannot write
 * is logged (rate-limited) and otherwise ignored: the probe that reads it
 * finds it stale and restarts us, which is the remedy anyway. */
static void alive_touch(link_t *l, int64_t now) {
    if (!l->alive_file || utimensat(AT_FDCWD, l->alive_file, NULL, 0) == 0) return;
    int fd = errno == ENOENT ? open(l->alive_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644) : -1;
    if (fd >= 0) {
        close(fd);
        return;
    }
    uint64_t held = 0;
    if (ratelimit_allow(&l->alive_log, now, &held))
        log_warn("link: cannot touch --alive-file %s: %s%s", l->alive_file, strerror(errno),
                 held ? " (repeated; not all logged)" : "");
}

static void *link_main(void *arg) {
    link_t *l = arg;
    void *pipe = zmq_socket(l->ctx, ZMQ_PAIR);
    if (!pipe || zmq_connect(pipe, l->pipe_name) != 0) {
        log_error("link: inproc pipe: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    void *dealer = dealer_open(l);
    int interval = l->o.heartbeat_ms, liveness = l->o.liveness, backoff = l->o.reconnect_ms;
    int64_t last_heard = now_ms(), next_beat = now_ms() + interval, reconnect_at = 0;
    char err[LOG_ERRLEN];
    alive_touch(l, last_heard);
    for (;;) {
        zmq_pollitem_t items[3] = {{pipe, 0, ZMQ_POLLIN, 0}, {dealer, 0, ZMQ_POLLIN, 0}, {l->mon, 0, ZMQ_POLLIN, 0}};
        int64_t now = now_ms();
        int64_t wake = dealer ? next_beat : reconnect_at;
        long timeout = wake > now ? (long)(wake - now) : 0;
        int rc = zmq_poll(items, dealer ? (l->mon ? 3 : 2) : 1, timeout);
        if (rc < 0 && zmq_errno() == ETERM) break;
        if (rc < 0 && zmq_errno() != EINTR) {
            log_error("link: poll: %s", zmq_strerror(zmq_errno()));
            break;
        }
        now = now_ms();
        if (dealer) handshake_events(l);
        if (items[0].revents & ZMQ_POLLIN) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, pipe, 0) < 0) {
                zmq_msg_close(&m);
                break;
            }
            size_t len = zmq_msg_size(&m);
            if (len == 0) { /* the worker asks us to stop */
                zmq_msg_close(&m);
                break;
            }
            if (dealer && zmq_msg_send(&m, dealer, ZMQ_DONTWAIT) < 0)
                log_warn("link: message to the coordinator dropped: %s", zmq_strerror(zmq_errno()));
            zmq_msg_close(&m);
        }
        if (dealer && (items[1].revents & ZMQ_POLLIN)) {
            wire_msg_t m;
            memset(&m, 0, sizeof m);
            rc = wire_recv(dealer, NULL, NULL, &m, ZMQ_DONTWAIT, err, sizeof err);
            if (rc == 0) {
                last_heard = now;
                backoff = l->o.reconnect_ms;
                if (m.type == WIRE_WELCOME) {
                    if (m.u.welcome.heartbeat_ms > 0) interval = m.u.welcome.heartbeat_ms;
                    if (m.u.welcome.liveness > 0) liveness = m.u.welcome.liveness;
                    /* A shorter interval applies now, not after the beat
                     * planned with our own (else the coordinator may
                     * presume us dead before it). */
                    if (next_beat > now + interval) next_beat = now + interval;
                }
                if (m.type != WIRE_HEARTBEAT) {
                    uint8_t *buf;
                    size_t len;
                    if (wire_encode(&m, &buf, &len, err, sizeof err) == 0) {
                        zmq_send(pipe, buf, len, 0);
                        free(buf);
                    } else {
                        log_error("link: %s", err);
                    }
                }
                wire_msg_clear(&m);
            } else if (rc < 0) {
                uint64_t held = 0;
                if (ratelimit_allow(&l->bad_log, now, &held))
                    log_warn("link: bad message from the coordinator at %s: %s%s", l->endpoint, err,
                             held ? " (earlier bad messages not logged)" : "");
            }
        }
        if (dealer && now >= next_beat) {
            pthread_mutex_lock(&l->progress_mu);
            wire_msg_t hb = l->progress;
            pthread_mutex_unlock(&l->progress_mu);
            uint8_t *beat = NULL;
            size_t beat_len = 0;
            if (wire_encode(&hb, &beat, &beat_len, err, sizeof err) == 0)
                zmq_send(dealer, beat, beat_len, ZMQ_DONTWAIT);
            else
                log_error("link: %s", err);
            free(beat);
            next_beat = now + interval;
            alive_touch(l, now);
        }
        if (dealer && now - last_heard > (int64_t)interval * liveness) {
            log_warn("coordinator at %s silent for %lld ms; reconnecting in %d ms", l->endpoint,
                     (long long)(now - last_heard), backoff);
            dealer_close(l, dealer);
            dealer = NULL;
            reconnect_at = now + backoff;
            backoff = backoff * 2 > l->o.reconnect_max_ms ? l->o.reconnect_max_ms : backoff * 2;
        }
        if (!dealer && now >= reconnect_at) {
            dealer = dealer_open(l);
            atomic_fetch_add(&l->reconnects, 1);
            alive_touch(l, now);
            last_heard = now;
            next_beat = now + interval;
            if (!dealer) reconnect_at = now + backoff;
        }
    }
    if (dealer) dealer_close(l, dealer);
    zmq_close(pipe);
    return NULL;
}

link_t *link_new(const char *endpoint, const wire_msg_t *hello, const link_opts_t *opts, char *err, size_t errlen) {
    return link_new_curve(endpoint, hello, opts, NULL, err, errlen);
}

link_t *link_new_curve(const char *endpoint, const wire_msg_t *hello, const link_opts_t *opts,
                       const link_curve_t *curve, char *err, size_t errlen) {
    static atomic_int seq;
    link_t *l = calloc(1, sizeof *l);
    if (!l) {
        log_seterr(err, errlen, "link: out of memory");
        return NULL;
    }
    pthread_mutex_init(&l->progress_mu, NULL);
    l->progress.type = WIRE_HEARTBEAT;
    if (curve) {
        l->secure = 1;
        l->curve = *curve;
    }
    ratelimit_init(&l->bad_log, 1.0, 20, now_ms());
    ratelimit_init(&l->handshake_log, 0.1, 3, now_ms());
    ratelimit_init(&l->alive_log, 0.01, 1, now_ms());
    l->o = (link_opts_t){1000, 5, 500, 32000, NULL};
    if (opts) {
        if (opts->heartbeat_ms > 0) l->o.heartbeat_ms = opts->heartbeat_ms;
        if (opts->liveness > 0) l->o.liveness = opts->liveness;
        if (opts->reconnect_ms > 0) l->o.reconnect_ms = opts->reconnect_ms;
        if (opts->reconnect_max_ms > 0) l->o.reconnect_max_ms = opts->reconnect_max_ms;
        if (opts->alive_file && !(l->alive_file = strdup(opts->alive_file))) goto oom;
    }
    snprintf(l->pipe_name, sizeof l->pipe_name, "inproc://tokshift-link-%d", atomic_fetch_add(&seq, 1));
    if (!(l->endpoint = strdup(endpoint))) goto oom;
    if (wire_encode(hello, &l->hello, &l->hello_len, err, errlen)) goto error;
    if (!(l->ctx = zmq_ctx_new()) || !(l->pipe = zmq_socket(l->ctx, ZMQ_PAIR)) || zmq_bind(l->pipe, l->pipe_name)) {
        log_seterr(err, errlen, "link: %s", zmq_strerror(zmq_errno()));
        goto error;
    }
    int linger = 0;
    zmq_setsockopt(l->pipe, ZMQ_LINGER, &linger, sizeof linger);
    if (pthread_create(&l->thread, NULL, link_main, l) != 0) {
        log_seterr(err, errlen, "link: cannot start its thread");
        goto error;
    }
    l->started = 1;
    return l;
oom:
    log_seterr(err, errlen, "link: out of memory");
error:
    link_destroy(&l);
    return NULL;
}

void link_destroy(link_t **self_p) {
    if (!self_p || !*self_p) return;
    link_t *l = *self_p;
    if (l->started) {
        zmq_send(l->pipe, "", 0, 0); /* stop */
        pthread_join(l->thread, NULL);
    }
    if (l->pipe) zmq_close(l->pipe);
    if (l->ctx) zmq_ctx_term(l->ctx);
    free(l->endpoint);
    free(l->alive_file);
    free(l->hello);
    explicit_bzero(&l->curve, sizeof l->curve);
    pthread_mutex_destroy(&l->progress_mu);
    free(l);
    *self_p = NULL;
}

int link_send(link_t *l, const wire_msg_t *m, char *err, size_t errlen) {
    uint8_t *buf;
    size_t len;
    if (wire_encode(m, &buf, &len, err, errlen)) return -1;
    int rc = zmq_send(l->pipe, buf, len, 0) < 0 ? log_seterr(err, errlen, "link: %s", zmq_strerror(zmq_errno())) : 0;
    free(buf);
    return rc;
}

int link_recv(link_t *l, wire_msg_t *m, int timeout_ms, char *err, size_t errlen) {
    zmq_pollitem_t it = {l->pipe, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&it, 1, timeout_ms);
    if (rc < 0) return zmq_errno() == EINTR ? 1 : log_seterr(err, errlen, "link: %s", zmq_strerror(zmq_errno()));
    if (rc == 0) return 1;
    return wire_recv(l->pipe, NULL, NULL, m, 0, err, errlen);
}

int link_reconnects(const link_t *l) { return atomic_load(&((link_t *)l)->reconnects); }

void link_progress(link_t *l, int busy, int64_t job_id, int64_t tokens, int64_t bytes, int32_t docs) {
    wire_msg_t hb = {.type = WIRE_HEARTBEAT};
    if (busy) {
        hb.u.heartbeat.busy = 1;
        hb.u.heartbeat.job_id = job_id;
        hb.u.heartbeat.tokens = tokens;
        hb.u.heartbeat.bytes = bytes;
        hb.u.heartbeat.docs = docs;
    }
    pthread_mutex_lock(&l->progress_mu);
    l->progress = hb;
    pthread_mutex_unlock(&l->progress_mu);
}
