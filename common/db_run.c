/* db_run.c - see db.h: the coordinator's bookkeeping (runs, the corpus
 * load, jobs and their leases, progress).  What it is not: the worker's
 * write path (db_results.c) or what the CLI reads (db_report.c). */
#include "db.h"
#include "db_private.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"

/* ---- runs -------------------------------------------------------------- */

int db_run_open(db_t *db, const char *name, const char *identity, const char *settings, const char *corpus,
                db_run_t *out, char *err, size_t errlen) {
    PGresult *r = NULL;
    memset(out, 0, sizeof *out);
    if (db_exec(db, "BEGIN", 0, NULL, NULL, err, errlen, "opening the run")) return -1;
    if (db_exec(db,
          "SELECT run_id, status, model_identity, settings = $2::jsonb, settings::text, "
          "coalesce(n_docs, 0), coalesce(n_jobs, 0) FROM runs WHERE name = $1 FOR UPDATE",
          2, (const char *const[]){name, settings}, &r, err, errlen, "looking the run up"))
        goto error;
    if (PQntuples(r) == 1) {
        out->existed = 1;
        out->run_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        snprintf(out->status, sizeof out->status, "%s", PQgetvalue(r, 0, 1));
        out->n_docs = atoi(PQgetvalue(r, 0, 5));
        out->n_jobs = atoi(PQgetvalue(r, 0, 6));
        if (strcmp(PQgetvalue(r, 0, 2), identity)) {
            log_seterr(err, errlen, "run '%s' was registered with model %s, not %s", name, PQgetvalue(r, 0, 2),
                       identity);
            goto error;
        }
        if (strcmp(PQgetvalue(r, 0, 3), "t")) {
            log_seterr(err, errlen, "run '%s' was registered with settings %s, not %s", name, PQgetvalue(r, 0, 4),
                       settings);
            goto error;
        }
        PQclear(r);
        r = NULL;
        return db_exec(db, "COMMIT", 0, NULL, NULL, err, errlen, "opening the run");
    }
    PQclear(r);
    if (db_exec(db,
          "INSERT INTO runs (name, model_identity, settings, corpus) VALUES ($1, $2, $3::jsonb, $4::jsonb) "
          "RETURNING run_id",
          4, (const char *const[]){name, identity, settings, corpus}, &r, err, errlen, "registering the run"))
        goto error;
    out->run_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    snprintf(out->status, sizeof out->status, "loading");
    PQclear(r);
    r = NULL;
    /* By a SECURITY DEFINER function (003_partition_function.sql): the
     * coordinator's role needs no DDL rights. */
    char id[32];
    snprintf(id, sizeof id, "%" PRId64, out->run_id);
    if (db_exec(db, "SELECT tokshift_create_partition($1::bigint)", 1, (const char *const[]){id}, NULL, err, errlen,
          "creating the run's partition") ||
        db_exec(db, "COMMIT", 0, NULL, NULL, err, errlen, "registering the run"))
        goto error;
    return 0;
error:
    PQclear(r);
    db_rollback(db);
    return -1;
}

int db_run_set_status(db_t *db, int64_t run_id, const char *status, char *err, size_t errlen) {
    char id[32];
    snprintf(id, sizeof id, "%" PRId64, run_id);
    return db_exec(db,
             "UPDATE runs SET status = $2, "
             "started_at = CASE WHEN $2 = 'running' THEN coalesce(started_at, now()) ELSE started_at END, "
             "finished_at = CASE WHEN $2 = 'done' THEN now() ELSE NULL END WHERE run_id = $1",
             2, (const char *const[]){id, status}, NULL, err, errlen, "setting the run's status");
}

int db_run_find(db_t *db, const char *name_or_id, int64_t *run_id, char *err, size_t errlen) {
    PGresult *r;
    if (db_exec(db, "SELECT run_id FROM runs WHERE name = $1 OR run_id::text = $1 ORDER BY name = $1 DESC LIMIT 1", 1,
          (const char *const[]){name_or_id}, &r, err, errlen, "finding the run"))
        return -1;
    int found = PQntuples(r) == 1;
    if (found) *run_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return found ? 0 : 1;
}

/* ---- loading documents and jobs --------------------------------------- */

typedef struct {
    int64_t job_id, n_bytes;
    int n_docs;
} loader_job_t;

struct db_loader {
    db_t *db;
    int64_t run_id;
    db_buf_t b;
    loader_job_t *jobs;
    size_t n_jobs, cap_jobs;
    int64_t n_docs;
};

db_loader_t *db_loader_new(db_t *db, int64_t run_id, char *err, size_t errlen) {
    db_loader_t *l = calloc(1, sizeof *l);
    if (!l) {
        log_seterr(err, errlen, "database: out of memory");
        return NULL;
    }
    l->db = db;
    l->run_id = run_id;
    if (db_exec(db, "BEGIN", 0, NULL, NULL, err, errlen, "loading documents") ||
        db_copy_begin(db,
                   "COPY documents (run_id, doc_id, ext_id, source, metadata, text, n_bytes, job_id, error) "
                   "FROM STDIN (FORMAT binary)",
                   &l->b, err, errlen)) {
        db_rollback(db);
        free(l->b.p);
        free(l);
        return NULL;
    }
    return l;
}

int db_loader_add(db_loader_t *l, int64_t doc_id, const char *ext_id, const char *source, const char *metadata,
                  const char *text, size_t text_len, int64_t job_id, const char *error, char *err, size_t errlen) {
    db_buf_t *b = &l->b;
    db_b_i16(b, 9);
    db_f_i64(b, l->run_id);
    db_f_i64(b, doc_id);
    db_f_str(b, ext_id);
    db_f_str(b, source);
    db_f_jsonb(b, metadata && *metadata ? metadata : "{}");
    db_f_text(b, text, text_len);
    db_f_i64(b, text ? (int64_t)text_len : 0);
    if (job_id >= 0) db_f_i64(b, job_id);
    else db_f_null(b);
    db_f_str(b, error);
    l->n_docs++;
    return db_copy_maybe_flush(l->db, b, err, errlen);
}

int db_loader_job(db_loader_t *l, int64_t job_id, int n_docs, int64_t n_bytes, char *err, size_t errlen) {
    if (l->n_jobs == l->cap_jobs) {
        size_t cap = l->cap_jobs ? 2 * l->cap_jobs : 256;
        loader_job_t *nj = realloc(l->jobs, cap * sizeof *nj);
        if (!nj) return log_seterr(err, errlen, "database: out of memory");
        l->jobs = nj;
        l->cap_jobs = cap;
    }
    l->jobs[l->n_jobs++] = (loader_job_t){job_id, n_bytes, n_docs};
    return 0;
}

void db_loader_abort(db_loader_t **lp) {
    if (!lp || !*lp) return;
    db_loader_t *l = *lp;
    if (PQtransactionStatus(l->db->c) == PQTRANS_ACTIVE) {
        PQputCopyEnd(l->db->c, "aborted");
        PGresult *r;
        while ((r = PQgetResult(l->db->c))) PQclear(r);
    }
    db_rollback(l->db);
    free(l->b.p);
    free(l->jobs);
    free(l);
    *lp = NULL;
}

int db_loader_finish(db_loader_t **lp, char *err, size_t errlen) {
    db_loader_t *l = *lp;
    db_t *db = l->db;
    char id[32];
    snprintf(id, sizeof id, "%" PRId64, l->run_id);
    const char *p[1] = {id};
    if (db_copy_end(db, &l->b, err, errlen, "loading documents")) goto error;
    if (db_copy_begin(db, "COPY jobs (run_id, job_id, n_docs, n_bytes) FROM STDIN (FORMAT binary)", &l->b, err, errlen))
        goto error;
    for (size_t i = 0; i < l->n_jobs; i++) {
        db_b_i16(&l->b, 4);
        db_f_i64(&l->b, l->run_id);
        db_f_i64(&l->b, l->jobs[i].job_id);
        db_f_i32(&l->b, l->jobs[i].n_docs);
        db_f_i64(&l->b, l->jobs[i].n_bytes);
        if (db_copy_maybe_flush(db, &l->b, err, errlen)) goto error;
    }
    if (db_copy_end(db, &l->b, err, errlen, "loading jobs")) goto error;
    /* Later duplicates of an id lose their text and job, with a reason. */
    if (db_exec(db,
          "UPDATE documents d SET error = format('duplicate document id %s (first at %s)', d.ext_id, f.source), "
          "text = NULL, job_id = NULL "
          "FROM (SELECT DISTINCT ON (ext_id) ext_id, doc_id, source FROM documents WHERE run_id = $1 "
          "      ORDER BY ext_id, doc_id) f "
          "WHERE d.run_id = $1 AND d.ext_id = f.ext_id AND d.doc_id > f.doc_id",
          1, p, NULL, err, errlen, "marking duplicate document ids") ||
        db_exec(db,
          "UPDATE jobs j SET n_docs = c.n, n_bytes = c.b FROM "
          "(SELECT j2.job_id, count(d.doc_id) AS n, coalesce(sum(d.n_bytes), 0) AS b FROM jobs j2 "
          " LEFT JOIN documents d ON d.run_id = j2.run_id AND d.job_id = j2.job_id WHERE j2.run_id = $1 "
          " GROUP BY j2.job_id) c WHERE j.run_id = $1 AND j.job_id = c.job_id AND j.n_docs <> c.n",
          1, p, NULL, err, errlen, "recounting jobs") ||
        db_exec(db, "DELETE FROM jobs WHERE run_id = $1 AND n_docs = 0", 1, p, NULL, err, errlen, "dropping empty jobs") ||
        db_exec(db,
          "UPDATE runs SET n_docs = (SELECT count(*) FROM documents WHERE run_id = $1), "
          "n_jobs = (SELECT count(*) FROM jobs WHERE run_id = $1), status = 'running', started_at = now() "
          "WHERE run_id = $1",
          1, p, NULL, err, errlen, "recording the run's size") ||
        db_exec(db, "COMMIT", 0, NULL, NULL, err, errlen, "loading documents"))
        goto error;
    free(l->b.p);
    free(l->jobs);
    free(l);
    *lp = NULL;
    return 0;
error:
    db_loader_abort(lp);
    return -1;
}

/* ---- jobs -------------------------------------------------------------- */

int db_jobs_pending(db_t *db, int64_t run_id, int requeue_leased, int64_t **ids, size_t *n, char *err,
                    size_t errlen) {
    char id[32];
    snprintf(id, sizeof id, "%" PRId64, run_id);
    const char *p[1] = {id};
    PGresult *r;
    *ids = NULL;
    *n = 0;
    if (requeue_leased &&
        db_exec(db,
          "UPDATE jobs SET state = 'pending', attempt_token = NULL, worker = NULL, "
          "error = 'requeued: the coordinator restarted' WHERE run_id = $1 AND state = 'leased'",
          1, p, NULL, err, errlen, "requeueing leased jobs"))
        return -1;
    if (db_exec(db, "SELECT job_id FROM jobs WHERE run_id = $1 AND state = 'pending' ORDER BY job_id", 1, p, &r, err,
          errlen, "listing pending jobs"))
        return -1;
    size_t k = (size_t)PQntuples(r);
    if (k && !(*ids = malloc(k * sizeof **ids))) {
        PQclear(r);
        return log_seterr(err, errlen, "database: out of memory");
    }
    for (size_t i = 0; i < k; i++) (*ids)[i] = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
    *n = k;
    PQclear(r);
    return 0;
}

int db_job_lease(db_t *db, int64_t run_id, int64_t job_id, int64_t token, const char *worker, int *attempts,
                 char *err, size_t errlen) {
    char a[32], b[32], c[32];
    snprintf(a, sizeof a, "%" PRId64, run_id);
    snprintf(b, sizeof b, "%" PRId64, job_id);
    snprintf(c, sizeof c, "%" PRId64, token);
    PGresult *r;
    if (db_exec(db,
          "UPDATE jobs SET state = 'leased', attempts = attempts + 1, attempt_token = $3, worker = $4, "
          "leased_at = now() WHERE run_id = $1 AND job_id = $2 AND state = 'pending' RETURNING attempts",
          4, (const char *const[]){a, b, c, worker}, &r, err, errlen, "leasing a job"))
        return -1;
    int ok = PQntuples(r) == 1;
    if (ok && attempts) *attempts = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return ok ? 0 : 1;
}

db_release_t db_job_release(db_t *db, int64_t run_id, int64_t job_id, int64_t token, const char *reason, int max_attempts,
                   char *err, size_t errlen) {
    char a[32], b[32], c[32], m[16];
    snprintf(a, sizeof a, "%" PRId64, run_id);
    snprintf(b, sizeof b, "%" PRId64, job_id);
    snprintf(c, sizeof c, "%" PRId64, token);
    snprintf(m, sizeof m, "%d", max_attempts);
    PGresult *r;
    if (db_exec(db,
          "UPDATE jobs SET state = CASE WHEN attempts >= $5::int THEN 'failed' ELSE 'pending' END, "
          "attempt_token = CASE WHEN attempts >= $5::int THEN attempt_token END, error = $4 "
          "WHERE run_id = $1 AND job_id = $2 AND state = 'leased' AND attempt_token = $3 RETURNING state",
          5, (const char *const[]){a, b, c, reason, m}, &r, err, errlen, "releasing a job"))
        return DB_RELEASE_ERROR;
    db_release_t rc = PQntuples(r) != 1                     ? DB_RELEASE_STALE
                      : !strcmp(PQgetvalue(r, 0, 0), "failed") ? DB_RELEASE_FAILED
                                                               : DB_RELEASE_REQUEUED;
    PQclear(r);
    return rc;
}

int db_job_state(db_t *db, int64_t run_id, int64_t job_id, char state[16], char *err, size_t errlen) {
    char a[32], b[32];
    snprintf(a, sizeof a, "%" PRId64, run_id);
    snprintf(b, sizeof b, "%" PRId64, job_id);
    PGresult *r;
    if (db_exec(db, "SELECT state FROM jobs WHERE run_id = $1 AND job_id = $2", 2, (const char *const[]){a, b}, &r, err,
          errlen, "reading a job's state"))
        return -1;
    int ok = PQntuples(r) == 1;
    snprintf(state, 16, "%s", ok ? PQgetvalue(r, 0, 0) : "missing");
    PQclear(r);
    return ok ? 0 : 1;
}

int db_job_docs(db_t *db, int64_t run_id, int64_t job_id, db_doc_t **docs, size_t *n, char *err, size_t errlen) {
    char a[32], b[32];
    snprintf(a, sizeof a, "%" PRId64, run_id);
    snprintf(b, sizeof b, "%" PRId64, job_id);
    PGresult *r;
    *docs = NULL;
    *n = 0;
    if (db_exec(db,
          "SELECT doc_id, text FROM documents WHERE run_id = $1 AND job_id = $2 AND text IS NOT NULL ORDER BY doc_id",
          2, (const char *const[]){a, b}, &r, err, errlen, "reading a job's documents"))
        return -1;
    size_t k = (size_t)PQntuples(r);
    db_doc_t *d = calloc(k ? k : 1, sizeof *d);
    if (!d) goto oom;
    for (size_t i = 0; i < k; i++) {
        d[i].doc_id = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
        d[i].text_len = (size_t)PQgetlength(r, (int)i, 1);
        if (!(d[i].text = malloc(d[i].text_len + 1))) {
            db_docs_free(d, i);
            goto oom;
        }
        memcpy(d[i].text, PQgetvalue(r, (int)i, 1), d[i].text_len + 1);
    }
    PQclear(r);
    *docs = d;
    *n = k;
    return 0;
oom:
    PQclear(r);
    return log_seterr(err, errlen, "database: out of memory for a job's documents");
}

void db_docs_free(db_doc_t *docs, size_t n) {
    if (!docs) return;
    for (size_t i = 0; i < n; i++) free(docs[i].text);
    free(docs);
}

int db_progress(db_t *db, int64_t run_id, db_progress_t *o, char *err, size_t errlen) {
    char a[32];
    snprintf(a, sizeof a, "%" PRId64, run_id);
    PGresult *r;
    if (db_exec(db,
          "SELECT jobs, jobs_done, jobs_failed, jobs_leased, jobs_pending, docs_done, tokens_done, retries, "
          "(SELECT count(*) FROM documents WHERE run_id = $1), "
          "(SELECT count(*) FROM documents WHERE run_id = $1 AND error IS NOT NULL) "
          "FROM run_progress WHERE run_id = $1",
          1, (const char *const[]){a}, &r, err, errlen, "reading progress"))
        return -1;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return log_seterr(err, errlen, "run %" PRId64 " does not exist", run_id);
    }
    int64_t *f[] = {&o->jobs, &o->done, &o->failed, &o->leased, &o->pending,
                    &o->docs_done, &o->tokens_done, &o->retries, &o->docs, &o->docs_error};
    for (int i = 0; i < 10; i++) *f[i] = strtoll(PQgetvalue(r, 0, i), NULL, 10);
    PQclear(r);
    return 0;
}
