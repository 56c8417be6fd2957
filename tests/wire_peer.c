/* wire_peer.c - hostile and broken ZeroMQ peers for the end-to-end tests.
 *
 *   wire_peer hello EP IDENTITY SECONDS
 *       a plain NULL-mechanism client (no CURVE): connects a DEALER to EP,
 *       says HELLO (with the run's model IDENTITY) and READY every second,
 *       and counts what comes back.  Exit 0 when nothing came back in
 *       SECONDS (refused), 1 when something did.
 *
 *   wire_peer flood EP IDENTITY SECONDS
 *       garbage to a live coordinator for SECONDS: random frames, truncated
 *       and wrong-version envelopes, valid protobuf with absurd values,
 *       unknown and missing payloads, multipart junk, valid messages out of
 *       order (READY before HELLO, DONE and FAILED for jobs it does not hold
 *       with made-up tokens), one frame over WIRE_MAX_FRAME, and raw TCP
 *       bytes that are not ZMTP; then checks that the coordinator still
 *       answers a proper HELLO with WELCOME.  Exit 0 when it does.
 *
 *   wire_peer proxy LISTEN_EP UPSTREAM_EP SECONDS
 *       a fake coordinator in front of the real one, for one worker: it
 *       answers the worker's HELLO with a burst of garbage and a frame over
 *       WIRE_MAX_FRAME (libzmq in the worker drops that connection as a
 *       protocol error, for good; the worker's link, hearing nothing for
 *       heartbeat x liveness, opens a new one and says HELLO again), then
 *       holds the HELLO back until the worker is on a new connection, and
 *       forwards everything both ways while injecting
 *       garbage towards the worker every 25 ms, including JOBs the
 *       coordinator never gave (another run's; a job id that does not
 *       exist) whose rows must never be written.  Runs until SIGTERM or
 *       SECONDS; exit 0.
 *
 * Every mode prints what it sent, by kind, on stderr.  What it is not: a
 * fuzzer with coverage feedback (test_wire fuzzes the decoder); this shows
 * the live processes survive garbage and keep doing their work. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "log.h"
#include "wire.h"
#include "now.h"

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}
static size_t rnd_below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

/* ---- a protobuf writer, for messages wire_encode would refuse ------------- */

typedef struct {
    uint8_t b[4096];
    size_t n;
} pb_t;

static void pb_raw(pb_t *p, const void *d, size_t n) {
    if (p->n + n <= sizeof p->b) memcpy(p->b + p->n, d, n), p->n += n;
}
static void pb_varint(pb_t *p, uint64_t v) {
    do {
        uint8_t c = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) c |= 0x80;
        pb_raw(p, &c, 1);
    } while (v);
}
static void pb_tag(pb_t *p, unsigned field, unsigned wt) { pb_varint(p, (uint64_t)field << 3 | wt); }
static void pb_int(pb_t *p, unsigned f, int64_t v) { pb_tag(p, f, 0), pb_varint(p, (uint64_t)v); }
static void pb_f64(pb_t *p, unsigned f, double v) { pb_tag(p, f, 1), pb_raw(p, &v, 8); }
static void pb_f32(pb_t *p, unsigned f, float v) { pb_tag(p, f, 5), pb_raw(p, &v, 4); }
static void pb_bytes(pb_t *p, unsigned f, const void *d, size_t n) { pb_tag(p, f, 2), pb_varint(p, n), pb_raw(p, d, n); }
static void pb_str(pb_t *p, unsigned f, const char *s) { pb_bytes(p, f, s, strlen(s)); }
/* An Envelope of version v around payload type t (body may be empty). */
static pb_t envelope(uint32_t v, int t, const pb_t *body) {
    pb_t e = {.n = 0};
    pb_int(&e, 1, v);
    if (t) pb_bytes(&e, (unsigned)(10 + t), body ? body->b : NULL, body ? body->n : 0);
    return e;
}

/* ---- sending -------------------------------------------------------------- */

/* Sends one frame (to peer first when peer is given: a ROUTER). */
static void send_frame(void *s, const void *peer, size_t peer_len, const void *d, size_t n) {
    if (peer) zmq_send(s, peer, peer_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(s, d, n, ZMQ_DONTWAIT);
}

static void send_msg(void *s, const void *peer, size_t peer_len, const wire_msg_t *m) {
    uint8_t *buf;
    size_t len;
    char err[LOG_ERRLEN];
    if (wire_encode(m, &buf, &len, err, sizeof err)) {
        fprintf(stderr, "wire_peer: cannot encode %s: %s\n", wire_type_name(m->type), err);
        exit(2);
    }
    send_frame(s, peer, peer_len, buf, len);
    free(buf);
}

static void unmap(void *data, void *hint) { munmap(data, (size_t)(uintptr_t)hint); }

/* One frame of WIRE_MAX_FRAME + 1 bytes (zero pages, no real memory). */
static void send_oversized(void *s, const void *peer, size_t peer_len) {
    size_t n = (size_t)WIRE_MAX_FRAME + 1;
    void *p = mmap(NULL, n, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    zmq_msg_t m;
    zmq_msg_init_data(&m, p, n, unmap, (void *)(uintptr_t)n);
    if (peer) zmq_send(s, peer, peer_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (zmq_msg_send(&m, s, ZMQ_DONTWAIT) < 0) zmq_msg_close(&m);
}

enum {
    K_RANDOM, K_EMPTY, K_TRUNCATED, K_VERSION, K_ABSURD, K_UNKNOWN, K_MULTIPART, K_ORDER, K_OVERSIZED, K_TCP, K_FORGED_JOB,
    K_N
};
static const char *kind_names[K_N] = {"random frames", "empty frames", "truncated envelopes",
                                      "wrong versions", "absurd values", "unknown/missing payloads",
                                      "multipart junk", "out-of-order messages", "oversized frames",
                                      "raw TCP junk", "forged jobs"};
static unsigned long sent[K_N];

static void print_counts(const char *who) {
    unsigned long total = 0;
    for (int k = 0; k < K_N; k++) total += sent[k];
    fprintf(stderr, "wire_peer %s: %lu hostile messages:", who, total);
    for (int k = 0; k < K_N; k++)
        if (sent[k]) fprintf(stderr, " %s %lu;", kind_names[k], sent[k]);
    fprintf(stderr, "\n");
}

/* A valid message to truncate or re-version, for the given direction. */
static wire_msg_t sample_msg(int to_worker, const char *identity, int64_t run_id) {
    static wire_doc_t doc = {3, "Once upon a time", 16, NULL, 0};
    static int32_t cuts[2] = {4, 8};
    wire_msg_t m = {.type = WIRE_HEARTBEAT};
    switch (rnd_below(3) + (to_worker ? 3 : 0)) {
    case 0:
        m.type = WIRE_HELLO;
        m.u.hello.worker = "garbage";
        m.u.hello.host = "nowhere";
        m.u.hello.pid = 1;
        m.u.hello.model_identity = (char *)identity;
        break;
    case 1:
        m.type = WIRE_DONE;
        m.u.done.job_id = 1;
        m.u.done.attempt_token = rnd() >> 1;
        m.u.done.n_tokens = 100;
        break;
    case 2:
        m.type = WIRE_FAILED;
        m.u.failed.job_id = 0;
        m.u.failed.error = "a long enough error text to cut somewhere in the middle";
        break;
    case 3:
        m.type = WIRE_WELCOME;
        m.u.welcome.run_id = run_id;
        m.u.welcome.model_identity = (char *)identity;
        m.u.welcome.settings = (wire_settings_t){64, 32, cuts, 2, 0, 8, 2, 1.0f, 0, 1.0f, 7, 0, NULL, NULL, 0};
        m.u.welcome.heartbeat_ms = 1000;
        m.u.welcome.liveness = 5;
        break;
    default:
        m.type = WIRE_JOB;
        m.u.job.run_id = run_id;
        m.u.job.job_id = 900000 + (int64_t)rnd_below(1000);
        m.u.job.attempt_token = rnd() >> 1;
        m.u.job.docs = &doc;
        m.u.job.n_docs = 1;
    }
    return m;
}

/* Sends one hostile message of kind k on s (to peer, on a ROUTER). */
static void hostile(int k, void *s, const void *peer, size_t peer_len, int to_worker, const char *identity,
                    int64_t run_id) {
    uint8_t buf[2048];
    pb_t body = {.n = 0}, e;
    switch (k) {
    case K_RANDOM: {
        size_t n = 1 + rnd_below(sizeof buf - 1);
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rnd();
        send_frame(s, peer, peer_len, buf, n);
        break;
    }
    case K_EMPTY:
        send_frame(s, peer, peer_len, "", 0);
        break;
    case K_TRUNCATED:
    case K_VERSION: {
        wire_msg_t m = sample_msg(to_worker, identity, run_id);
        uint8_t *enc;
        size_t len;
        char err[LOG_ERRLEN];
        if (wire_encode(&m, &enc, &len, err, sizeof err)) return;
        if (k == K_TRUNCATED && len > 1) {
            send_frame(s, peer, peer_len, enc, 1 + rnd_below(len - 1));
        } else if (len >= 2 && enc[0] == 0x08 && enc[1] == WIRE_PROTOCOL_VERSION) {
            static const uint32_t versions[] = {0, 2, 3, 255, 1000000, 0xffffffffu};
            pb_t v = {.n = 0};
            pb_int(&v, 1, versions[rnd_below(6)]);
            pb_raw(&v, enc + 2, len - 2);
            send_frame(s, peer, peer_len, v.b, v.n);
        }
        free(enc);
        break;
    }
    case K_ABSURD: /* valid protobuf, values out of their bounds */
        switch (rnd_below(to_worker ? 6 : 7) + (to_worker ? 7 : 0)) {
        case 0: pb_str(&body, 1, "w"), pb_int(&body, 3, -1), e = envelope(1, WIRE_HELLO, &body); break;
        case 1: pb_str(&body, 5, "not-a-sha256"), e = envelope(1, WIRE_HELLO, &body); break;
        case 2: pb_int(&body, 1, 1), pb_int(&body, 3, -5), e = envelope(1, WIRE_DONE, &body); break;
        case 3: pb_int(&body, 1, 1), pb_f64(&body, 5, NAN), e = envelope(1, WIRE_DONE, &body); break;
        case 4: pb_int(&body, 1, -1), e = envelope(1, WIRE_FAILED, &body); break;
        case 5: pb_int(&body, 1, 1), pb_bytes(&body, 3, "\xff\xfe", 2), e = envelope(1, WIRE_FAILED, &body); break;
        case 6: pb_int(&body, 1, 2), pb_int(&body, 7, 5), e = envelope(1, WIRE_DONE, &body); break;
        case 7: { /* WELCOME: window 1, heartbeat 0, top_p 2 */
            pb_t set = {.n = 0};
            pb_int(&set, 1, 1), pb_f32(&set, 9, 2.0f);
            pb_int(&body, 1, run_id), pb_bytes(&body, 3, set.b, set.n), pb_int(&body, 4, 0);
            e = envelope(1, WIRE_WELCOME, &body);
            break;
        }
        case 8: pb_int(&body, 1, -3), pb_int(&body, 2, 1), e = envelope(1, WIRE_JOB, &body); break;
        case 9: { /* a JOB whose document text holds a NUL and invalid UTF-8 */
            pb_t doc = {.n = 0};
            pb_int(&doc, 1, 0), pb_bytes(&doc, 2, "ab\0c\xc0\x80", 6);
            pb_int(&body, 1, run_id), pb_int(&body, 2, 1), pb_bytes(&body, 4, doc.b, doc.n);
            e = envelope(1, WIRE_JOB, &body);
            break;
        }
        case 10: { /* a JOB of 250 documents, each with a negative id */
            pb_t doc = {.n = 0};
            pb_int(&doc, 1, -1);
            pb_int(&body, 1, run_id), pb_int(&body, 2, 2);
            for (int i = 0; i < 250; i++) pb_bytes(&body, 4, doc.b, doc.n);
            e = envelope(1, WIRE_JOB, &body);
            break;
        }
        case 11: pb_int(&body, 1, run_id), pb_str(&body, 2, "XYZ"), e = envelope(1, WIRE_WELCOME, &body); break;
        default: pb_bytes(&body, 1, "\xff", 1), e = envelope(1, WIRE_SHUTDOWN, &body); break;
        }
        send_frame(s, peer, peer_len, e.b, e.n);
        break;
    case K_UNKNOWN:
        if (rnd_below(2)) {
            pb_int(&body, 1, 1);
            e = envelope(1, 0, NULL);
            pb_bytes(&e, 30, body.b, body.n); /* payload field 30: a type nobody knows */
        } else {
            e = envelope(1, 0, NULL); /* version only */
        }
        send_frame(s, peer, peer_len, e.b, e.n);
        break;
    case K_MULTIPART: {
        int parts = 2 + (int)rnd_below(4);
        wire_msg_t hb = {.type = WIRE_HEARTBEAT};
        uint8_t *enc;
        size_t len;
        char err[LOG_ERRLEN];
        if (wire_encode(&hb, &enc, &len, err, sizeof err)) return;
        if (peer) zmq_send(s, peer, peer_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        for (int i = 0; i < parts; i++) zmq_send(s, enc, len, i + 1 < parts ? ZMQ_SNDMORE | ZMQ_DONTWAIT : ZMQ_DONTWAIT);
        free(enc);
        break;
    }
    case K_ORDER: { /* valid messages a peer in its state must not send */
        wire_msg_t m = {.type = WIRE_READY};
        if (to_worker) {
            m.type = rnd_below(2) ? WIRE_READY : WIRE_DONE;
            m.u.done.job_id = 1;
        } else {
            switch (rnd_below(4)) {
            case 0: break; /* READY before HELLO */
            case 1:
                m.type = WIRE_DONE;
                m.u.done.job_id = (int64_t)rnd_below(8);
                m.u.done.attempt_token = rnd() >> 1;
                m.u.done.n_tokens = 12345;
                m.u.done.n_docs = 1;
                break;
            case 2:
                m.type = WIRE_FAILED;
                m.u.failed.job_id = (int64_t)rnd_below(8);
                m.u.failed.attempt_token = rnd() >> 1;
                m.u.failed.error = "forged failure";
                m.u.failed.retryable = 0;
                break;
            default: m.type = WIRE_JOB; m.u.job.run_id = 1; m.u.job.job_id = 1; break;
            }
        }
        send_msg(s, peer, peer_len, &m);
        break;
    }
    default: return;
    }
    sent[k]++;
}

/* ---- raw TCP junk ------------------------------------------------------------ */

/* Connects a plain TCP socket to the host:port of a tcp:// endpoint, writes
 * junk (random bytes, an HTTP request, a ZMTP greeting of another version)
 * and closes it. */
static void tcp_junk(const char *ep, int variant) {
    const char *h = strstr(ep, "://"), *colon = strrchr(ep, ':');
    if (!h || !colon) return;
    h += 3;
    char host[64];
    snprintf(host, sizeof host, "%.*s", (int)(colon - h), h);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) return;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        uint8_t junk[512];
        size_t n;
        if (variant == 0) {
            n = sizeof junk;
            for (size_t i = 0; i < n; i++) junk[i] = (uint8_t)rnd();
        } else if (variant == 1) {
            n = (size_t)snprintf((char *)junk, sizeof junk, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        } else { /* a ZMTP signature, then version 9 and mechanism "PLAIN" */
            static const uint8_t g[] = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 9, 0, 'P', 'L', 'A', 'I', 'N'};
            memcpy(junk, g, sizeof g);
            memset(junk + sizeof g, 0, 64 - sizeof g);
            n = 64;
        }
        ssize_t w = write(fd, junk, n);
        (void)w;
        usleep(20 * 1000);
    }
    close(fd);
    sent[K_TCP]++;
}

/* ---- modes ----------------------------------------------------------------- */

static void *dealer(void *ctx, const char *ep, const char *routing_id) {
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (routing_id) zmq_setsockopt(s, ZMQ_ROUTING_ID, routing_id, strlen(routing_id));
    if (zmq_connect(s, ep) != 0) {
        fprintf(stderr, "wire_peer: cannot connect to %s: %s\n", ep, zmq_strerror(zmq_errno()));
        exit(2);
    }
    return s;
}

static int mode_hello(const char *ep, const char *identity, int seconds) {
    void *ctx = zmq_ctx_new(), *s = dealer(ctx, ep, "null-client");
    wire_msg_t hello = {.type = WIRE_HELLO}, ready = {.type = WIRE_READY};
    hello.u.hello.worker = "null-client";
    hello.u.hello.host = "localhost";
    hello.u.hello.pid = (int32_t)getpid();
    hello.u.hello.model_identity = (char *)identity;
    int got = 0;
    int64_t end = now_ms() + seconds * 1000, next = 0;
    while (now_ms() < end && !g_stop) {
        if (now_ms() >= next) {
            send_msg(s, NULL, 0, &hello);
            send_msg(s, NULL, 0, &ready);
            next = now_ms() + 1000;
        }
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) > 0) {
            char buf[256];
            while (zmq_recv(s, buf, sizeof buf, ZMQ_DONTWAIT) >= 0) got++;
        }
    }
    fprintf(stderr, "wire_peer hello: %d frames received from %s in %d s\n", got, ep, seconds);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return got ? 1 : 0;
}

static int mode_flood(const char *ep, const char *identity, int seconds) {
    void *ctx = zmq_ctx_new();
    /* Several peers: anonymous ones and named ones (printable and not). */
    void *peers[4] = {dealer(ctx, ep, NULL), dealer(ctx, ep, NULL), dealer(ctx, ep, "garbage-1"),
                      dealer(ctx, ep, "\x01\x02\xff")};
    int64_t end = now_ms() + seconds * 1000;
    int round = 0;
    while (now_ms() < end && !g_stop) {
        void *s = peers[rnd_below(4)];
        for (int k = 0; k <= K_ORDER; k++) hostile(k, s, NULL, 0, 0, identity, 1);
        if (round % 25 == 0) tcp_junk(ep, (round / 25) % 3);
        if (round == 10) { /* over the limit: this connection is dropped, and reconnects */
            void *big = dealer(ctx, ep, NULL);
            usleep(50 * 1000);
            send_oversized(big, NULL, 0);
            sent[K_OVERSIZED]++;
            usleep(200 * 1000);
            zmq_close(big);
        }
        /* Drain whatever the coordinator answered (HEARTBEATs, SHUTDOWNs). */
        char buf[256];
        for (int i = 0; i < 4; i++)
            while (zmq_recv(peers[i], buf, sizeof buf, ZMQ_DONTWAIT) >= 0) {}
        usleep(20 * 1000);
        round++;
    }
    print_counts("flood");
    for (int i = 0; i < 4; i++) zmq_close(peers[i]);

    /* Still serving?  A proper HELLO must get a WELCOME. */
    void *s = dealer(ctx, ep, NULL);
    wire_msg_t hello = {.type = WIRE_HELLO};
    hello.u.hello.worker = "after-the-flood";
    hello.u.hello.host = "localhost";
    hello.u.hello.pid = (int32_t)getpid();
    hello.u.hello.model_identity = (char *)identity;
    send_msg(s, NULL, 0, &hello);
    int welcomed = 0;
    int64_t deadline = now_ms() + 10000;
    while (!welcomed && now_ms() < deadline) {
        wire_msg_t m;
        char err[LOG_ERRLEN];
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 200) <= 0) continue;
        if (wire_recv(s, NULL, NULL, &m, ZMQ_DONTWAIT, err, sizeof err) == 0) {
            welcomed = m.type == WIRE_WELCOME;
            wire_msg_clear(&m);
        }
    }
    fprintf(stderr, "wire_peer flood: after the flood, a HELLO %s\n",
            welcomed ? "got a WELCOME: the coordinator still serves" : "got no WELCOME");
    zmq_close(s);
    zmq_ctx_term(ctx);
    return welcomed ? 0 : 1;
}

static int mode_proxy(const char *listen_ep, const char *upstream_ep, int seconds) {
    void *ctx = zmq_ctx_new();
    void *front = zmq_socket(ctx, ZMQ_ROUTER), *back = dealer(ctx, upstream_ep, NULL);
    int linger = 0;
    zmq_setsockopt(front, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(front, listen_ep) != 0) {
        fprintf(stderr, "wire_peer: cannot bind %s: %s\n", listen_ep, zmq_strerror(zmq_errno()));
        return 2;
    }
    uint8_t peer[256], first[256], hello[4096];
    size_t peer_len = 0, first_len = 0, hello_len = 0;
    int phase = 0; /* 0: wait for HELLO; 1: wait for the reconnected worker; 2: forwarding */
    int64_t end = now_ms() + seconds * 1000, next_inject = 0, phase_deadline = 0;
    char identity[65] = "";
    int64_t run_id = 0;
    unsigned long forwarded_up = 0, forwarded_down = 0, forged = 0;
    while (!g_stop && now_ms() < end) {
        zmq_pollitem_t it[2] = {{front, 0, ZMQ_POLLIN, 0}, {back, 0, ZMQ_POLLIN, 0}};
        zmq_poll(it, 2, 10);
        /* From the worker. */
        for (;;) {
            uint8_t id[256], buf[1 << 16];
            int idn = zmq_recv(front, id, sizeof id, ZMQ_DONTWAIT);
            if (idn < 0) break;
            int more;
            size_t ml = sizeof more;
            zmq_getsockopt(front, ZMQ_RCVMORE, &more, &ml);
            int n = more ? zmq_recv(front, buf, sizeof buf, 0) : 0;
            if (n < 0 || n > (int)sizeof buf) continue; /* (the worker never sends more) */
            if (phase == 0) { /* its HELLO: kept; garbage back, then a frame over the limit */
                memcpy(first, id, (size_t)idn);
                first_len = (size_t)idn;
                memcpy(hello, buf, (size_t)n);
                hello_len = (size_t)n;
                for (int r = 0; r < 20; r++)
                    for (int k = 0; k <= K_ORDER; k++) hostile(k, front, first, first_len, 1, identity, run_id);
                send_oversized(front, first, first_len);
                sent[K_OVERSIZED]++;
                fprintf(stderr, "wire_peer proxy: the worker's HELLO answered with garbage and an oversized frame\n");
                phase = 1;
                phase_deadline = now_ms() + 10000;
                continue;
            }
            if (phase == 1) {
                if ((size_t)idn == first_len && !memcmp(id, first, first_len)) continue; /* the old connection */
                memcpy(peer, id, (size_t)idn);
                peer_len = (size_t)idn;
                zmq_send(back, hello, hello_len, 0); /* now the coordinator meets the worker */
                fprintf(stderr, "wire_peer proxy: the worker reconnected after %lld ms; its HELLO goes on\n",
                        (long long)(now_ms() - (phase_deadline - 10000)));
                phase = 2;
                next_inject = now_ms() + 25;
                continue;
            }
            memcpy(peer, id, (size_t)idn); /* a reconnect changes it */
            peer_len = (size_t)idn;
            zmq_send(back, buf, (size_t)n, ZMQ_DONTWAIT);
            forwarded_up++;
        }
        if (phase == 1 && now_ms() > phase_deadline) { /* the worker did not reconnect: go on anyway */
            memcpy(peer, first, first_len);
            peer_len = first_len;
            zmq_send(back, hello, hello_len, 0);
            phase = 2;
        }
        /* From the coordinator. */
        for (;;) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, back, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                break;
            }
            wire_msg_t w;
            char err[LOG_ERRLEN];
            if (wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &w, err, sizeof err) == 0) {
                if (w.type == WIRE_WELCOME) {
                    run_id = w.u.welcome.run_id;
                    snprintf(identity, sizeof identity, "%s", w.u.welcome.model_identity);
                }
                wire_msg_clear(&w);
            }
            if (peer_len) {
                zmq_send(front, peer, peer_len, ZMQ_SNDMORE);
                zmq_msg_send(&m, front, 0);
                forwarded_down++;
            }
            zmq_msg_close(&m);
        }
        /* Garbage towards the worker, between the real messages. */
        if (phase == 2 && peer_len && identity[0] && now_ms() >= next_inject) {
            static int k = 0;
            k = (k + 1) % (K_ORDER + 1);
            hostile(k, front, peer, peer_len, 1, identity, run_id);
            if (forged < 2 && sent[K_RANDOM] == 20 + 10 * forged) { /* now and then a JOB nobody gave */
                wire_msg_t j = sample_msg(1, identity, run_id);
                while (j.type != WIRE_JOB) j = sample_msg(1, identity, run_id);
                if (forged == 1) j.u.job.run_id = run_id + 1000; /* another run's */
                send_msg(front, peer, peer_len, &j);
                forged++;
                sent[K_FORGED_JOB]++;
            }
            next_inject = now_ms() + 25;
        }
    }
    fprintf(stderr, "wire_peer proxy: forwarded %lu messages up, %lu down\n", forwarded_up, forwarded_down);
    print_counts("proxy");
    zmq_close(front);
    zmq_close(back);
    zmq_ctx_term(ctx);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr,
                "usage: wire_peer hello EP IDENTITY SECONDS | flood EP IDENTITY SECONDS | "
                "proxy LISTEN_EP UPSTREAM_EP SECONDS\n");
        return 2;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    rng ^= (uint64_t)time(NULL) * 0x2545F4914F6CDD1Dull ^ (uint64_t)getpid();
    fprintf(stderr, "wire_peer %s: seed %llu\n", argv[1], (unsigned long long)rng);
    int seconds = atoi(argv[4]);
    if (!strcmp(argv[1], "hello")) return mode_hello(argv[2], argv[3], seconds);
    if (!strcmp(argv[1], "flood")) return mode_flood(argv[2], argv[3], seconds);
    if (!strcmp(argv[1], "proxy")) return mode_proxy(argv[2], argv[3], seconds);
    fprintf(stderr, "wire_peer: unknown mode '%s'\n", argv[1]);
    return 2;
}
