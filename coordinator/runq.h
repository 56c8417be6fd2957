/* runq.h - one coordinator serving the queue of runs from one fleet.
 *
 * What it is: the runs that PostgreSQL holds in its queue (migration 013:
 * queued or running, queued_at set), each with its own scheduling core
 * (scheduler.c: its jobs, leases, workers), and the routing between them.
 * A worker belongs to one run at a time (the run whose WELCOME it last
 * had).  The order of the queue is priority (highest first), then FIFO:
 *
 *   HELLO  --> the run whose lease (adopted after a restart) waits for this
 *              worker; else the first run in queue order that has queued
 *              jobs and that the worker can serve (model, version); else the
 *              first it can serve at all; else SHUTDOWN (model mismatch)
 *              naming the models the queue's runs use
 *   READY  --> if an earlier run in queue order has queued jobs the worker
 *              can serve, the worker moves there (that run's WELCOME; it
 *              answers READY) instead of taking a job of its own run
 *   tick   --> the queue is read again (new runs join, priorities change);
 *              idle workers of runs without queued jobs move to runs with
 *              them; a finished run is marked done, its workers move to
 *              another run they can serve or get SHUTDOWN (run complete)
 *
 * A run completes on its own: its workers move on, the others go on.
 * Restarted, the coordinator resumes every run of the queue (each
 * scheduler adopts its run's leases).
 *
 * What it is not: the poll loop or the socket (main.c), the corpus load
 * (a run joins the queue loaded: tokshift-coordinator --submit), or a
 * second source of truth: every job's state is PostgreSQL's.  Not
 * thread-safe. */
#ifndef TS_RUNQ_H
#define TS_RUNQ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "db.h"
#include "scheduler.h"
#include "wire.h"

typedef struct runq runq_t;

/* The options every run is served with (sched_opts_t's scheduling part;
 * run, identity and settings are each run's). */
typedef struct {
    long max_attempts, heartbeat_ms, liveness, job_timeout_s;
    /* Called with a run's scheduler when it is complete, its counts final,
     * before it is freed (the metrics' last snapshot); may be NULL. */
    void (*closing)(void *arg, sched_t *s);
    void *arg;
} runq_opts_t;

/* A queue server over sock (a bound ROUTER with ZMQ_ROUTER_MANDATORY; the
 * caller's) with its database work on db (the caller's), serving the runs
 * of the queue as PostgreSQL has them now.  NULL with a message when
 * PostgreSQL fails or memory runs out. */
runq_t *runq_new(const runq_opts_t *o, db_t *db, void *sock, char *err, size_t errlen);
/* Frees it and its schedulers (not db or sock); NULL-safe, clears *self_p. */
void runq_destroy(runq_t **self_p);

/* One decoded message from peer, routed to its run (HELLO: to the run
 * chosen for it; see above).  m stays the caller's. */
void runq_on_message(runq_t *self, const uint8_t *peer, size_t peer_len, wire_msg_t *m);
/* A message from peer that did not decode (sched_bad_message of its run). */
void runq_bad_message(runq_t *self, const uint8_t *peer, size_t peer_len, const char *why);
/* Every run's sched_dispatch, in queue order. */
void runq_dispatch(runq_t *self);
/* Every heartbeat: every run's sched_tick; the queue read again; idle
 * workers moved to runs with queued jobs; finished runs closed (status
 * done, final progress line, summary to out when out is not NULL). */
void runq_tick(runq_t *self, FILE *out);
/* Every run's progress line. */
void runq_progress(runq_t *self);

/* Runs served now. */
size_t runq_n_runs(const runq_t *self);
/* The i-th run's scheduler, in queue order (i < runq_n_runs). */
sched_t *runq_sched_at(runq_t *self, size_t i);
/* Runs completed since runq_new. */
size_t runq_n_completed(const runq_t *self);

#endif
