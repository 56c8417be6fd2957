/* scheduler.c - see scheduler.h (not sched.h: that is the system's
 * <sched.h>, which <pthread.h> includes and the coordinator/ include path
 * would shadow).  The protocol as the scheduler sees it (per worker):
 *
 *   HELLO ----> model matches? --no--> SHUTDOWN (code MODEL_MISMATCH)
 *                    | yes
 *                    v
 *               WELCOME; READY ----> (queued job: leased in a batch with a
 *                                     new token) JOB
 *               DONE(token)  ----> PostgreSQL says done? count it
 *               FAILED(token) ---> release: pending again, or failed at the
 *                                  attempt limit
 *               silence > heartbeat x liveness ---> dead: release its job
 *
 * A restarted coordinator adopts the leases PostgreSQL holds (same attempt
 * tokens): a worker that reconnects under the lease's name holds its job
 * again, and one that finished meanwhile commits under its token and
 * reports DONE; only the leases that nobody reclaims within 2 x heartbeat x
 * liveness are requeued.  Log lines that a peer can provoke (bad or
 * unexpected messages, refusals) are rate-limited. */
#include "scheduler.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "fleet.h"
#include "log.h"
#include "now.h"
#include "ratelimit.h"
#include "score.h"

/* Jobs leased per statement: enough to amortise the round trip (~0.1 ms)
 * over jobs that take a worker seconds, few enough that a batch of the
 * largest jobs (--job-bytes, 256 KiB by default) stays some MiB. */
#define SCHED_LEASE_BATCH 64

_Static_assert(SCHED_MAX_PEER == FLEET_MAX_ID, "a receive buffer must hold every identity the fleet keeps");

/* A DONE waiting for PostgreSQL's word (settle_dones). */
typedef struct {
    int64_t job_id;
    uint64_t token;
    int64_t n_tokens, n_docs, job_bytes;
    int held;    /* a worker (or a waiting adopted lease) held this attempt */
    int release; /* the holder's own DONE, not stale: release the job if nothing was committed */
    uint8_t peer[FLEET_MAX_ID];
    size_t peer_len;
} sched_done_t;

struct sched {
    sched_opts_t o;
    db_t *db;
    void *sock;
    fleet_t *fleet;
    int64_t run_id;
    int64_t *queue;
    size_t q_head, q_len, q_cap;
    uint64_t rng;
    sched_counts_t n;
    int64_t t0_ms;
    /* The progress line's rate: tokens (committed + in flight) at the last
     * line, and a moving average of tokens/s over the recent lines. */
    int64_t last_tokens_ms, last_tokens;
    double rate;
    ratelimit_t peer_log; /* lines that any peer can provoke: bad and unexpected messages */
    /* PostgreSQL trouble: while db_down, database work waits for tick() to
     * reconnect; releases that failed are retried from `unreleased`. */
    int db_down;
    /* The run's serving lock (db_run_lock), held in session lock_session
     * of the database handle (db_session): a new session must take it
     * again before any database work; lock_warned: said once that another
     * coordinator holds it. */
    int locked, lock_warned;
    unsigned lock_session;
    struct unreleased { int64_t job_id; uint64_t token; char reason[256]; } *unreleased;
    size_t n_unreleased, cap_unreleased;
    int retrying; /* in retry_releases: failures were logged the first time */
    int64_t dups; /* jobs handed to two workers (TOKSHIFT_FAULT dup_dispatch) */
    /* Leases found at start, waiting for their workers to reconnect until
     * adopt_until_ms; then requeued. */
    db_lease_t *adopted;
    size_t n_adopted;
    int64_t adopt_until_ms;
    sched_done_t *dones; /* DONEs not yet settled */
    size_t n_dones, cap_dones;
    int64_t next_idle_check_ms;
};

/* How long a database call may wait for a row lock: a worker stopped inside
 * its commit holds its job's row, and the loop must keep beating (a release
 * that times out is retried by tick()). */
static int lock_ms(const sched_t *s) { return s->o.heartbeat_ms / 2 > 50 ? (int)(s->o.heartbeat_ms / 2) : 50; }

/* Notes a failed database call: a lost connection pauses database work until
 * tick() has reconnected. */
static void db_trouble(sched_t *s, const char *err) {
    if (s->db_down || !db_connection_lost(s->db)) return;
    s->db_down = 1;
    log_warn("PostgreSQL is unreachable (%s); reconnecting every %ld ms, jobs stay as PostgreSQL has them", err,
             s->o.heartbeat_ms);
}

/* Takes the run's serving lock in the database handle's session.  0, 1
 * (another coordinator holds it) or -1, with a message. */
static int take_lock(sched_t *s, char *err, size_t errlen) {
    int r = db_run_lock(s->db, s->run_id, err, errlen);
    if (r == 0) s->locked = 1, s->lock_session = db_session(s->db);
    return r;
}

/* Reconnects after trouble, and in a new session (this scheduler's, or
 * another's on the same handle) takes the serving lock again first: while
 * another coordinator holds it the run waits here, as for a database that
 * is down, so two never serve it at once.  0 when the database is usable. */
static int db_revive(sched_t *s) {
    char err[LOG_ERRLEN];
    if (!s->db_down && s->lock_session == db_session(s->db)) return 0;
    s->db_down = 1;
    if (db_reconnect(s->db, err, sizeof err)) {
        log_debug("%s", err);
        return -1;
    }
    if (s->lock_session != db_session(s->db)) {
        if (db_async_commit(s->db, err, sizeof err) || db_set_timeout(s->db, "lock_timeout", lock_ms(s), err, sizeof err))
            log_warn("%s", err); /* a new session: set them again */
        int r = take_lock(s, err, sizeof err);
        if (r) {
            if (r < 0) log_debug("%s", err);
            else if (!s->lock_warned) log_warn("%s; this one serves nothing of it until that one stops", err);
            s->lock_warned |= r > 0;
            return -1;
        }
    }
    s->db_down = 0;
    s->lock_warned = 0;
    log_info("reconnected to PostgreSQL");
    return 0;
}

static uint64_t next_token(sched_t *s) {
    s->rng ^= s->rng << 13, s->rng ^= s->rng >> 7, s->rng ^= s->rng << 17;
    return s->rng & INT64_MAX; /* stored as a positive bigint */
}

static int q_push(sched_t *s, int64_t job) {
    if (s->q_head + s->q_len == s->q_cap) {
        if (s->q_head > 0) {
            memmove(s->queue, s->queue + s->q_head, s->q_len * sizeof *s->queue);
            s->q_head = 0;
        } else {
            size_t cap = s->q_cap ? 2 * s->q_cap : 1024;
            int64_t *nq = realloc(s->queue, cap * sizeof *nq);
            if (!nq) return -1;
            s->queue = nq;
            s->q_cap = cap;
        }
    }
    s->queue[s->q_head + s->q_len++] = job;
    return 0;
}

static int64_t q_pop(sched_t *s) {
    s->q_len--;
    return s->queue[s->q_head++];
}

/* Sends m to w.  A worker whose connection is gone (it left, or died: the
 * ROUTER says EHOSTUNREACH) is marked unreachable and said so once, at
 * debug level; it stops counting as alive, and the heartbeat check removes
 * it (and requeues its job) as before.  0, or -1 when not sent. */
static int send_to(sched_t *s, fleet_worker_t *w, const wire_msg_t *m) {
    char err[LOG_ERRLEN];
    if (!wire_send(s->sock, w->id, w->id_len, m, err, sizeof err)) {
        fleet_mark_sent(w, now_ms());
        return 0;
    }
    if (errno == EHOSTUNREACH) {
        if (fleet_mark_unreachable(w)) log_debug("worker %s disconnected: %s", w->name, err);
    } else {
        log_warn("to worker %s: %s", w->name, err);
    }
    return -1;
}

/* Puts a job back (or fails it at max_attempts; 0: fails it now) with
 * reason, if it is still leased under token.  When PostgreSQL cannot be
 * told, the release is kept and retried by tick(). */
static void release_job_limit(sched_t *s, int64_t job_id, uint64_t token, const char *reason, int max_attempts) {
    char err[LOG_ERRLEN];
    db_release_t r = s->db_down ? DB_RELEASE_ERROR
                                : db_job_release(s->db, s->run_id, job_id, (int64_t)token, reason, max_attempts, err,
                                                 sizeof err);
    if (r == DB_RELEASE_ERROR) {
        if (!s->db_down) {
            if (!s->retrying) log_error("job %" PRId64 ": %s (will retry)", job_id, err);
            db_trouble(s, err);
        }
        if (s->n_unreleased == s->cap_unreleased) {
            size_t cap = s->cap_unreleased ? 2 * s->cap_unreleased : 16;
            struct unreleased *nu = realloc(s->unreleased, cap * sizeof *nu);
            if (!nu) {
                log_error("out of memory keeping job %" PRId64 "'s release; reconcile requeues it", job_id);
                return;
            }
            s->unreleased = nu, s->cap_unreleased = cap;
        }
        struct unreleased *u = &s->unreleased[s->n_unreleased++];
        u->job_id = job_id, u->token = token;
        snprintf(u->reason, sizeof u->reason, "%s", reason);
        return;
    }
    if (r == DB_RELEASE_REQUEUED) {
        s->n.retries++;
        log_warn("job %" PRId64 " requeued: %s", job_id, reason);
        if (q_push(s, job_id)) log_error("out of memory requeueing job %" PRId64, job_id);
    } else if (r == DB_RELEASE_FAILED) {
        s->n.failed++;
        if (max_attempts)
            log_error("job %" PRId64 " failed after %d attempts: %s", job_id, max_attempts, reason);
        else
            log_error("job %" PRId64 " failed (the worker says it cannot succeed): %s", job_id, reason);
    }
}

static void release_job(sched_t *s, int64_t job_id, uint64_t token, const char *reason) {
    release_job_limit(s, job_id, token, reason, (int)s->o.max_attempts);
}

/* Retries the releases that PostgreSQL could not be told. */
static void retry_releases(sched_t *s) {
    size_t n = s->n_unreleased;
    struct unreleased *u = s->unreleased;
    s->n_unreleased = 0, s->unreleased = NULL, s->cap_unreleased = 0;
    s->retrying = 1;
    for (size_t i = 0; i < n; i++) release_job(s, u[i].job_id, u[i].token, u[i].reason);
    s->retrying = 0;
    free(u);
}

/* When no worker holds a job and none is queued, yet PostgreSQL has some
 * pending or leased (a lease whose reply was lost, or lost in a database
 * crash: the coordinator's commits are asynchronous), puts them back in the
 * queue, so the run cannot stall.  Their old tokens become stale. */
static void reconcile(sched_t *s, const db_progress_t *pg) {
    char err[LOG_ERRLEN];
    int64_t *ids = NULL;
    size_t n = 0;
    if (s->n_unreleased || (pg->pending == 0 && pg->leased == 0)) return;
    if (db_jobs_pending(s->db, s->run_id, 1, &ids, &n, err, sizeof err)) {
        log_error("%s", err);
        db_trouble(s, err);
        return;
    }
    log_warn("%" PRId64 " job(s) pending and %" PRId64 " leased in PostgreSQL but held by no worker: requeued",
             pg->pending, pg->leased);
    for (size_t i = 0; i < n; i++)
        if (q_push(s, ids[i])) log_error("out of memory requeueing job %" PRId64, ids[i]);
    free(ids);
}

/* The entry of the sending worker that holds job_id under token: the
 * sender's own, or the one of its earlier connection (same name: a worker
 * that reconnected finishes the job it had); NULL when it holds none (a
 * replayed or late message).  Only the dup_dispatch fault gives one attempt
 * to two workers. */
static fleet_worker_t *holder(sched_t *s, int64_t job_id, uint64_t token, fleet_worker_t *sender) {
    if (!sender) return NULL;
    if (sender->job_id == job_id && sender->token == token) return sender;
    for (size_t i = 0; i < fleet_size(s->fleet); i++) {
        fleet_worker_t *w = fleet_at(s->fleet, i);
        if (w->job_id == job_id && w->token == token && !strcmp(w->name, sender->name)) return w;
    }
    return NULL;
}

/* Refreshes the progress counters from PostgreSQL (after adopted leases
 * ended without the worker's DONE reaching this coordinator, and for the
 * closing line). */
static void refresh_counts(sched_t *s) {
    char err[LOG_ERRLEN];
    db_progress_t pg;
    if (s->db_down || db_progress(s->db, s->run_id, &pg, err, sizeof err)) return;
    s->n.done = pg.done, s->n.failed = pg.failed, s->n.docs_done = pg.docs_done, s->n.tokens = pg.tokens_done;
    s->n.bytes_done = pg.bytes_done;
}

/* Removes adopted lease i from the waiting list. */
static void adopted_drop(sched_t *s, size_t i) { s->adopted[i] = s->adopted[--s->n_adopted]; }

/* The waiting adopted lease of job_id under token, or -1. */
static long adopted_find(sched_t *s, int64_t job_id, uint64_t token) {
    for (size_t i = 0; i < s->n_adopted; i++)
        if (s->adopted[i].job_id == job_id && (uint64_t)s->adopted[i].token == token) return (long)i;
    return -1;
}

/* A worker said HELLO: if a lease found at start names it, it holds that
 * job again (the same attempt token: its commit is not fenced off). */
static void adopt_for(sched_t *s, fleet_worker_t *w) {
    for (size_t i = 0; i < s->n_adopted; i++) {
        const db_lease_t *l = &s->adopted[i];
        if (strcmp(l->worker, w->name)) continue;
        fleet_mark_busy(w, l->job_id, (uint64_t)l->token, now_ms() - l->age_ms, l->n_bytes, 1);
        log_info("worker %s reconnected holding job %" PRId64 ": lease adopted", w->name, w->job_id);
        adopted_drop(s, i);
        return;
    }
}

/* The grace period is over: the leases that no worker reclaimed are
 * requeued (or, done meanwhile, counted). */
static void adopt_expire(sched_t *s) {
    char reason[256];
    snprintf(reason, sizeof reason, "its worker did not reconnect within %ld ms of the coordinator's restart",
             2 * s->o.heartbeat_ms * s->o.liveness);
    while (s->n_adopted) {
        db_lease_t l = s->adopted[--s->n_adopted];
        release_job(s, l.job_id, (uint64_t)l.token, reason);
    }
    refresh_counts(s);
}

/* Counts the DONEs received since the last call that PostgreSQL confirms
 * (one statement for all of them); a holder's DONE of a job still leased
 * (nothing committed) releases the job.  When PostgreSQL cannot answer they
 * are dropped uncounted: a done job stays done (refresh_counts), any other
 * is found again by reconcile(). */
static void settle_dones(sched_t *s) {
    char err[LOG_ERRLEN];
    size_t n = s->n_dones;
    if (!n) return;
    s->n_dones = 0;
    int64_t *ids = malloc(n * sizeof *ids);
    db_job_state_t *st = malloc(n * sizeof *st);
    if (!ids || !st) {
        log_error("out of memory settling %zu DONE(s); reconcile finds their jobs", n);
        goto out;
    }
    for (size_t i = 0; i < n; i++) ids[i] = s->dones[i].job_id;
    if (s->db_down || db_jobs_state(s->db, s->run_id, n, ids, st, err, sizeof err)) {
        if (!s->db_down) log_error("%s", err);
        db_trouble(s, err);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const sched_done_t *d = &s->dones[i];
        if (st[i] == DB_JOB_DONE && d->held) {
            fleet_worker_t *w = fleet_find(s->fleet, d->peer, d->peer_len);
            s->n.done++;
            s->n.tokens += d->n_tokens;
            s->n.docs_done += d->n_docs;
            s->n.bytes_done += d->job_bytes;
            if (w && fleet_credit(s->fleet, w, d->n_tokens)) log_warn("out of memory counting a worker's job");
            log_debug("job %" PRId64 " done by %s: %" PRId64 " tokens", d->job_id, w ? w->name : "?", d->n_tokens);
        } else if (st[i] == DB_JOB_LEASED && d->release) {
            release_job(s, d->job_id, d->token, "worker reported done but nothing was committed");
        }
    }
out:
    free(ids);
    free(st);
}

/* Queues a DONE for settle_dones. */
static void on_done(sched_t *s, fleet_worker_t *w, const uint8_t *peer, size_t peer_len, const wire_msg_t *msg) {
    /* Counted once: only from the worker holding this attempt (a replayed
     * or late DONE finds no holder). */
    fleet_worker_t *h = holder(s, msg->u.done.job_id, msg->u.done.attempt_token, w);
    long a = adopted_find(s, msg->u.done.job_id, msg->u.done.attempt_token);
    sched_done_t d = {msg->u.done.job_id, msg->u.done.attempt_token, msg->u.done.n_tokens, msg->u.done.n_docs, 0, 0, 0, {0}, 0};
    d.job_bytes = h ? h->job_bytes : a >= 0 ? s->adopted[a].n_bytes : 0;
    d.held = !msg->u.done.stale && (h || a >= 0);
    d.release = !msg->u.done.stale && h;
    if (h) fleet_mark_idle(h);
    if (a >= 0) adopted_drop(s, (size_t)a); /* from a worker not (yet) reconnected under its name */
    if (!d.held && !d.release) return;      /* nothing to settle */
    if (peer_len <= sizeof d.peer) memcpy(d.peer, peer, peer_len), d.peer_len = peer_len;
    if (s->n_dones == s->cap_dones) {
        size_t cap = s->cap_dones ? 2 * s->cap_dones : 64;
        sched_done_t *nd = realloc(s->dones, cap * sizeof *nd);
        if (!nd) {
            log_error("out of memory noting job %" PRId64 "'s DONE; it is counted at the end", msg->u.done.job_id);
            return;
        }
        s->dones = nd, s->cap_dones = cap;
    }
    s->dones[s->n_dones++] = d;
}

/* Sends the leased job l to w (and, under TOKSHIFT_FAULT dup_dispatch, to
 * w2 too); on failure the job is released. */
static void send_job(sched_t *s, fleet_worker_t *w, fleet_worker_t *w2, const db_leased_t *l) {
    char err[LOG_ERRLEN];
    wire_msg_t m = {.type = WIRE_JOB};
    m.u.job.run_id = s->run_id;
    m.u.job.job_id = l->job_id;
    m.u.job.attempt_token = (uint64_t)l->token;
    wire_doc_t *wd = calloc(l->n_docs ? l->n_docs : 1, sizeof *wd);
    int64_t bytes = 0;
    for (size_t i = 0; wd && i < l->n_docs; i++) {
        const db_doc_t *d = &l->docs[i];
        wd[i] = (wire_doc_t){d->doc_id, d->text, d->text_len, NULL, 0};
        bytes += (int64_t)d->text_len;
    }
    score_job_t held = {0};
    if (!wd) {
        log_seterr(err, sizeof err, "out of memory");
    } else if (s->o.settings.score_run > 0 && score_attach(s->db, s->o.settings.score_run, s->run_id, l->job_id, wd,
                                                           l->n_docs, &held, err, sizeof err)) {
        log_error("job %" PRId64 ": %s", l->job_id, err);
        db_trouble(s, err);
        free(wd);
        wd = NULL;
    }
    m.u.job.docs = wd;
    m.u.job.n_docs = l->n_docs;
    fleet_mark_busy(w, l->job_id, (uint64_t)l->token, now_ms(), bytes, 0);
    if (!wd || send_to(s, w, &m)) {
        log_warn("job %" PRId64 " to %s: %s", l->job_id, w->name, wd ? "not sent" : err);
        fleet_mark_idle(w);
        release_job(s, l->job_id, (uint64_t)l->token, "could not be sent to the worker");
    } else {
        log_debug("job %" PRId64 " (attempt %d, %zu docs) -> %s", l->job_id, l->attempts, l->n_docs, w->name);
        if (w2 && !wire_send(s->sock, w2->id, w2->id_len, &m, err, sizeof err)) {
            log_warn("job %" PRId64 " handed to %s too, same attempt token (TOKSHIFT_FAULT dup_dispatch)", l->job_id,
                     w2->name);
            fleet_mark_busy(w2, l->job_id, (uint64_t)l->token, w->leased_ms, bytes, 0);
            s->dups++;
        }
    }
    score_release(&held);
    free(wd);
}

/* Orders (token, batch index) pairs by token. */
static int cmp_pair(const void *a, const void *b) {
    const int64_t *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

/* One batch: leases up to SCHED_LEASE_BATCH queued jobs to as many ready
 * workers in one statement and sends them.  Returns the workers served
 * (0: none ready, or PostgreSQL failed). */
static size_t dispatch_batch(sched_t *s, int dup) {
    char err[LOG_ERRLEN];
    fleet_worker_t *w[SCHED_LEASE_BATCH + 1];
    int64_t ids[SCHED_LEASE_BATCH], tokens[SCHED_LEASE_BATCH], pairs[2 * SCHED_LEASE_BATCH];
    const char *names[SCHED_LEASE_BATCH];
    size_t max = s->q_len < SCHED_LEASE_BATCH ? s->q_len : SCHED_LEASE_BATCH;
    size_t n = fleet_take_ready(s->fleet, w, dup ? 2 : max);
    if (dup && n < 2) return 0; /* TOKSHIFT_FAULT dup_dispatch: two ready workers, one job */
    size_t n_jobs = dup ? 1 : n;
    for (size_t i = 0; i < n_jobs; i++) {
        ids[i] = q_pop(s);
        tokens[i] = (int64_t)next_token(s);
        names[i] = w[i]->name;
        pairs[2 * i] = tokens[i], pairs[2 * i + 1] = (int64_t)i;
    }
    db_leased_t *l = NULL;
    size_t n_l = 0;
    if (db_jobs_lease(s->db, s->run_id, n_jobs, ids, tokens, names, &l, &n_l, err, sizeof err)) {
        log_error("leasing %zu job(s): %s", n_jobs, err);
        db_trouble(s, err);
        for (size_t i = 0; i < n_jobs; i++) q_push(s, ids[i]);
        return 0; /* PostgreSQL trouble: try again on the next round */
    }
    qsort(pairs, n_jobs, 2 * sizeof *pairs, cmp_pair);
    for (size_t k = 0; k < n_l; k++) {
        const int64_t key[2] = {l[k].token, 0};
        const int64_t *p = bsearch(key, pairs, n_jobs, 2 * sizeof *pairs, cmp_pair);
        if (!p) continue; /* (cannot happen: PostgreSQL returns the tokens given) */
        size_t i = (size_t)p[1];
        send_job(s, w[i], dup ? w[1] : NULL, &l[k]);
    }
    /* A job no longer pending (done meanwhile) is dropped; its worker
     * stays ready for the next batch. */
    db_leased_free(l, n_l);
    return n_jobs;
}

void sched_dispatch(sched_t *s) {
    settle_dones(s);
    /* (No lease in a session that has not taken the run's lock yet: another
     * scheduler on the handle reconnected since this one's tick.) */
    while (!s->db_down && s->lock_session == db_session(s->db) && s->q_len > 0) {
        int dup = fault_armed(FAULT_DUP_DISPATCH) && s->dups < fault_value(FAULT_DUP_DISPATCH);
        if (!dispatch_batch(s, dup)) return;
    }
}

unsigned sched_hello_caps(const wire_msg_t *m) {
    return (m->u.hello.observes ? SCHED_CAP_OBSERVES : 0) | (m->u.hello.templates ? SCHED_CAP_TEMPLATES : 0) |
           (m->u.hello.cuts_by_bytes ? SCHED_CAP_CUTS_BY_BYTES : 0);
}

int sched_fits(const sched_t *s, const char *model, unsigned caps, const char *worker, char *reason, size_t len) {
    if (s->o.settings.cut_every_bytes && !(caps & SCHED_CAP_CUTS_BY_BYTES))
        snprintf(reason, len, "run '%s' cuts by bytes, which worker %s (a version before --cut-every-bytes) would "
                 "not", s->o.run, worker);
    else if (s->o.settings.score_run > 0 && !(caps & SCHED_CAP_OBSERVES))
        snprintf(reason, len, "run '%s' scores another run's samples, which worker %s (a version before "
                 "cross-scoring) would draw anew", s->o.run, worker);
    else if (s->o.settings.chat_template && *s->o.settings.chat_template && !(caps & SCHED_CAP_TEMPLATES))
        snprintf(reason, len, "run '%s' reads its documents through a chat template, which worker %s (a version "
                 "before templates) would ignore", s->o.run, worker);
    else if (strcmp(model, s->o.identity))
        snprintf(reason, len, "model mismatch: run '%s' uses model %s, worker %s has %s", s->o.run, s->o.identity,
                 worker, model);
    else
        return 1;
    return 0;
}

/* This run's WELCOME to w. */
static void welcome(sched_t *s, fleet_worker_t *w) {
    wire_msg_t m = {.type = WIRE_WELCOME};
    m.u.welcome.run_id = s->run_id;
    m.u.welcome.model_identity = (char *)s->o.identity;
    m.u.welcome.settings = s->o.settings;
    m.u.welcome.heartbeat_ms = (int32_t)s->o.heartbeat_ms;
    m.u.welcome.liveness = (int32_t)s->o.liveness;
    send_to(s, w, &m);
}

/* HELLO: WELCOME, or SHUTDOWN when the worker cannot serve this run. */
static void on_hello(sched_t *s, fleet_worker_t *w, const uint8_t *peer, size_t peer_len, const wire_msg_t *msg) {
    char err[LOG_ERRLEN], reason[400];
    unsigned caps = sched_hello_caps(msg);
    if (!sched_fits(s, msg->u.hello.model_identity, caps, msg->u.hello.worker, reason, sizeof reason)) {
        wire_msg_t m = {.type = WIRE_SHUTDOWN};
        m.u.shutdown.reason = reason;
        m.u.shutdown.code = WIRE_SHUTDOWN_MODEL_MISMATCH;
        if (ratelimit_allow(&s->peer_log, now_ms(), NULL)) log_warn("%s", reason);
        wire_send(s->sock, peer, peer_len, &m, err, sizeof err);
        return;
    }
    if (w && w->job_id >= 0) release_job(s, w->job_id, w->token, "the worker reconnected");
    if (!(w = fleet_add(s->fleet, peer, peer_len, msg->u.hello.worker, now_ms()))) {
        log_error("out of memory adding a worker");
        return;
    }
    snprintf(w->model, sizeof w->model, "%s", msg->u.hello.model_identity);
    w->caps = caps;
    log_info("worker %s joined (%zu alive)", w->name, fleet_size(s->fleet));
    if (s->n_adopted) adopt_for(s, w);
    welcome(s, w);
}

int sched_awaits(const sched_t *s, const char *name) {
    for (size_t i = 0; i < s->n_adopted; i++)
        if (!strcmp(s->adopted[i].worker, name)) return 1;
    return 0;
}

int sched_has_attempt(const sched_t *s, int64_t job_id, uint64_t token) {
    return adopted_find((sched_t *)s, job_id, token) >= 0;
}

void sched_worker_leave(sched_t *s, fleet_worker_t *w, const char *why) {
    if (w->job_id >= 0) release_job(s, w->job_id, w->token, why);
    fleet_remove(s->fleet, w);
}

int sched_worker_join(sched_t *s, const fleet_worker_t *from) {
    fleet_worker_t *w = fleet_add(s->fleet, from->id, from->id_len, from->name, from->last_seen_ms);
    if (!w) return -1;
    snprintf(w->model, sizeof w->model, "%s", from->model);
    w->caps = from->caps;
    log_info("worker %s moves to run '%s' (%zu alive there)", w->name, s->o.run, fleet_size(s->fleet));
    welcome(s, w);
    return 0;
}

int64_t sched_run_id(const sched_t *s) { return s->run_id; }
const sched_opts_t *sched_opts(const sched_t *s) { return &s->o; }

void sched_on_message(sched_t *s, const uint8_t *peer, size_t peer_len, wire_msg_t *m) {
    char err[LOG_ERRLEN];
    fleet_worker_t *w = fleet_find(s->fleet, peer, peer_len);
    if (w) fleet_mark_seen(w, now_ms());
    switch (m->type) {
    case WIRE_HELLO:
        on_hello(s, w, peer, peer_len, m);
        return;
    case WIRE_READY:
        if (!w) { /* a worker we forgot (declared dead): it must say HELLO again */
            wire_msg_t hb = {.type = WIRE_HEARTBEAT};
            wire_send(s->sock, peer, peer_len, &hb, err, sizeof err);
            log_debug("READY from an unknown peer");
            return;
        }
        if (w->adopted && w->job_id >= 0) {
            /* A worker sends DONE or FAILED before asking again: one that
             * asks while holding an adopted lease is a new process under
             * the old name, without the job. */
            int64_t job = w->job_id;
            fleet_mark_idle(w);
            release_job(s, job, w->token, "its worker restarted without it");
        }
        fleet_mark_ready(w);
        return;
    case WIRE_DONE:
        on_done(s, w, peer, peer_len, m);
        return;
    case WIRE_FAILED: {
        int64_t job_id = m->u.failed.job_id;
        fleet_worker_t *h = holder(s, job_id, m->u.failed.attempt_token, w);
        if (h) fleet_mark_idle(h);
        long a = adopted_find(s, job_id, m->u.failed.attempt_token);
        if (a >= 0) adopted_drop(s, (size_t)a);
        char reason[600];
        snprintf(reason, sizeof reason, "worker %s: %s", w ? w->name : "?", m->u.failed.error ? m->u.failed.error : "");
        /* A failure the worker calls not retryable (the job itself is bad)
         * fails the job now: another attempt would end the same way. */
        release_job_limit(s, job_id, m->u.failed.attempt_token, reason,
                          m->u.failed.retryable ? (int)s->o.max_attempts : 0);
        return;
    }
    case WIRE_HEARTBEAT:
        /* A busy worker's progress in the job it holds (a late beat about
         * an earlier job is ignored). */
        if (w && m->u.heartbeat.busy && w->job_id == m->u.heartbeat.job_id)
            fleet_mark_progress(w, m->u.heartbeat.tokens, m->u.heartbeat.bytes, m->u.heartbeat.docs);
        return;
    default:
        if (ratelimit_allow(&s->peer_log, now_ms(), NULL))
            log_warn("unexpected %s from %s", wire_type_name(m->type), w ? w->name : "an unknown peer");
    }
}

void sched_bad_message(sched_t *s, const uint8_t *peer, size_t peer_len, const char *why) {
    fleet_worker_t *w = fleet_find(s->fleet, peer, peer_len);
    uint64_t held = 0;
    /* A peer sending garbage must not flood the log. */
    if (ratelimit_allow(&s->peer_log, now_ms(), &held))
        log_warn("bad message from %s: %s%s", w ? w->name : "an unknown peer", why,
                 held ? " (earlier bad messages not logged)" : "");
    s->n.bad_messages++;
    if (w) fleet_mark_seen(w, now_ms());
}

void sched_tick(sched_t *s) {
    if (db_revive(s) == 0 && s->n_unreleased) retry_releases(s);
    settle_dones(s);
    int64_t now = now_ms(), dead_after = s->o.heartbeat_ms * s->o.liveness;
    if (s->n_adopted && now >= s->adopt_until_ms && !s->db_down) adopt_expire(s);
    wire_msg_t hb = {.type = WIRE_HEARTBEAT};
    for (size_t i = 0; i < fleet_size(s->fleet);) {
        fleet_worker_t *w = fleet_at(s->fleet, i);
        if (now - w->last_seen_ms > dead_after) {
            char reason[256];
            snprintf(reason, sizeof reason, "worker %s silent for %" PRId64 " ms: presumed dead", w->name,
                     now - w->last_seen_ms);
            log_warn("%s", reason);
            if (w->job_id >= 0) release_job(s, w->job_id, w->token, reason);
            fleet_remove(s->fleet, w);
            continue;
        }
        if (w->job_id >= 0 && now - w->leased_ms > s->o.job_timeout_s * 1000) {
            char reason[256];
            snprintf(reason, sizeof reason, "timed out after %ld s on worker %s", s->o.job_timeout_s, w->name);
            int64_t job = w->job_id;
            fleet_mark_idle(w);
            release_job(s, job, w->token, reason);
        }
        /* Any message tells a worker that its coordinator lives (link.c):
         * one that had one within half a beat needs no heartbeat (with
         * 1,000 workers taking short jobs, heartbeats were a third of the
         * messages sent).  It hears from us within 1.5 beats. */
        if (now - w->last_sent_ms >= s->o.heartbeat_ms / 2) send_to(s, w, &hb);
        i++;
    }
}

int sched_finished(sched_t *s, int loading) {
    char err[LOG_ERRLEN];
    db_progress_t pg;
    settle_dones(s);
    if (loading || s->n_adopted || s->q_len || fleet_n_busy(s->fleet) || s->db_down ||
        now_ms() < s->next_idle_check_ms)
        return 0;
    if (db_progress(s->db, s->run_id, &pg, err, sizeof err)) {
        db_trouble(s, err);
        return 0;
    }
    if (pg.pending == 0 && pg.leased == 0 && !s->n_unreleased) return 1;
    reconcile(s, &pg);
    s->next_idle_check_ms = now_ms() + s->o.heartbeat_ms; /* not on every message */
    return 0;
}

int sched_add_jobs(sched_t *s, int64_t from, int64_t to, int64_t docs, int64_t bytes) {
    for (int64_t j = from; j < to; j++)
        if (q_push(s, j)) return -1;
    s->n.jobs_total += to - from;
    s->n.docs_total += docs;
    s->n.bytes_total += bytes;
    return 0;
}

void sched_finish(sched_t *s) {
    wire_msg_t m = {.type = WIRE_SHUTDOWN};
    m.u.shutdown.reason = "run complete";
    m.u.shutdown.code = WIRE_SHUTDOWN_RUN_COMPLETE;
    for (size_t i = 0; i < fleet_size(s->fleet); i++) send_to(s, fleet_at(s->fleet, i), &m);
    refresh_counts(s);
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The progress line: jobs, documents and tokens done, the token rate (a
 * moving average over the recent lines, counting the tokens measured in
 * jobs still in hand, which the workers' heartbeats report), and the ETA
 * from the work still to do: the text bytes not yet measured, at the tokens
 * per byte seen so far, over that rate.  No rate yet, or none lately: no
 * ETA ("--:--:--"). */
void sched_progress(sched_t *s, int final) {
    const sched_counts_t *c = &s->n;
    int64_t now = now_ms(), el = now - s->t0_ms;
    int64_t fl_tokens = 0, fl_bytes = 0, fl_docs = 0;
    size_t alive = 0;
    for (size_t i = 0; i < fleet_size(s->fleet); i++) {
        const fleet_worker_t *w = fleet_at(s->fleet, i);
        alive += !w->unreachable;
        if (w->job_id >= 0) fl_tokens += w->prog_tokens, fl_bytes += w->prog_bytes, fl_docs += w->prog_docs;
    }
    int64_t tokens = c->tokens + fl_tokens, bytes = c->bytes_done + fl_bytes;
    if (s->last_tokens_ms == 0) s->last_tokens_ms = s->t0_ms, s->last_tokens = c->tokens0;
    if (now > s->last_tokens_ms) {
        double r = (double)(tokens - s->last_tokens) * 1000.0 / (double)(now - s->last_tokens_ms);
        if (r < 0) r = 0; /* a job handed back takes its in-flight tokens with it */
        s->rate = s->rate > 0 ? 0.7 * s->rate + 0.3 * r : r;
        s->last_tokens_ms = now, s->last_tokens = tokens;
    }
    double per_byte = bytes > 0 ? (double)tokens / (double)bytes : 0;
    int64_t bytes_left = c->bytes_total - bytes > 0 ? c->bytes_total - bytes : 0;
    double tokens_left = per_byte * (double)bytes_left;
    char eta[32] = "--:--:--";
    if (final) {
        snprintf(eta, sizeof eta, "00:00:00");
    } else if (s->rate > 0.5 && per_byte > 0) {
        double t = tokens_left / s->rate;
        if (t < 100.0 * 3600) snprintf(eta, sizeof eta, "%02d:%02d:%02d", (int)(t / 3600), (int)(t / 60) % 60, (int)t % 60);
    }
    char who[160] = "";
    if (s->o.name_in_log) snprintf(who, sizeof who, "run '%s': ", s->o.run);
    log_info("%s%sjobs %" PRId64 "/%" PRId64 " done, %" PRId64 " failed | docs %" PRId64 "/%" PRId64 " | tokens %" PRId64
             " (%" PRId64 " in jobs in hand) | %.0f tok/s | ETA %s (~%.3g tokens left) | workers %zu | retries %" PRId64,
             who, final ? "finished: " : "", c->done, c->jobs_total, c->failed, c->docs_done + fl_docs, c->docs_total, tokens,
             fl_tokens, final ? (el > 0 ? (double)(c->tokens - c->tokens0) * 1000.0 / (double)el : 0.0) : s->rate, eta,
             final ? 0.0 : tokens_left, alive, c->retries);
    if (final && !s->o.name_in_log) { /* (the process's CPU: one run's only when it serves one) */
        int64_t finished = c->done + c->failed;
        double cpu = cpu_seconds();
        log_info("coordinator CPU %.3f s over %.1f s wall (%.3f ms per job)", cpu, el / 1000.0,
                 finished ? cpu * 1000.0 / (double)finished : 0.0);
    }
}

sched_t *sched_new(const sched_opts_t *o, db_t *db, void *sock, int64_t run_id, char *err, size_t errlen) {
    sched_t *s = calloc(1, sizeof *s);
    int64_t *pending = NULL;
    size_t n_pending = 0;
    db_progress_t pg;
    if (!s || !(s->fleet = fleet_new())) {
        log_seterr(err, errlen, "out of memory");
        goto error;
    }
    s->o = *o;
    s->db = db;
    s->sock = sock;
    s->run_id = run_id;
    int urnd = open("/dev/urandom", O_RDONLY);
    if (urnd < 0 || read(urnd, &s->rng, sizeof s->rng) != sizeof s->rng) s->rng = (uint64_t)time(NULL) * 2654435761u;
    if (urnd >= 0) close(urnd);
    s->rng |= 1;
    if (take_lock(s, err, errlen)) goto error;
    /* Leases of the coordinator before: adopted, not requeued, while their
     * workers reconnect (see adopt_for). */
    if (db_jobs_leased(db, run_id, &s->adopted, &s->n_adopted, err, errlen) ||
        db_jobs_pending(db, run_id, 0, &pending, &n_pending, err, errlen) ||
        db_progress(db, run_id, &pg, err, errlen))
        goto error;
    for (size_t i = 0; i < n_pending; i++)
        if (q_push(s, pending[i])) {
            log_seterr(err, errlen, "out of memory");
            goto error;
        }
    free(pending);
    s->n.jobs_total = pg.jobs;
    s->n.done = pg.done;
    s->n.failed = pg.failed;
    s->n.docs_total = pg.docs - pg.docs_error;
    s->n.bytes_total = pg.bytes;
    s->n.bytes_done = pg.bytes_done;
    s->n.docs_done = pg.docs_done;
    s->n.tokens = s->n.tokens0 = pg.tokens_done;
    s->n.retries = pg.retries;
    s->t0_ms = now_ms();
    ratelimit_init(&s->peer_log, 2.0, 20, s->t0_ms);
    if (s->n_adopted) {
        /* A worker notices the old coordinator's silence after heartbeat x
         * liveness (the same settings reach it in WELCOME), then reconnects
         * after its first reconnect delay: twice that period covers both. */
        s->adopt_until_ms = s->t0_ms + 2 * o->heartbeat_ms * o->liveness;
        log_info("%zu job(s) leased before the restart: their workers have %ld ms to reconnect before they are "
                 "requeued", s->n_adopted, 2 * o->heartbeat_ms * o->liveness);
    }
    return s;
error:
    free(pending);
    sched_destroy(&s);
    return NULL;
}

void sched_destroy(sched_t **self_p) {
    if (!self_p || !*self_p) return;
    sched_t *s = *self_p;
    if (s->locked && s->lock_session == db_session(s->db)) db_run_unlock(s->db, s->run_id);
    fleet_destroy(&s->fleet);
    free(s->queue);
    free(s->unreleased);
    free(s->adopted);
    free(s->dones);
    free(s);
    *self_p = NULL;
}

int sched_db_down(const sched_t *s) { return s->db_down; }
size_t sched_n_queued(const sched_t *s) { return s->q_len; }
size_t sched_n_adopted(const sched_t *s) { return s->n_adopted; }
size_t sched_n_unheld(const sched_t *s) { return s->n_adopted + s->n_unreleased; }
fleet_t *sched_fleet(sched_t *s) { return s->fleet; }
const sched_counts_t *sched_counts(const sched_t *s) { return &s->n; }
