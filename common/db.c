/* db.c - see db.h: the connection, the migrations and the binary COPY
 * encoder that the other parts of the module (db_run.c, db_results.c,
 * db_report.c; db_private.h) build on. */
#include "db.h"
#include "db_private.h"

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
#include "now.h"

extern const struct {
    const char *name;
    const char *sql;
} db_migrations[];
extern const size_t db_n_migrations;

/* Serialises concurrent `db migrate` calls ("tokshift" in ASCII). */
#define DB_MIGRATE_LOCK 0x746f6b7368696674LL


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

/* The part of an unparsable conninfo that may hold a password, malloc'd
 * (NULL: none): in keyword/value form, a quoted value, or what follows
 * "password=" up to the next " KEYWORD=" of a real libpq keyword (the user may have meant a value
 * with spaces, which libpq then reads as more options); in a URI, what lies
 * between "user:" and the last '@'. */
static char *password_span(const char *conninfo) {
    const char *uri = strstr(conninfo, "://");
    if (uri && !strncmp(conninfo, "postgres", 8)) {
        const char *at = strrchr(conninfo, '@'), *colon = strchr(uri + 3, ':');
        return at && colon && colon < at ? strndup(colon + 1, (size_t)(at - colon - 1)) : NULL;
    }
    const char *p = strcasestr(conninfo, "password");
    if (!p || !(p = strchr(p, '='))) return NULL;
    p++;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '\'') { /* quoted: libpq knows where it ends (\' and \\ escaped) */
        const char *q = p + 1;
        while (*q && *q != '\'') q += q[0] == '\\' && q[1] ? 2 : 1;
        return strndup(p + 1, (size_t)(q - p - 1));
    }
    const char *end = p + strlen(p);
    PQconninfoOption *defs = PQconndefaults();
    for (const char *q = p; defs && *q; q++) {
        if (*q != ' ' && *q != '\t') continue;
        const char *k = q;
        while (*k == ' ' || *k == '\t') k++;
        size_t kl = strcspn(k, " \t=");
        int is_key = 0;
        for (PQconninfoOption *o = defs; o->keyword && !is_key; o++)
            is_key = strlen(o->keyword) == kl && !strncmp(o->keyword, k, kl);
        if (is_key && k[kl] == '=') {
            end = q;
            break;
        }
    }
    PQconninfoFree(defs);
    return strndup(p, (size_t)(end - p));
}

/* Keeps passwords out of msg, an error message about the connection string
 * conninfo: libpq's messages never quote a password of a connection string
 * it could parse, but they quote the offending part of one it could not (a
 * password with a space, a bad %-escape in a URI).  Then a quoted part that
 * lies inside the password's span (password_span) or holds it is hidden,
 * and the rest (an option name misspelt elsewhere) is shown; and any
 * occurrence of the password itself is replaced. */
static void redact(const char *conninfo, PGconn *c, char *msg, size_t cap) {
    char *perr = NULL, *span = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &perr);
    if (opts) {
        for (PQconninfoOption *o = opts; o->keyword; o++)
            if (!strcmp(o->keyword, "password") && o->val) redact_secret(msg, cap, o->val);
        PQconninfoFree(opts);
    } else if (conninfo && (span = password_span(conninfo)) != NULL) {
        char out[LOG_ERRLEN], part[LOG_ERRLEN];
        size_t o = 0;
        int hid = 0;
        for (const char *p = msg; *p && o + 16 < sizeof out;) {
            const char *q = *p == '"' ? strchr(p + 1, '"') : NULL;
            size_t k = q ? (size_t)(q - p) + 1 : 0; /* the quoted part, quotes included */
            if (!k) {
                out[o++] = *p++;
                continue;
            }
            snprintf(part, sizeof part, "%.*s", (int)(k - 2), p + 1);
            int secret = k > 2 && *span && (strstr(span, part) || strstr(part, span));
            if (secret) o += (size_t)snprintf(out + o, sizeof out - o, "\"(hidden)\""), hid = 1;
            else if (o + k < sizeof out) memcpy(out + o, p, k), o += k;
            p += k;
        }
        while (o && (out[o - 1] == '\n' || out[o - 1] == ' ')) o--;
        static const char note[] = " (a part of the password is hidden)";
        if (hid && o + sizeof note <= sizeof out) memcpy(out + o, note, sizeof note);
        else out[o] = 0;
        snprintf(msg, cap, "%s", out);
        /* and every word of the span, wherever it appears */
        for (char *w = strtok(span, " \t"); w; w = strtok(NULL, " \t")) redact_secret(msg, cap, w);
        explicit_bzero(out, sizeof out);
        explicit_bzero(part, sizeof part);
        explicit_bzero(span, strlen(span));
    }
    free(span);
    PQfreemem(perr);
    if (c && PQpass(c)) redact_secret(msg, cap, PQpass(c));
}

/* Formats the server's message and records whether the connection itself
 * is gone (db_connection_lost), so that callers know a reconnect may help.  Passwords are
 * taken out (redact). */
int db_fail(db_t *db, const PGresult *r, char *err, size_t errlen, const char *what) {
    const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(db->c);
    if (!msg || !*msg) msg = PQerrorMessage(db->c);
    char clean[LOG_ERRLEN];
    snprintf(clean, sizeof clean, "%s", msg);
    redact(db->conninfo, db->c, clean, sizeof clean);
    size_t n = strlen(clean);
    while (n && (clean[n - 1] == '\n' || clean[n - 1] == ' ')) clean[--n] = 0;
    /* Connection loss, as pg_dump tells it: the connection's state, or an
     * SQLSTATE of class 08 (connection exception) or 57P01-57P03 (the
     * server shutting down or not yet accepting connections). */
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    db->lost = PQstatus(db->c) != CONNECTION_OK ||
               (state && (!strncmp(state, "08", 2) || !strncmp(state, "57P0", 4)));
    if (db->lost) return log_seterr(err, errlen, "connection: %s: %s", what, clean);
    return log_seterr(err, errlen, "%s: %s", what, clean);
}

/* Runs sql with text parameters; *out receives the result when the status
 * is TUPLES_OK/COMMAND_OK (caller clears), else -1. */
const double db_latency_bounds_s[DB_LATENCY_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                        0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};

static void latency_add(db_latency_t *l, double s) {
    size_t b = 0;
    while (b < DB_LATENCY_BUCKETS && s > db_latency_bounds_s[b]) b++;
    l->count[b]++, l->n++, l->sum_s += s;
}

void db_latency(const db_t *db, db_latency_t *out) {
    if (db) *out = db->latency;
    else memset(out, 0, sizeof *out);
}

/* A statement's result r (taken): into *out (or cleared) when it has rows
 * or completed, else the failure.  0 or -1. */
static int exec_result(db_t *db, PGresult *r, PGresult **out, char *err, size_t errlen, const char *what) {
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

int db_exec(db_t *db, const char *sql, int n, const char *const *params, PGresult **out, char *err, size_t errlen,
             const char *what) {
    double t0 = now_s();
    PGresult *r = PQexecParams(db->c, sql, n, NULL, params, NULL, NULL, 0);
    latency_add(&db->latency, now_s() - t0);
    return exec_result(db, r, out, err, errlen, what);
}

int db_exec_prepared(db_t *db, db_stmt_t id, const char *sql, int n, const char *const *params, PGresult **out,
                     char *err, size_t errlen, const char *what) {
    char name[16];
    snprintf(name, sizeof name, "ts_%d", (int)id);
    double t0 = now_s();
    if (!(db->prepared & (1u << id))) {
        PGresult *p = PQprepare(db->c, name, sql, n, NULL);
        if (PQresultStatus(p) != PGRES_COMMAND_OK) {
            latency_add(&db->latency, now_s() - t0);
            db_fail(db, p, err, errlen, what);
            PQclear(p);
            return -1;
        }
        PQclear(p);
        db->prepared |= 1u << id;
    }
    PGresult *r = PQexecPrepared(db->c, name, n, params, NULL, NULL, 0);
    latency_add(&db->latency, now_s() - t0);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (state && !strcmp(state, "26000")) db->prepared &= ~(1u << id); /* gone (DISCARD ALL, a pooler) */
    return exec_result(db, r, out, err, errlen, what);
}

_Static_assert(DB_N_STMTS <= 32, "db_t.prepared holds one bit per statement");

void db_rollback(db_t *db) {
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

int db_connection_lost(const db_t *db) { return !db || db->lost; }

unsigned db_session(const db_t *db) { return db->sessions; }

int db_backend_pid(const db_t *db) { return db && db->c ? PQbackendPID(db->c) : 0; }

int db_reconnect(db_t *db, char *err, size_t errlen) {
    if (PQstatus(db->c) == CONNECTION_OK) {
        PGresult *r = PQexec(db->c, "SELECT 1");
        int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        if (ok) return 0;
    }
    PQreset(db->c);
    db->prepared = 0; /* a new session */
    db->sessions++;
    if (PQstatus(db->c) != CONNECTION_OK) return db_fail(db, NULL, err, errlen, "reconnecting to PostgreSQL");
    PQclear(PQexec(db->c, "SET client_min_messages = warning"));
    return 0;
}

int db_async_commit(db_t *db, char *err, size_t errlen) {
    return db_exec(db, "SET synchronous_commit = off", 0, NULL, NULL, err, errlen, "relaxing commit durability");
}

int db_set_timeout(db_t *db, const char *which, int ms, char *err, size_t errlen) {
    assert(!strcmp(which, "lock_timeout") || !strcmp(which, "idle_in_transaction_session_timeout"));
    char v[32];
    snprintf(v, sizeof v, "%dms", ms);
    return db_exec(db, "SELECT set_config($1, $2, false)", 2, (const char *const[]){which, v}, NULL, err, errlen,
             "setting a session timeout");
}

/* ---- migrations -------------------------------------------------------- */

int db_migrate(db_t *db, char *err, size_t errlen) {
    int applied = 0;
    char lock[32];
    snprintf(lock, sizeof lock, "%lld", (long long)DB_MIGRATE_LOCK);
    const char *lp[1] = {lock};
    if (db_exec(db,
          "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, "
          "applied_at timestamptz NOT NULL DEFAULT now())",
          0, NULL, NULL, err, errlen, "creating schema_migrations") ||
        db_exec(db, "SELECT pg_advisory_lock($1::bigint)", 1, lp, NULL, err, errlen, "taking the migration lock"))
        return -1;
    for (size_t i = 0; i < db_n_migrations; i++) {
        const char *p[1] = {db_migrations[i].name};
        PGresult *r;
        if (db_exec(db, "SELECT 1 FROM schema_migrations WHERE name = $1", 1, p, &r, err, errlen, "reading migrations"))
            goto error;
        int done = PQntuples(r) > 0;
        PQclear(r);
        if (done) continue;
        char what[128];
        snprintf(what, sizeof what, "migration %s", db_migrations[i].name);
        if (db_exec(db, "BEGIN", 0, NULL, NULL, err, errlen, what)) goto error;
        r = PQexec(db->c, db_migrations[i].sql); /* several statements: simple protocol */
        if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
            db_fail(db, r, err, errlen, what);
            PQclear(r);
            db_rollback(db);
            goto error;
        }
        PQclear(r);
        if (db_exec(db, "INSERT INTO schema_migrations (name) VALUES ($1)", 1, p, NULL, err, errlen, what) ||
            db_exec(db, "COMMIT", 0, NULL, NULL, err, errlen, what)) {
            db_rollback(db);
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

/* ---- binary COPY ------------------------------------------------------- */

void db_b_put(db_buf_t *b, const void *d, size_t n) {
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
/* (db_private.h) */
void db_b_int64_array(db_buf_t *b, const int64_t *ids, size_t n) {
    db_b_put(b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        char v[24];
        int k = snprintf(v, sizeof v, "%s%" PRId64, i ? "," : "", ids[i]);
        db_b_put(b, v, (size_t)k);
    }
    db_b_put(b, "}", 2);
}

void db_b_i16(db_buf_t *b, int16_t v) {
    uint16_t x = htons((uint16_t)v);
    db_b_put(b, &x, 2);
}
void db_b_i32(db_buf_t *b, int32_t v) {
    uint32_t x = htonl((uint32_t)v);
    db_b_put(b, &x, 4);
}
void db_b_i64(db_buf_t *b, int64_t v) {
    db_b_i32(b, (int32_t)((uint64_t)v >> 32));
    db_b_i32(b, (int32_t)(uint32_t)v);
}
/* One field each: length prefix then value. */
void db_f_i32(db_buf_t *b, int32_t v) { db_b_i32(b, 4), db_b_i32(b, v); }
void db_f_i64(db_buf_t *b, int64_t v) { db_b_i32(b, 8), db_b_i64(b, v); }
void db_f_f32(db_buf_t *b, float v) {
    uint32_t x;
    memcpy(&x, &v, 4);
    db_b_i32(b, 4), db_b_i32(b, (int32_t)x);
}
void db_f_f64(db_buf_t *b, double v) {
    uint64_t x;
    memcpy(&x, &v, 8);
    db_b_i32(b, 8), db_b_i64(b, (int64_t)x);
}
void db_f_null(db_buf_t *b) { db_b_i32(b, -1); }
void db_f_text(db_buf_t *b, const char *s, size_t n) {
    if (!s) {
        db_f_null(b);
        return;
    }
    db_b_i32(b, (int32_t)n);
    db_b_put(b, s, n);
}
void db_f_str(db_buf_t *b, const char *s) { db_f_text(b, s, s ? strlen(s) : 0); }
void db_f_jsonb(db_buf_t *b, const char *s) {
    size_t n = strlen(s);
    uint8_t ver = 1; /* jsonb binary format version */
    db_b_i32(b, (int32_t)(n + 1));
    db_b_put(b, &ver, 1);
    db_b_put(b, s, n);
}
void db_copy_header(db_buf_t *b) {
    db_b_put(b, "PGCOPY\n\377\r\n\0", 11);
    db_b_i32(b, 0);
    db_b_i32(b, 0);
}

/* Sends b's bytes to an open COPY and empties b. */
int db_copy_flush(db_t *db, db_buf_t *b, char *err, size_t errlen) {
    if (b->oom) return log_seterr(err, errlen, "database: out of memory building COPY data");
    if (b->len && fault_nth(FAULT_FAIL_COPY_CHUNK))
        return log_seterr(err, errlen, "sending COPY data: write failed (fault injected by TOKSHIFT_FAULT)");
    if (b->len && PQputCopyData(db->c, b->p, (int)b->len) != 1)
        return db_fail(db, NULL, err, errlen, "sending COPY data");
    b->len = 0;
    return 0;
}

int db_copy_begin(db_t *db, const char *sql, db_buf_t *b, char *err, size_t errlen) {
    PGresult *r = PQexec(db->c, sql);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        db_fail(db, r, err, errlen, "starting COPY");
        PQclear(r);
        return -1;
    }
    PQclear(r);
    b->len = 0;
    db_copy_header(b);
    return 0;
}

int db_copy_end(db_t *db, db_buf_t *b, char *err, size_t errlen, const char *what) {
    db_b_i16(b, -1);
    if (db_copy_flush(db, b, err, errlen)) {
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
int db_copy_maybe_flush(db_t *db, db_buf_t *b, char *err, size_t errlen) {
    return b->len >= (1u << 20) ? db_copy_flush(db, b, err, errlen) : 0;
}

/* ---- COPY tables described once -------------------------------------- */

const char *db_kind_name(db_kind_t kind) {
    static const char *const names[DB_N_KINDS] = {"human", "human_cont", "sample"};
    assert((unsigned)kind < DB_N_KINDS);
    return names[kind];
}

/* An array field in the binary format of array_send: ndim, a has-nulls
 * flag, the element type's oid, then per dimension its size and lower
 * bound, then each element as a field.  An empty array has no dimension. */
static void put_array(db_buf_t *b, int32_t elem_oid, const void *v, int32_t n) {
    db_b_i32(b, n ? 20 + 8 * n : 12);
    db_b_i32(b, n ? 1 : 0);
    db_b_i32(b, 0);
    db_b_i32(b, elem_oid);
    if (!n) return;
    db_b_i32(b, n);
    db_b_i32(b, 1);
    for (int32_t i = 0; i < n; i++) {
        uint32_t x;
        memcpy(&x, (const char *)v + 4 * (size_t)i, 4); /* int32_t and float alike: 4 bytes */
        db_b_i32(b, 4);
        db_b_i32(b, (int32_t)x);
    }
}

void db_copy_tuple(db_buf_t *b, const db_copy_desc_t *d, const void *ctx, const void *row) {
    enum { INT4OID = 23, FLOAT4OID = 700 };
    db_b_i16(b, (int16_t)d->n_cols);
    for (size_t i = 0; i < d->n_cols; i++) {
        const db_col_t *c = &d->cols[i];
        const char *base = c->ctx ? ctx : row;
        const void *v = base + c->off;
        if (c->present != DB_COL_NONE && !*(const bool *)((const char *)row + c->present)) {
            db_f_null(b);
            continue;
        }
        int32_t n = 0;
        if (c->count != DB_COL_NONE) memcpy(&n, (const char *)row + c->count, sizeof n);
        switch (c->type) {
        case DB_COL_I32: db_f_i32(b, *(const int32_t *)v); break;
        case DB_COL_I64: db_f_i64(b, *(const int64_t *)v); break;
        case DB_COL_U64: db_f_i64(b, (int64_t) * (const uint64_t *)v); break;
        case DB_COL_F32: db_f_f32(b, *(const float *)v); break;
        case DB_COL_F64: db_f_f64(b, *(const double *)v); break;
        case DB_COL_KIND: db_f_str(b, db_kind_name(*(const db_kind_t *)v)); break;
        case DB_COL_STR: db_f_str(b, *(const char *const *)v); break;
        case DB_COL_I32_ARRAY: put_array(b, INT4OID, *(const int32_t *const *)v, n); break;
        case DB_COL_F32_ARRAY: put_array(b, FLOAT4OID, *(const float *const *)v, n); break;
        }
    }
}

int db_copy_rows(db_t *db, const db_copy_desc_t *d, const void *ctx, const void *rows, size_t n, size_t stride,
                 db_buf_t *b, char *err, size_t errlen) {
    char sql[1024], what[96];
    size_t o = (size_t)snprintf(sql, sizeof sql, "COPY %s (", d->table);
    for (size_t i = 0; i < d->n_cols && o < sizeof sql; i++)
        o += (size_t)snprintf(sql + o, sizeof sql - o, "%s%s", i ? ", " : "", d->cols[i].name);
    if (o < sizeof sql) o += (size_t)snprintf(sql + o, sizeof sql - o, ") FROM STDIN (FORMAT binary)");
    assert(o < sizeof sql); /* the descriptors are static: a longer one is a programming error */
    snprintf(what, sizeof what, "writing %s", d->table);
    if (db_copy_begin(db, sql, b, err, errlen)) return -1;
    for (size_t i = 0; i < n; i++) {
        db_copy_tuple(b, d, ctx, (const char *)rows + i * stride);
        if (db_copy_maybe_flush(db, b, err, errlen)) {
            PQputCopyEnd(db->c, "aborted");
            PQclear(PQgetResult(db->c));
            return -1;
        }
    }
    return db_copy_end(db, b, err, errlen, what);
}

int db_selftest(void) {
    /* The binary COPY encoder: big-endian fields and the signature. */
    db_buf_t b = {0};
    db_copy_header(&b);
    db_f_i32(&b, 0x01020304);
    db_f_f32(&b, 1.0f);
    int ok = !b.oom && b.len == 19 + 16 && !memcmp(b.p, "PGCOPY\n\377\r\n\0", 11) &&
             !memcmp(b.p + 19, "\0\0\0\4\1\2\3\4\0\0\0\4\x3f\x80\0\0", 16);
    /* A described tuple: field count, a NULL, an int4[] of {7} (array_send's
     * layout), an empty real[], a context bigint. */
    typedef struct {
        int32_t n, z;
        const int32_t *a;
        const float *f;
        bool there;
    } row_t;
    static const db_col_t cols[] = {
        DB_COL_IF("x", DB_COL_I32, row_t, n, there),
        DB_COL_ARRAY("a", DB_COL_I32_ARRAY, row_t, a, n),
        DB_COL_ARRAY("f", DB_COL_F32_ARRAY, row_t, f, z),
        DB_COL_CTX("c", DB_COL_I64, row_t, a),
    };
    const db_copy_desc_t d = {"t", cols, 4};
    const int32_t seven = 7;
    row_t row = {1, 0, &seven, NULL, false};
    int64_t ctx[2] = {0, 0};
    b.len = 0;
    db_copy_tuple(&b, &d, ctx, &row);
    static const char want[] = "\0\4"                                     /* 4 fields */
                               "\xff\xff\xff\xff"                         /* NULL */
                               "\0\0\0\x1c\0\0\0\1\0\0\0\0\0\0\0\x17" /* 28 bytes, ndim 1, no nulls, int4 */
                               "\0\0\0\1\0\0\0\1\0\0\0\4\0\0\0\7"     /* dim 1, lbound 1, {7} */
                               "\0\0\0\x0c\0\0\0\0\0\0\0\0\0\0\2\xbc"  /* 12 bytes, ndim 0, float4 */
                               "\0\0\0\x08\0\0\0\0\0\0\0\0";            /* the context's 8 bytes */
    ok = ok && !b.oom && b.len == sizeof want - 1 && !memcmp(b.p, want, sizeof want - 1);
    free(b.p);
    return ok ? 0 : -1;
}
