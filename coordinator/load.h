/* load.h - a run's corpus load: batches that commit as they go, a slice of
 * work at a time, resumable after a crash.
 *
 * What it is: reads the corpus (corpus.c) and commits it to PostgreSQL in
 * batches of at most LOAD_BATCH_DOCS documents or LOAD_BATCH_BYTES bytes of
 * text and metadata; each batch's documents, its jobs and the run's load
 * position go in one transaction (db_loader_commit), so the batch's jobs
 * are servable as soon as it commits and a restarted coordinator continues
 * after the last committed batch (it reads past the documents loaded
 * already).  Jobs never span batches, so a resumed load cuts exactly the
 * jobs of an uninterrupted one.  Duplicate ids: within a batch by a hash
 * set, against earlier batches by one index probe per id
 * (db_load_existing_ids); the first occurrence keeps its text, a later one
 * is recorded with an error and no job.  Every cost is linear in the
 * documents read.  The documents and jobs tables are analyzed after the
 * first batch, whenever the run's documents have doubled since, and at the
 * end: O(log N) ANALYZEs, so that the planner never plans the run's
 * statements from statistics that predate its rows.
 *
 * load_step does a bounded slice (about LOAD_SLICE_MS of reading or
 * sending, or one statement), so that the coordinator's loop serves its
 * workers between slices without a thread.
 *
 * What it is not: the reader (corpus.c), SQL (db_run.c), or the check that
 * a resumed load reads the same corpus (resume.c; the caller does it). */
#ifndef TS_LOAD_H
#define TS_LOAD_H

#include <stddef.h>
#include <stdint.h>

#include "corpus.h"
#include "db.h"

#define LOAD_BATCH_DOCS 10000
#define LOAD_BATCH_BYTES (64L << 20)
#define LOAD_SLICE_MS 50

typedef struct load load_t;

/* What a step committed: the jobs [job_from, job_to) and the documents
 * (usable ones among them) of one batch; all zero when it committed none. */
typedef struct {
    int64_t job_from, job_to, docs, docs_usable;
    int64_t bytes_usable; /* text bytes of the usable documents */
} load_batch_t;

/* Starts (or continues) the load of run_id from its position: documents
 * 0..next_doc-1 and jobs below next_job are loaded already.  db is a
 * connection for the load alone (borrowed); corpus is taken (destroyed by
 * load_destroy, also on failure).  Jobs hold at most job_docs documents and
 * job_bytes bytes of text.  NULL with a message on failure. */
load_t *load_new(db_t *db, int64_t run_id, corpus_t *corpus, int64_t next_doc, int64_t next_job, long job_docs,
                 long job_bytes, char *err, size_t errlen);

/* Does one slice of the load.  Returns 1 when there is more to do, 0 when
 * the load is complete (the run is marked loaded), -1 with a message (the
 * open batch is rolled back; what was committed stays: destroy this load
 * and start another from the run's position).  *out says what the slice
 * committed. */
int load_step(load_t *self, load_batch_t *out, char *err, size_t errlen);

/* NULL-safe; rolls back an open batch; clears *self_p. */
void load_destroy(load_t **self_p);

#endif
