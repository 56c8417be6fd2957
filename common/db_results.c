/* db_results.c - see db.h: a worker's write path (a job's results, under
 * its attempt token, in one transaction) and the model registry.  What it
 * is not: the coordinator's bookkeeping (db_run.c). */
#include "db.h"
#include "db_private.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"
#include "now.h"

/* ---- results ----------------------------------------------------------- */

/* What every row of a commit shares. */
typedef struct {
    int64_t run_id, job_id;
} commit_ctx_t;

#define N_OF(a) (sizeof(a) / sizeof *(a))

static const db_col_t g_seq_cols[] = {
    DB_COL_CTX("run_id", DB_COL_I64, commit_ctx_t, run_id),
    DB_COL("doc_id", DB_COL_I64, db_seq_t, doc_id),
    DB_COL_IF("seed", DB_COL_U64, db_seq_t, seed, has_sample),
    DB_COL("seq_no", DB_COL_I32, db_seq_t, seq_no),
    DB_COL_IF("cut", DB_COL_I32, db_seq_t, cut, has_cut),
    DB_COL_IF("sample_idx", DB_COL_I32, db_seq_t, sample_idx, has_sample),
    DB_COL("kind", DB_COL_KIND, db_seq_t, kind),
    DB_COL_ARRAY("token_id", DB_COL_I32_ARRAY, db_seq_t, token_id, n_tokens),
    DB_COL_ARRAY("logprob", DB_COL_F32_ARRAY, db_seq_t, logprob, n_tokens),
    DB_COL_ARRAY("entropy", DB_COL_F32_ARRAY, db_seq_t, entropy, n_tokens),
    DB_COL_ARRAY("rank", DB_COL_I32_ARRAY, db_seq_t, rank, n_tokens),
    DB_COL_ARRAY("top1_logprob", DB_COL_F32_ARRAY, db_seq_t, top1_logprob, n_tokens),
    DB_COL_ARRAY("varentropy", DB_COL_F32_ARRAY, db_seq_t, varentropy, n_tokens),
    DB_COL("sum_surprisal", DB_COL_F64, db_seq_t, sum_surprisal),
    DB_COL("sum_entropy", DB_COL_F64, db_seq_t, sum_entropy),
    DB_COL("sum_gap", DB_COL_F64, db_seq_t, sum_gap),
    DB_COL("sum_z", DB_COL_F64, db_seq_t, sum_z),
    DB_COL("n_z", DB_COL_I32, db_seq_t, n_z),
    DB_COL_IF("cut_byte", DB_COL_I32, db_seq_t, cut_byte, has_cut_byte),
    DB_COL_IF("end_byte", DB_COL_I32, db_seq_t, end_byte, has_end_byte),
};
static const db_copy_desc_t g_seqs = {"sequence_stats", g_seq_cols, N_OF(g_seq_cols)};

/* job_rollups and bucket_rollups: the same columns but the key's name. */
#define ROLLUP_COLS(key)                                                                                             \
    DB_COL_CTX("run_id", DB_COL_I64, commit_ctx_t, run_id), DB_COL_CTX("job_id", DB_COL_I64, commit_ctx_t, job_id), \
        DB_COL("kind", DB_COL_KIND, db_rollup_t, kind), DB_COL(key, DB_COL_I32, db_rollup_t, position),              \
        DB_COL("n", DB_COL_I64, db_rollup_t, n), DB_COL("n_z", DB_COL_I64, db_rollup_t, n_z),                        \
        DB_COL("sum_surprisal", DB_COL_F64, db_rollup_t, sum_surprisal),                                             \
        DB_COL("sumsq_surprisal", DB_COL_F64, db_rollup_t, sumsq_surprisal),                                         \
        DB_COL("sum_entropy", DB_COL_F64, db_rollup_t, sum_entropy),                                                 \
        DB_COL("sumsq_entropy", DB_COL_F64, db_rollup_t, sumsq_entropy),                                             \
        DB_COL("sum_gap", DB_COL_F64, db_rollup_t, sum_gap), DB_COL("sumsq_gap", DB_COL_F64, db_rollup_t, sumsq_gap), \
        DB_COL("sum_z", DB_COL_F64, db_rollup_t, sum_z), DB_COL("sumsq_z", DB_COL_F64, db_rollup_t, sumsq_z),        \
        DB_COL("g", DB_COL_I64, db_rollup_t, g), DB_COL("c_nn", DB_COL_F64, db_rollup_t, c_nn),                      \
        DB_COL("c_ss_surprisal", DB_COL_F64, db_rollup_t, c_ss_surprisal),                                           \
        DB_COL("c_ns_surprisal", DB_COL_F64, db_rollup_t, c_ns_surprisal),                                           \
        DB_COL("c_ss_entropy", DB_COL_F64, db_rollup_t, c_ss_entropy),                                               \
        DB_COL("c_ns_entropy", DB_COL_F64, db_rollup_t, c_ns_entropy),                                               \
        DB_COL("c_ss_gap", DB_COL_F64, db_rollup_t, c_ss_gap), DB_COL("c_ns_gap", DB_COL_F64, db_rollup_t, c_ns_gap), \
        DB_COL("g_z", DB_COL_I64, db_rollup_t, g_z), DB_COL("c_nn_z", DB_COL_F64, db_rollup_t, c_nn_z),              \
        DB_COL("c_ss_z", DB_COL_F64, db_rollup_t, c_ss_z), DB_COL("c_ns_z", DB_COL_F64, db_rollup_t, c_ns_z),        \
        DB_COL("x_ss_gap", DB_COL_F64, db_rollup_t, x_ss_gap), DB_COL("x_sn_gap", DB_COL_F64, db_rollup_t, x_sn_gap), \
        DB_COL("x_ns_gap", DB_COL_F64, db_rollup_t, x_ns_gap), DB_COL("x_nn", DB_COL_F64, db_rollup_t, x_nn)

static const db_col_t g_rollup_cols[] = {ROLLUP_COLS("position")};
static const db_col_t g_bucket_cols[] = {ROLLUP_COLS("bucket")};
static const db_copy_desc_t g_buckets = {"bucket_rollups", g_bucket_cols, N_OF(g_bucket_cols)};

static const db_col_t g_docbucket_cols[] = {
    DB_COL_CTX("run_id", DB_COL_I64, commit_ctx_t, run_id),
    DB_COL("doc_id", DB_COL_I64, db_docbucket_t, doc_id),
    DB_COL("kind", DB_COL_KIND, db_docbucket_t, kind),
    DB_COL("bucket", DB_COL_I32, db_docbucket_t, bucket),
    DB_COL("n", DB_COL_I64, db_docbucket_t, n),
    DB_COL("n_z", DB_COL_I64, db_docbucket_t, n_z),
    DB_COL("sum_surprisal", DB_COL_F64, db_docbucket_t, sum_surprisal),
    DB_COL("sum_entropy", DB_COL_F64, db_docbucket_t, sum_entropy),
    DB_COL("sum_gap", DB_COL_F64, db_docbucket_t, sum_gap),
    DB_COL("sum_z", DB_COL_F64, db_docbucket_t, sum_z),
};
static const db_copy_desc_t g_docbuckets = {"doc_bucket_rollups", g_docbucket_cols, N_OF(g_docbucket_cols)};

static const db_copy_desc_t g_rollups = {"job_rollups", g_rollup_cols, N_OF(g_rollup_cols)};

static const db_col_t g_calib_cols[] = {
    DB_COL_CTX("run_id", DB_COL_I64, commit_ctx_t, run_id),
    DB_COL_CTX("job_id", DB_COL_I64, commit_ctx_t, job_id),
    DB_COL("kind", DB_COL_KIND, db_calib_t, kind),
    DB_COL("bin", DB_COL_I32, db_calib_t, bin),
    DB_COL("n", DB_COL_I64, db_calib_t, n),
    DB_COL("n_correct", DB_COL_I64, db_calib_t, n_correct),
    DB_COL("sum_conf", DB_COL_F64, db_calib_t, sum_conf),
    DB_COL("sumsq_conf", DB_COL_F64, db_calib_t, sumsq_conf),
    DB_COL("g", DB_COL_I64, db_calib_t, g),
    DB_COL("c_nn", DB_COL_F64, db_calib_t, c_nn),
    DB_COL("c_ss_conf", DB_COL_F64, db_calib_t, c_ss_conf),
    DB_COL("c_ns_conf", DB_COL_F64, db_calib_t, c_ns_conf),
    DB_COL("c_ss_correct", DB_COL_F64, db_calib_t, c_ss_correct),
    DB_COL("c_ns_correct", DB_COL_F64, db_calib_t, c_ns_correct),
};
static const db_copy_desc_t g_calib = {"calib_rollups", g_calib_cols, N_OF(g_calib_cols)};

static const db_col_t g_docsum_cols[] = {
    DB_COL_CTX("run_id", DB_COL_I64, commit_ctx_t, run_id),
    DB_COL("doc_id", DB_COL_I64, db_docsum_t, doc_id),
    DB_COL("kind", DB_COL_KIND, db_docsum_t, kind),
    DB_COL("cut", DB_COL_I32, db_docsum_t, cut),
    DB_COL("n", DB_COL_I64, db_docsum_t, n),
    DB_COL("n_z", DB_COL_I64, db_docsum_t, n_z),
    DB_COL("sum_surprisal", DB_COL_F64, db_docsum_t, sum_surprisal),
    DB_COL("sumsq_surprisal", DB_COL_F64, db_docsum_t, sumsq_surprisal),
    DB_COL("sum_entropy", DB_COL_F64, db_docsum_t, sum_entropy),
    DB_COL("sumsq_entropy", DB_COL_F64, db_docsum_t, sumsq_entropy),
    DB_COL("sum_gap", DB_COL_F64, db_docsum_t, sum_gap),
    DB_COL("sumsq_gap", DB_COL_F64, db_docsum_t, sumsq_gap),
    DB_COL("sum_z", DB_COL_F64, db_docsum_t, sum_z),
    DB_COL("sumsq_z", DB_COL_F64, db_docsum_t, sumsq_z),
};
static const db_copy_desc_t g_docsums = {"doc_rollups", g_docsum_cols, N_OF(g_docsum_cols)};

static const db_col_t g_top_cols[] = {
    DB_COL_CTX("run_id", DB_COL_I64, commit_ctx_t, run_id),
    DB_COL_CTX("job_id", DB_COL_I64, commit_ctx_t, job_id),
    DB_COL("doc_id", DB_COL_I64, db_toptok_t, doc_id),
    DB_COL("pos", DB_COL_I32, db_toptok_t, pos),
    DB_COL("token_id", DB_COL_I32, db_toptok_t, token_id),
    DB_COL("logprob", DB_COL_F32, db_toptok_t, logprob),
    DB_COL("entropy", DB_COL_F32, db_toptok_t, entropy),
    DB_COL("rank", DB_COL_I32, db_toptok_t, rank),
    DB_COL("varentropy", DB_COL_F32, db_toptok_t, varentropy),
    DB_COL("z", DB_COL_F64, db_toptok_t, z),
};
static const db_copy_desc_t g_top = {"top_tokens", g_top_cols, N_OF(g_top_cols)};

int db_commit_job(db_t *db, int64_t run_id, int64_t job_id, int64_t token, const db_results_t *res,
                  double *write_s, char *err, size_t errlen) {
    double t0 = now_s();
    char a[32], b[32], c[32];
    snprintf(a, sizeof a, "%" PRId64, run_id);
    snprintf(b, sizeof b, "%" PRId64, job_id);
    snprintf(c, sizeof c, "%" PRId64, token);
    const commit_ctx_t ctx = {run_id, job_id};
    db_buf_t buf = {0};
    PGresult *r = NULL;
    int rc = -1;
    if (db_exec(db, "BEGIN", 0, NULL, NULL, err, errlen, "committing a job")) goto out;
    /* The fence: only the holder of the current token may write.  (A
     * SECURITY DEFINER function locks the job's row: the worker's role may
     * not read tokens; 004_job_commit_functions.sql.) */
    if (db_exec(db, "SELECT 1 WHERE tokshift_job_fence($1::bigint, $2::bigint, $3::bigint)",
          3, (const char *const[]){a, b, c}, &r, err, errlen, "checking the attempt token"))
        goto out;
    if (PQntuples(r) != 1) {
        rc = 1;
        goto out;
    }
    PQclear(r);
    r = NULL;
    fault_maybe_stall(FAULT_STALL_IN_COMMIT_MS); /* TOKSHIFT_FAULT: holding the job's row lock */

    if (db_copy_rows(db, &g_seqs, &ctx, res->seqs, res->n_seqs, sizeof *res->seqs, &buf, err, errlen) ||
        db_copy_rows(db, &g_rollups, &ctx, res->rollups, res->n_rollups, sizeof *res->rollups, &buf, err, errlen) ||
        db_copy_rows(db, &g_calib, &ctx, res->calib, res->n_calib, sizeof *res->calib, &buf, err, errlen) ||
        db_copy_rows(db, &g_docsums, &ctx, res->docsums, res->n_docsums, sizeof *res->docsums, &buf, err, errlen) ||
        db_copy_rows(db, &g_top, &ctx, res->top, res->n_top, sizeof *res->top, &buf, err, errlen) ||
        db_copy_rows(db, &g_buckets, &ctx, res->buckets, res->n_buckets, sizeof *res->buckets, &buf, err, errlen) ||
        db_copy_rows(db, &g_docbuckets, &ctx, res->docbuckets, res->n_docbuckets, sizeof *res->docbuckets, &buf,
                     err, errlen))
        goto out;

    for (size_t i = 0; i < res->n_docs; i++) {
        const db_docres_t *d = &res->docs[i];
        char di[32], nt[16], werr[LOG_ERRLEN + 8];
        snprintf(di, sizeof di, "%" PRId64, d->doc_id);
        snprintf(nt, sizeof nt, "%d", d->n_tokens);
        if (d->error) snprintf(werr, sizeof werr, "worker: %s", d->error);
        if (db_exec(db, "UPDATE documents SET n_tokens = $3, error = $4 WHERE run_id = $1 AND doc_id = $2", 4,
              (const char *const[]){a, di, nt, d->error ? werr : NULL}, NULL, err, errlen, "updating a document"))
            goto out;
    }
    char nt[32], cs[32], ws[32];
    snprintf(nt, sizeof nt, "%zu", res->n_toks);
    snprintf(cs, sizeof cs, "%.6f", res->compute_s);
    snprintf(ws, sizeof ws, "%.6f", now_s() - t0);
    if (db_exec(db,
          "SELECT tokshift_job_done($1::bigint, $2::bigint, $3::bigint, $4::bigint, $5::float8, $6::float8)",
          6, (const char *const[]){a, b, c, nt, cs, ws}, NULL, err, errlen, "marking the job done") ||
        db_exec(db, "COMMIT", 0, NULL, NULL, err, errlen, "committing a job"))
        goto out;
    rc = 0;
out:
    PQclear(r);
    if (rc != 0) db_rollback(db);
    free(buf.p);
    if (write_s) *write_s = now_s() - t0;
    return rc;
}

int db_commit_jobs_empty(db_t *db, int64_t run_id, size_t n, const int64_t *job_ids, const int64_t *tokens,
                         bool *committed, char *err, size_t errlen) {
    for (size_t i = 0; i < n; i++) committed[i] = false;
    if (!n) return 0;
    db_buf_t ids = {0}, toks = {0};
    db_b_int64_array(&ids, job_ids, n);
    db_b_int64_array(&toks, tokens, n);
    char a[32];
    snprintf(a, sizeof a, "%" PRId64, run_id);
    PGresult *r = NULL;
    int rc = -1;
    if (ids.oom || toks.oom) {
        log_seterr(err, errlen, "database: out of memory");
        goto out;
    }
    /* The same fence and the same transition as db_commit_job, per job, in
     * one statement (atomic): the fence in WHERE runs before the select
     * list's tokshift_job_done. */
    if (db_exec(db,
          "SELECT u.i, tokshift_job_done($1::bigint, u.job_id, u.token, 0, 0, 0) "
          "FROM unnest($2::bigint[], $3::bigint[]) WITH ORDINALITY AS u(job_id, token, i) "
          "WHERE tokshift_job_fence($1::bigint, u.job_id, u.token)",
          3, (const char *const[]){a, ids.p, toks.p}, &r, err, errlen, "committing no-op jobs"))
        goto out;
    for (int i = 0; i < PQntuples(r); i++) {
        long k = strtol(PQgetvalue(r, i, 0), NULL, 10) - 1;
        if (k >= 0 && (size_t)k < n) committed[k] = true;
    }
    rc = 0;
out:
    PQclear(r);
    free(ids.p);
    free(toks.p);
    return rc;
}

/* A vocabulary entry, and the model it belongs to. */
typedef struct {
    int32_t token_id;
    const char *piece, *text;
} vocab_row_t;
typedef struct {
    int64_t model_id;
} vocab_ctx_t;

static const db_col_t g_vocab_cols[] = {
    DB_COL_CTX("model_id", DB_COL_I64, vocab_ctx_t, model_id),
    DB_COL("token_id", DB_COL_I32, vocab_row_t, token_id),
    DB_COL("piece", DB_COL_STR, vocab_row_t, piece),
    DB_COL("text", DB_COL_STR, vocab_row_t, text),
};
static const db_copy_desc_t g_vocab = {"vocab", g_vocab_cols, N_OF(g_vocab_cols)};

int db_model_register(db_t *db, const char *identity, const char *name, const char *arch, int n_vocab, int n_ctx,
                      const char *const *pieces, const char *const *texts, char *err, size_t errlen) {
    char nv[16], nc[16];
    snprintf(nv, sizeof nv, "%d", n_vocab);
    snprintf(nc, sizeof nc, "%d", n_ctx);
    PGresult *r = NULL;
    db_buf_t buf = {0};
    vocab_row_t *rows = NULL;
    int rc = -1;
    if (db_exec(db, "BEGIN", 0, NULL, NULL, err, errlen, "registering the model") ||
        db_exec(db,
          "INSERT INTO models (identity, name, arch, n_vocab, n_ctx) VALUES ($1, $2, $3, $4, $5) "
          "ON CONFLICT (identity) DO NOTHING RETURNING model_id",
          5, (const char *const[]){identity, name, arch, nv, nc}, &r, err, errlen, "registering the model"))
        goto out;
    if (PQntuples(r) == 1) {
        const vocab_ctx_t ctx = {strtoll(PQgetvalue(r, 0, 0), NULL, 10)};
        if (!(rows = malloc((n_vocab > 0 ? (size_t)n_vocab : 1) * sizeof *rows))) {
            log_seterr(err, errlen, "database: out of memory registering the model");
            goto out;
        }
        for (int i = 0; i < n_vocab; i++)
            rows[i] = (vocab_row_t){i, pieces[i] ? pieces[i] : "", texts ? texts[i] : NULL};
        if (db_copy_rows(db, &g_vocab, &ctx, rows, (size_t)n_vocab, sizeof *rows, &buf, err, errlen)) goto out;
    }
    if (db_exec(db, "COMMIT", 0, NULL, NULL, err, errlen, "registering the model")) goto out;
    rc = 0;
out:
    PQclear(r);
    if (rc) db_rollback(db);
    free(buf.p);
    free(rows);
    return rc;
}
