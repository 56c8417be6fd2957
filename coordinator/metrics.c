/* metrics.c - see metrics.h: the coordinator's Prometheus endpoint.
 *
 * Threads: metrics_publish() runs on the serve loop and builds a snapshot
 * that nobody else can see yet, then swaps it in under `mu`; the HTTP
 * handler (libmicrohttpd's thread) takes a reference to the current
 * snapshot under `mu`, renders it unlocked and drops the reference under
 * `mu`.  A snapshot is never written after it is published, so the only
 * shared mutable state is the pointer and the reference counts, both under
 * `mu`.  The rate window (`ring`) is the loop's alone.
 *
 * Names follow the Prometheus conventions: a tokshift_ prefix, units in the
 * name (seconds), _total for counters, a family's HELP and TYPE before its
 * samples, each label set once.  Run-scoped families carry the run's name
 * as the label `run`: one run's (metrics_publish), or each run's of a
 * coordinator serving the queue (metrics_publish_run), one slot per run
 * that keeps its last snapshot (a completed run's final figures stay). */
#include "metrics.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "now.h"
#include "utf8.h"

#ifndef TOKSHIFT_VERSION
#define TOKSHIFT_VERSION "unknown"
#endif

/* The tokens/s gauge: the rate over the last RATE_WINDOW_MS, from samples
 * kept at most one per RATE_STEP_MS (so the ring spans the window at any
 * tick interval). */
#define RATE_WINDOW_MS 60000
#define RATE_STEP_MS 1000
#define RATE_RING (RATE_WINDOW_MS / RATE_STEP_MS + 2)

typedef struct {
    int refs; /* under mu */
    int64_t at_ms;
    metrics_counts_t c;
    int64_t leased, pending, tokens_in_flight;
    size_t busy, idle;
    double rate;
    db_latency_t lat;
    size_t n_workers; /* tallies: distinct names */
    fleet_tally_t w[];
} snap_t;

/* One run's figures. */
typedef struct {
    char *name, *run; /* the run's name, and as a label value (escaped) */
    snap_t *cur;      /* under mu; NULL before the first publish */
    /* the loop's: (time, tokens committed + in flight) samples */
    struct { int64_t ms, tokens; } ring[RATE_RING];
    size_t ring_head, ring_n;
} slot_t;

struct metrics {
    struct MHD_Daemon *d;
    char url[96]; /* http://HOST:PORT/metrics */
    int64_t start_ms; /* monotonic */
    double start_unix;
    pthread_mutex_t mu;
    slot_t *slots; /* the array and n_slots under mu (the loop adds, a scrape reads) */
    size_t n_slots, cap_slots;
};

/* ---- addresses ----------------------------------------------------------- */

/* Parses addr into *sa (IPv4 or IPv6, numeric).  0 or -1 with a message. */
static int parse_addr(const char *addr, struct sockaddr_storage *sa, char host[64], char *err, size_t errlen) {
    snprintf(host, 64, "127.0.0.1");
    const char *port = addr, *colon = strrchr(addr, ':');
    if (addr[0] == '[') { /* [IPV6]:PORT */
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':' || (size_t)(close - addr - 1) >= 64)
            return log_seterr(err, errlen, "--metrics '%s': write an IPv6 address as [ADDR]:PORT", addr);
        memcpy(host, addr + 1, (size_t)(close - addr - 1));
        host[close - addr - 1] = 0;
        port = close + 2;
    } else if (colon) {
        if ((size_t)(colon - addr) >= 64)
            return log_seterr(err, errlen, "--metrics '%s': the host is too long", addr);
        if (colon > addr) {
            memcpy(host, addr, (size_t)(colon - addr));
            host[colon - addr] = 0;
        }
        port = colon + 1;
    }
    char *end = NULL;
    long p = strtol(port, &end, 10);
    if (!*port || *end || p < 0 || p > 65535 || *port == '-' || *port == '+')
        return log_seterr(err, errlen, "--metrics '%s': the port must be a number 0-65535", addr);
    memset(sa, 0, sizeof *sa);
    struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)p);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)p);
    } else {
        return log_seterr(err, errlen, "--metrics '%s': '%s' is not a numeric IPv4 or IPv6 address", addr, host);
    }
    return 0;
}

int metrics_addr_check(const char *addr, char *err, size_t errlen) {
    struct sockaddr_storage sa;
    char host[64];
    return parse_addr(addr, &sa, host, err, errlen);
}

/* ---- snapshots ------------------------------------------------------------ */

static char *label_escape(const char *v);

static void snap_unref(metrics_t *m, snap_t *s) {
    if (!s) return;
    pthread_mutex_lock(&m->mu);
    int last = --s->refs == 0;
    pthread_mutex_unlock(&m->mu);
    if (last) free(s);
}

/* The slot of run `name` (NULL: the first), added when absent; NULL out of
 * memory.  The loop's thread. */
static slot_t *slot_of(metrics_t *m, const char *name) {
    for (size_t i = 0; i < m->n_slots; i++)
        if (!name || !strcmp(m->slots[i].name, name)) return &m->slots[i];
    if (!name) return NULL;
    slot_t n = {0};
    if (!(n.name = strdup(name)) || !(n.run = label_escape(name))) {
        free(n.name);
        return NULL;
    }
    pthread_mutex_lock(&m->mu);
    if (m->n_slots == m->cap_slots) {
        size_t cap = m->cap_slots ? 2 * m->cap_slots : 4;
        slot_t *ns = realloc(m->slots, cap * sizeof *ns);
        if (!ns) {
            pthread_mutex_unlock(&m->mu);
            free(n.name);
            free(n.run);
            return NULL;
        }
        m->slots = ns, m->cap_slots = cap;
    }
    m->slots[m->n_slots++] = n;
    pthread_mutex_unlock(&m->mu);
    return &m->slots[m->n_slots - 1];
}

/* The tokens/s over the window ending now at `tokens`; records the sample
 * at most once per RATE_STEP_MS. */
static double rate_update(slot_t *m, int64_t now, int64_t tokens) {
    double rate = 0;
    for (size_t k = 0; k < m->ring_n; k++) { /* the oldest sample within the window */
        size_t i = (m->ring_head + RATE_RING - m->ring_n + k) % RATE_RING;
        if (now - m->ring[i].ms > RATE_WINDOW_MS || now <= m->ring[i].ms) continue;
        rate = (double)(tokens - m->ring[i].tokens) * 1000.0 / (double)(now - m->ring[i].ms);
        break;
    }
    size_t last = (m->ring_head + RATE_RING - 1) % RATE_RING;
    if (m->ring_n == 0 || now - m->ring[last].ms >= RATE_STEP_MS) {
        m->ring[m->ring_head].ms = now, m->ring[m->ring_head].tokens = tokens;
        m->ring_head = (m->ring_head + 1) % RATE_RING;
        if (m->ring_n < RATE_RING) m->ring_n++;
    }
    return rate > 0 ? rate : 0; /* a job handed back takes its in-flight tokens with it */
}

void metrics_publish(metrics_t *m, const metrics_counts_t *counts, fleet_t *fleet, const db_t *db) {
    metrics_publish_run(m, NULL, counts, fleet, db);
}

void metrics_publish_run(metrics_t *m, const char *run, const metrics_counts_t *counts, fleet_t *fleet,
                         const db_t *db) {
    slot_t *slot = slot_of(m, run);
    if (!slot) {
        log_warn("metrics: out of memory; run '%s' is not shown", run ? run : "?");
        return;
    }
    size_t n = fleet ? fleet_size(fleet) : 0, nt = fleet ? fleet_n_tallies(fleet) : 0;
    snap_t *s = malloc(sizeof *s + (nt ? nt : 1) * sizeof s->w[0]);
    if (!s) {
        log_warn("metrics: out of memory; the endpoint shows the previous snapshot");
        return;
    }
    memset(s, 0, sizeof *s);
    s->refs = 1;
    s->at_ms = now_ms();
    s->c = *counts;
    for (size_t i = 0; i < n; i++) {
        const fleet_worker_t *w = fleet_at(fleet, i);
        /* A worker that lost its connection still holds its lease until the
         * heartbeat check takes the job back. */
        if (w->job_id >= 0) s->leased++, s->tokens_in_flight += w->prog_tokens;
        if (!w->unreachable && w->job_id >= 0) s->busy++;
        else if (!w->unreachable) s->idle++;
    }
    for (size_t i = 0; i < nt; i++) s->w[i] = *fleet_tally_at(fleet, i);
    s->n_workers = nt;
    s->leased += counts->leased_unheld;
    s->pending = counts->jobs - counts->done - counts->failed - s->leased;
    if (s->pending < 0) s->pending = 0;
    s->rate = rate_update(slot, s->at_ms, counts->tokens_done + s->tokens_in_flight);
    db_latency(db, &s->lat);
    pthread_mutex_lock(&m->mu);
    snap_t *old = slot->cur;
    slot->cur = s;
    pthread_mutex_unlock(&m->mu);
    snap_unref(m, old);
}

/* ---- rendering ------------------------------------------------------------ */

/* v as a label value, malloc'd (NULL out of memory): backslash, double
 * quote and newline escaped, and cut before any invalid UTF-8 (the format
 * is UTF-8; a worker's name, cut to FLEET_MAX_NAME bytes, may end inside a
 * character). */
static char *label_escape(const char *v) {
    size_t len = strlen(v), n = 0;
    long bad = utf8_invalid_at(v, len);
    const char *end = v + (bad >= 0 ? (size_t)bad : len);
    for (const char *p = v; p < end; p++) n += (*p == '\\' || *p == '"' || *p == '\n') ? 2 : 1;
    char *o = malloc(n + 1), *q = o;
    if (!o) return NULL;
    for (const char *p = v; p < end; p++) {
        if (*p == '\\' || *p == '"' || *p == '\n') *q++ = '\\', *q++ = *p == '\n' ? 'n' : *p;
        else *q++ = *p;
    }
    *q = 0;
    return o;
}

static void family(FILE *f, const char *name, const char *type, const char *help) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A run's label and its snapshot, as a scrape took them. */
typedef struct {
    const char *run;
    snap_t *s;
} view_t;

/* Each of the n runs' samples of a family (s and run in scope in body). */
#define EACH_RUN(...)                                                                                                  \
    for (size_t k_ = 0; k_ < n; k_++) {                                                                                \
        const snap_t *s = v[k_].s;                                                                                     \
        const char *run = v[k_].run;                                                                                   \
        __VA_ARGS__;                                                                                                   \
    }

static void render(metrics_t *m, const view_t *v, size_t n, FILE *f) {
    family(f, "tokshift_build_info", "gauge", "Always 1; the coordinator's version as a label.");
    fprintf(f, "tokshift_build_info{version=\"%s\"} 1\n", TOKSHIFT_VERSION);
    family(f, "tokshift_coordinator_start_time_seconds", "gauge", "When the coordinator started, in seconds since the Unix epoch.");
    fprintf(f, "tokshift_coordinator_start_time_seconds %.3f\n", m->start_unix);
    family(f, "tokshift_coordinator_uptime_seconds", "gauge", "Seconds since the coordinator started.");
    fprintf(f, "tokshift_coordinator_uptime_seconds %.3f\n", (double)(now_ms() - m->start_ms) / 1000.0);
    if (!n) return; /* (v holds the published runs only) */
    family(f, "tokshift_metrics_snapshot_age_seconds", "gauge",
           "Seconds since the serve loop published these figures (once per heartbeat; a growing age means a stuck loop).");
    EACH_RUN(fprintf(f, "tokshift_metrics_snapshot_age_seconds{run=\"%s\"} %.3f\n", run, (double)(now_ms() - s->at_ms) / 1000.0));
    family(f, "tokshift_run_complete", "gauge", "1 when the run is complete (every job done or failed), else 0.");
    EACH_RUN(fprintf(f, "tokshift_run_complete{run=\"%s\"} %d\n", run, s->c.complete ? 1 : 0));
    family(f, "tokshift_jobs", "gauge", "Jobs of the run by state (pending, leased, done, failed), as the coordinator counts them.");
    EACH_RUN(const struct { const char *state; int64_t v; } js[] = {
        {"pending", s->pending}, {"leased", s->leased}, {"done", s->c.done}, {"failed", s->c.failed}};
             for (size_t i = 0; i < 4; i++) fprintf(f, "tokshift_jobs{run=\"%s\",state=\"%s\"} %" PRId64 "\n", run, js[i].state, js[i].v));
    family(f, "tokshift_job_retries_total", "counter", "Attempts after a job's first: jobs requeued after a failure, a timeout or a lost worker.");
    EACH_RUN(fprintf(f, "tokshift_job_retries_total{run=\"%s\"} %" PRId64 "\n", run, s->c.retries));
    family(f, "tokshift_documents", "gauge", "Usable documents of the run loaded so far.");
    EACH_RUN(fprintf(f, "tokshift_documents{run=\"%s\"} %" PRId64 "\n", run, s->c.docs));
    family(f, "tokshift_documents_done_total", "counter", "Documents of the jobs done.");
    EACH_RUN(fprintf(f, "tokshift_documents_done_total{run=\"%s\"} %" PRId64 "\n", run, s->c.docs_done));
    family(f, "tokshift_tokens_done_total", "counter", "Tokens measured and committed (rows of token_view) by the jobs done.");
    EACH_RUN(fprintf(f, "tokshift_tokens_done_total{run=\"%s\"} %" PRId64 "\n", run, s->c.tokens_done));
    family(f, "tokshift_tokens_in_flight", "gauge", "Tokens measured so far in the jobs in hand, as the workers' heartbeats report them.");
    EACH_RUN(fprintf(f, "tokshift_tokens_in_flight{run=\"%s\"} %" PRId64 "\n", run, s->tokens_in_flight));
    family(f, "tokshift_tokens_per_second", "gauge", "Tokens measured per second (committed and in flight) over the last 60 s.");
    EACH_RUN(fprintf(f, "tokshift_tokens_per_second{run=\"%s\"} %.3f\n", run, s->rate));
    family(f, "tokshift_workers_alive", "gauge", "Workers connected and heard from within the liveness period.");
    EACH_RUN(fprintf(f, "tokshift_workers_alive{run=\"%s\"} %zu\n", run, s->busy + s->idle));
    family(f, "tokshift_workers", "gauge", "Alive workers by state: busy (holding a job) or idle.");
    EACH_RUN(fprintf(f, "tokshift_workers{run=\"%s\",state=\"busy\"} %zu\n", run, s->busy);
             fprintf(f, "tokshift_workers{run=\"%s\",state=\"idle\"} %zu\n", run, s->idle));
    family(f, "tokshift_worker_jobs_done_total", "counter", "Jobs done per worker name (all its connections) since the coordinator started.");
    EACH_RUN(for (size_t i = 0; i < s->n_workers; i++) {
        char *w = label_escape(s->w[i].name);
        if (w) fprintf(f, "tokshift_worker_jobs_done_total{run=\"%s\",worker=\"%s\"} %" PRId64 "\n", run, w, s->w[i].jobs_done);
        free(w);
    });
    family(f, "tokshift_worker_tokens_done_total", "counter", "Tokens committed per worker name (all its connections) since the coordinator started.");
    EACH_RUN(for (size_t i = 0; i < s->n_workers; i++) {
        char *w = label_escape(s->w[i].name);
        if (w) fprintf(f, "tokshift_worker_tokens_done_total{run=\"%s\",worker=\"%s\"} %" PRId64 "\n", run, w, s->w[i].tokens_done);
        free(w);
    });
    family(f, "tokshift_db_up", "gauge", "1 while the serve loop's PostgreSQL connection works, 0 while it reconnects.");
    EACH_RUN(fprintf(f, "tokshift_db_up{run=\"%s\"} %d\n", run, s->c.db_up ? 1 : 0));
    family(f, "tokshift_db_round_trip_seconds", "histogram", "Time of each statement of the serve loop's PostgreSQL connection, sent to whole result.");
    EACH_RUN(uint64_t cum = 0;
             for (size_t b = 0; b <= DB_LATENCY_BUCKETS; b++) {
                 cum += s->lat.count[b];
                 if (b < DB_LATENCY_BUCKETS)
                     fprintf(f, "tokshift_db_round_trip_seconds_bucket{run=\"%s\",le=\"%g\"} %" PRIu64 "\n", run, db_latency_bounds_s[b], cum);
                 else
                     fprintf(f, "tokshift_db_round_trip_seconds_bucket{run=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", run, cum);
             }
             fprintf(f, "tokshift_db_round_trip_seconds_sum{run=\"%s\"} %.6f\n", run, s->lat.sum_s);
             fprintf(f, "tokshift_db_round_trip_seconds_count{run=\"%s\"} %" PRIu64 "\n", run, s->lat.n));
}

char *metrics_text(metrics_t *m, size_t *len) {
    char *buf = NULL;
    size_t n = 0, nv = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return NULL;
    /* The published runs' snapshots, referenced under mu, rendered without
     * it. */
    pthread_mutex_lock(&m->mu);
    view_t *v = malloc((m->n_slots ? m->n_slots : 1) * sizeof *v);
    for (size_t i = 0; v && i < m->n_slots; i++)
        if (m->slots[i].cur) {
            v[nv] = (view_t){m->slots[i].run, m->slots[i].cur};
            v[nv++].s->refs++;
        }
    pthread_mutex_unlock(&m->mu);
    int bad = !v;
    if (v) render(m, v, nv, f);
    for (size_t i = 0; i < nv; i++) snap_unref(m, v[i].s);
    free(v);
    bad |= ferror(f);
    if (fclose(f) || bad) {
        free(buf);
        return NULL;
    }
    if (len) *len = n;
    return buf;
}

/* ---- HTTP ----------------------------------------------------------------- */

/* Queues body (freed by libmicrohttpd with free_fn when not NULL; static
 * otherwise) as the response. */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *body, size_t len,
                             void (*free_fn)(void *), const char *type) {
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, body, free_fn);
    if (!r) {
        if (free_fn) free_fn(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

/* libmicrohttpd's thread: GET (or HEAD) /metrics; anything else is refused. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version, (void)upload_data, (void)con_cls;
    static char k_plain[] = "text/plain; charset=utf-8";
    if (*upload_data_size) return MHD_NO; /* no request here has a body */
    if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD)) {
        static char body[] = "only GET /metrics\n";
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, body, sizeof body - 1, NULL, k_plain);
    }
    if (strcmp(url, "/metrics")) {
        static char body[] = "tokshift-coordinator: the metrics are at /metrics\n";
        return reply(conn, MHD_HTTP_NOT_FOUND, body, sizeof body - 1, NULL, k_plain);
    }
    size_t len = 0;
    char *text = metrics_text(cls, &len);
    if (!text) {
        static char body[] = "out of memory\n";
        return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, body, sizeof body - 1, NULL, k_plain);
    }
    return reply(conn, MHD_HTTP_OK, text, len, free, "text/plain; version=0.0.4; charset=utf-8");
}

metrics_t *metrics_new(const char *addr, const char *run, char *err, size_t errlen) {
    struct sockaddr_storage sa;
    char host[64];
    if (parse_addr(addr, &sa, host, err, errlen)) return NULL;
    metrics_t *m = calloc(1, sizeof *m);
    if (!m) {
        log_seterr(err, errlen, "metrics: out of memory");
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    m->start_unix = (double)ts.tv_sec + ts.tv_nsec * 1e-9;
    m->start_ms = now_ms();
    if (run && !slot_of(m, run)) {
        log_seterr(err, errlen, "metrics: out of memory");
        goto error;
    }
    /* One internal thread (epoll on Linux: the coordinator may hold more
     * than FD_SETSIZE descriptors with a large fleet); few connections, and
     * a scraper that stalls is dropped. */
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | (sa.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    /* Its thread inherits a mask without SIGINT and SIGTERM: they reach the
     * serve loop's thread, whose zmq_poll they interrupt at once. */
    sigset_t stop, was;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, &was);
    m->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, m, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &was, NULL);
    if (!m->d) {
        log_seterr(err, errlen, "metrics: cannot serve on %s (is the port in use?)", addr);
        goto error;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
    int v6 = sa.ss_family == AF_INET6;
    snprintf(m->url, sizeof m->url, "http://%s%s%s:%u/metrics", v6 ? "[" : "", host, v6 ? "]" : "", di ? di->port : 0u);
    return m;
error:
    metrics_destroy(&m);
    return NULL;
}

void metrics_destroy(metrics_t **self_p) {
    if (!self_p || !*self_p) return;
    metrics_t *m = *self_p;
    if (m->d) MHD_stop_daemon(m->d); /* joins its thread: no scrape runs after this */
    for (size_t i = 0; i < m->n_slots; i++) {
        free(m->slots[i].cur);
        free(m->slots[i].name);
        free(m->slots[i].run);
    }
    free(m->slots);
    pthread_mutex_destroy(&m->mu);
    free(m);
    *self_p = NULL;
}

const char *metrics_url(const metrics_t *m) { return m->url; }

void metrics_linger(metrics_t *m, long seconds, const volatile sig_atomic_t *stop) {
    (void)m;
    int64_t until = now_ms() + seconds * 1000;
    struct timespec step = {0, 100 * 1000 * 1000};
    while (!*stop && now_ms() < until) nanosleep(&step, NULL);
}

int metrics_selftest(void) {
    int ok = 1;
    char err[LOG_ERRLEN], host[64];
    struct sockaddr_storage sa;
    static const char *good[] = {"9464", ":0", "0.0.0.0:1", "127.0.0.1:65535", "[::1]:5"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) ok &= parse_addr(good[i], &sa, host, err, sizeof err) == 0;
    parse_addr("9464", &sa, host, err, sizeof err);
    ok &= sa.ss_family == AF_INET && !strcmp(host, "127.0.0.1") && ntohs(((struct sockaddr_in *)&sa)->sin_port) == 9464;
    parse_addr("[::1]:5", &sa, host, err, sizeof err);
    ok &= sa.ss_family == AF_INET6 && !strcmp(host, "::1");
    static const char *bad[] = {"", "x", "1.2.3.4:65536", "localhost:1", "[::1]5", "-1", "+5", "1.2.3.4:", "[::1:5"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) ok &= parse_addr(bad[i], &sa, host, err, sizeof err) == -1;
    /* Escapes; a name cut inside a character ends before it. */
    char *e1 = label_escape("a\"b\\c\nd"), *e2 = label_escape("ab\xc3");
    ok &= e1 && e2 && !strcmp(e1, "a\\\"b\\\\c\\nd") && !strcmp(e2, "ab");
    free(e1);
    free(e2);
    /* The rate: over the oldest sample within the window. */
    metrics_t *m = calloc(1, sizeof *m);
    if (!m) return -1;
    pthread_mutex_init(&m->mu, NULL);
    slot_t *r = slot_of(m, "r");
    ok &= r && rate_update(r, 1000, 0) == 0 && rate_update(r, 1500, 50) == 100.0 && rate_update(r, 2000, 100) == 100.0;
    ok &= r && rate_update(r, 61500, 100) == 0; /* the samples of t = 1 s and 2 s are out of the window */
    /* A snapshot: pending = loaded - done - failed - leased; tallies by name. */
    fleet_t *f = fleet_new();
    fleet_worker_t *w = f ? fleet_add(f, "id", 2, "w\"1", 0) : NULL;
    if (w) w->job_id = 3, w->prog_tokens = 7, fleet_credit(f, w, 11);
    metrics_counts_t c = {.jobs = 10, .done = 4, .failed = 1, .leased_unheld = 1, .tokens_done = 11, .db_up = 1};
    metrics_publish(m, &c, f, NULL);
    char *t = metrics_text(m, NULL);
    ok &= w && t && strstr(t, "tokshift_jobs{run=\"r\",state=\"pending\"} 3\n") &&
          strstr(t, "tokshift_jobs{run=\"r\",state=\"leased\"} 2\n") && strstr(t, "tokshift_tokens_in_flight{run=\"r\"} 7\n") &&
          strstr(t, "tokshift_worker_tokens_done_total{run=\"r\",worker=\"w\\\"1\"} 11\n") &&
          strstr(t, "tokshift_db_round_trip_seconds_bucket{run=\"r\",le=\"+Inf\"} 0\n");
    free(t);
    /* A second run (a coordinator serving the queue): its samples in the
     * same families, each family's HELP once. */
    metrics_counts_t c2 = {.jobs = 5, .done = 5, .complete = 1};
    metrics_publish_run(m, "q\"2", &c2, NULL, NULL);
    t = metrics_text(m, NULL);
    const char *h = t ? strstr(t, "# HELP tokshift_jobs ") : NULL;
    ok &= t && h && !strstr(h + 1, "# HELP tokshift_jobs ") && strstr(t, "tokshift_jobs{run=\"r\",state=\"pending\"} 3\n") &&
          strstr(t, "tokshift_jobs{run=\"q\\\"2\",state=\"done\"} 5\n") && strstr(t, "tokshift_run_complete{run=\"q\\\"2\"} 1\n");
    free(t);
    fleet_destroy(&f);
    metrics_destroy(&m);
    metrics_destroy(&m);
    return ok ? 0 : -1;
}
