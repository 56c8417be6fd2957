/* scheduler.h - the coordinator's scheduling core: which worker holds which job.
 *
 * What it is: the job queue, the workers' table (fleet.c) and the jobs'
 * states in PostgreSQL kept in step, driven by the workers' wire messages
 * (sched_on_message) and by time (sched_tick).  A job's life, as the jobs
 * table's CHECKs and transition trigger allow it (sql/migrations/
 * 001_schema.sql):
 *
 *                 lease (sched_dispatch: attempts += 1, a new token)
 *     pending ------------------------------------------------> leased
 *       ^  ^                                                     |  |  |
 *       |  +-- requeue (attempts < max): FAILED, worker silent, -+  |  |
 *       |      job timeout, a new HELLO, DONE without a commit,     |  |
 *       |      lease not reclaimed after a restart                  |  |
 *       |                                                           |  |
 *       +-- reconcile: pending/leased in PostgreSQL, held by none   |  |
 *                                                                   |  |
 *     failed <---- the same at the attempt limit, or a FAILED that -+  |
 *                  says not retryable                                  |
 *     done <---- the worker's own commit under the current token ------+
 *                (db_commit_job; the coordinator only reads it)
 *
 * done and failed are final.  Every release names the attempt token: a
 * message about an older attempt (a replayed DONE, a FAILED after a
 * requeue) changes nothing ("fenced off").
 *
 * Round trips: a dispatch leases a batch of jobs to a batch of ready
 * workers and reads their documents in one statement; the DONEs received
 * between two dispatches are checked against PostgreSQL in one statement.
 * Releases (failures, deaths, timeouts) are one statement each: rare.
 *
 * What it is not: the poll loop, the socket's set-up, the corpus load or
 * start-up (main.c, load.c), nor a writer of results (workers write them).
 * Not thread-safe: one loop drives it. */
#ifndef TS_SCHEDULER_H
#define TS_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "fleet.h"
#include "wire.h"

/* The longest routing identity a worker may have (fleet.h's FLEET_MAX_ID);
 * a receive buffer of this size holds every peer's. */
#define SCHED_MAX_PEER 256

typedef struct {
    const char *run;          /* the run's name, for messages */
    const char *identity;     /* the run's model identity (64 hex digits) */
    wire_settings_t settings; /* sent in WELCOME; settings.score_run > 0: a cross-scoring run */
    long max_attempts;        /* attempts before a job is failed (>= 1) */
    long heartbeat_ms, liveness; /* silence > heartbeat_ms x liveness: a worker is dead */
    long job_timeout_s;       /* a lease older than this is taken back */
    int name_in_log;          /* progress lines name the run (a coordinator of several runs) */
} sched_opts_t;

/* The progress counters (since the run began; PostgreSQL's at start). */
typedef struct {
    int64_t jobs_total, done, failed, retries;
    int64_t tokens, tokens0; /* tokens done, and at start */
    int64_t docs_done, docs_total;
    int64_t bytes_total, bytes_done; /* text bytes of usable documents: all loaded, and of done jobs */
    uint64_t bad_messages;   /* malformed messages received */
} sched_counts_t;

typedef struct sched sched_t;

/* A scheduler for run run_id serving over sock (a bound ROUTER with
 * ZMQ_ROUTER_MANDATORY, which the caller keeps and closes), with its
 * database work on db (the caller's; lock_timeout is the caller's to set).
 * o's strings and settings' arrays must outlive it.  Reads the run's
 * pending jobs into the queue, its leases (adopted while their workers
 * reconnect, for 2 x heartbeat x liveness) and its progress.  NULL with a
 * message when PostgreSQL fails or memory runs out. */
sched_t *sched_new(const sched_opts_t *o, db_t *db, void *sock, int64_t run_id, char *err, size_t errlen);
/* Frees it (not db or sock); NULL-safe, clears *self_p. */
void sched_destroy(sched_t **self_p);

/* One message m from peer (its routing identity), decoded by the caller.
 * Answers on the socket at once where the protocol says so (WELCOME,
 * SHUTDOWN for a wrong model); hands out jobs only in sched_dispatch.  m
 * stays the caller's. */
void sched_on_message(sched_t *self, const uint8_t *peer, size_t peer_len, wire_msg_t *m);
/* A message from peer that did not decode (why): counted, and logged at a
 * limited rate; the peer still counts as heard from. */
void sched_bad_message(sched_t *self, const uint8_t *peer, size_t peer_len, const char *why);
/* Settles the DONEs received since the last call, then hands queued jobs to
 * ready workers.  Call after each batch of messages. */
void sched_dispatch(sched_t *self);
/* Every heartbeat: reconnects after database trouble and retries the
 * releases it held up, requeues the leases nobody reclaimed after a
 * restart, declares silent workers dead (their jobs requeued), takes back
 * timed-out jobs, and sends heartbeats. */
void sched_tick(sched_t *self);
/* Whether the run is finished: nothing loading (loading = 0), queued, held
 * or pending/leased in PostgreSQL.  When PostgreSQL has jobs that nobody
 * holds, they are requeued (reconcile).  Asks PostgreSQL at most once per
 * heartbeat. */
int sched_finished(sched_t *self, int loading);
/* Queues the jobs [from, to) of a committed load batch, with their
 * documents and bytes for the progress line.  0, or -1 out of memory. */
int sched_add_jobs(sched_t *self, int64_t from, int64_t to, int64_t docs, int64_t bytes);
/* The run is complete: SHUTDOWN ("run complete") to every worker, and the
 * counters refreshed from PostgreSQL. */
void sched_finish(sched_t *self);
/* Logs the progress line (final: the closing one, with CPU per job). */
void sched_progress(sched_t *self, int final);

/* ---- several runs from one fleet (coordinator/runq.c) ------------------ */

/* What a worker's version can do, from its HELLO (fleet_worker_t.caps). */
enum { SCHED_CAP_OBSERVES = 1, SCHED_CAP_TEMPLATES = 2, SCHED_CAP_CUTS_BY_BYTES = 4 };
/* The caps a HELLO announces. */
unsigned sched_hello_caps(const wire_msg_t *hello);
/* Whether a worker of model (identity) and caps can serve this run: 1, or 0
 * with why in reason (a sentence naming the run and the worker). */
int sched_fits(const sched_t *self, const char *model, unsigned caps, const char *worker, char *reason,
               size_t len);
/* Whether a lease adopted at start waits for the worker named name. */
int sched_awaits(const sched_t *self, const char *name);
/* Whether an adopted lease of this run has (job_id, token). */
int sched_has_attempt(const sched_t *self, int64_t job_id, uint64_t token);
/* Takes w (this scheduler's) out of its fleet; a job it holds is released
 * with why (requeued, as a silent worker's).  w is invalid afterwards. */
void sched_worker_leave(sched_t *self, fleet_worker_t *w, const char *why);
/* Adds a copy of w (another scheduler's idle worker, which that one then
 * lets go of with sched_worker_leave) to this fleet and sends it this run's
 * WELCOME; it is ready once it answers READY.  0, or -1 out of memory. */
int sched_worker_join(sched_t *self, const fleet_worker_t *w);
/* The run's id and options (as given to sched_new). */
int64_t sched_run_id(const sched_t *self);
const sched_opts_t *sched_opts(const sched_t *self);

/* Whether database work waits for sched_tick to reconnect. */
int sched_db_down(const sched_t *self);
/* Jobs queued, and leases waiting to be adopted. */
size_t sched_n_queued(const sched_t *self);
size_t sched_n_adopted(const sched_t *self);
/* Jobs leased in PostgreSQL but held by no worker here: adopted leases
 * waiting for their workers, and releases waiting for PostgreSQL. */
size_t sched_n_unheld(const sched_t *self);
/* The workers' table, to read (the metrics' snapshot); the scheduler's. */
fleet_t *sched_fleet(sched_t *self);
const sched_counts_t *sched_counts(const sched_t *self);

#endif
