/* db_report.c - see db.h: what the CLI and the reports read, as plain text
 * tables.  What it is not: a printer (cli/table.c formats the tables). */
#include "db.h"
#include "db_private.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"

/* ---- reports ------------------------------------------------------------ */

int db_report_rows(db_t *db, int64_t run_id, db_report_t which, db_table_t *out, char *err, size_t errlen) {
    static const char *const sql[] = {
        [DB_REPORT_RUN] =
            "SELECT p.run_id, p.name, p.status, p.model_identity, m.name AS model_name, m.arch AS model_arch, "
            "r.settings::text AS settings, r.corpus::text AS corpus, r.n_docs, "
            "(SELECT count(*) FROM documents d WHERE d.run_id = p.run_id AND d.error IS NOT NULL) AS docs_error, "
            "p.jobs, p.jobs_done, p.jobs_failed, p.jobs_leased, p.jobs_pending, p.docs_done, p.tokens_done, "
            "p.retries, to_char(p.created_at, 'YYYY-MM-DD HH24:MI:SS TZ') AS created, "
            "to_char(p.finished_at, 'YYYY-MM-DD HH24:MI:SS TZ') AS finished "
            "FROM run_progress p JOIN runs r USING (run_id) LEFT JOIN models m ON m.identity = r.model_identity "
            "WHERE p.run_id = $1",
        [DB_REPORT_POSITION_STATS] =
            "SELECT kind, position, n, mean_surprisal, se_surprisal, mean_entropy, se_entropy, mean_gap, se_gap, "
            "mean_z, se_z FROM position_stats WHERE run_id = $1 AND kind IN ('human_cont', 'sample') "
            "ORDER BY kind, position",
        [DB_REPORT_SHIFT] =
            "SELECT bucket, replace(positions, '-', '..') AS positions, n_human, n_model, human_surprisal, model_surprisal, human_entropy, "
            "model_entropy, human_gap, human_se_gap, model_gap, model_se_gap, shift, se_shift "
            "FROM shift_by_bucket WHERE run_id = $1 ORDER BY bucket",
        [DB_REPORT_CALIBRATION] =
            "SELECT kind, bin, n, mean_confidence, accuracy, se_accuracy, n_docs FROM calibration WHERE run_id = $1 "
            "ORDER BY kind, bin",
        /* Per-document mean gaps in 0.1-nat bins: a fixed width, so that the
         * histograms of several runs share their bins. */
        [DB_REPORT_DOC_GAP] =
            "SELECT k.kind, round(k.b * 0.1, 1) AS gap_lo, round((k.b + 1) * 0.1, 1) AS gap_hi, count(*) AS docs "
            "FROM document_summary d CROSS JOIN LATERAL (VALUES ('human', floor(d.mean_gap / 0.1)::numeric), "
            "('human_cont', floor(d.mean_gap_human_cont / 0.1)::numeric), "
            "('sample', floor(d.mean_gap_samples / 0.1)::numeric)) k(kind, b) "
            "WHERE d.run_id = $1 AND k.b IS NOT NULL GROUP BY k.kind, k.b ORDER BY k.kind, k.b",
        [DB_REPORT_SUMMARY] =
            "SELECT positions, n_human, n_model, "
            "round(human_surprisal::numeric, 3) AS human_surpr, round(model_surprisal::numeric, 3) AS model_surpr, "
            "round(human_entropy::numeric, 3) AS human_ent, round(model_entropy::numeric, 3) AS model_ent, "
            "round(human_gap::numeric, 3) || ' ± ' || round(human_se_gap::numeric, 3) AS \"human_gap ± se\", "
            "round(model_gap::numeric, 3) || ' ± ' || round(model_se_gap::numeric, 3) AS \"model_gap ± se\", "
            "round(shift::numeric, 3) || ' ± ' || round(se_shift::numeric, 3) AS \"shift ± se\" "
            "FROM shift_by_bucket WHERE run_id = $1 ORDER BY bucket",
        [DB_REPORT_STATUS] =
            "SELECT run_id, name, status, jobs, jobs_done AS done, jobs_leased AS leased, jobs_pending AS pending, "
            "jobs_failed AS failed, retries, docs_done, tokens_done, "
            "to_char(created_at, 'YYYY-MM-DD HH24:MI') AS created, "
            "coalesce(to_char(coalesce(finished_at, now()) - started_at, 'HH24:MI:SS'), '') AS elapsed "
            "FROM run_progress WHERE $1::bigint = 0 OR run_id = $1::bigint ORDER BY run_id",
    };
    memset(out, 0, sizeof *out);
    if ((unsigned)which >= sizeof sql / sizeof *sql) return log_seterr(err, errlen, "database: no such report table");
    char a[32];
    snprintf(a, sizeof a, "%" PRId64, run_id);
    return db_query_table(db, sql[which], 1, (const char *const[]){a}, out, err, errlen);
}

int db_query_table(db_t *db, const char *sql, int n_params, const char *const *params, db_table_t *out, char *err,
                   size_t errlen) {
    memset(out, 0, sizeof *out);
    PGresult *r;
    if (db_exec(db, sql, n_params, params, &r, err, errlen, "reading the report")) return -1;
    size_t nr = (size_t)PQntuples(r), nc = (size_t)PQnfields(r);
    out->names = calloc(nc ? nc : 1, sizeof *out->names);
    out->cells = calloc(nr * nc > 0 ? nr * nc : 1, sizeof *out->cells);
    int oom = !out->names || !out->cells;
    if (!oom) {
        out->n_rows = nr;
        out->n_cols = nc;
    }
    for (size_t c = 0; !oom && c < nc; c++) oom = !(out->names[c] = strdup(PQfname(r, (int)c)));
    for (size_t i = 0; !oom && i < nr * nc; i++) {
        int row = (int)(i / nc), col = (int)(i % nc);
        if (!PQgetisnull(r, row, col)) oom = !(out->cells[i] = strdup(PQgetvalue(r, row, col)));
    }
    PQclear(r);
    if (oom) {
        db_table_free(out);
        return log_seterr(err, errlen, "database: out of memory reading the report");
    }
    return 0;
}

void db_table_free(db_table_t *t) {
    if (!t) return;
    if (t->names)
        for (size_t c = 0; c < t->n_cols; c++) free(t->names[c]);
    if (t->cells)
        for (size_t i = 0; i < t->n_rows * t->n_cols; i++) free(t->cells[i]);
    free(t->names);
    free(t->cells);
    memset(t, 0, sizeof *t);
}

/* ---- one stored sequence (tokshift regenerate) --------------------------- */

int db_run_settings(db_t *db, const char *run, int64_t *run_id, char **identity, char **settings_json, char *err,
                    size_t errlen) {
    *identity = *settings_json = NULL;
    int found = db_run_find(db, run, run_id, err, errlen);
    if (found) return found;
    char a[32];
    snprintf(a, sizeof a, "%" PRId64, *run_id);
    PGresult *r;
    if (db_exec(db, "SELECT model_identity, settings::text FROM runs WHERE run_id = $1", 1, (const char *const[]){a},
                &r, err, errlen, "reading the run"))
        return -1;
    if (PQntuples(r) == 1) {
        *identity = strdup(PQgetvalue(r, 0, 0));
        *settings_json = strdup(PQgetvalue(r, 0, 1));
    }
    PQclear(r);
    if (!*identity || !*settings_json) {
        free(*identity), free(*settings_json);
        *identity = *settings_json = NULL;
        return log_seterr(err, errlen, "database: cannot read run '%s' (gone, or out of memory)", run);
    }
    return 0;
}

void db_stored_doc_free(db_stored_doc_t *d) {
    if (!d) return;
    free(d->model_identity);
    free(d->settings_json);
    free(d->text);
    free(d->seqs);
    free(d->toks);
    memset(d, 0, sizeof *d);
}

static int cmp_seq_no(const void *key, const void *elem) {
    int32_t k = *(const int32_t *)key, e = ((const db_stored_seq_t *)elem)->seq_no;
    return (k > e) - (k < e);
}

int db_stored_doc(db_t *db, const char *run, int64_t doc_id, const int32_t *seq_nos, size_t n_seq_nos,
                  db_stored_doc_t *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    int rc = db_run_settings(db, run, &out->run_id, &out->model_identity, &out->settings_json, err, errlen);
    if (rc) return rc;
    rc = -1;
    char a[32], b[32], *list = NULL;
    snprintf(a, sizeof a, "%" PRId64, out->run_id);
    snprintf(b, sizeof b, "%" PRId64, doc_id);
    PGresult *r = NULL;
    if (seq_nos) { /* the int[] literal "{s,s,...}" */
        size_t cap = 3 + 12 * n_seq_nos, len = 0;
        if (!(list = malloc(cap))) goto oom;
        list[len++] = '{';
        for (size_t i = 0; i < n_seq_nos; i++)
            len += (size_t)snprintf(list + len, cap - len, "%s%" PRId32, i ? "," : "", seq_nos[i]);
        snprintf(list + len, cap - len, "}");
    }
    const char *const params[] = {a, b, list};
    if (db_exec(db, "SELECT text FROM documents WHERE run_id = $1 AND doc_id = $2", 2, params, &r, err, errlen,
                "reading the document"))
        goto error;
    if (PQntuples(r) != 1) {
        log_seterr(err, errlen, "run '%s' has no document %" PRId64, run, doc_id);
        rc = 1;
        goto error;
    }
    if (!PQgetisnull(r, 0, 0)) {
        out->text_len = (size_t)PQgetlength(r, 0, 0);
        if (!(out->text = malloc(out->text_len + 1))) goto oom;
        memcpy(out->text, PQgetvalue(r, 0, 0), out->text_len + 1);
    }
    PQclear(r);
    r = NULL;
    if (db_exec(db,
                "SELECT seq_no, kind, coalesce(cut, -1), coalesce(sample_idx, -1), coalesce(seed, 0), "
                "coalesce(temperature, 0), coalesce(top_k, 0), coalesce(top_p, 0), n_tokens "
                "FROM sequences WHERE run_id = $1 AND doc_id = $2 AND ($3::int[] IS NULL OR seq_no = ANY ($3::int[])) "
                "ORDER BY seq_no",
                3, params, &r, err, errlen, "reading the sequences"))
        goto error;
    size_t n = (size_t)PQntuples(r);
    if (!(out->seqs = calloc(n ? n : 1, sizeof *out->seqs))) goto oom;
    out->n_seqs = n;
    for (size_t i = 0; i < n; i++) {
        db_stored_seq_t *q = &out->seqs[i];
        int row = (int)i;
        q->seq_no = (int32_t)strtol(PQgetvalue(r, row, 0), NULL, 10);
        snprintf(q->kind, sizeof q->kind, "%s", PQgetvalue(r, row, 1));
        q->cut = (int32_t)strtol(PQgetvalue(r, row, 2), NULL, 10);
        q->sample_idx = (int32_t)strtol(PQgetvalue(r, row, 3), NULL, 10);
        q->seed = (uint64_t)strtoll(PQgetvalue(r, row, 4), NULL, 10); /* the bigint's two's complement bits */
        q->temperature = strtof(PQgetvalue(r, row, 5), NULL);
        q->top_k = (int32_t)strtol(PQgetvalue(r, row, 6), NULL, 10);
        q->top_p = strtof(PQgetvalue(r, row, 7), NULL);
        q->n_tokens = (int32_t)strtol(PQgetvalue(r, row, 8), NULL, 10);
    }
    PQclear(r);
    r = NULL;
    for (size_t i = 0; i < n_seq_nos; i++)
        if (!bsearch(&seq_nos[i], out->seqs, out->n_seqs, sizeof *out->seqs, cmp_seq_no)) {
            log_seterr(err, errlen, "document %" PRId64 " of run '%s' has no sequence %" PRId32
                       " (none stored yet, or no such cut)", doc_id, run, seq_nos[i]);
            rc = 1;
            goto error;
        }
    /* float4 as text: PostgreSQL 12+ prints the shortest string that reads
     * back to the same float (extra_float_digits 1), so strtof is exact. */
    if (db_exec(db,
                "SELECT seq_no, pos, token_id, logprob, entropy, rank, top1_logprob, varentropy, context_len "
                "FROM token_view WHERE run_id = $1 AND doc_id = $2 "
                "AND ($3::int[] IS NULL OR seq_no = ANY ($3::int[])) ORDER BY seq_no, pos",
                3, params, &r, err, errlen, "reading the token rows"))
        goto error;
    n = (size_t)PQntuples(r);
    if (!(out->toks = calloc(n ? n : 1, sizeof *out->toks))) goto oom;
    out->n_toks = n;
    /* Both lists are ordered by seq_no: one merge. */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        db_stored_tok_t *t = &out->toks[i];
        int row = (int)i;
        int32_t seq = (int32_t)strtol(PQgetvalue(r, row, 0), NULL, 10);
        while (k < out->n_seqs && out->seqs[k].seq_no < seq) k++;
        if (k == out->n_seqs || out->seqs[k].seq_no != seq) {
            log_seterr(err, errlen, "run '%s' document %" PRId64 ": token rows of sequence %" PRId32
                       ", which is not in sequences", run, doc_id, seq);
            goto error;
        }
        if (!out->seqs[k].toks) out->seqs[k].toks = t;
        out->seqs[k].n_toks++;
        t->pos = (int32_t)strtol(PQgetvalue(r, row, 1), NULL, 10);
        t->token_id = (int32_t)strtol(PQgetvalue(r, row, 2), NULL, 10);
        t->logprob = strtof(PQgetvalue(r, row, 3), NULL);
        t->entropy = strtof(PQgetvalue(r, row, 4), NULL);
        t->rank = (int32_t)strtol(PQgetvalue(r, row, 5), NULL, 10);
        t->top1_logprob = strtof(PQgetvalue(r, row, 6), NULL);
        t->varentropy = strtof(PQgetvalue(r, row, 7), NULL);
        t->context_len = (int32_t)strtol(PQgetvalue(r, row, 8), NULL, 10);
    }
    PQclear(r);
    free(list);
    return 0;
oom:
    log_seterr(err, errlen, "database: out of memory reading the document");
error:
    PQclear(r);
    free(list);
    db_stored_doc_free(out);
    return rc > 0 ? 1 : -1;
}
