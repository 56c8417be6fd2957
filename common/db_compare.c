/* db_compare.c - see db.h: what `tokshift compare` and `tokshift auroc`
 * read: whether runs are comparable, their tables side by side, and the
 * per-sequence means the AUROC's bootstrap resamples.  What it is not: the
 * statistics (the views of 008_paired.sql; cli/auroc.c) or printing. */
#include "db.h"
#include "db_private.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* runs[n] as a PostgreSQL array literal into buf. */
static void id_array(const int64_t *runs, size_t n, char *buf, size_t len) {
    size_t o = (size_t)snprintf(buf, len, "{");
    for (size_t i = 0; i < n && o < len; i++) o += (size_t)snprintf(buf + o, len - o, "%s%" PRId64, i ? "," : "", runs[i]);
    if (o < len) snprintf(buf + o, len - o, "}");
}

int db_compare_rows(db_t *db, const int64_t *runs, size_t n, db_compare_t which, db_table_t *out, char *err,
                    size_t errlen) {
    static const char *const sql[] = {
        [DB_COMPARE_BUCKETS] =
            "SELECT r.name AS run, s.positions, s.n_docs AS docs, "
            "tokshift_pm(s.human_gap, s.human_se_gap) AS \"human gap ± se\", "
            "tokshift_pm(s.model_gap, s.model_se_gap) AS \"sample gap ± se\", "
            "tokshift_pm(s.shift, s.se_shift) AS \"shift ± se\", "
            "tokshift_pm(s.human_surprisal, s.human_se_surprisal) AS \"human surprisal\", "
            "tokshift_pm(s.model_surprisal, s.model_se_surprisal) AS \"sample surprisal\", "
            "tokshift_pm(s.human_entropy, s.human_se_entropy) AS \"human entropy\", "
            "tokshift_pm(s.model_entropy, s.model_se_entropy) AS \"sample entropy\" "
            "FROM shift_by_bucket s JOIN runs r USING (run_id) WHERE s.run_id = ANY($1::bigint[]) "
            "ORDER BY s.bucket, array_position($1::bigint[], s.run_id)",
        [DB_COMPARE_DIFFS] =
            "SELECT rb.name || ' - ' || ra.name AS difference, c.kind, c.positions, c.n_docs AS docs, "
            "tokshift_pm(c.diff_gap, c.se_diff_gap) AS \"gap ± paired se\", "
            "tokshift_pm(c.diff_surprisal, c.se_diff_surprisal) AS \"surprisal ± paired se\", "
            "tokshift_pm(c.diff_entropy, c.se_diff_entropy) AS \"entropy ± paired se\", "
            "tokshift_pm(c.diff_z, c.se_diff_z) AS \"z ± paired se\" "
            "FROM unnest($1::bigint[]) WITH ORDINALITY u(run_b, k) JOIN runs rb ON rb.run_id = u.run_b "
            "JOIN runs ra ON ra.run_id = ($1::bigint[])[1] "
            "CROSS JOIN LATERAL tokshift_compare(ra.run_id, rb.run_id) c WHERE u.k > 1 "
            "ORDER BY u.k, c.kind, c.bucket",
        [DB_COMPARE_CALIBRATION] =
            "SELECT c.kind, c.bin, r.name AS run, c.n, c.n_docs AS docs, "
            "round(c.mean_confidence::numeric, 4) AS confidence, "
            "tokshift_pm(c.accuracy, c.se_accuracy) AS \"accuracy ± se\" "
            "FROM calibration c JOIN runs r USING (run_id) WHERE c.run_id = ANY($1::bigint[]) "
            "ORDER BY c.kind, c.bin, array_position($1::bigint[], c.run_id)",
        [DB_COMPARE_AUROC] =
            "SELECT r.name AS run, a.stat, a.n_human, a.n_sample, round(a.auroc::numeric, 4) AS auroc "
            "FROM sequence_auroc a JOIN runs r USING (run_id) WHERE a.run_id = ANY($1::bigint[]) "
            "ORDER BY array_position($1::bigint[], a.run_id), a.stat",
        [DB_COMPARE_CUTS] =
            "SELECT rb.name || ' - ' || ra.name AS pair, p.n_cuts_a AS \"cuts of the first\", "
            "p.n_cuts_b AS \"cuts of the other\", p.n_paired AS \"at the same byte\" "
            "FROM unnest($1::bigint[]) WITH ORDINALITY u(run_b, k) JOIN runs rb ON rb.run_id = u.run_b "
            "JOIN runs ra ON ra.run_id = ($1::bigint[])[1] "
            "CROSS JOIN LATERAL tokshift_cuts_paired(ra.run_id, rb.run_id) p "
            "WHERE u.k > 1 AND tokshift_tokenizers_differ(ra.run_id, rb.run_id) ORDER BY u.k",
    };
    memset(out, 0, sizeof *out);
    if ((unsigned)which >= sizeof sql / sizeof *sql) return log_seterr(err, errlen, "database: no such table");
    char ids[1024];
    if (n > 32) return log_seterr(err, errlen, "at most 32 runs at once");
    id_array(runs, n, ids, sizeof ids);
    return db_query_table(db, sql[which], 1, (const char *const[]){ids}, out, err, errlen);
}

int db_runs_differ(db_t *db, int64_t a, int64_t b, char **why, char *err, size_t errlen) {
    char x[32], y[32];
    snprintf(x, sizeof x, "%" PRId64, a);
    snprintf(y, sizeof y, "%" PRId64, b);
    PGresult *r;
    *why = NULL;
    if (db_exec(db, "SELECT tokshift_runs_differ($1, $2)", 2, (const char *const[]){x, y}, &r, err, errlen,
                "comparing the runs' settings"))
        return -1;
    int rc = 0;
    if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) && !(*why = strdup(PQgetvalue(r, 0, 0))))
        rc = log_seterr(err, errlen, "database: out of memory");
    PQclear(r);
    return rc;
}

int db_seq_means(db_t *db, int64_t run_id, db_seqmean_t **out, size_t *n, char *err, size_t errlen) {
    char a[32];
    snprintf(a, sizeof a, "%" PRId64, run_id);
    PGresult *r;
    *out = NULL, *n = 0;
    if (db_exec(db,
                "SELECT doc_id, kind = 'human_cont', sum_surprisal / cardinality(token_id), "
                "sum_gap / cardinality(token_id), coalesce((sum_z / nullif(n_z, 0))::text, 'NaN') "
                "FROM sequence_stats WHERE run_id = $1 AND kind IN ('human_cont', 'sample') "
                "AND cardinality(token_id) > 0 ORDER BY doc_id",
                1, (const char *const[]){a}, &r, err, errlen, "reading the sequences' means"))
        return -1;
    size_t rows = (size_t)PQntuples(r);
    if (!(*out = malloc((rows ? rows : 1) * sizeof **out))) {
        PQclear(r);
        return log_seterr(err, errlen, "database: out of memory");
    }
    for (size_t i = 0; i < rows; i++) {
        int row = (int)i;
        db_seqmean_t *s = &(*out)[i];
        s->doc_id = strtoll(PQgetvalue(r, row, 0), NULL, 10);
        s->human = PQgetvalue(r, row, 1)[0] == 't';
        s->surprisal = strtod(PQgetvalue(r, row, 2), NULL);
        s->gap = strtod(PQgetvalue(r, row, 3), NULL);
        s->z = strtod(PQgetvalue(r, row, 4), NULL);
    }
    *n = rows;
    PQclear(r);
    return 0;
}
