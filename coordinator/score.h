/* score.h - the coordinator's side of a cross-scoring run (--score-run;
 * sql/migrations/010_cross_scoring.sql).
 *
 * What it is: a run whose documents are another (done) run's, measured by
 * this run's model, with the generator run's samples given to the workers
 * as token ids (the worker's role reads no results).  Here: the generator
 * run's settings taken as this run's, and each job's samples attached to
 * its documents before the JOB is sent.
 *
 * What it is not: the load (tokshift_score_run_load, in SQL) or the
 * measuring (worker/job.c, experiment_observe). */
#ifndef TS_SCORE_H
#define TS_SCORE_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "runsettings.h"
#include "wire.h"

/* Fills *s with the settings of run src_name (a name or id), which must be
 * done and have its model's vocabulary registered, plus score_run (its id)
 * and vocab_digest (pointing into digest, 65 bytes, which must outlive s).
 * Fixed cut points go into prefix_buf (WIRE_MAX_CUTS entries).  Returns 0,
 * or -1 with a message naming what is missing. */
/* The measurement settings of rs (runsettings_parse's) into *s, the cut
 * lengths into prefix_buf (WIRE_MAX_CUTS; s points at it); the other
 * members of *s (score_run, vocab_digest, chat_template) stay.  0, or -1
 * with a message (more cuts than a WELCOME holds). */
int score_wire_settings(const runsettings_t *rs, wire_settings_t *s, int32_t *prefix_buf, char *err,
                        size_t errlen);
int score_settings(db_t *db, const char *src_name, wire_settings_t *s, int32_t *prefix_buf, char digest[65],
                   char *err, size_t errlen);

/* A job's samples, attached to its documents (see score_attach). */
typedef struct {
    db_sample_t *rows;
    size_t n_rows;
    wire_sample_t *wire; /* docs[i].samples point into this array */
} score_job_t;

/* Reads the samples of the generator run s->score_run for job job_id of run
 * run_id, and points each of docs[0..n) (ordered by doc_id, as db_jobs_lease
 * gives them) at its own.  Release with score_release.  Returns 0, or -1
 * with a message (PostgreSQL, out of memory); then nothing is held. */
int score_attach(db_t *db, int64_t src, int64_t run_id, int64_t job_id, wire_doc_t *docs, size_t n, score_job_t *held,
                 char *err, size_t errlen);

/* Frees what score_attach held; NULL-safe, clears *held. */
void score_release(score_job_t *held);

#endif
