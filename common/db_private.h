/* db_private.h - what the parts of the libpq module share, and nobody else.
 *
 * What it is: the connection struct, the statement runner and the binary
 * COPY encoder used by db.c (connection, migrations, COPY core), db_run.c
 * (the coordinator's run, document and job bookkeeping), db_results.c (a
 * worker's results) and db_report.c (what the CLI and reports read).
 * What it is not: an interface for anything outside common/db*.c; only
 * those files include it (and so libpq-fe.h).
 *
 * Binary COPY framing follows the PostgreSQL manual ("COPY: Binary
 * Format"): a signature, flags and header extension, then per tuple an int16
 * field count and per field an int32 length (-1 = NULL) and the value in
 * network byte order; an int16 -1 ends the data.
 */
#ifndef TS_DB_PRIVATE_H
#define TS_DB_PRIVATE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"

struct db {
    PGconn *c;
    char *conninfo;
    int lost; /* the last failure was the connection's (db_connection_lost) */
    db_latency_t latency; /* db_exec's round trips (db_latency) */
    unsigned prepared;    /* bit s: statement s (db_stmt_t) is prepared in this session */
    unsigned sessions;    /* sessions opened by db_reconnect (db_session) */
};

/* The statements prepared once per session (db_exec_prepared): those of
 * the dispatch path, run for every batch of jobs, whose parse and plan
 * would otherwise be paid each time. */
typedef enum { DB_STMT_JOBS_LEASE, DB_STMT_JOBS_STATE, DB_N_STMTS } db_stmt_t;

/* Formats the failure of what (from r, or the connection's message when r
 * is NULL) into err, passwords taken out, and records in db->lost whether
 * the connection itself is gone.  Always returns -1. */
int db_fail(db_t *db, const PGresult *r, char *err, size_t errlen, const char *what);

/* Runs sql with n text parameters; *out receives the result when the status
 * is TUPLES_OK/COMMAND_OK (caller PQclears), else -1 with a message naming
 * what.  out may be NULL. */
int db_exec(db_t *db, const char *sql, int n, const char *const *params, PGresult **out, char *err, size_t errlen,
            const char *what);

/* db_exec for statement id, whose text sql never changes: prepared (as
 * "ts_<id>") on the first call in a session, then executed by name.  A
 * reconnect starts a new session (db_reconnect forgets what was prepared);
 * a session that lost the statement otherwise (SQLSTATE 26000) prepares it
 * again on the next call.  The same results and failures as db_exec. */
int db_exec_prepared(db_t *db, db_stmt_t id, const char *sql, int n, const char *const *params, PGresult **out,
                     char *err, size_t errlen, const char *what);

/* Rolls back the open transaction, if the connection is up. */
void db_rollback(db_t *db);

/* A growing byte buffer for COPY data; oom is sticky and reported by the
 * next flush.  Zero-initialise; free p. */
typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} db_buf_t;

void db_b_put(db_buf_t *b, const void *d, size_t n);
/* The array literal "{a,b,...}" of ids[0..n) (a bigint[] parameter),
 * with its terminating NUL. */
void db_b_int64_array(db_buf_t *b, const int64_t *ids, size_t n);
void db_b_i16(db_buf_t *b, int16_t v);
void db_b_i32(db_buf_t *b, int32_t v);
void db_b_i64(db_buf_t *b, int64_t v);
/* One field each: its length, then its value in network order. */
void db_f_i32(db_buf_t *b, int32_t v);
void db_f_i64(db_buf_t *b, int64_t v);
void db_f_f32(db_buf_t *b, float v);
void db_f_f64(db_buf_t *b, double v);
void db_f_null(db_buf_t *b);
void db_f_text(db_buf_t *b, const char *s, size_t n); /* NULL s: SQL NULL */
void db_f_str(db_buf_t *b, const char *s);            /* NULL s: SQL NULL */
void db_f_jsonb(db_buf_t *b, const char *s);
void db_copy_header(db_buf_t *b);

/* ---- COPY tables described once ------------------------------------------
 *
 * A table's COPY columns are listed once, each with its name, its type and
 * where its value lies (offsetof in the row struct, or in a context struct
 * shared by every row, such as the run and job ids); the column list of the
 * COPY statement, the field count of each tuple and each field's encoding
 * all derive from that list, so a column cannot be misordered or miscounted.
 */
typedef enum {
    DB_COL_I32,       /* int32_t -> integer */
    DB_COL_I64,       /* int64_t -> bigint */
    DB_COL_U64,       /* uint64_t -> bigint, the same 64 bits */
    DB_COL_F32,       /* float -> real */
    DB_COL_F64,       /* double -> double precision */
    DB_COL_KIND,      /* db_kind_t -> tokshift_kind (its label) */
    DB_COL_STR,       /* const char * -> text (NULL -> NULL) */
    DB_COL_I32_ARRAY, /* const int32_t * -> integer[] */
    DB_COL_F32_ARRAY, /* const float * -> real[] */
} db_coltype_t;

#define DB_COL_NONE ((size_t)-1)

typedef struct {
    const char *name;
    db_coltype_t type;
    size_t off;     /* of the value in the row (or in the context, with ctx) */
    size_t present; /* of a bool in the row saying the value is there (else NULL), or DB_COL_NONE */
    size_t count;   /* arrays: of the int32_t element count in the row */
    bool ctx;       /* the value lies in the context, not the row */
} db_col_t;

/* A column at field f of row struct T; its variants: present only when the
 * bool field p says so; an array of the int32_t field n elements; from the
 * context struct C. */
#define DB_COL(name, type, T, f) {name, type, offsetof(T, f), DB_COL_NONE, DB_COL_NONE, false}
#define DB_COL_IF(name, type, T, f, p) {name, type, offsetof(T, f), offsetof(T, p), DB_COL_NONE, false}
#define DB_COL_ARRAY(name, type, T, f, n) {name, type, offsetof(T, f), DB_COL_NONE, offsetof(T, n), false}
#define DB_COL_CTX(name, type, C, f) {name, type, offsetof(C, f), DB_COL_NONE, DB_COL_NONE, true}

typedef struct {
    const char *table;
    const db_col_t *cols;
    size_t n_cols;
} db_copy_desc_t;

/* Encodes one tuple of d from row (and ctx) into b. */
void db_copy_tuple(db_buf_t *b, const db_copy_desc_t *d, const void *ctx, const void *row);

/* COPYs n rows of d, stride bytes apart from rows, in binary: begins the
 * COPY with the column list of d, encodes every tuple (flushing as the
 * buffer fills) and ends it.  b is scratch (kept for reuse; caller frees
 * b->p).  0, or -1 with a message naming the table. */
int db_copy_rows(db_t *db, const db_copy_desc_t *d, const void *ctx, const void *rows, size_t n, size_t stride,
                 db_buf_t *b, char *err, size_t errlen);

/* Starts `COPY ... FROM STDIN (FORMAT binary)` (sql) and puts the header in
 * b.  0 or -1. */
int db_copy_begin(db_t *db, const char *sql, db_buf_t *b, char *err, size_t errlen);
/* Sends b to the open COPY and empties it.  0 or -1. */
int db_copy_flush(db_t *db, db_buf_t *b, char *err, size_t errlen);
/* Flushes when b holds 1 MiB or more, so memory stays bounded.  0 or -1. */
int db_copy_maybe_flush(db_t *db, db_buf_t *b, char *err, size_t errlen);
/* Ends the data, finishes the COPY and reads its result.  0 or -1. */
int db_copy_end(db_t *db, db_buf_t *b, char *err, size_t errlen, const char *what);

/* Runs sql with text parameters and returns its result as a db_table_t
 * (free with db_table_free).  0, or -1 with a message; out is empty then. */
int db_query_table(db_t *db, const char *sql, int n_params, const char *const *params, db_table_t *out, char *err,
                   size_t errlen);

#endif
