/* fault.h - injectable failure points, for the fault-matrix tests.
 *
 * What it is: a handful of named points in the worker's job path, its
 * database writes and the coordinator's dispatch, each of which can be told
 * to fail, crash, stall or misbehave by the environment variable
 * TOKSHIFT_FAULT.  It is compiled into every build and costs one branch per
 * point; with TOKSHIFT_FAULT unset (the only way users run tokshift) every
 * point is inert.  What it is not: a configuration mechanism for users, nor
 * random: every fault fires at a point the test chooses, so a failing test
 * replays exactly.
 *
 * TOKSHIFT_FAULT is a comma-separated list of NAME=VALUE:
 *
 *   crash_on_doc=D          worker: abort() (SIGABRT, no core file) when it
 *                           starts measuring document D (the run's doc_id, the
 *                           ordinal in the corpus), on every attempt: a poison
 *                           job
 *   fail_alloc=N            worker: the N-th allocation of the job path
 *                           (job.c: rows, sequences, rollups, cut lists; counted
 *                           from the worker's start) fails as if out of memory
 *   fail_copy_chunk=N       db.c: the N-th COPY data chunk this process sends
 *                           fails (a write error: the transaction rolls back)
 *   stall_before_commit_ms=MS  worker: sleeps MS ms before writing its first
 *                           job (after measuring it), so that a test can stop
 *                           the worker while it holds a finished job
 *   stall_in_commit_ms=MS   db.c: sleeps MS ms inside the first job commit,
 *                           just after the fence has locked the job's row (a
 *                           worker stopped in the middle of its transaction)
 *   commit_twice=N          worker: after each of its first N successful
 *                           commits, commits the same results again with the
 *                           same attempt token (a replayed write; the fence
 *                           must refuse it)
 *   replay_done=N           worker: sends each of its first N DONE messages
 *                           twice (a replayed message)
 *   dup_dispatch=N          coordinator: its first N jobs each go to two
 *                           workers at once, with the same attempt token
 *                           (duplicate delivery); it waits for two ready
 *                           workers to hand them out
 *   load_crash=N            coordinator: dies by SIGKILL right after the
 *                           corpus load's first batch that takes the run to
 *                           N documents or more has committed (a crash in
 *                           the middle of a load)
 *   slow_job_ms=MS          worker: sleeps MS ms before writing each job (a
 *                           slower model: a run lasts through a test's
 *                           faults on any machine); logged once
 *
 * Counts start at 1; every fault is logged (warning "fault injected: ...")
 * when it fires.  A malformed TOKSHIFT_FAULT is an error at start-up
 * (fault_init). */
#ifndef TS_FAULT_H
#define TS_FAULT_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    FAULT_CRASH_ON_DOC,
    FAULT_FAIL_ALLOC,
    FAULT_FAIL_COPY_CHUNK,
    FAULT_STALL_BEFORE_COMMIT_MS,
    FAULT_STALL_IN_COMMIT_MS,
    FAULT_COMMIT_TWICE,
    FAULT_REPLAY_DONE,
    FAULT_DUP_DISPATCH,
    FAULT_LOAD_CRASH,
    FAULT_SLOW_JOB_MS,
    FAULT_N
} fault_t;

/* Parses TOKSHIFT_FAULT (once; later calls return the first result) and logs
 * the armed faults.  0, or -1 with a message in err for a malformed value.
 * Points call it themselves, so calling it is only needed to report a bad
 * value early. */
int fault_init(char *err, size_t errlen);

/* Whether fault f is armed (TOKSHIFT_FAULT names it). */
int fault_armed(fault_t f);

/* Its value (0 when not armed). */
int64_t fault_value(fault_t f);

/* Counts one pass through an "N-th" point (fail_alloc, fail_copy_chunk):
 * 1 exactly on the N-th pass, else 0. */
int fault_nth(fault_t f);

/* Counts one pass through a "first N" point (commit_twice, replay_done, the
 * stalls): 1 on the first N passes (the first only for a stall), else 0. */
int fault_first(fault_t f);

/* crash_on_doc: aborts the process when doc_id is the armed document. */
void fault_maybe_crash_on_doc(int64_t doc_id);

/* A stall (stall_before_commit_ms, stall_in_commit_ms: the armed time on
 * the first pass; slow_job_ms: on every pass). */
void fault_maybe_stall(fault_t f);

/* load_crash: SIGKILLs the process when next_doc (the documents loaded
 * so far) has reached the armed count. */
void fault_maybe_crash_after_load(int64_t next_doc);

#endif
