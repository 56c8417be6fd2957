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
            "SELECT bucket, positions, n_human, n_model, human_surprisal, model_surprisal, human_entropy, "
            "model_entropy, human_gap, human_se_gap, model_gap, model_se_gap, shift, se_shift "
            "FROM shift_by_bucket WHERE run_id = $1 ORDER BY bucket",
        [DB_REPORT_CALIBRATION] =
            "SELECT kind, bin, n, mean_confidence, accuracy FROM calibration WHERE run_id = $1 ORDER BY kind, bin",
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
    PGresult *r;
    if (db_exec(db, sql[which], 1, (const char *const[]){a}, &r, err, errlen, "reading the report")) return -1;
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
