/* db_results.c - see db.h: a worker's write path (a job's results, under
 * its attempt token, in one transaction) and the model registry.  What it
 * is not: the coordinator's bookkeeping (db_run.c). */
#include "db.h"
#include "db_private.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"

/* ---- results ----------------------------------------------------------- */

int db_commit_job(db_t *db, int64_t run_id, int64_t job_id, int64_t token, const db_results_t *res,
                  double *write_s, char *err, size_t errlen) {
    double t0 = db_now_s();
    char a[32], b[32], c[32];
    snprintf(a, sizeof a, "%" PRId64, run_id);
    snprintf(b, sizeof b, "%" PRId64, job_id);
    snprintf(c, sizeof c, "%" PRId64, token);
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

    if (db_copy_begin(db,
                   "COPY sequences (run_id, doc_id, seq_no, kind, cut, sample_idx, seed, temperature, top_k, top_p, "
                   "n_tokens) FROM STDIN (FORMAT binary)",
                   &buf, err, errlen))
        goto out;
    for (size_t i = 0; i < res->n_seqs; i++) {
        const db_seq_t *s = &res->seqs[i];
        int human = !strcmp(s->kind, "human"), sample = !strcmp(s->kind, "sample");
        db_b_i16(&buf, 11);
        db_f_i64(&buf, run_id);
        db_f_i64(&buf, s->doc_id);
        db_f_i32(&buf, s->seq_no);
        db_f_str(&buf, s->kind);
        if (human) db_f_null(&buf); else db_f_i32(&buf, s->cut);
        if (sample) db_f_i32(&buf, s->sample_idx); else db_f_null(&buf);
        if (sample) db_f_i64(&buf, (int64_t)s->seed); else db_f_null(&buf);
        if (sample) db_f_f32(&buf, s->temperature); else db_f_null(&buf);
        if (sample) db_f_i32(&buf, s->top_k); else db_f_null(&buf);
        if (sample) db_f_f32(&buf, s->top_p); else db_f_null(&buf);
        db_f_i32(&buf, s->n_tokens);
        if (db_copy_maybe_flush(db, &buf, err, errlen)) goto out;
    }
    if (db_copy_end(db, &buf, err, errlen, "writing sequences")) goto out;

    if (db_copy_begin(db,
                   "COPY token_stats (run_id, doc_id, seq_no, pos, token_id, logprob, entropy, rank, top1_logprob, "
                   "varentropy, context_len) FROM STDIN (FORMAT binary)",
                   &buf, err, errlen))
        goto out;
    for (size_t i = 0; i < res->n_toks; i++) {
        const db_tok_t *t = &res->toks[i];
        db_b_i16(&buf, 11);
        db_f_i64(&buf, run_id);
        db_f_i64(&buf, t->doc_id);
        db_f_i32(&buf, t->seq_no);
        db_f_i32(&buf, t->pos);
        db_f_i32(&buf, t->token_id);
        db_f_f32(&buf, t->logprob);
        db_f_f32(&buf, t->entropy);
        db_f_i32(&buf, t->rank);
        db_f_f32(&buf, t->top1_logprob);
        db_f_f32(&buf, t->varentropy);
        db_f_i32(&buf, t->context_len);
        if (db_copy_maybe_flush(db, &buf, err, errlen)) goto out;
    }
    if (db_copy_end(db, &buf, err, errlen, "writing token statistics")) goto out;

    if (db_copy_begin(db,
                   "COPY job_rollups (run_id, job_id, kind, position, n, sum_surprisal, sumsq_surprisal, sum_entropy, "
                   "sumsq_entropy, sum_gap, sumsq_gap, sum_z, sumsq_z, n_z) FROM STDIN (FORMAT binary)",
                   &buf, err, errlen))
        goto out;
    for (size_t i = 0; i < res->n_rollups; i++) {
        const db_rollup_t *u = &res->rollups[i];
        db_b_i16(&buf, 14);
        db_f_i64(&buf, run_id);
        db_f_i64(&buf, job_id);
        db_f_str(&buf, u->kind);
        db_f_i32(&buf, u->position);
        db_f_i64(&buf, u->n);
        db_f_f64(&buf, u->sum_surprisal);
        db_f_f64(&buf, u->sumsq_surprisal);
        db_f_f64(&buf, u->sum_entropy);
        db_f_f64(&buf, u->sumsq_entropy);
        db_f_f64(&buf, u->sum_gap);
        db_f_f64(&buf, u->sumsq_gap);
        db_f_f64(&buf, u->sum_z);
        db_f_f64(&buf, u->sumsq_z);
        db_f_i64(&buf, u->n_z);
        if (db_copy_maybe_flush(db, &buf, err, errlen)) goto out;
    }
    if (db_copy_end(db, &buf, err, errlen, "writing rollups")) goto out;

    int64_t n_tok = 0;
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
    n_tok = (int64_t)res->n_toks;
    char nt[32], cs[32], ws[32];
    snprintf(nt, sizeof nt, "%" PRId64, n_tok);
    snprintf(cs, sizeof cs, "%.6f", res->compute_s);
    snprintf(ws, sizeof ws, "%.6f", db_now_s() - t0);
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
    if (write_s) *write_s = db_now_s() - t0;
    return rc;
}

int db_model_register(db_t *db, const char *identity, const char *name, const char *arch, int n_vocab, int n_ctx,
                      const char *const *pieces, const char *const *texts, char *err, size_t errlen) {
    char nv[16], nc[16];
    snprintf(nv, sizeof nv, "%d", n_vocab);
    snprintf(nc, sizeof nc, "%d", n_ctx);
    PGresult *r = NULL;
    db_buf_t buf = {0};
    int rc = -1;
    if (db_exec(db, "BEGIN", 0, NULL, NULL, err, errlen, "registering the model") ||
        db_exec(db,
          "INSERT INTO models (identity, name, arch, n_vocab, n_ctx) VALUES ($1, $2, $3, $4, $5) "
          "ON CONFLICT (identity) DO NOTHING RETURNING model_id",
          5, (const char *const[]){identity, name, arch, nv, nc}, &r, err, errlen, "registering the model"))
        goto out;
    if (PQntuples(r) == 1) {
        int64_t model_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        if (db_copy_begin(db, "COPY vocab (model_id, token_id, piece, text) FROM STDIN (FORMAT binary)", &buf, err,
                       errlen))
            goto out;
        for (int i = 0; i < n_vocab; i++) {
            db_b_i16(&buf, 4);
            db_f_i64(&buf, model_id);
            db_f_i32(&buf, i);
            db_f_str(&buf, pieces[i] ? pieces[i] : "");
            db_f_str(&buf, texts ? texts[i] : NULL);
            if (db_copy_maybe_flush(db, &buf, err, errlen)) goto out;
        }
        if (db_copy_end(db, &buf, err, errlen, "writing the vocabulary")) goto out;
    }
    if (db_exec(db, "COMMIT", 0, NULL, NULL, err, errlen, "registering the model")) goto out;
    rc = 0;
out:
    PQclear(r);
    if (rc) db_rollback(db);
    free(buf.p);
    return rc;
}
