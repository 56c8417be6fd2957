/* runq.c - see runq.h. */
#include "runq.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "now.h"
#include "ratelimit.h"
#include "runsettings.h"
#include "score.h"
#include "table.h"

/* One run of the queue and what its scheduler's options point into. */
typedef struct {
    sched_t *sched;
    sched_opts_t so;
    int64_t run_id;
    char *name, *tpl;
    char identity[65], vocab_digest[65];
    int32_t prefix_buf[WIRE_MAX_CUTS];
    size_t rank; /* its place in the queue's order at the last read */
} runq_run_t;

struct runq {
    runq_opts_t o;
    db_t *db;
    void *sock;
    runq_run_t **runs; /* in queue order */
    size_t n, cap;
    size_t completed;
    ratelimit_t log; /* refusals, which any peer can provoke */
};

static void run_free(runq_run_t **rp) {
    runq_run_t *r = *rp;
    if (!r) return;
    sched_destroy(&r->sched);
    free(r->name);
    free(r->tpl);
    free(r);
    *rp = NULL;
}

/* The options of the queued run q: its settings as registered (the keys a
 * run's WELCOME carries beyond the measurement's: score_run, vocab_digest,
 * template).  0, or -1 with a message. */
static int run_settings(runq_run_t *r, const db_queued_t *q, char *err, size_t errlen) {
    char why[LOG_ERRLEN];
    wire_settings_t *s = &r->so.settings;
    runsettings_t rs = {0};
    memset(s, 0, sizeof *s);
    if (runsettings_parse(q->settings, &rs, why, sizeof why) || score_wire_settings(&rs, s, r->prefix_buf, why, sizeof why)) {
        runsettings_free(&rs);
        return log_seterr(err, errlen, "run '%s': %s", q->name, why);
    }
    r->tpl = rs.chat_template, rs.chat_template = NULL; /* taken */
    s->chat_template = r->tpl;
    runsettings_free(&rs);
    /* (A cross-scoring run's keys, which only the coordinator reads.) */
    json_t *j = json_loads(q->settings, 0, NULL);
    if (!j) return log_seterr(err, errlen, "run '%s': its settings are unreadable", q->name);
    json_t *sr = json_object_get(j, "score_run"), *vd = json_object_get(j, "vocab_digest");
    if (json_is_integer(sr)) s->score_run = (int64_t)json_integer_value(sr);
    if (json_is_string(vd)) snprintf(r->vocab_digest, sizeof r->vocab_digest, "%s", json_string_value(vd));
    s->vocab_digest = r->vocab_digest;
    json_decref(j);
    return 0;
}

/* A scheduler for the queued run q, its status running.  NULL with a
 * message. */
static runq_run_t *run_new(runq_t *self, const db_queued_t *q, char *err, size_t errlen) {
    runq_run_t *r = calloc(1, sizeof *r);
    if (!r || !(r->name = strdup(q->name))) {
        log_seterr(err, errlen, "out of memory");
        goto error;
    }
    r->run_id = q->run_id;
    snprintf(r->identity, sizeof r->identity, "%s", q->model_identity);
    if (run_settings(r, q, err, errlen)) goto error;
    r->so.run = r->name;
    r->so.identity = r->identity;
    r->so.max_attempts = self->o.max_attempts;
    r->so.heartbeat_ms = self->o.heartbeat_ms;
    r->so.liveness = self->o.liveness;
    r->so.job_timeout_s = self->o.job_timeout_s;
    r->so.name_in_log = 1;
    if (!(r->sched = sched_new(&r->so, self->db, self->sock, r->run_id, err, errlen))) goto error;
    if (!strcmp(q->status, "queued") && db_run_set_status(self->db, r->run_id, "running", err, errlen)) goto error;
    log_info("run '%s' (id %" PRId64 ", priority %d): serving %zu pending jobs", r->name, r->run_id, q->priority,
             sched_n_queued(r->sched));
    return r;
error:
    run_free(&r);
    return NULL;
}

static int cmp_rank(const void *a, const void *b) {
    const runq_run_t *x = *(runq_run_t *const *)a, *y = *(runq_run_t *const *)b;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

/* Reads the queue again: new runs join, every run takes its place in the
 * order (runs no longer listed keep theirs, after the listed ones).  0, or
 * -1 with a message when the queue could not be read or memory ran out
 * (the runs served stay as they were). */
static int refresh(runq_t *self, char *err, size_t errlen) {
    db_queued_t *q = NULL;
    size_t n = 0;
    if (db_queue_list(self->db, &q, &n, err, errlen)) return -1;
    for (size_t k = 0; k < self->n; k++) self->runs[k]->rank += n + self->n; /* after the listed ones */
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        runq_run_t *r = NULL;
        for (size_t k = 0; k < self->n && !r; k++)
            if (self->runs[k]->run_id == q[i].run_id) r = self->runs[k];
        if (!r) {
            if (self->n == self->cap) {
                size_t cap = self->cap ? 2 * self->cap : 8;
                runq_run_t **nr = realloc(self->runs, cap * sizeof *nr);
                if (!nr) {
                    rc = log_seterr(err, errlen, "out of memory");
                    break;
                }
                self->runs = nr, self->cap = cap;
            }
            /* A run that cannot be served now (PostgreSQL trouble, its
             * settings unreadable) stays queued and is tried again at the
             * next read; the others are served. */
            char why[LOG_ERRLEN];
            /* A run another coordinator serves (another queue server, or
             * its own --run) is left to it: asked again at every read, so
             * without looking up the holder, and said at debug level. */
            int held = db_run_try_lock(self->db, q[i].run_id, why, sizeof why);
            if (held > 0) {
                log_debug("run '%s' is served by another coordinator", q[i].name);
                continue;
            }
            if (held == 0) db_run_unlock(self->db, q[i].run_id); /* run_new's scheduler takes it */
            if (held < 0 || !(r = run_new(self, &q[i], why, sizeof why))) {
                if (ratelimit_allow(&self->log, now_ms(), NULL)) log_error("run '%s' is not served: %s", q[i].name, why);
                continue;
            }
            self->runs[self->n++] = r;
        }
        r->rank = i;
    }
    db_queue_free(q, n);
    if (self->n > 1) qsort(self->runs, self->n, sizeof *self->runs, cmp_rank);
    return rc;
}

runq_t *runq_new(const runq_opts_t *o, db_t *db, void *sock, char *err, size_t errlen) {
    runq_t *self = calloc(1, sizeof *self);
    if (!self) {
        log_seterr(err, errlen, "out of memory");
        return NULL;
    }
    self->o = *o;
    self->db = db;
    self->sock = sock;
    ratelimit_init(&self->log, 2.0, 20, now_ms());
    if (refresh(self, err, errlen)) runq_destroy(&self);
    return self;
}

void runq_destroy(runq_t **self_p) {
    if (!self_p || !*self_p) return;
    runq_t *self = *self_p;
    for (size_t i = 0; i < self->n; i++) run_free(&self->runs[i]);
    free(self->runs);
    free(self);
    *self_p = NULL;
}

/* The first run in queue order, other than skip, that a worker of model and
 * caps can serve, and (with_jobs) that has queued jobs; NULL when none. */
static runq_run_t *best(runq_t *self, const char *model, unsigned caps, const char *worker, int with_jobs,
                        const runq_run_t *skip) {
    char reason[400];
    for (size_t i = 0; i < self->n; i++) {
        runq_run_t *r = self->runs[i];
        if (r == skip || (with_jobs && !sched_n_queued(r->sched))) continue;
        if (sched_fits(r->sched, model, caps, worker, reason, sizeof reason)) return r;
    }
    return NULL;
}

/* The run whose fleet has peer (and the worker into *w), or NULL. */
static runq_run_t *owner(runq_t *self, const uint8_t *peer, size_t peer_len, fleet_worker_t **w) {
    for (size_t i = 0; i < self->n; i++)
        if ((*w = fleet_find(sched_fleet(self->runs[i]->sched), peer, peer_len))) return self->runs[i];
    *w = NULL;
    return NULL;
}

/* Moves w, an idle worker of run from, to run to (its WELCOME); 0 or -1. */
static int move(runq_run_t *from, runq_run_t *to, fleet_worker_t *w) {
    fleet_worker_t copy = *w;
    if (sched_worker_join(to->sched, &copy)) {
        log_error("out of memory moving worker %s", copy.name);
        return -1;
    }
    sched_worker_leave(from->sched, w, "the worker moved to another run");
    return 0;
}

/* w, ready in run own: to the first run in queue order with queued jobs
 * that it can serve, when that is not own.  1 when it moved. */
static int rebalance(runq_t *self, runq_run_t *own, fleet_worker_t *w) {
    if (!w->ready || w->job_id >= 0) return 0;
    runq_run_t *to = best(self, w->model, w->caps, w->name, 1, NULL);
    return to && to != own && !move(own, to, w);
}

/* HELLO from a worker that no run can take: SHUTDOWN (model mismatch),
 * naming the models the queue's runs use. */
static void refuse(runq_t *self, const uint8_t *peer, size_t peer_len, const wire_msg_t *m) {
    char reason[600], err[LOG_ERRLEN];
    int at = snprintf(reason, sizeof reason, "no run in the queue can use worker %s (model %s)", m->u.hello.worker,
                      m->u.hello.model_identity);
    if (!self->n) snprintf(reason + at, sizeof reason - (size_t)at, ": the queue is empty");
    for (size_t i = 0; i < self->n && i < 4 && at > 0 && (size_t)at < sizeof reason; i++) {
        char why[400];
        sched_fits(self->runs[i]->sched, m->u.hello.model_identity, sched_hello_caps(m), m->u.hello.worker, why,
                   sizeof why);
        at += snprintf(reason + at, sizeof reason - (size_t)at, "%s%s", i ? "; " : ": ", why);
    }
    if (ratelimit_allow(&self->log, now_ms(), NULL)) log_warn("%s", reason);
    wire_msg_t s = {.type = WIRE_SHUTDOWN};
    s.u.shutdown.reason = reason;
    s.u.shutdown.code = WIRE_SHUTDOWN_MODEL_MISMATCH;
    wire_send(self->sock, peer, peer_len, &s, err, sizeof err);
}

void runq_on_message(runq_t *self, const uint8_t *peer, size_t peer_len, wire_msg_t *m) {
    fleet_worker_t *w;
    runq_run_t *own = owner(self, peer, peer_len, &w), *to = NULL;
    if (m->type == WIRE_HELLO) {
        /* A lease adopted at start waits for this worker: its run first. */
        for (size_t i = 0; i < self->n && !to; i++)
            if (sched_awaits(self->runs[i]->sched, m->u.hello.worker)) to = self->runs[i];
        unsigned caps = sched_hello_caps(m);
        if (!to) to = best(self, m->u.hello.model_identity, caps, m->u.hello.worker, 1, NULL);
        if (!to) to = best(self, m->u.hello.model_identity, caps, m->u.hello.worker, 0, NULL);
        if (!to) {
            if (own) sched_worker_leave(own->sched, w, "the worker reconnected");
            refuse(self, peer, peer_len, m);
            return;
        }
        if (own && own != to) sched_worker_leave(own->sched, w, "the worker reconnected");
        sched_on_message(to->sched, peer, peer_len, m);
        return;
    }
    if (!own) {
        /* A DONE or FAILED from a worker not (yet) reconnected: the run
         * whose adopted lease it names; else any run fences it off by its
         * token (a READY from a forgotten worker: told to say HELLO). */
        if (m->type == WIRE_DONE || m->type == WIRE_FAILED) {
            int64_t job = m->type == WIRE_DONE ? m->u.done.job_id : m->u.failed.job_id;
            uint64_t tok = m->type == WIRE_DONE ? m->u.done.attempt_token : m->u.failed.attempt_token;
            for (size_t i = 0; i < self->n && !to; i++)
                if (sched_has_attempt(self->runs[i]->sched, job, tok)) to = self->runs[i];
            if (!to) return; /* stale: no run holds that attempt */
        }
        if (!to && self->n) to = self->runs[0];
        if (to) sched_on_message(to->sched, peer, peer_len, m);
        return;
    }
    sched_on_message(own->sched, peer, peer_len, m);
    if (m->type == WIRE_READY && (w = fleet_find(sched_fleet(own->sched), peer, peer_len))) rebalance(self, own, w);
}

void runq_bad_message(runq_t *self, const uint8_t *peer, size_t peer_len, const char *why) {
    fleet_worker_t *w;
    runq_run_t *own = owner(self, peer, peer_len, &w);
    if (!own && self->n) own = self->runs[0];
    if (own) sched_bad_message(own->sched, peer, peer_len, why);
}

void runq_dispatch(runq_t *self) {
    for (size_t i = 0; i < self->n; i++) sched_dispatch(self->runs[i]->sched);
}

/* Closes the finished run at index i: its workers move to another run they
 * can serve (one with queued jobs first), the others get SHUTDOWN (run
 * complete); status done; the final progress line and the summary. */
static void close_run(runq_t *self, size_t i, FILE *out) {
    char err[LOG_ERRLEN];
    runq_run_t *r = self->runs[i];
    fleet_t *f = sched_fleet(r->sched);
    for (size_t k = 0; k < fleet_size(f);) {
        fleet_worker_t *w = fleet_at(f, k);
        runq_run_t *to = best(self, w->model, w->caps, w->name, 1, r);
        if (!to) to = best(self, w->model, w->caps, w->name, 0, r);
        if (to && !move(r, to, w)) continue;
        k++;
    }
    sched_finish(r->sched);
    if (self->o.closing) self->o.closing(self->o.arg, r->sched);
    if (db_run_set_status(self->db, r->run_id, "done", err, sizeof err)) log_error("run '%s': %s", r->name, err);
    sched_progress(r->sched, 1);
    log_info("run '%s' (id %" PRId64 ") is complete", r->name, r->run_id);
    if (out && table_print_report(self->db, r->run_id, DB_REPORT_SUMMARY, out, err, sizeof err))
        log_error("%s", err);
    run_free(&self->runs[i]);
    memmove(self->runs + i, self->runs + i + 1, (self->n - i - 1) * sizeof *self->runs);
    self->n--;
    self->completed++;
}

void runq_tick(runq_t *self, FILE *out) {
    char err[LOG_ERRLEN];
    for (size_t i = 0; i < self->n; i++) sched_tick(self->runs[i]->sched);
    int down = 0;
    for (size_t i = 0; i < self->n; i++) down |= sched_db_down(self->runs[i]->sched);
    if (!down && refresh(self, err, sizeof err)) log_error("reading the queue: %s", err);
    for (size_t i = 0; i < self->n;) {
        if (sched_finished(self->runs[i]->sched, 0)) close_run(self, i, out);
        else i++;
    }
    /* Idle workers of runs without queued jobs, to runs with them. */
    for (size_t i = 0; i < self->n; i++) {
        runq_run_t *r = self->runs[i];
        if (sched_n_queued(r->sched)) continue;
        fleet_t *f = sched_fleet(r->sched);
        for (size_t k = 0; k < fleet_size(f);)
            if (!rebalance(self, r, fleet_at(f, k))) k++;
    }
}

void runq_progress(runq_t *self) {
    for (size_t i = 0; i < self->n; i++) sched_progress(self->runs[i]->sched, 0);
}

size_t runq_n_runs(const runq_t *self) { return self->n; }
sched_t *runq_sched_at(runq_t *self, size_t i) { return self->runs[i]->sched; }
size_t runq_n_completed(const runq_t *self) { return self->completed; }
