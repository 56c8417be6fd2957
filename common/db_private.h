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
#include <stddef.h>
#include <stdint.h>

#include "db.h"

struct db {
    PGconn *c;
    char *conninfo;
    int lost; /* the last failure was the connection's (db_connection_lost) */
};

/* Monotonic seconds. */
double db_now_s(void);

/* Formats the failure of what (from r, or the connection's message when r
 * is NULL) into err, passwords taken out, and records in db->lost whether
 * the connection itself is gone.  Always returns -1. */
int db_fail(db_t *db, const PGresult *r, char *err, size_t errlen, const char *what);

/* Runs sql with n text parameters; *out receives the result when the status
 * is TUPLES_OK/COMMAND_OK (caller PQclears), else -1 with a message naming
 * what.  out may be NULL. */
int db_exec(db_t *db, const char *sql, int n, const char *const *params, PGresult **out, char *err, size_t errlen,
            const char *what);

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

/* Starts `COPY ... FROM STDIN (FORMAT binary)` (sql) and puts the header in
 * b.  0 or -1. */
int db_copy_begin(db_t *db, const char *sql, db_buf_t *b, char *err, size_t errlen);
/* Sends b to the open COPY and empties it.  0 or -1. */
int db_copy_flush(db_t *db, db_buf_t *b, char *err, size_t errlen);
/* Flushes when b holds 1 MiB or more, so memory stays bounded.  0 or -1. */
int db_copy_maybe_flush(db_t *db, db_buf_t *b, char *err, size_t errlen);
/* Ends the data, finishes the COPY and reads its result.  0 or -1. */
int db_copy_end(db_t *db, db_buf_t *b, char *err, size_t errlen, const char *what);

#endif
