/* db.c - see db.h.  Binary COPY framing follows the PostgreSQL manual
 * ("COPY: Binary Format"): a signature, flags and header extension, then per
 * tuple an int16 field count and per field an int32 length (-1 = NULL) and
 * the value in network byte order; an int16 -1 ends the data. */
#include "db.h"

#include <arpa/inet.h>
#include <assert.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fault.h"
#include "log.h"

extern const struct {
    const char *name;
    const char *sql;
} db_migrations[];
extern const size_t db_n_migrations;

/* Serialises concurrent `db migrate` calls ("tokshift" in ASCII). */
#define DB_MIGRATE_LOCK 0x746f6b7368696674LL

struct db {
    PGconn *c;
    char *conninfo;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Replaces, in msg (cap bytes), every occurrence of secret with "***". */
static void redact_secret(char *msg, size_t cap, const char *secret) {
    size_t n = secret ? strlen(secret) : 0;
    if (n < 3) return; /* (shorter "passwords" would blank out ordinary words) */
    char out[LOG_ERRLEN];
    size_t o = 0;
    for (const char *p = msg; *p && o + 4 < sizeof out;) {
        if (!strncmp(p, secret, n)) {
            memcpy(out + o, "***", 3);
            o += 3;
            p += n;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = 0;
    snprintf(msg, cap, "%s", out);
    explicit_bzero(out, sizeof out);
}

/* Keeps passwords out of msg, an error message about the connection string
 * conninfo: libpq's messages never quote a password of a connection string
 * it could parse, but they quote the offending part of one it could not (a
 * password with a space, a bad %-escape in a URI), so then every quoted
 * part goes; and any occurrence of the password itself is replaced. */
static void redact(const char *conninfo, PGconn *c, char *msg, size_t cap) {
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &perr);
    if (opts) {
        for (PQconninfoOption *o = opts; o->keyword; o++)
            if (!strcmp(o->keyword, "password") && o->val) redact_secret(msg, cap, o->val);
        PQconninfoFree(opts);
    } else if (conninfo && (strcasestr(conninfo, "password") || strchr(conninfo, '@'))) {
        /* Unparsable, and it may hold a password: hide every quoted part
         * longer than one character. */
        char out[LOG_ERRLEN];
        size_t o = 0;
        for (const char *p = msg; *p && o + 16 < sizeof out;) {
            const char *q = *p == '"' ? strchr(p + 1, '"') : NULL;
            size_t k = q ? (size_t)(q - p) + 1 : 0; /* the quoted part, quotes included */
            if (k > 3) {
                o += (size_t)snprintf(out + o, sizeof out - o, "\"(hidden)\"");
            } else if (k) { /* "=", "]": kept */
                memcpy(out + o, p, k);
                o += k;
            } else {
                out[o++] = *p++;
                continue;
            }
            p += k;
        }
        while (o && (out[o - 1] == '\n' || out[o - 1] == ' ')) o--;
        static const char note[] = " (the connection string is not shown: it may hold a password)";
        if (o + sizeof note <= sizeof out) memcpy(out + o, note, sizeof note);
        else out[o] = 0;
        snprintf(msg, cap, "%s", out);
    }
    PQfreemem(perr);
    if (c && PQpass(c)) redact_secret(msg, cap, PQpass(c));
}

/* Formats the server's message; prefixes "connection:" when the connection
 * itself is gone, so that callers know a reconnect may help.  Passwords are
 * taken out (redact). */
static int db_fail(db_t *db, const PGresult *r, char *err, size_t errlen, const char *what) {
    const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(db->c);
    if (!msg || !*msg) msg = PQerrorMessage(db->c);
    char clean[LOG_ERRLEN];
    snprintf(clean, sizeof clean, "%s", msg);
    redact(db->conninfo, db->c, clean, sizeof clean);
    size_t n = strlen(clean);
    while (n && (clean[n - 1] == '\n' || clean[n - 1] == ' ')) clean[--n] = 0;
    if (PQstatus(db->c) != CONNECTION_OK)
        return log_seterr(err, errlen, "connection: %s: %s", what, clean);
    return log_seterr(err, errlen, "%s: %s", what, clean);
}

/* Runs sql with text parameters; *out receives the result when the status
 * is TUPLES_OK/COMMAND_OK (caller clears), else -1. */
static int q(db_t *db, const char *sql, int n, const char *const *params, PGresult **out, char *err, size_t errlen,
             const char *what) {
    PGresult *r = PQexecParams(db->c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        db_fail(db, r, err, errlen, what);
        PQclear(r);
        return -1;
    }
    if (out) *out = r;
    else PQclear(r);
    return 0;
}

static void rollback(db_t *db) {
    if (PQstatus(db->c) == CONNECTION_OK) PQclear(PQexec(db->c, "ROLLBACK"));
}

db_t *db_connect(const char *conninfo, char *err, size_t errlen) {
    db_t *db = calloc(1, sizeof *db);
    if (!db || !(db->conninfo = strdup(conninfo ? conninfo : ""))) {
        free(db);
        log_seterr(err, errlen, "database: out of memory");
        return NULL;
    }
    /* A server that drops packets must not hang a daemon's loop for the TCP
     * timeout: 10 s unless the connection string or PGCONNECT_TIMEOUT says
     * otherwise (the expanded conninfo comes later, so its keywords win). */
    const char *keys[] = {"connect_timeout", "dbname", NULL};
    const char *vals[] = {getenv("PGCONNECT_TIMEOUT") ? getenv("PGCONNECT_TIMEOUT") : "10", db->conninfo, NULL};
    if (!*db->conninfo) keys[1] = NULL; /* nothing to expand: the PG* environment */
    db->c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(db->c) != CONNECTION_OK) {
        /* libpq's message names host and port; redact() takes out what
         * might be a password. */
        db_fail(db, NULL, err, errlen, "cannot connect to PostgreSQL");
        db_destroy(&db);
        return NULL;
    }
    PQclear(PQexec(db->c, "SET client_min_messages = warning"));
    return db;
}

void db_destroy(db_t **self_p) {
    if (!self_p || !*self_p) return;
    db_t *db = *self_p;
    if (db->c) PQfinish(db->c);
    if (db->conninfo) {
        memset(db->conninfo, 0, strlen(db->conninfo)); /* it may hold a password */
        free(db->conninfo);
    }
    free(db);
    *self_p = NULL;
}

int db_reconnect(db_t *db, char *err, size_t errlen) {
    if (PQstatus(db->c) == CONNECTION_OK) {
        PGresult *r = PQexec(db->c, "SELECT 1");
        int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        if (ok) return 0;
    }
    PQreset(db->c);
    if (PQstatus(db->c) != CONNECTION_OK) return db_fail(db, NULL, err, errlen, "reconnecting to PostgreSQL");
    PQclear(PQexec(db->c, "SET client_min_messages = warning"));
    return 0;
}

int db_async_commit(db_t *db, char *err, size_t errlen) {
    return q(db, "SET synchronous_commit = off", 0, NULL, NULL, err, errlen, "relaxing commit durability");
}

int db_set_timeout(db_t *db, const char *which, int ms, char *err, size_t errlen) {
    assert(!strcmp(which, "lock_timeout") || !strcmp(which, "idle_in_transaction_session_timeout"));
    char v[32];
    snprintf(v, sizeof v, "%dms", ms);
    return q(db, "SELECT set_config($1, $2, false)", 2, (const char *const[]){which, v}, NULL, err, errlen,
             "setting a session timeout");
}

/* ---- migrations -------------------------------------------------------- */

int db_migrate(db_t *db, char *err, size_t errlen) {
    int applied = 0;
    char lock[32];
    snprintf(lock, sizeof lock, "%lld", (long long)DB_MIGRATE_LOCK);
    const char *lp[1] = {lock};
    if (q(db,
          "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, "
          "applied_at timestamptz NOT NULL DEFAULT now())",
          0, NULL, NULL, err, errlen, "creating schema_migrations") ||
        q(db, "SELECT pg_advisory_lock($1::bigint)", 1, lp, NULL, err, errlen, "taking the migration lock"))
        return -1;
    for (size_t i = 0; i < db_n_migrations; i++) {
        const char *p[1] = {db_migrations[i].name};
        PGresult *r;
        if (q(db, "SELECT 1 FROM schema_migrations WHERE name = $1", 1, p, &r, err, errlen, "reading migrations"))
            goto error;
        int done = PQntuples(r) > 0;
        PQclear(r);
        if (done) continue;
        char what[128];
        snprintf(what, sizeof what, "migration %s", db_migrations[i].name);
        if (q(db, "BEGIN", 0, NULL, NULL, err, errlen, what)) goto error;
        r = PQexec(db->c, db_migrations[i].sql); /* several statements: simple protocol */
        if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
            db_fail(db, r, err, errlen, what);
            PQclear(r);
            rollback(db);
            goto error;
        }
        PQclear(r);
        if (q(db, "INSERT INTO schema_migrations (name) VALUES ($1)", 1, p, NULL, err, errlen, what) ||
            q(db, "COMMIT", 0, NULL, NULL, err, errlen, what)) {
            rollback(db);
            goto error;
        }
        log_info("applied migration %s", db_migrations[i].name);
        applied++;
    }
    PQclear(PQexecParams(db->c, "SELECT pg_advisory_unlock($1::bigint)", 1, NULL, lp, NULL, NULL, 0));
    return applied;
error:
    PQclear(PQexecParams(db->c, "SELECT pg_advisory_unlock($1::bigint)", 1, NULL, lp, NULL, NULL, 0));
    return -1;
}

/* ---- runs -------------------------------------------------------------- */

int db_run_open(db_t *db, const char *name, const char *identity, const char *settings, const char *corpus,
                db_run_t *out, char *err, size_t errlen) {
    PGresult *r = NULL;
    memset(out, 0, sizeof *out);
    if (q(db, "BEGIN", 0, NULL, NULL, err, errlen, "opening the run")) return -1;
    if (q(db,
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
        return q(db, "COMMIT", 0, NULL, NULL, err, errlen, "opening the run");
    }
    PQclear(r);
    if (q(db,
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
    if (q(db, "SELECT tokshift_create_partition($1::bigint)", 1, (const char *const[]){id}, NULL, err, errlen,
          "creating the run's partition") ||
        q(db, "COMMIT", 0, NULL, NULL, err, errlen, "registering the run"))
        goto error;
    return 0;
error:
    PQclear(r);
    rollback(db);
    return -1;
}

int db_run_set_status(db_t *db, int64_t run_id, const char *status, char *err, size_t errlen) {
    char id[32];
    snprintf(id, sizeof id, "%" PRId64, run_id);
    return q(db,
             "UPDATE runs SET status = $2, "
             "started_at = CASE WHEN $2 = 'running' THEN coalesce(started_at, now()) ELSE started_at END, "
             "finished_at = CASE WHEN $2 = 'done' THEN now() ELSE NULL END WHERE run_id = $1",
             2, (const char *const[]){id, status}, NULL, err, errlen, "setting the run's status");
}

int db_run_find(db_t *db, const char *name_or_id, int64_t *run_id, char *err, size_t errlen) {
    PGresult *r;
    if (q(db, "SELECT run_id FROM runs WHERE name = $1 OR run_id::text = $1 ORDER BY name = $1 DESC LIMIT 1", 1,
          (const char *const[]){name_or_id}, &r, err, errlen, "finding the run"))
        return -1;
    int found = PQntuples(r) == 1;
    if (found) *run_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return found ? 0 : 1;
}

/* ---- binary COPY ------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} buf_t;

static void b_put(buf_t *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->len + n) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}
static void b_i16(buf_t *b, int16_t v) {
    uint16_t x = htons((uint16_t)v);
    b_put(b, &x, 2);
}
static void b_i32(buf_t *b, int32_t v) {
    uint32_t x = htonl((uint32_t)v);
    b_put(b, &x, 4);
}
static void b_i64(buf_t *b, int64_t v) {
    b_i32(b, (int32_t)((uint64_t)v >> 32));
    b_i32(b, (int32_t)(uint32_t)v);
}
/* One field each: length prefix then value. */
static void f_i32(buf_t *b, int32_t v) { b_i32(b, 4), b_i32(b, v); }
static void f_i64(buf_t *b, int64_t v) { b_i32(b, 8), b_i64(b, v); }
static void f_f32(buf_t *b, float v) {
    uint32_t x;
    memcpy(&x, &v, 4);
    b_i32(b, 4), b_i32(b, (int32_t)x);
}
static void f_f64(buf_t *b, double v) {
    uint64_t x;
    memcpy(&x, &v, 8);
    b_i32(b, 8), b_i64(b, (int64_t)x);
}
static void f_null(buf_t *b) { b_i32(b, -1); }
static void f_text(buf_t *b, const char *s, size_t n) {
    if (!s) {
        f_null(b);
        return;
    }
    b_i32(b, (int32_t)n);
    b_put(b, s, n);
}
static void f_str(buf_t *b, const char *s) { f_text(b, s, s ? strlen(s) : 0); }
static void f_jsonb(buf_t *b, const char *s) {
    size_t n = strlen(s);
    uint8_t ver = 1; /* jsonb binary format version */
    b_i32(b, (int32_t)(n + 1));
    b_put(b, &ver, 1);
    b_put(b, s, n);
}
static void copy_header(buf_t *b) {
    b_put(b, "PGCOPY\n\377\r\n\0", 11);
    b_i32(b, 0);
    b_i32(b, 0);
}

/* Sends b's bytes to an open COPY and empties b. */
static int copy_flush(db_t *db, buf_t *b, char *err, size_t errlen) {
    if (b->oom) return log_seterr(err, errlen, "database: out of memory building COPY data");
    if (b->len && fault_nth(FAULT_FAIL_COPY_CHUNK))
        return log_seterr(err, errlen, "sending COPY data: write failed (fault injected by TOKSHIFT_FAULT)");
    if (b->len && PQputCopyData(db->c, b->p, (int)b->len) != 1)
        return db_fail(db, NULL, err, errlen, "sending COPY data");
    b->len = 0;
    return 0;
}

static int copy_begin(db_t *db, const char *sql, buf_t *b, char *err, size_t errlen) {
    PGresult *r = PQexec(db->c, sql);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        db_fail(db, r, err, errlen, "starting COPY");
        PQclear(r);
        return -1;
    }
    PQclear(r);
    b->len = 0;
    copy_header(b);
    return 0;
}

static int copy_end(db_t *db, buf_t *b, char *err, size_t errlen, const char *what) {
    b_i16(b, -1);
    if (copy_flush(db, b, err, errlen)) {
        PQputCopyEnd(db->c, "aborted");
        PQclear(PQgetResult(db->c));
        return -1;
    }
    if (PQputCopyEnd(db->c, NULL) != 1) return db_fail(db, NULL, err, errlen, what);
    PGresult *r;
    int rc = 0;
    while ((r = PQgetResult(db->c))) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK && !rc) rc = db_fail(db, r, err, errlen, what);
        PQclear(r);
    }
    return rc;
}

/* Flushes when the buffer is large, keeping memory bounded. */
static int copy_maybe_flush(db_t *db, buf_t *b, char *err, size_t errlen) {
    return b->len >= (1u << 20) ? copy_flush(db, b, err, errlen) : 0;
}

/* ---- loading documents and jobs --------------------------------------- */

typedef struct {
    int64_t job_id, n_bytes;
    int n_docs;
} loader_job_t;

struct db_loader {
    db_t *db;
    int64_t run_id;
    buf_t b;
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
    if (q(db, "BEGIN", 0, NULL, NULL, err, errlen, "loading documents") ||
        copy_begin(db,
                   "COPY documents (run_id, doc_id, ext_id, source, metadata, text, n_bytes, job_id, error) "
                   "FROM STDIN (FORMAT binary)",
                   &l->b, err, errlen)) {
        rollback(db);
        free(l->b.p);
        free(l);
        return NULL;
    }
    return l;
}

int db_loader_add(db_loader_t *l, int64_t doc_id, const char *ext_id, const char *source, const char *metadata,
                  const char *text, size_t text_len, int64_t job_id, const char *error, char *err, size_t errlen) {
    buf_t *b = &l->b;
    b_i16(b, 9);
    f_i64(b, l->run_id);
    f_i64(b, doc_id);
    f_str(b, ext_id);
    f_str(b, source);
    f_jsonb(b, metadata && *metadata ? metadata : "{}");
    f_text(b, text, text_len);
    f_i64(b, text ? (int64_t)text_len : 0);
    if (job_id >= 0) f_i64(b, job_id);
    else f_null(b);
    f_str(b, error);
    l->n_docs++;
    return copy_maybe_flush(l->db, b, err, errlen);
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
    rollback(l->db);
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
    if (copy_end(db, &l->b, err, errlen, "loading documents")) goto error;
    if (copy_begin(db, "COPY jobs (run_id, job_id, n_docs, n_bytes) FROM STDIN (FORMAT binary)", &l->b, err, errlen))
        goto error;
    for (size_t i = 0; i < l->n_jobs; i++) {
        b_i16(&l->b, 4);
        f_i64(&l->b, l->run_id);
        f_i64(&l->b, l->jobs[i].job_id);
        f_i32(&l->b, l->jobs[i].n_docs);
        f_i64(&l->b, l->jobs[i].n_bytes);
        if (copy_maybe_flush(db, &l->b, err, errlen)) goto error;
    }
    if (copy_end(db, &l->b, err, errlen, "loading jobs")) goto error;
    /* Later duplicates of an id lose their text and job, with a reason. */
    if (q(db,
          "UPDATE documents d SET error = format('duplicate document id %s (first at %s)', d.ext_id, f.source), "
          "text = NULL, job_id = NULL "
          "FROM (SELECT DISTINCT ON (ext_id) ext_id, doc_id, source FROM documents WHERE run_id = $1 "
          "      ORDER BY ext_id, doc_id) f "
          "WHERE d.run_id = $1 AND d.ext_id = f.ext_id AND d.doc_id > f.doc_id",
          1, p, NULL, err, errlen, "marking duplicate document ids") ||
        q(db,
          "UPDATE jobs j SET n_docs = c.n, n_bytes = c.b FROM "
          "(SELECT j2.job_id, count(d.doc_id) AS n, coalesce(sum(d.n_bytes), 0) AS b FROM jobs j2 "
          " LEFT JOIN documents d ON d.run_id = j2.run_id AND d.job_id = j2.job_id WHERE j2.run_id = $1 "
          " GROUP BY j2.job_id) c WHERE j.run_id = $1 AND j.job_id = c.job_id AND j.n_docs <> c.n",
          1, p, NULL, err, errlen, "recounting jobs") ||
        q(db, "DELETE FROM jobs WHERE run_id = $1 AND n_docs = 0", 1, p, NULL, err, errlen, "dropping empty jobs") ||
        q(db,
          "UPDATE runs SET n_docs = (SELECT count(*) FROM documents WHERE run_id = $1), "
          "n_jobs = (SELECT count(*) FROM jobs WHERE run_id = $1), status = 'running', started_at = now() "
          "WHERE run_id = $1",
          1, p, NULL, err, errlen, "recording the run's size") ||
        q(db, "COMMIT", 0, NULL, NULL, err, errlen, "loading documents"))
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
        q(db,
          "UPDATE jobs SET state = 'pending', attempt_token = NULL, worker = NULL, "
          "error = 'requeued: the coordinator restarted' WHERE run_id = $1 AND state = 'leased'",
          1, p, NULL, err, errlen, "requeueing leased jobs"))
        return -1;
    if (q(db, "SELECT job_id FROM jobs WHERE run_id = $1 AND state = 'pending' ORDER BY job_id", 1, p, &r, err,
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
    if (q(db,
          "UPDATE jobs SET state = 'leased', attempts = attempts + 1, attempt_token = $3, worker = $4, "
          "leased_at = now() WHERE run_id = $1 AND job_id = $2 AND state = 'pending' RETURNING attempts",
          4, (const char *const[]){a, b, c, worker}, &r, err, errlen, "leasing a job"))
        return -1;
    int ok = PQntuples(r) == 1;
    if (ok && attempts) *attempts = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return ok ? 0 : 1;
}

int db_job_release(db_t *db, int64_t run_id, int64_t job_id, int64_t token, const char *reason, int max_attempts,
                   char *err, size_t errlen) {
    char a[32], b[32], c[32], m[16];
    snprintf(a, sizeof a, "%" PRId64, run_id);
    snprintf(b, sizeof b, "%" PRId64, job_id);
    snprintf(c, sizeof c, "%" PRId64, token);
    snprintf(m, sizeof m, "%d", max_attempts);
    PGresult *r;
    if (q(db,
          "UPDATE jobs SET state = CASE WHEN attempts >= $5::int THEN 'failed' ELSE 'pending' END, "
          "attempt_token = CASE WHEN attempts >= $5::int THEN attempt_token END, error = $4 "
          "WHERE run_id = $1 AND job_id = $2 AND state = 'leased' AND attempt_token = $3 RETURNING state",
          5, (const char *const[]){a, b, c, reason, m}, &r, err, errlen, "releasing a job"))
        return -1;
    int rc = PQntuples(r) != 1 ? 1 : !strcmp(PQgetvalue(r, 0, 0), "failed") ? 2 : 0;
    PQclear(r);
    return rc;
}

int db_job_state(db_t *db, int64_t run_id, int64_t job_id, char state[16], char *err, size_t errlen) {
    char a[32], b[32];
    snprintf(a, sizeof a, "%" PRId64, run_id);
    snprintf(b, sizeof b, "%" PRId64, job_id);
    PGresult *r;
    if (q(db, "SELECT state FROM jobs WHERE run_id = $1 AND job_id = $2", 2, (const char *const[]){a, b}, &r, err,
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
    if (q(db,
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
    if (q(db,
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

/* ---- results ----------------------------------------------------------- */

int db_commit_job(db_t *db, int64_t run_id, int64_t job_id, int64_t token, const db_results_t *res,
                  double *write_s, char *err, size_t errlen) {
    double t0 = now_s();
    char a[32], b[32], c[32];
    snprintf(a, sizeof a, "%" PRId64, run_id);
    snprintf(b, sizeof b, "%" PRId64, job_id);
    snprintf(c, sizeof c, "%" PRId64, token);
    buf_t buf = {0};
    PGresult *r = NULL;
    int rc = -1;
    if (q(db, "BEGIN", 0, NULL, NULL, err, errlen, "committing a job")) goto out;
    /* The fence: only the holder of the current token may write.  (A
     * SECURITY DEFINER function locks the job's row: the worker's role may
     * not read tokens; 004_job_commit_functions.sql.) */
    if (q(db, "SELECT 1 WHERE tokshift_job_fence($1::bigint, $2::bigint, $3::bigint)",
          3, (const char *const[]){a, b, c}, &r, err, errlen, "checking the attempt token"))
        goto out;
    if (PQntuples(r) != 1) {
        rc = 1;
        goto out;
    }
    PQclear(r);
    r = NULL;
    fault_maybe_stall(FAULT_STALL_IN_COMMIT_MS); /* TOKSHIFT_FAULT: holding the job's row lock */

    if (copy_begin(db,
                   "COPY sequences (run_id, doc_id, seq_no, kind, cut, sample_idx, seed, temperature, top_k, top_p, "
                   "n_tokens) FROM STDIN (FORMAT binary)",
                   &buf, err, errlen))
        goto out;
    for (size_t i = 0; i < res->n_seqs; i++) {
        const db_seq_t *s = &res->seqs[i];
        int human = !strcmp(s->kind, "human"), sample = !strcmp(s->kind, "sample");
        b_i16(&buf, 11);
        f_i64(&buf, run_id);
        f_i64(&buf, s->doc_id);
        f_i32(&buf, s->seq_no);
        f_str(&buf, s->kind);
        if (human) f_null(&buf); else f_i32(&buf, s->cut);
        if (sample) f_i32(&buf, s->sample_idx); else f_null(&buf);
        if (sample) f_i64(&buf, (int64_t)s->seed); else f_null(&buf);
        if (sample) f_f32(&buf, s->temperature); else f_null(&buf);
        if (sample) f_i32(&buf, s->top_k); else f_null(&buf);
        if (sample) f_f32(&buf, s->top_p); else f_null(&buf);
        f_i32(&buf, s->n_tokens);
        if (copy_maybe_flush(db, &buf, err, errlen)) goto out;
    }
    if (copy_end(db, &buf, err, errlen, "writing sequences")) goto out;

    if (copy_begin(db,
                   "COPY token_stats (run_id, doc_id, seq_no, pos, token_id, logprob, entropy, rank, top1_logprob, "
                   "varentropy, context_len) FROM STDIN (FORMAT binary)",
                   &buf, err, errlen))
        goto out;
    for (size_t i = 0; i < res->n_toks; i++) {
        const db_tok_t *t = &res->toks[i];
        b_i16(&buf, 11);
        f_i64(&buf, run_id);
        f_i64(&buf, t->doc_id);
        f_i32(&buf, t->seq_no);
        f_i32(&buf, t->pos);
        f_i32(&buf, t->token_id);
        f_f32(&buf, t->logprob);
        f_f32(&buf, t->entropy);
        f_i32(&buf, t->rank);
        f_f32(&buf, t->top1_logprob);
        f_f32(&buf, t->varentropy);
        f_i32(&buf, t->context_len);
        if (copy_maybe_flush(db, &buf, err, errlen)) goto out;
    }
    if (copy_end(db, &buf, err, errlen, "writing token statistics")) goto out;

    if (copy_begin(db,
                   "COPY job_rollups (run_id, job_id, kind, position, n, sum_surprisal, sumsq_surprisal, sum_entropy, "
                   "sumsq_entropy, sum_gap, sumsq_gap, sum_z, sumsq_z, n_z) FROM STDIN (FORMAT binary)",
                   &buf, err, errlen))
        goto out;
    for (size_t i = 0; i < res->n_rollups; i++) {
        const db_rollup_t *u = &res->rollups[i];
        b_i16(&buf, 14);
        f_i64(&buf, run_id);
        f_i64(&buf, job_id);
        f_str(&buf, u->kind);
        f_i32(&buf, u->position);
        f_i64(&buf, u->n);
        f_f64(&buf, u->sum_surprisal);
        f_f64(&buf, u->sumsq_surprisal);
        f_f64(&buf, u->sum_entropy);
        f_f64(&buf, u->sumsq_entropy);
        f_f64(&buf, u->sum_gap);
        f_f64(&buf, u->sumsq_gap);
        f_f64(&buf, u->sum_z);
        f_f64(&buf, u->sumsq_z);
        f_i64(&buf, u->n_z);
        if (copy_maybe_flush(db, &buf, err, errlen)) goto out;
    }
    if (copy_end(db, &buf, err, errlen, "writing rollups")) goto out;

    int64_t n_tok = 0;
    for (size_t i = 0; i < res->n_docs; i++) {
        const db_docres_t *d = &res->docs[i];
        char di[32], nt[16], werr[LOG_ERRLEN + 8];
        snprintf(di, sizeof di, "%" PRId64, d->doc_id);
        snprintf(nt, sizeof nt, "%d", d->n_tokens);
        if (d->error) snprintf(werr, sizeof werr, "worker: %s", d->error);
        if (q(db, "UPDATE documents SET n_tokens = $3, error = $4 WHERE run_id = $1 AND doc_id = $2", 4,
              (const char *const[]){a, di, nt, d->error ? werr : NULL}, NULL, err, errlen, "updating a document"))
            goto out;
    }
    n_tok = (int64_t)res->n_toks;
    char nt[32], cs[32], ws[32];
    snprintf(nt, sizeof nt, "%" PRId64, n_tok);
    snprintf(cs, sizeof cs, "%.6f", res->compute_s);
    snprintf(ws, sizeof ws, "%.6f", now_s() - t0);
    if (q(db,
          "SELECT tokshift_job_done($1::bigint, $2::bigint, $3::bigint, $4::bigint, $5::float8, $6::float8)",
          6, (const char *const[]){a, b, c, nt, cs, ws}, NULL, err, errlen, "marking the job done") ||
        q(db, "COMMIT", 0, NULL, NULL, err, errlen, "committing a job"))
        goto out;
    rc = 0;
out:
    PQclear(r);
    if (rc != 0) rollback(db);
    free(buf.p);
    if (write_s) *write_s = now_s() - t0;
    return rc;
}

int db_model_register(db_t *db, const char *identity, const char *name, const char *arch, int n_vocab, int n_ctx,
                      const char *const *pieces, const char *const *texts, char *err, size_t errlen) {
    char nv[16], nc[16];
    snprintf(nv, sizeof nv, "%d", n_vocab);
    snprintf(nc, sizeof nc, "%d", n_ctx);
    PGresult *r = NULL;
    buf_t buf = {0};
    int rc = -1;
    if (q(db, "BEGIN", 0, NULL, NULL, err, errlen, "registering the model") ||
        q(db,
          "INSERT INTO models (identity, name, arch, n_vocab, n_ctx) VALUES ($1, $2, $3, $4, $5) "
          "ON CONFLICT (identity) DO NOTHING RETURNING model_id",
          5, (const char *const[]){identity, name, arch, nv, nc}, &r, err, errlen, "registering the model"))
        goto out;
    if (PQntuples(r) == 1) {
        int64_t model_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        if (copy_begin(db, "COPY vocab (model_id, token_id, piece, text) FROM STDIN (FORMAT binary)", &buf, err,
                       errlen))
            goto out;
        for (int i = 0; i < n_vocab; i++) {
            b_i16(&buf, 4);
            f_i64(&buf, model_id);
            f_i32(&buf, i);
            f_str(&buf, pieces[i] ? pieces[i] : "");
            f_str(&buf, texts ? texts[i] : NULL);
            if (copy_maybe_flush(db, &buf, err, errlen)) goto out;
        }
        if (copy_end(db, &buf, err, errlen, "writing the vocabulary")) goto out;
    }
    if (q(db, "COMMIT", 0, NULL, NULL, err, errlen, "registering the model")) goto out;
    rc = 0;
out:
    PQclear(r);
    if (rc) rollback(db);
    free(buf.p);
    return rc;
}

/* ---- reports ----------------------------------------------------------- */

/* Prints a result as an aligned table. */
static void print_table(const PGresult *r) {
    int nf = PQnfields(r), nt = PQntuples(r);
    int *w = calloc((size_t)nf, sizeof *w);
    if (!w) return;
    for (int f = 0; f < nf; f++) {
        w[f] = (int)strlen(PQfname(r, f));
        for (int t = 0; t < nt; t++) {
            int l = PQgetlength(r, t, f);
            if (l > w[f]) w[f] = l;
        }
    }
    for (int f = 0; f < nf; f++) printf("%s%*s", f ? "  " : "", w[f], PQfname(r, f));
    printf("\n");
    for (int f = 0; f < nf; f++) {
        printf("%s", f ? "  " : "");
        for (int i = 0; i < w[f]; i++) putchar('-');
    }
    printf("\n");
    for (int t = 0; t < nt; t++) {
        for (int f = 0; f < nf; f++) printf("%s%*s", f ? "  " : "", w[f], PQgetvalue(r, t, f));
        printf("\n");
    }
    free(w);
}

int db_print_summary(db_t *db, int64_t run_id, char *err, size_t errlen) {
    char a[32];
    snprintf(a, sizeof a, "%" PRId64, run_id);
    PGresult *r;
    if (q(db,
          "SELECT positions, n_human, n_model, "
          "round(human_surprisal::numeric, 3) AS human_surpr, round(model_surprisal::numeric, 3) AS model_surpr, "
          "round(human_entropy::numeric, 3) AS human_ent, round(model_entropy::numeric, 3) AS model_ent, "
          "round(human_gap::numeric, 3) || ' ± ' || round(human_se_gap::numeric, 3) AS human_gap, "
          "round(model_gap::numeric, 3) || ' ± ' || round(model_se_gap::numeric, 3) AS model_gap, "
          "round(shift::numeric, 3) || ' ± ' || round(se_shift::numeric, 3) AS shift "
          "FROM shift_by_bucket WHERE run_id = $1 ORDER BY bucket",
          1, (const char *const[]){a}, &r, err, errlen, "reading the summary"))
        return -1;
    print_table(r);
    PQclear(r);
    return 0;
}

int db_print_status(db_t *db, int64_t run_id, char *err, size_t errlen) {
    char a[32];
    snprintf(a, sizeof a, "%" PRId64, run_id);
    PGresult *r;
    if (q(db,
          "SELECT run_id, name, status, jobs, jobs_done AS done, jobs_leased AS leased, jobs_pending AS pending, "
          "jobs_failed AS failed, retries, docs_done, tokens_done, "
          "to_char(created_at, 'YYYY-MM-DD HH24:MI') AS created, "
          "coalesce(to_char(coalesce(finished_at, now()) - started_at, 'HH24:MI:SS'), '') AS elapsed "
          "FROM run_progress WHERE $1::bigint = 0 OR run_id = $1::bigint ORDER BY run_id",
          1, (const char *const[]){a}, &r, err, errlen, "reading run progress"))
        return -1;
    print_table(r);
    PQclear(r);
    return 0;
}

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
            "SELECT bucket, positions, n_human, n_model, human_surprisal, model_surprisal, human_entropy, "
            "model_entropy, human_gap, human_se_gap, model_gap, model_se_gap, shift, se_shift "
            "FROM shift_by_bucket WHERE run_id = $1 ORDER BY bucket",
        [DB_REPORT_CALIBRATION] =
            "SELECT kind, bin, n, mean_confidence, accuracy FROM calibration WHERE run_id = $1 ORDER BY kind, bin",
    };
    memset(out, 0, sizeof *out);
    if ((unsigned)which >= sizeof sql / sizeof *sql) return log_seterr(err, errlen, "database: no such report table");
    char a[32];
    snprintf(a, sizeof a, "%" PRId64, run_id);
    PGresult *r;
    if (q(db, sql[which], 1, (const char *const[]){a}, &r, err, errlen, "reading the report")) return -1;
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

int db_selftest(void) {
    /* The binary COPY encoder: big-endian fields and the signature. */
    buf_t b = {0};
    copy_header(&b);
    f_i32(&b, 0x01020304);
    f_f32(&b, 1.0f);
    int ok = !b.oom && b.len == 19 + 16 && !memcmp(b.p, "PGCOPY\n\377\r\n\0", 11) &&
             !memcmp(b.p + 19, "\0\0\0\4\1\2\3\4\0\0\0\4\x3f\x80\0\0", 16);
    free(b.p);
    return ok ? 0 : -1;
}
