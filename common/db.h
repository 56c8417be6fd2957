/* db.h - everything tokshift says to PostgreSQL.
 *
 * What it is: the one module that owns libpq, in parts by caller: db.c
 * (connection, migrations, COPY core), db_run.c (coordinator), db_results.c
 * (worker), db_report.c (CLI and reports).  Every SQL statement of the
 * project is here or in sql/; every value travels as a parameter or in a
 * binary COPY, never spliced into SQL text.  It applies the migrations,
 * keeps the run/document/job state for the coordinator, and writes a job's
 * results for a worker exactly once: one transaction that checks the job's
 * attempt token, COPYs the rows and marks the job done.
 *
 * What it is not: a retry policy.  Functions return -1 with a message;
 * db_connection_lost() then says whether the server could not be reached or
 * the connection broke (a retry after db_reconnect may help) rather than the
 * statement or its data being at fault.  Connection strings are never logged (they may hold passwords).
 */
#ifndef TS_DB_H
#define TS_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct db db_t;

/* Connects with a libpq connection string (or "" for the PG* environment).
 * Returns NULL with a message (never containing the password). */
db_t *db_connect(const char *conninfo, char *err, size_t errlen);
void db_destroy(db_t **self_p);
/* Whether the last call that failed on self failed because the connection
 * is gone (its state, or an SQLSTATE of class 08 or 57P01-57P03), as
 * opposed to the statement or its data; 1 for a NULL self (never
 * connected).  Reset by the next failure, not by success. */
int db_connection_lost(const db_t *self);

/* The server process serving this connection (for benchmarks that read
 * its CPU time), or 0 when not connected. */
int db_backend_pid(const db_t *self);

/* Whether the connection is usable; reconnects if not.  0 or -1. */
int db_reconnect(db_t *self, char *err, size_t errlen);
/* Counts the sessions db_reconnect has opened: when it changes, what lived
 * in the session (prepared statements, SET values, advisory locks such as
 * db_run_lock's) is gone. */
unsigned db_session(const db_t *self);

/* The round trips of one connection: every statement's time from sending it
 * to its whole result (failed ones too), counted in fixed buckets whose
 * upper bounds, in seconds, are db_latency_bounds_s (count[DB_LATENCY_BUCKETS]:
 * slower than the last); n statements, sum_s seconds in all.  Kept by the
 * connection from db_connect on (a reconnect keeps them): for monitoring
 * (coordinator/metrics.c), at the cost of two clock reads per statement. */
#define DB_LATENCY_BUCKETS 16
extern const double db_latency_bounds_s[DB_LATENCY_BUCKETS];
typedef struct {
    uint64_t count[DB_LATENCY_BUCKETS + 1]; /* per bucket, not cumulative */
    uint64_t n;
    double sum_s;
} db_latency_t;
/* Copies self's counts into *out (all zero for a NULL self). */
void db_latency(const db_t *self, db_latency_t *out);

/* Lets this session's commits return before their WAL reaches disk
 * (synchronous_commit = off).  For the coordinator's bookkeeping only: a
 * lease lost in a crash is harmless (a restarted coordinator adopts the
 * leases it finds and requeues those that no worker reclaims, and a worker's
 * commit under a lost token is fenced off), while a
 * worker's result commits stay fully durable.  0 or -1. */
int db_async_commit(db_t *self, char *err, size_t errlen);

/* Sets one of this session's timeouts to ms milliseconds: "lock_timeout"
 * (the coordinator: a worker stopped inside its commit holds its job's row
 * lock, and the coordinator's loop must not wait for it; the caller retries
 * later) or "idle_in_transaction_session_timeout" (a worker: if it stops
 * inside its commit, the server ends the transaction and frees the lock).
 * Settings are lost on reconnect: set them again.  0 or -1. */
int db_set_timeout(db_t *self, const char *which, int ms, char *err, size_t errlen);

/* Applies sql/migrations/ not yet applied, each in its own transaction,
 * serialised between concurrent callers by an advisory lock.  Returns the
 * number applied, or -1. */
int db_migrate(db_t *self, char *err, size_t errlen);

/* ---- runs (coordinator) ------------------------------------------------ */

typedef struct {
    int64_t run_id;
    char status[16];
    int existed;     /* 1: the run was already registered (resume) */
    char model_identity[65];
    char *settings, *corpus; /* as registered (JSON texts), when existed; else NULL */
    int64_t n_docs, n_jobs;  /* loaded so far */
    int64_t next_doc, next_job; /* the load's position: next document ordinal, next job id */
    int loaded;              /* 1: the load is complete */
    char *fingerprint;       /* the corpus files' fingerprint (JSON) stored by the load, or NULL */
} db_run_t;

/* Creates the run `name` with its model, settings and corpus description
 * (JSON object texts) and its token_stats partition, or finds it when it
 * exists (existed = 1): then out holds what was registered, for the caller
 * to compare (nothing is compared here).  Free out with db_run_clear. */
int db_run_open(db_t *self, const char *name, const char *model_identity, const char *settings_json,
                const char *corpus_json, db_run_t *out, char *err, size_t errlen);
/* Frees what a db_run_t owns and zeroes it; NULL-safe. */
void db_run_clear(db_run_t *run);
int db_run_set_status(db_t *self, int64_t run_id, const char *status, char *err, size_t errlen);
/* Takes run_id's serving lock for this session (a PostgreSQL advisory lock,
 * session-level, counted: take it once per release): a run is loaded and
 * served by one coordinator at a time, and the lock goes with the session,
 * so a coordinator that dies or loses its connection frees it.  Returns 0
 * (held now), 1 when another session holds it (err names that session: its
 * backend pid, client address and start), or -1 with a message. */
int db_run_lock(db_t *self, int64_t run_id, char *err, size_t errlen);
/* db_run_lock without naming the holder (one round trip, for a caller that
 * asks again and again, e.g. a queue server at every read): 0, 1, or -1
 * with a message. */
int db_run_try_lock(db_t *self, int64_t run_id, char *err, size_t errlen);
/* Releases one hold of run_id's serving lock (nothing when not held, or
 * when the session is gone, which released it). */
void db_run_unlock(db_t *self, int64_t run_id);
/* Stores the corpus files' fingerprint (JSON) of a run whose load has not
 * committed a batch yet; -1 otherwise. */
int db_run_set_fingerprint(db_t *self, int64_t run_id, const char *fingerprint_json, char *err, size_t errlen);
/* Finds a run by name or by decimal id.  Returns 0; 1 when absent, with the
 * one message every command gives for that in err ("no run named ..."); or
 * -1 with a message. */
int db_run_find(db_t *self, const char *name_or_id, int64_t *run_id, char *err, size_t errlen);
/* Deletes the run run_id with all of its results, in one transaction: its
 * rows (runs, and by ON DELETE CASCADE documents, jobs and the rollups) and
 * its partitions of the tables partitioned by run_id (sequence_stats_r<id>),
 * which are dropped, not emptied, so their size costs nothing.  Needs the
 * rights of the schema's owner (DROP TABLE).  Waits at most 30 s for the
 * partitioned tables' locks (other sessions' open transactions on them).
 * Returns 0 with the partitions dropped in *n_partitions, 1 when there is
 * no such run, -1 with a message (nothing changed). */
int db_run_drop(db_t *self, int64_t run_id, int *n_partitions, char *err, size_t errlen);

/* ---- documents and jobs (coordinator) ---------------------------------- */

/* The corpus load commits in batches: db_loader_new, db_loader_add and
 * db_loader_job for each of the batch's documents and jobs, then
 * db_loader_commit, which writes them and moves the run's load position in
 * one transaction, so a batch's jobs are servable once it returns and a
 * restarted coordinator continues after the last committed batch.  The
 * loader uses a connection of its own (a COPY holds its connection). */
typedef struct db_loader db_loader_t;

/* For each of ext_ids[0..n), the source of the run's usable document (text
 * not NULL) with that id, if one exists (malloc'd into first_source[i]; the
 * caller frees), else NULL.  One index probe per id.  0 or -1. */
int db_load_existing_ids(db_t *self, int64_t run_id, const char *const *ext_ids, size_t n, char **first_source,
                         char *err, size_t errlen);
/* Starts a batch whose first document is ordinal first_doc (the run's load
 * position).  NULL with a message on failure. */
db_loader_t *db_loader_new(db_t *self, int64_t run_id, int64_t first_doc, char *err, size_t errlen);
/* Adds the batch's next document (doc_id = first_doc + documents added so
 * far); job_id < 0 and text NULL for a document with an error.  Usable
 * documents' ext_ids must be new to the run (db_load_existing_ids) and to
 * the batch: the unique index refuses a duplicate, failing the batch. */
int db_loader_add(db_loader_t *l, int64_t doc_id, const char *ext_id, const char *source, const char *metadata_json,
                  const char *text, size_t text_len, int64_t job_id, const char *error, char *err, size_t errlen);
/* Declares a job of n_docs documents and n_bytes bytes. */
int db_loader_job(db_loader_t *l, int64_t job_id, int n_docs, int64_t n_bytes, char *err, size_t errlen);
/* Writes the batch's jobs, adds its counts to the run, moves the run's load
 * position to the document after the batch and the job id next_job (with
 * last: marks the load complete and the run 'running' if it was 'loading'),
 * and commits.  Fails, keeping nothing, when the run's position is not the
 * batch's first document (another coordinator loads it).  Frees l whatever
 * the outcome. */
int db_loader_commit(db_loader_t **l, int64_t next_job, int last, char *err, size_t errlen);
/* Rolls the batch back; NULL-safe, clears *l. */
void db_loader_abort(db_loader_t **l);
/* ANALYZE of documents and jobs (tokshift_analyze_load(), migration 006),
 * after bulk inserts: the planner must see the rows just loaded. */
int db_load_analyze(db_t *self, char *err, size_t errlen);

/* Every job id of the run in state pending, in id order (malloc'd, caller
 * frees).  With requeue_leased, leased jobs are first put back to pending
 * (their tokens become stale). */
int db_jobs_pending(db_t *self, int64_t run_id, int requeue_leased, int64_t **ids, size_t *n, char *err,
                    size_t errlen);

typedef struct {
    int64_t job_id, token;
    char worker[128];
    int64_t age_ms; /* since it was leased */
    int64_t n_bytes; /* text bytes of the job's documents */
} db_lease_t;

/* The run's leased jobs with their attempt tokens and holders (malloc'd,
 * caller frees): what a restarted coordinator adopts. */
int db_jobs_leased(db_t *self, int64_t run_id, db_lease_t **leases, size_t *n, char *err, size_t errlen);

/* What db_job_release did. */
typedef enum {
    DB_RELEASE_ERROR = -1,   /* the database failed (message in err) */
    DB_RELEASE_REQUEUED = 0, /* back to pending */
    DB_RELEASE_STALE = 1,    /* no longer leased with that token (e.g. done) */
    DB_RELEASE_FAILED = 2,   /* attempts exhausted: failed with the reason */
} db_release_t;

/* Puts a leased job back (token must match): to pending, or to failed with
 * reason when attempts >= max_attempts. */
db_release_t db_job_release(db_t *self, int64_t run_id, int64_t job_id, int64_t token, const char *reason, int max_attempts,
                   char *err, size_t errlen);

/* A job's state (the SQL CHECK's values). */
typedef enum { DB_JOB_MISSING, DB_JOB_PENDING, DB_JOB_LEASED, DB_JOB_DONE, DB_JOB_FAILED } db_job_state_t;

/* The states of jobs job_ids[0..n) into states[0..n) (DB_JOB_MISSING for
 * a job the run lacks), in one statement.  0 or -1 with a message. */
int db_jobs_state(db_t *self, int64_t run_id, size_t n, const int64_t *job_ids, db_job_state_t *states, char *err,
                  size_t errlen);

typedef struct {
    int64_t doc_id;
    char *text;
    size_t text_len;
} db_doc_t;
void db_docs_free(db_doc_t *docs, size_t n);

/* A job that db_jobs_lease leased, with its usable documents (by doc_id). */
typedef struct {
    int64_t job_id, token;
    int attempts; /* after this lease */
    db_doc_t *docs;
    size_t n_docs;
} db_leased_t;

/* Leases the jobs job_ids[i] to workers[i] under tokens[i] (distinct), each
 * only if it is still pending, and reads the leased jobs' documents, in one
 * statement (one round trip for a whole batch of ready workers).  *out
 * receives the leased ones, by job_id (malloc'd; free with db_leased_free);
 * a job missing from it was no longer pending.  0 or -1 with a message. */
int db_jobs_lease(db_t *self, int64_t run_id, size_t n, const int64_t *job_ids, const int64_t *tokens,
                  const char *const *workers, db_leased_t **out, size_t *n_out, char *err, size_t errlen);
void db_leased_free(db_leased_t *l, size_t n);

/* ---- the queue of runs (coordinator --submit / --serve-queue; 013) ----- */

/* Queues the loaded run run_id with priority (-1000..1000; higher first):
 * status queued (a run the queue already serves stays running), queued_at
 * set unless it was queued before (a run keeps its FIFO place).  0, or -1 with a message
 * (also when the run is done or not loaded). */
int db_queue_submit(db_t *self, int64_t run_id, int priority, char *err, size_t errlen);

/* A run of the queue. */
typedef struct {
    int64_t run_id;
    char *name, *settings; /* malloc'd; settings as registered (JSON text) */
    char model_identity[65];
    int priority;
    char status[16]; /* queued or running */
} db_queued_t;

/* The queue (runs queued or running that were queued), in serving order:
 * priority descending, then queued_at, then run_id.  *out malloc'd (free
 * with db_queue_free).  0 or -1 with a message. */
int db_queue_list(db_t *self, db_queued_t **out, size_t *n, char *err, size_t errlen);
void db_queue_free(db_queued_t *q, size_t n);

/* Sets the priority of the queued run name_or_id (a name or decimal id).
 * 0, 1 when no such run is in the queue, -1 with a message. */
int db_queue_set_priority(db_t *self, const char *name_or_id, int priority, char *err, size_t errlen);

/* ---- cross-scoring (coordinator --score-run; migration 010) ------------ */

/* The run another run observes. */
typedef struct {
    int64_t run_id;
    char status[16];
    char model_identity[65];
    char *settings;          /* its settings (JSON text), malloc'd */
    char vocab_digest[65];   /* its model's vocabulary digest; "" when its vocabulary is not registered */
} db_score_source_t;

/* Finds run name_or_id and what a run scoring it needs.  Returns 0, 1 when
 * there is no such run, -1 with a message; free out->settings. */
int db_score_source(db_t *self, const char *name_or_id, db_score_source_t *out, char *err, size_t errlen);

/* Loads the fresh run dst with the documents and jobs of the done run src
 * (tokshift_score_run_load, one statement).  Returns 0 or -1 with a
 * message (src not done, dst not fresh, PostgreSQL). */
int db_score_load(db_t *self, int64_t src, int64_t dst, char *err, size_t errlen);

/* One stored sample of the generator run. */
typedef struct {
    int64_t doc_id;
    int32_t cut, sample_idx;
    uint64_t seed;
    int32_t *tokens;
    size_t n_tokens;
} db_sample_t;

/* The samples of run src of the usable documents of job job_id of run dst,
 * ordered by document and seq_no (one indexed query).  *out is a malloc'd
 * array (free with db_samples_free).  Returns 0 or -1 with a message. */
int db_job_samples(db_t *self, int64_t src, int64_t dst, int64_t job_id, db_sample_t **out, size_t *n, char *err,
                   size_t errlen);
void db_samples_free(db_sample_t *samples, size_t n);

typedef struct {
    int64_t jobs, done, failed, leased, pending, docs_done, tokens_done, retries, docs, docs_error;
    int64_t bytes, bytes_done; /* text bytes of the jobs' documents: all, and of done jobs */
} db_progress_t;
int db_progress(db_t *self, int64_t run_id, db_progress_t *out, char *err, size_t errlen);

/* ---- results (worker) -------------------------------------------------- */

/* A sequence's kind (the SQL enum tokshift_kind, by these names). */
typedef enum { DB_KIND_HUMAN, DB_KIND_HUMAN_CONT, DB_KIND_SAMPLE, DB_N_KINDS } db_kind_t;
/* "human", "human_cont", "sample". */
const char *db_kind_name(db_kind_t kind);

/* How many human tokens of largest z a job keeps in top_tokens (the
 * conversion in 005_sequence_arrays.sql keeps as many). */
#define DB_TOP_TOKENS 64
/* Confidence bins of calib_rollups: width_bucket(conf, 0, 1.0000001, 10),
 * so 1..10 for conf in [0, 1] (0 and 11 only for values outside). */
#define DB_CALIB_BINS 12

/* One scored sequence and its per-token statistics in token order (one row
 * of sequence_stats).  The arrays are borrowed; pos and context_len are not
 * stored: they follow from the kind, the cut and the run's settings
 * (005_sequence_arrays.sql).  The sums (in double, from the stored floats,
 * as token_view computes surprisal, gap and z; z over its n_z tokens with
 * varentropy > 0) are what a sequence's mean needs (the AUROC's statistics;
 * 011_sequence_sums.sql). */
typedef struct {
    int64_t doc_id;
    uint64_t seed;             /* has_sample */
    int32_t seq_no;
    int32_t cut;               /* has_cut */
    int32_t sample_idx;        /* has_sample */
    db_kind_t kind;
    int32_t n_tokens;
    bool has_cut, has_sample;  /* what is not there is NULL */
    const int32_t *token_id, *rank;
    const float *logprob, *entropy, *top1_logprob, *varentropy;
    int32_t n_z;
    double sum_surprisal, sum_entropy, sum_gap, sum_z;
    int32_t cut_byte;          /* has_cut_byte: the cut's byte offset in the text */
    bool has_cut_byte;
    int32_t end_byte;          /* has_end_byte: where the text it was scored in ends (014) */
    bool has_end_byte;
} db_seq_t;

/* Sums of one job's tokens of a kind at a position (human: pos;
 * continuations: pos - cut), for position_stats and its kin; or, as a row
 * of bucket_rollups, in a position bucket (position holds
 * tokshift_bucket(position), -1 for all positions).  The cluster terms (a
 * cluster is a document; 008_paired.sql): g documents with tokens in the
 * cell, c_nn = Σ n_c², c_ss_X = Σ S_c², c_ns_X = Σ n_c S_c (z over its n_z
 * tokens), and on human_cont rows the cross terms with the same documents'
 * samples' gaps: x_ss_gap = Σ S_h S_s, x_sn_gap = Σ S_h n_s, x_ns_gap =
 * Σ n_h S_s, x_nn = Σ n_h n_s. */
typedef struct {
    db_kind_t kind;
    int32_t position;
    int64_t n, n_z;
    double sum_surprisal, sumsq_surprisal, sum_entropy, sumsq_entropy, sum_gap, sumsq_gap, sum_z, sumsq_z;
    int64_t g, g_z;
    double c_nn, c_ss_surprisal, c_ns_surprisal, c_ss_entropy, c_ns_entropy, c_ss_gap, c_ns_gap;
    double c_nn_z, c_ss_z, c_ns_z;
    double x_ss_gap, x_sn_gap, x_ns_gap, x_nn;
} db_rollup_t;

/* One job's tokens of a kind in one confidence bin, with the cluster terms
 * (by document) of the confidence and of accuracy (rank = 1). */
typedef struct {
    db_kind_t kind;
    int32_t bin;
    int64_t n, n_correct;
    double sum_conf, sumsq_conf;
    int64_t g;
    double c_nn, c_ss_conf, c_ns_conf, c_ss_correct, c_ns_correct;
} db_calib_t;

/* One document's tokens of a kind in a position bucket (doc_bucket_rollups). */
typedef struct {
    int64_t doc_id;
    db_kind_t kind;
    int32_t bucket;
    int64_t n, n_z;
    double sum_surprisal, sum_entropy, sum_gap, sum_z;
} db_docbucket_t;

/* One document's tokens of a kind (and cut: 0 for the human text). */
typedef struct {
    int64_t doc_id;
    db_kind_t kind;
    int32_t cut;
    int64_t n, n_z;
    double sum_surprisal, sumsq_surprisal, sum_entropy, sumsq_entropy, sum_gap, sumsq_gap, sum_z, sumsq_z;
} db_docsum_t;

/* One of a job's human tokens of largest z. */
typedef struct {
    int64_t doc_id;
    int32_t pos, token_id, rank;
    float logprob, entropy, varentropy;
    double z;
} db_toptok_t;

typedef struct {
    int64_t doc_id;
    int32_t n_tokens;
    const char *error; /* NULL, or why the worker could not process it */
} db_docres_t;

typedef struct {
    const db_seq_t *seqs;
    size_t n_seqs;
    size_t n_toks; /* the sum of the sequences' n_tokens */
    const db_rollup_t *rollups;
    size_t n_rollups;
    const db_calib_t *calib;
    size_t n_calib;
    const db_docsum_t *docsums;
    size_t n_docsums;
    const db_rollup_t *buckets; /* bucket_rollups */
    size_t n_buckets;
    const db_docbucket_t *docbuckets;
    size_t n_docbuckets;
    const db_toptok_t *top;
    size_t n_top;
    const db_docres_t *docs;
    size_t n_docs;
    double compute_s;
} db_results_t;

/* Writes a job's results and marks it done, in one transaction that first
 * locks the job row and checks it is leased with this token.  Returns 0
 * committed, 1 stale (the token changed or the job is no longer leased:
 * nothing written), -1 error (rolled back; "connection:" prefix when the
 * server was unreachable).  *write_s receives the seconds spent. */
int db_commit_job(db_t *self, int64_t run_id, int64_t job_id, int64_t token, const db_results_t *r,
                  double *write_s, char *err, size_t errlen);

/* For bench/bench_dispatch's no-op jobs only (a real job has rows: use
 * db_commit_job): marks each job job_ids[i] that is leased under tokens[i]
 * done with no rows and 0 tokens, fenced as db_commit_job fences, all in
 * one statement; committed[i] says which were (the others are stale).  0,
 * or -1 with a message (nothing committed). */
int db_commit_jobs_empty(db_t *self, int64_t run_id, size_t n, const int64_t *job_ids, const int64_t *tokens,
                         bool *committed, char *err, size_t errlen);

/* Registers a model and its vocabulary unless its identity is known. */
int db_model_register(db_t *self, const char *identity, const char *name, const char *arch, int n_vocab, int n_ctx,
                      const char *const *pieces, const char *const *texts, char *err, size_t errlen);

/* ---- reports (tokshift report, status; db_report.c) --------------------- */

/* A query's result as plain text: names[n_cols], and cells[row * n_cols +
 * col] (NULL for an SQL NULL).  Free with db_table_free. */
typedef struct {
    size_t n_rows, n_cols;
    char **names;
    char **cells;
} db_table_t;

typedef enum {
    DB_REPORT_RUN,            /* one row: run_progress, settings, model */
    DB_REPORT_POSITION_STATS, /* position_stats, kinds human_cont and sample */
    DB_REPORT_SHIFT,          /* shift_by_bucket; positions written 2..3 (no spreadsheet date) */
    DB_REPORT_CALIBRATION,    /* calibration */
    DB_REPORT_SUMMARY,        /* shift_by_bucket, rounded for the terminal */
    DB_REPORT_STATUS,         /* run_progress of one run, or of all (run_id 0) */
    DB_REPORT_DOC_GAP,        /* document_summary: documents by mean gap, 0.1-nat bins, per kind */
} db_report_t;

/* Reads one of the report's tables for a run, ordered for display. */
int db_report_rows(db_t *self, int64_t run_id, db_report_t which, db_table_t *out, char *err, size_t errlen);
void db_table_free(db_table_t *t);

/* ---- comparing runs (tokshift compare, auroc; db_compare.c) ------------- */

typedef enum {
    DB_COMPARE_BUCKETS,     /* shift_by_bucket of each run, bucket by bucket */
    DB_COMPARE_DIFFS,       /* tokshift_compare(first, each other run) */
    DB_COMPARE_CALIBRATION, /* calibration of each run, bin by bin */
    DB_COMPARE_AUROC,       /* sequence_auroc of each run */
    DB_COMPARE_CUTS,        /* tokshift_cuts_paired(first, each other run whose tokenizer differs) */
} db_compare_t;

/* Reads one of the comparison tables of runs[n] (n <= 32; the first is the
 * reference of DB_COMPARE_DIFFS) for printing.  0, or -1 with a message. */
int db_compare_rows(db_t *self, const int64_t *runs, size_t n, db_compare_t which, db_table_t *out, char *err,
                    size_t errlen);

/* Why runs a and b cannot be compared document by document (corpus, cut
 * settings, seed, documents, tokenizer: tokshift_runs_differ), malloc'd
 * into *why, or *why NULL when they can.  0, or -1 with a message. */
int db_runs_differ(db_t *self, int64_t a, int64_t b, char **why, char *err, size_t errlen);

/* One human continuation's or sample's mean statistics (sequence_stats'
 * sums over its tokens). */
typedef struct {
    int64_t doc_id;
    bool human; /* human continuation (else a sample) */
    double surprisal, gap, z; /* z NaN when no token has it */
} db_seqmean_t;

/* The run's continuations and samples with tokens, ordered by doc_id, into
 * a malloc'd *out (caller frees).  0, or -1 with a message. */
int db_seq_means(db_t *self, int64_t run_id, db_seqmean_t **out, size_t *n, char *err, size_t errlen);

/* One stored token row as token_view shows it. */
typedef struct {
    int32_t pos, token_id, rank, context_len;
    float logprob, entropy, top1_logprob, varentropy;
} db_stored_tok_t;

/* One stored sequence: its row in `sequences` and its token rows. */
typedef struct {
    int32_t seq_no;
    char kind[16];
    int32_t cut, sample_idx; /* -1 when NULL */
    uint64_t seed;           /* the bits of the stored bigint */
    float temperature, top_p;
    int32_t top_k, n_tokens;
    const db_stored_tok_t *toks; /* n_toks rows in position order, inside the document's toks */
    size_t n_toks;
} db_stored_seq_t;

/* A stored document as `tokshift regenerate` reads it, in one read: the
 * run's model identity and settings (JSON text), the document's text, and
 * its sequences with their token rows (token_view). */
typedef struct {
    int64_t run_id;
    char *model_identity, *settings_json;
    char *text; /* NULL when the document had an error */
    size_t text_len;
    db_stored_seq_t *seqs; /* n_seqs, ascending seq_no */
    size_t n_seqs;
    db_stored_tok_t *toks; /* every sequence's rows, by seq_no then pos */
    size_t n_toks;
} db_stored_doc_t;

/* Reads document doc_id of the run named (or numbered) run with its
 * sequences seq_nos[0..n_seq_nos) (each once; NULL: all of them; n_seqs may
 * then be 0): one query each for the run, the document, the sequences and
 * their token rows, linear in the rows read.  Returns 0, 1 when the run,
 * the document or a sequence asked for does not exist (err says which), or
 * -1 with a message; *out is then empty.  Free with db_stored_doc_free. */
int db_stored_doc(db_t *self, const char *run, int64_t doc_id, const int32_t *seq_nos, size_t n_seq_nos,
                  db_stored_doc_t *out, char *err, size_t errlen);
/* Frees what *d owns and zeroes it; NULL-safe. */
void db_stored_doc_free(db_stored_doc_t *d);

/* A run's model identity and settings (JSON text, malloc'd into *identity
 * and *settings_json).  Returns 0, 1 when no run has that name or id, or -1
 * with a message. */
int db_run_settings(db_t *self, const char *run, int64_t *run_id, char **identity, char **settings_json, char *err,
                    size_t errlen);

int db_selftest(void);

#endif
