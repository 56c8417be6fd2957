/* job.h - one job's measurement: its documents through the engine, into the
 * rows that db_commit_job writes.
 *
 * What it is: tokenizes each document (BOS added as `tokshift score` does;
 * with a chat template, template.h's ids),
 * scores the human text in windows, runs the continuation experiments at the
 * run's cut points, keeps each sequence's statistics as columns (one array
 * per statistic, as sequence_stats stores them), and accumulates the
 * rollups: per (kind, position), per (kind, confidence bin), per (document,
 * kind, cut), and the job's DB_TOP_TOKENS human tokens of largest z.  It is
 * the worker's use of experiment.c, so a worker's human rows and `tokshift
 * score`'s are the same computation.  What it is not: I/O (no ZeroMQ, no
 * PostgreSQL: it only fills db_results_t's arrays).
 *
 * Sequence numbering per document (deterministic, so a retried job writes
 * the same keys): 0 = human; for the j-th cut, 1 + j (K + 1) = its human
 * continuation and 2 + j (K + 1) + k = sample k. */
#ifndef TS_JOB_H
#define TS_JOB_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "experiment.h"
#include "model.h"
#include "template.h"
#include "wire.h"

typedef struct {
    int window, stride;
    const int32_t *prefix_lengths;
    size_t n_prefix_lengths;
    int cut_every;
    experiment_cont_t cont;
    int observe; /* cross-scoring run: the samples are given (job_measure_doc), not drawn */
    /* The run's chat template (NULL: none): the documents' ids are
     * template_encode_doc's, and the experiment given to job_measure_doc
     * must have been made with its prefix (experiment_new_ctx). */
    const template_t *tpl;
    int cut_every_bytes; /* > 0: the cuts are byte_cuts' (job.c), not prefix_lengths' and cut_every's */
    /* Cross-scoring through the decoded text (the generator's vocabulary is
     * not this model's): the generator's tokenizer, which finds its cuts
     * again and decodes its samples (job_measure_doc); NULL: token for token. */
    const tokenizer_t *source_tok;
} job_settings_t;

typedef struct job_result job_result_t;

/* An empty result that grows as documents are added; free with
 * job_result_destroy.  NULL when memory runs out. */
job_result_t *job_result_new(void);
void job_result_destroy(job_result_t **self_p);
/* Empties it for the next job, keeping its capacity. */
void job_result_reset(job_result_t *self);
/* The token rows added so far (all sequences of the documents measured,
 * less any document dropped with an error): what the job's DONE will report
 * as n_tokens.  O(1). */
size_t job_result_n_rows(const job_result_t *self);
/* Fills out with a view of the rows for db_commit_job (valid until the next
 * change).  Returns 0, or -1 when memory runs out. */
int job_result_view(job_result_t *self, db_results_t *out);

/* The steps of job_measure_doc, for a caller that has the statistics
 * already (bench/storage_bench.c): job_doc_begin starts document doc_id of
 * n_tokens tokens; job_add_sequence adds one of its sequences, n rows in
 * token order (cut and cut_byte, the cut's byte offset in the text or -1
 * when unknown: continuations; sample_idx and seed: samples), with its sums
 * (sequence_stats' sum_* and n_z); job_doc_end
 * adds the document's tokens to the job's rollups (by position, by
 * confidence bin, per document and cut, and the top tokens by z), the
 * document's cluster terms (by position, by bucket, all positions, by
 * confidence bin: 008_paired.sql) and its per-bucket sums.  Each
 * returns 0, or -1 when memory runs out. */
int job_doc_begin(job_result_t *r, int64_t doc_id, int32_t n_tokens);
int job_add_sequence(job_result_t *r, db_kind_t kind, int32_t seq_no, int32_t cut, int32_t cut_byte,
                     int32_t sample_idx, uint64_t seed, const experiment_row_t *rows, size_t n);
int job_doc_end(job_result_t *r);

/* Measures one document into r.  A document the engine cannot process (for
 * example a non-finite logit) is recorded in r with its reason and 0 is
 * returned; -1 only when memory runs out.  `cancel`, when non-NULL and set,
 * stops early with -1 and the message "cancelled".  With s->observe, the
 * samples are not drawn: given[0..n_given) are the scored run's samples of
 * this document in seq_no order (K per cut, each of C tokens), observed
 * with experiment_observe and stored with their seeds under the same
 * seq_no layout; a document whose given samples do not match its cuts is
 * recorded with an error.  With s->source_tok as well, the continuations
 * are scored through their text, in this model's tokens (job.c,
 * observe_text), each sequence with its end_byte.  Otherwise given is
 * ignored. */
int job_measure_doc(experiment_t *ex, const model_t *m, const job_settings_t *s, int64_t doc_id, const char *text,
                    size_t text_len, const wire_sample_t *given, size_t n_given, job_result_t *r,
                    volatile sig_atomic_t *cancel, char *err, size_t errlen);

#endif
