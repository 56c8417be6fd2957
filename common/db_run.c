/* db_run.c - see db.h: the coordinator's bookkeeping (runs, the corpus
 * load, jobs and their leases, progress).  What it is not: the worker's
 * write path (db_results.c) or what the CLI reads (db_report.c). */
#include "db.h"
#include "db_private.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"

/* ---- runs -------------------------------------------------------------- */

void db_run_clear(db_run_t *r) {
    if (!r) return;
    free(r->settings);
    free(r->corpus);
    free(r->fingerprint);
    memset(r, 0, sizeof *r);
}

/* strdup that leaves NULL for an SQL NULL. */
static char *dup_value(const PGresult *r, int col) {
    return PQgetisnull(r, 0, col) ? NULL : strdup(PQgetvalue(r, 0, col));
}

int db_run_open(db_t *db, const char *name, const char *identity, const char *settings, const char *corpus,
                db_run_t *out, char *err, size_t errlen) {
    PGresult *r = NULL;
    memset(out, 0, sizeof *out);
    if (db_exec(db, "BEGIN", 0, NULL, NULL, err, errlen, "opening the run")) return -1;
    if (db_exec(db,
          "SELECT run_id, status, model_identity, settings::text, corpus::text, coalesce(n_docs, 0), "
          "coalesce(n_jobs, 0), load_next_doc, load_next_job, loaded_at IS NOT NULL, corpus_fingerprint::text "
          "FROM runs WHERE name = $1 FOR UPDATE",
          1, (const char *const[]){name}, &r, err, errlen, "looking the run up"))
        goto error;
    if (PQntuples(r) == 1) {
        out->existed = 1;
        out->run_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        snprintf(out->status, sizeof out->status, "%s", PQgetvalue(r, 0, 1));
        snprintf(out->model_identity, sizeof out->model_identity, "%s", PQgetvalue(r, 0, 2));
        out->settings = dup_value(r, 3);
        out->corpus = dup_value(r, 4);
        out->n_docs = strtoll(PQgetvalue(r, 0, 5), NULL, 10);
        out->n_jobs = strtoll(PQgetvalue(r, 0, 6), NULL, 10);
        out->next_doc = strtoll(PQgetvalue(r, 0, 7), NULL, 10);
        out->next_job = strtoll(PQgetvalue(r, 0, 8), NULL, 10);
        out->loaded = !strcmp(PQgetvalue(r, 0, 9), "t");
        out->fingerprint = dup_value(r, 10);
        int oom = !out->settings || !out->corpus || (!out->fingerprint && !PQgetisnull(r, 0, 10));
        PQclear(r);
        r = NULL;
        if (oom) {
            log_seterr(err, errlen, "database: out of memory");
            goto error;
        }
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
    snprintf(out->model_identity, sizeof out->model_identity, "%s", identity);
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
    db_run_clear(out);
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

/* The serving locks' key class ("tksr"): advisory locks with two int4
 * keys, a space apart from the migration lock's single bigint key; the
 * run's id is the second key (ids beyond 2^31 wrap, and would share a lock
 * with a run 2^31 ids away: never both served in practice, and then one
 * waits, nothing worse). */
#define DB_RUN_LOCK_CLASS "1953198962"

int db_run_try_lock(db_t *db, int64_t run_id, char *err, size_t errlen) {
    char id[32];
    PGresult *r;
    snprintf(id, sizeof id, "%" PRId64, run_id);
    const char *const p[] = {DB_RUN_LOCK_CLASS, id};
    if (db_exec(db, "SELECT pg_try_advisory_lock($1::int4, ($2::bigint % 2147483648)::int4)", 2, p, &r, err, errlen,
                "taking the run's serving lock"))
        return -1;
    int got = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return got ? 0 : 1;
}

int db_run_lock(db_t *db, int64_t run_id, char *err, size_t errlen) {
    int rc = db_run_try_lock(db, run_id, err, errlen);
    if (rc != 1) return rc;
    char id[32];
    PGresult *r;
    snprintf(id, sizeof id, "%" PRId64, run_id);
    const char *const p[] = {DB_RUN_LOCK_CLASS, id};
    /* Who holds it (a role without pg_read_all_stats sees another role's
     * session without its address: "unknown"). */
    char who[200] = "a session that has ended since";
    if (!db_exec(db,
                 "SELECT a.pid, coalesce(host(a.client_addr), CASE WHEN a.pid IS NOT NULL THEN 'a local socket' END, "
                 "'unknown'), to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ') FROM pg_locks l "
                 "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                 "AND l.classid = $1::int4::oid AND l.objid = ($2::bigint % 2147483648)::oid AND l.objsubid = 2",
                 2, p, &r, NULL, 0, "finding the run's coordinator")) {
        if (PQntuples(r) == 1)
            snprintf(who, sizeof who, "PostgreSQL session %s from %s, connected %s", PQgetvalue(r, 0, 0),
                     PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
        PQclear(r);
    }
    log_seterr(err, errlen, "run %" PRId64 " is served by another coordinator (%s): a run has one coordinator at a time",
               run_id, who);
    return 1;
}

void db_run_unlock(db_t *db, int64_t run_id) {
    char id[32];
    PGresult *r;
    snprintf(id, sizeof id, "%" PRId64, run_id);
    const char *const p[] = {DB_RUN_LOCK_CLASS, id};
    /* (false, with a WARNING that client_min_messages hides, when not held) */
    if (!db_exec(db, "SELECT pg_advisory_unlock($1::int4, ($2::bigint % 2147483648)::int4)", 2, p, &r, NULL, 0,
                 "releasing the run's serving lock"))
        PQclear(r);
}

int db_run_set_fingerprint(db_t *db, int64_t run_id, const char *fingerprint, char *err, size_t errlen) {
    char id[32];
    snprintf(id, sizeof id, "%" PRId64, run_id);
    PGresult *r;
    if (db_exec(db,
          "UPDATE runs SET corpus_fingerprint = $2::jsonb WHERE run_id = $1 AND load_next_doc = 0 "
          "AND loaded_at IS NULL RETURNING run_id",
          2, (const char *const[]){id, fingerprint}, &r, err, errlen, "recording the corpus's fingerprint"))
        return -1;
    int ok = PQntuples(r) == 1;
    PQclear(r);
    return ok ? 0 : log_seterr(err, errlen, "run %" PRId64 " has loaded documents already", run_id);
}

int db_run_find(db_t *db, const char *name_or_id, int64_t *run_id, char *err, size_t errlen) {
    PGresult *r;
    if (db_exec(db, "SELECT run_id FROM runs WHERE name = $1 OR run_id::text = $1 ORDER BY name = $1 DESC LIMIT 1", 1,
          (const char *const[]){name_or_id}, &r, err, errlen, "finding the run"))
        return -1;
    int found = PQntuples(r) == 1;
    if (found) *run_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (!found) log_seterr(err, errlen, "no run named '%s' (see 'tokshift status' for the runs)", name_or_id);
    return found ? 0 : 1;
}

/* The partitions of the run: children of every table in this schema that is
 * list-partitioned by a single column named run_id, whose bound is exactly
 * this run (PostgreSQL deparses a list bound of a bigint key as
 * FOR VALUES IN ('<id>')).  Found from the catalog rather than by name, so
 * that tables partitioned by run later on are dropped too. */
static const char *const k_run_partitions =
    "SELECT n.nspname, c.relname FROM pg_partitioned_table p "
    "JOIN pg_class t ON t.oid = p.partrelid "
    "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
    "JOIN pg_inherits i ON i.inhparent = p.partrelid "
    "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE t.relnamespace = current_schema()::regnamespace AND p.partstrat = 'l' AND p.partnatts = 1 "
    "AND a.attname = 'run_id' AND pg_get_expr(c.relpartbound, c.oid) = format('FOR VALUES IN (''%s'')', $1::bigint) "
    "ORDER BY 1, 2";

int db_run_drop(db_t *db, int64_t run_id, int *n_partitions, char *err, size_t errlen) {
    char id[32], *sql = NULL;
    PGresult *r = NULL;
    int rc = -1;
    *n_partitions = 0;
    snprintf(id, sizeof id, "%" PRId64, run_id);
    const char *const p[] = {id};
    if (db_exec(db, "BEGIN", 0, NULL, NULL, err, errlen, "dropping the run") ||
        db_exec(db, "SELECT 1 FROM runs WHERE run_id = $1 FOR UPDATE", 1, p, &r, err, errlen, "dropping the run"))
        goto error;
    if (PQntuples(r) != 1) {
        rc = 1;
        goto error;
    }
    PQclear(r);
    r = NULL;
    /* Rows first (documents, jobs, rollups: ON DELETE CASCADE),
     * under row locks that leave other runs alone; then the partitions,
     * whose DROP locks their parent tables for every run until COMMIT, so
     * that comes last and waits for those locks at most lock_timeout. */
    if (db_exec(db, "DELETE FROM runs WHERE run_id = $1", 1, p, NULL, err, errlen, "deleting the run's rows") ||
        db_exec(db, "SET LOCAL lock_timeout = '30s'", 0, NULL, NULL, err, errlen, "dropping the run") ||
        db_exec(db, k_run_partitions, 1, p, &r, err, errlen, "finding the run's partitions"))
        goto error;
    for (int i = 0; i < PQntuples(r); i++) {
        char *nsp = PQescapeIdentifier(db->c, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0));
        char *rel = PQescapeIdentifier(db->c, PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1));
        size_t len = nsp && rel ? strlen(nsp) + strlen(rel) + 16 : 0;
        sql = len ? malloc(len) : NULL;
        if (sql) snprintf(sql, len, "DROP TABLE %s.%s", nsp, rel);
        PQfreemem(nsp);
        PQfreemem(rel);
        if (!sql) {
            log_seterr(err, errlen, "database: out of memory");
            goto error;
        }
        if (db_exec(db, sql, 0, NULL, NULL, err, errlen, "dropping a partition of the run")) goto error;
        free(sql);
        sql = NULL;
        ++*n_partitions;
    }
    if (db_exec(db, "COMMIT", 0, NULL, NULL, err, errlen, "dropping the run")) goto error;
    PQclear(r);
    return 0;
error:
    free(sql);
    PQclear(r);
    db_rollback(db);
    if (rc < 0) *n_partitions = 0;
    return rc;
}

/* ---- loading documents and jobs --------------------------------------- */

typedef struct {
    int64_t job_id, n_bytes;
    int n_docs;
} loader_job_t;

struct db_loader {
    db_t *db;
    int64_t run_id, first_doc;
    db_buf_t b;
    loader_job_t *jobs;
    size_t n_jobs, cap_jobs;
    int64_t n_docs, n_errors;
};

/* Appends s to b as an element of a PostgreSQL array literal: quoted, with
 * '"' and '\' escaped (the array input syntax), so any text round-trips. */
static void array_elem(db_buf_t *b, const char *s) {
    if (b->len > 1) db_b_put(b, ",", 1);
    db_b_put(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\') db_b_put(b, "\\", 1);
        db_b_put(b, p, 1);
    }
    db_b_put(b, "\"", 1);
}

int db_load_existing_ids(db_t *db, int64_t run_id, const char *const *ext_ids, size_t n, char **first_source,
                         char *err, size_t errlen) {
    for (size_t i = 0; i < n; i++) first_source[i] = NULL;
    if (!n) return 0;
    db_buf_t b = {0};
    db_b_put(&b, "{", 1);
    for (size_t i = 0; i < n; i++) array_elem(&b, ext_ids[i]);
    db_b_put(&b, "}", 2); /* with the terminating NUL */
    if (b.oom) {
        free(b.p);
        return log_seterr(err, errlen, "database: out of memory");
    }
    char id[32];
    snprintf(id, sizeof id, "%" PRId64, run_id);
    PGresult *r;
    /* One index probe per id (documents_ext_id, migration 006): the cost
     * follows the batch, not the run or the table. */
    int rc = db_exec(db,
                     "SELECT u.i, d.source FROM unnest($2::text[]) WITH ORDINALITY AS u(ext_id, i) "
                     "JOIN documents d ON d.run_id = $1 AND d.ext_id = u.ext_id AND d.text IS NOT NULL",
                     2, (const char *const[]){id, b.p}, &r, err, errlen, "looking up document ids");
    free(b.p);
    if (rc) return -1;
    for (int k = 0; k < PQntuples(r); k++) {
        size_t i = (size_t)strtoll(PQgetvalue(r, k, 0), NULL, 10) - 1;
        if (i < n && !first_source[i] && !(first_source[i] = strdup(PQgetvalue(r, k, 1)))) {
            PQclear(r);
            for (size_t j = 0; j < n; j++) free(first_source[j]), first_source[j] = NULL;
            return log_seterr(err, errlen, "database: out of memory");
        }
    }
    PQclear(r);
    return 0;
}

db_loader_t *db_loader_new(db_t *db, int64_t run_id, int64_t first_doc, char *err, size_t errlen) {
    db_loader_t *l = calloc(1, sizeof *l);
    if (!l) {
        log_seterr(err, errlen, "database: out of memory");
        return NULL;
    }
    l->db = db;
    l->run_id = run_id;
    l->first_doc = first_doc;
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
    assert(doc_id == l->first_doc + l->n_docs);
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
    l->n_errors += !text;
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

int db_loader_commit(db_loader_t **lp, int64_t next_job, int last, char *err, size_t errlen) {
    db_loader_t *l = *lp;
    db_t *db = l->db;
    char id[32], nd[32], nj[32], adocs[32], ajobs[32], aerr[32], first[32];
    snprintf(id, sizeof id, "%" PRId64, l->run_id);
    snprintf(nd, sizeof nd, "%" PRId64, l->first_doc + l->n_docs);
    snprintf(nj, sizeof nj, "%" PRId64, next_job);
    snprintf(adocs, sizeof adocs, "%" PRId64, l->n_docs);
    snprintf(ajobs, sizeof ajobs, "%zu", l->n_jobs);
    snprintf(aerr, sizeof aerr, "%" PRId64, l->n_errors);
    snprintf(first, sizeof first, "%" PRId64, l->first_doc);
    PGresult *r = NULL;
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
    /* The position moves with the batch, in its transaction; the condition
     * on the old position makes a second coordinator loading the same run
     * fail rather than load a batch twice. */
    if (db_exec(db,
          "UPDATE runs SET load_next_doc = $2, load_next_job = $3, n_docs = coalesce(n_docs, 0) + $4, "
          "n_jobs = coalesce(n_jobs, 0) + $5, n_docs_error = n_docs_error + $6, "
          "loaded_at = CASE WHEN $8 THEN now() END, "
          "status = CASE WHEN $8 AND status = 'loading' THEN 'running' ELSE status END, "
          "started_at = CASE WHEN $8 THEN coalesce(started_at, now()) ELSE started_at END "
          "WHERE run_id = $1 AND load_next_doc = $7 AND loaded_at IS NULL RETURNING run_id",
          8, (const char *const[]){id, nd, nj, adocs, ajobs, aerr, first, last ? "true" : "false"}, &r, err, errlen,
          "recording the load's progress"))
        goto error;
    if (PQntuples(r) != 1) {
        log_seterr(err, errlen, "run %" PRId64 ": the load moved on without this coordinator (is another one running?)",
                   l->run_id);
        goto error;
    }
    PQclear(r);
    r = NULL;
    if (db_exec(db, "COMMIT", 0, NULL, NULL, err, errlen, "loading documents")) goto error;
    free(l->b.p);
    free(l->jobs);
    free(l);
    *lp = NULL;
    return 0;
error:
    PQclear(r);
    db_loader_abort(lp);
    return -1;
}

int db_load_analyze(db_t *db, char *err, size_t errlen) {
    return db_exec(db, "SELECT tokshift_analyze_load()", 0, NULL, NULL, err, errlen, "analyzing documents and jobs");
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

int db_jobs_leased(db_t *db, int64_t run_id, db_lease_t **leases, size_t *n, char *err, size_t errlen) {
    char id[32];
    snprintf(id, sizeof id, "%" PRId64, run_id);
    PGresult *r;
    *leases = NULL;
    *n = 0;
    if (db_exec(db,
          "SELECT job_id, attempt_token, worker, (extract(epoch FROM now() - leased_at) * 1000)::bigint, n_bytes "
          "FROM jobs "
          "WHERE run_id = $1 AND state = 'leased' ORDER BY job_id",
          1, (const char *const[]){id}, &r, err, errlen, "listing leased jobs"))
        return -1;
    size_t k = (size_t)PQntuples(r);
    if (k && !(*leases = calloc(k, sizeof **leases))) {
        PQclear(r);
        return log_seterr(err, errlen, "database: out of memory");
    }
    for (size_t i = 0; i < k; i++) {
        db_lease_t *l = &(*leases)[i];
        l->job_id = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
        l->token = strtoll(PQgetvalue(r, (int)i, 1), NULL, 10);
        snprintf(l->worker, sizeof l->worker, "%s", PQgetvalue(r, (int)i, 2));
        l->age_ms = strtoll(PQgetvalue(r, (int)i, 3), NULL, 10);
        l->n_bytes = strtoll(PQgetvalue(r, (int)i, 4), NULL, 10);
    }
    *n = k;
    PQclear(r);
    return 0;
}

int db_jobs_lease(db_t *db, int64_t run_id, size_t n, const int64_t *job_ids, const int64_t *tokens,
                  const char *const *workers, db_leased_t **out, size_t *n_out, char *err, size_t errlen) {
    *out = NULL;
    *n_out = 0;
    if (!n) return 0;
    db_buf_t ids = {0}, toks = {0}, names = {0};
    db_b_int64_array(&ids, job_ids, n);
    db_b_int64_array(&toks, tokens, n);
    db_b_put(&names, "{", 1);
    for (size_t i = 0; i < n; i++) array_elem(&names, workers[i]);
    db_b_put(&names, "}", 2);
    char a[32];
    snprintf(a, sizeof a, "%" PRId64, run_id);
    PGresult *r = NULL;
    db_leased_t *l = NULL;
    size_t k = 0;
    int rc = -1;
    if (ids.oom || toks.oom || names.oom) {
        log_seterr(err, errlen, "database: out of memory");
        goto out;
    }
    /* One statement for the whole batch: the leases (only of jobs still
     * pending: a job done or leased meanwhile is left alone) and the leased
     * jobs' usable documents.  The token identifies the lease: a job id
     * given twice is leased once, under one of its tokens. */
    if (db_exec_prepared(db, DB_STMT_JOBS_LEASE,
          "WITH u AS (SELECT * FROM unnest($2::bigint[], $3::bigint[], $4::text[]) AS u(job_id, token, worker)), "
          "l AS (UPDATE jobs j SET state = 'leased', attempts = j.attempts + 1, attempt_token = u.token, "
          "worker = u.worker, leased_at = now() FROM u "
          "WHERE j.run_id = $1 AND j.job_id = u.job_id AND j.state = 'pending' "
          "RETURNING j.job_id, j.attempts, j.attempt_token) "
          "SELECT l.job_id, l.attempts, l.attempt_token, d.doc_id, d.text FROM l "
          "LEFT JOIN documents d ON d.run_id = $1 AND d.job_id = l.job_id AND d.text IS NOT NULL "
          "ORDER BY l.job_id, d.doc_id",
          4, (const char *const[]){a, ids.p, toks.p, names.p}, &r, err, errlen, "leasing jobs"))
        goto out;
    int rows = PQntuples(r);
    if (rows && !(l = calloc((size_t)rows, sizeof *l))) goto oom;
    for (int i = 0; i < rows;) {
        db_leased_t *x = &l[k++];
        x->job_id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        x->attempts = atoi(PQgetvalue(r, i, 1));
        x->token = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        int j = i;
        while (j < rows && strtoll(PQgetvalue(r, j, 0), NULL, 10) == x->job_id) j++;
        size_t nd = PQgetisnull(r, i, 3) ? 0 : (size_t)(j - i);
        if (nd && !(x->docs = calloc(nd, sizeof *x->docs))) goto oom;
        for (size_t q = 0; q < nd; q++) {
            db_doc_t *d = &x->docs[q];
            int row = i + (int)q;
            d->doc_id = strtoll(PQgetvalue(r, row, 3), NULL, 10);
            d->text_len = (size_t)PQgetlength(r, row, 4);
            if (!(d->text = malloc(d->text_len + 1))) goto oom;
            memcpy(d->text, PQgetvalue(r, row, 4), d->text_len + 1);
            x->n_docs = q + 1;
        }
        i = j;
    }
    *out = l;
    *n_out = k;
    l = NULL;
    rc = 0;
    goto out;
oom:
    log_seterr(err, errlen, "database: out of memory for the leased jobs' documents");
out:
    db_leased_free(l, k);
    PQclear(r);
    free(ids.p);
    free(toks.p);
    free(names.p);
    return rc;
}

void db_leased_free(db_leased_t *l, size_t n) {
    if (!l) return;
    for (size_t i = 0; i < n; i++) db_docs_free(l[i].docs, l[i].n_docs);
    free(l);
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

int db_jobs_state(db_t *db, int64_t run_id, size_t n, const int64_t *job_ids, db_job_state_t *states, char *err,
                  size_t errlen) {
    static const char *const names[] = {[DB_JOB_PENDING] = "pending", [DB_JOB_LEASED] = "leased",
                                        [DB_JOB_DONE] = "done", [DB_JOB_FAILED] = "failed"};
    for (size_t i = 0; i < n; i++) states[i] = DB_JOB_MISSING;
    if (!n) return 0;
    db_buf_t ids = {0};
    db_b_int64_array(&ids, job_ids, n);
    if (ids.oom) {
        free(ids.p);
        return log_seterr(err, errlen, "database: out of memory");
    }
    char a[32];
    snprintf(a, sizeof a, "%" PRId64, run_id);
    PGresult *r;
    /* One primary-key probe per id. */
    int rc = db_exec_prepared(db, DB_STMT_JOBS_STATE,
                     "SELECT u.i, j.state FROM unnest($2::bigint[]) WITH ORDINALITY AS u(job_id, i) "
                     "JOIN jobs j ON j.run_id = $1 AND j.job_id = u.job_id",
                     2, (const char *const[]){a, ids.p}, &r, err, errlen, "reading jobs' states");
    free(ids.p);
    if (rc) return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        long k = strtol(PQgetvalue(r, i, 0), NULL, 10) - 1;
        const char *st = PQgetvalue(r, i, 1);
        if (k < 0 || (size_t)k >= n) continue;
        for (int s = DB_JOB_PENDING; s <= DB_JOB_FAILED; s++)
            if (!strcmp(st, names[s])) states[k] = (db_job_state_t)s;
    }
    PQclear(r);
    return 0;
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
          "SELECT p.jobs, p.jobs_done, p.jobs_failed, p.jobs_leased, p.jobs_pending, p.docs_done, p.tokens_done, "
          "p.retries, coalesce(r.n_docs, 0), r.n_docs_error, "
          "(SELECT coalesce(sum(n_bytes), 0) FROM jobs WHERE run_id = $1), "
          "(SELECT coalesce(sum(n_bytes), 0) FROM jobs WHERE run_id = $1 AND state = 'done') "
          "FROM run_progress p JOIN runs r USING (run_id) WHERE p.run_id = $1",
          1, (const char *const[]){a}, &r, err, errlen, "reading progress"))
        return -1;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return log_seterr(err, errlen, "run %" PRId64 " does not exist", run_id);
    }
    int64_t *f[] = {&o->jobs, &o->done, &o->failed, &o->leased, &o->pending,
                    &o->docs_done, &o->tokens_done, &o->retries, &o->docs, &o->docs_error,
                    &o->bytes, &o->bytes_done};
    for (int i = 0; i < 12; i++) *f[i] = strtoll(PQgetvalue(r, 0, i), NULL, 10);
    PQclear(r);
    return 0;
}

/* ---- cross-scoring ---------------------------------------------------- */

int db_score_source(db_t *db, const char *name_or_id, db_score_source_t *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    int64_t id;
    int f = db_run_find(db, name_or_id, &id, err, errlen);
    if (f) return f;
    char a[32];
    snprintf(a, sizeof a, "%" PRId64, id);
    PGresult *r;
    if (db_exec(db,
          "SELECT r.status, r.model_identity, r.settings::text, "
          "coalesce((SELECT v.digest FROM vocab_digests v WHERE v.identity = r.model_identity), '') "
          "FROM runs r WHERE r.run_id = $1",
          1, (const char *const[]){a}, &r, err, errlen, "reading the run to score"))
        return -1;
    if (PQntuples(r) != 1) {
        PQclear(r);
        log_seterr(err, errlen, "run '%s' was deleted while it was read", name_or_id);
        return 1;
    }
    out->run_id = id;
    snprintf(out->status, sizeof out->status, "%s", PQgetvalue(r, 0, 0));
    snprintf(out->model_identity, sizeof out->model_identity, "%s", PQgetvalue(r, 0, 1));
    snprintf(out->vocab_digest, sizeof out->vocab_digest, "%s", PQgetvalue(r, 0, 3));
    out->settings = dup_value(r, 2);
    PQclear(r);
    if (!out->settings) return log_seterr(err, errlen, "database: out of memory");
    return 0;
}

int db_score_load(db_t *db, int64_t src, int64_t dst, char *err, size_t errlen) {
    char a[32], b[32];
    snprintf(a, sizeof a, "%" PRId64, src);
    snprintf(b, sizeof b, "%" PRId64, dst);
    return db_exec(db, "SELECT tokshift_score_run_load($1, $2)", 2, (const char *const[]){a, b}, NULL, err, errlen,
                   "loading the run's documents from the run it scores");
}

/* Parses a PostgreSQL integer[] text ("{1,2,3}") into a malloc'd array.
 * Returns 0, or -1 when it is not one (or on out of memory). */
static int parse_int_array(const char *s, int32_t **out, size_t *n) {
    *out = NULL;
    *n = 0;
    if (*s++ != '{') return -1;
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return -1;
    size_t k = 0;
    while (*s && *s != '}') {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || k == cap || x < INT32_MIN || x > INT32_MAX) goto bad;
        v[k++] = (int32_t)x;
        s = *end == ',' ? end + 1 : end;
    }
    if (*s != '}') goto bad;
    *out = v;
    *n = k;
    return 0;
bad:
    free(v);
    return -1;
}

int db_job_samples(db_t *db, int64_t src, int64_t dst, int64_t job_id, db_sample_t **out, size_t *n, char *err,
                   size_t errlen) {
    char a[32], b[32], c[32];
    snprintf(a, sizeof a, "%" PRId64, src);
    snprintf(b, sizeof b, "%" PRId64, dst);
    snprintf(c, sizeof c, "%" PRId64, job_id);
    PGresult *r;
    *out = NULL;
    *n = 0;
    if (db_exec(db,
          "SELECT s.doc_id, s.cut, s.sample_idx, s.seed, s.tokens FROM documents d "
          "JOIN sample_tokens s ON s.run_id = $1 AND s.doc_id = d.doc_id "
          "WHERE d.run_id = $2 AND d.job_id = $3 AND d.text IS NOT NULL ORDER BY s.doc_id, s.seq_no",
          3, (const char *const[]){a, b, c}, &r, err, errlen, "reading a job's samples"))
        return -1;
    size_t k = (size_t)PQntuples(r);
    db_sample_t *v = calloc(k ? k : 1, sizeof *v);
    if (!v) goto oom;
    for (size_t i = 0; i < k; i++) {
        v[i].doc_id = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
        v[i].cut = (int32_t)strtol(PQgetvalue(r, (int)i, 1), NULL, 10);
        v[i].sample_idx = (int32_t)strtol(PQgetvalue(r, (int)i, 2), NULL, 10);
        v[i].seed = (uint64_t)strtoll(PQgetvalue(r, (int)i, 3), NULL, 10); /* uint64 bits in a bigint */
        if (parse_int_array(PQgetvalue(r, (int)i, 4), &v[i].tokens, &v[i].n_tokens)) {
            int64_t doc = v[i].doc_id;
            db_samples_free(v, i);
            PQclear(r);
            return log_seterr(err, errlen, "job %" PRId64 ": unreadable sample tokens of document %" PRId64, job_id,
                              doc);
        }
    }
    PQclear(r);
    *out = v;
    *n = k;
    return 0;
oom:
    PQclear(r);
    return log_seterr(err, errlen, "database: out of memory for a job's samples");
}

void db_samples_free(db_sample_t *samples, size_t n) {
    if (!samples) return;
    for (size_t i = 0; i < n; i++) free(samples[i].tokens);
    free(samples);
}
