/* fleet.h - the coordinator's view of its workers.
 *
 * What it is: a table of the workers that have said HELLO, keyed by their
 * ZeroMQ routing identity, with when each was last heard from (any message
 * counts), whether it has asked for a job, and which job (and attempt token)
 * it holds.  Its state changes only through the fleet_mark_* functions:
 *
 *   fleet_add --> idle --fleet_mark_ready--> ready --fleet_mark_busy--> busy
 *                  ^                                 (or fleet_mark_adopted:
 *                  +------------fleet_mark_idle-------- a restart's lease)
 *   fleet_remove: gone (silent, or a new HELLO on the same identity resets)
 *
 * What it is not: the job queue or PostgreSQL's job states (scheduler.c and
 * db.c); a worker here is only as alive as its last message. */
#ifndef TS_FLEET_H
#define TS_FLEET_H

#include <stddef.h>
#include <stdint.h>

#define FLEET_MAX_ID 256
#define FLEET_MAX_NAME 128

typedef struct {
    uint8_t id[FLEET_MAX_ID];
    size_t id_len;
    char name[FLEET_MAX_NAME];
    int64_t last_seen_ms;
    int64_t last_sent_ms; /* when a message last went to it */
    int ready;          /* asked for a job and has none */
    int64_t job_id;     /* -1 when none */
    uint64_t token;
    int64_t leased_ms;  /* when the job was handed out */
    int adopted;        /* the job is a lease found by a restarted coordinator,
                           not yet confirmed by a DONE or FAILED */
    int64_t jobs_done; /* by this connection (fleet_credit) */
    /* The job in hand, as the worker's heartbeats tell it. */
    int64_t job_bytes;           /* text bytes of the job's documents */
    int64_t prog_tokens, prog_bytes, prog_docs; /* measured so far */
    int unreachable;             /* its connection is gone (a send failed
                                    with EHOSTUNREACH): not counted alive */
    char model[65];              /* its model's identity, as its HELLO said */
    unsigned caps;               /* what its version can do (SCHED_CAP_*) */
} fleet_worker_t;

typedef struct fleet fleet_t;

fleet_t *fleet_new(void);
void fleet_destroy(fleet_t **self_p);

/* The worker with routing identity id, or NULL. */
fleet_worker_t *fleet_find(fleet_t *self, const void *id, size_t id_len);
/* Adds (or resets) the worker with identity id; NULL when memory runs out. */
fleet_worker_t *fleet_add(fleet_t *self, const void *id, size_t id_len, const char *name, int64_t now_ms);
/* The worker holding job_id, or NULL. */
fleet_worker_t *fleet_holder(fleet_t *self, int64_t job_id);
/* Removes w (a pointer this fleet returned). */
void fleet_remove(fleet_t *self, fleet_worker_t *w);
/* Number of workers, and the i-th (for iteration; removal invalidates). */
size_t fleet_size(const fleet_t *self);
fleet_worker_t *fleet_at(fleet_t *self, size_t i);
/* A worker that is ready, or NULL (round robin). */
fleet_worker_t *fleet_next_ready(fleet_t *self);

/* Any message from w at now_ms: it is alive and its connection works. */
void fleet_mark_seen(fleet_worker_t *w, int64_t now_ms);
/* A message went to w at now_ms. */
void fleet_mark_sent(fleet_worker_t *w, int64_t now_ms);
/* w asked for a job (READY). */
void fleet_mark_ready(fleet_worker_t *w);
/* w holds job_id under token from leased_ms on (JOB sent), job_bytes of
 * text; its progress starts at 0.  adopted: a lease found by a restarted
 * coordinator, not yet confirmed by DONE or FAILED. */
void fleet_mark_busy(fleet_worker_t *w, int64_t job_id, uint64_t token, int64_t leased_ms, int64_t job_bytes,
                     int adopted);
/* w holds no job (its job ended, was taken back, or never reached it). */
void fleet_mark_idle(fleet_worker_t *w);
/* A send to w failed with EHOSTUNREACH: not counted alive until it speaks.
 * Returns 1 when it was reachable until now. */
int fleet_mark_unreachable(fleet_worker_t *w);
/* The progress of w's job, as its heartbeat says. */
void fleet_mark_progress(fleet_worker_t *w, int64_t tokens, int64_t bytes, int64_t docs);
/* Workers holding a job. */
size_t fleet_n_busy(const fleet_t *self);
/* Up to max ready workers without a job into out (round robin from where
 * the last call stopped); returns how many.  One pass over the fleet. */
size_t fleet_take_ready(fleet_t *self, fleet_worker_t **out, size_t max);
/* Jobs done and tokens committed per worker name, over all its connections
 * since fleet_new: a worker declared dead that comes back, or one that
 * reconnects, keeps its tally (the metrics' per-worker counters). */
typedef struct {
    char name[FLEET_MAX_NAME];
    int64_t jobs_done, tokens_done;
} fleet_tally_t;

/* Counts a job of `tokens` tokens done by w: w->jobs_done and its name's
 * tally (O(1)).  0, or -1 out of memory (the tally misses this job). */
int fleet_credit(fleet_t *self, fleet_worker_t *w, int64_t tokens);
/* Number of tallies (distinct names credited), and the i-th, in the order
 * the names were first credited. */
size_t fleet_n_tallies(const fleet_t *self);
const fleet_tally_t *fleet_tally_at(const fleet_t *self, size_t i);

int fleet_selftest(void);

#endif
