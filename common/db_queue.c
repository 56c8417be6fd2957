/* db_queue.c - see db.h, "the queue of runs": the statements of migration
 * 013 (runs' priority and queued_at).  What it is not: the scheduling
 * between queued runs (coordinator/runq.c). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_private.h"
#include "log.h"

int db_queue_submit(db_t *db, int64_t run_id, int priority, char *err, size_t errlen) {
    char id[32], pr[16];
    PGresult *r;
    snprintf(id, sizeof id, "%" PRId64, run_id);
    snprintf(pr, sizeof pr, "%d", priority);
    /* (A run already queued keeps its place in the FIFO order, and one that
     * a queue server serves stays running; SET reads the row as it was.) */
    if (db_exec(db,
                "UPDATE runs SET priority = $2, queued_at = coalesce(queued_at, clock_timestamp()), "
                "status = CASE WHEN status = 'running' AND queued_at IS NOT NULL THEN status ELSE 'queued' END "
                "WHERE run_id = $1 AND loaded_at IS NOT NULL AND status <> 'done' RETURNING run_id",
                2, (const char *const[]){id, pr}, &r, err, errlen, "queueing the run"))
        return -1;
    int ok = PQntuples(r) == 1;
    PQclear(r);
    return ok ? 0 : log_seterr(err, errlen, "run %" PRId64 " is done or not loaded: it cannot be queued", run_id);
}

int db_queue_list(db_t *db, db_queued_t **out, size_t *n, char *err, size_t errlen) {
    PGresult *r;
    *out = NULL, *n = 0;
    if (db_exec(db,
                "SELECT run_id, name, model_identity, settings::text, priority, status FROM runs "
                "WHERE queued_at IS NOT NULL AND status IN ('queued', 'running') "
                "ORDER BY priority DESC, queued_at, run_id",
                0, NULL, &r, err, errlen, "reading the queue of runs"))
        return -1;
    size_t rows = (size_t)PQntuples(r);
    db_queued_t *q = calloc(rows ? rows : 1, sizeof *q);
    if (!q) {
        PQclear(r);
        return log_seterr(err, errlen, "out of memory");
    }
    for (size_t i = 0; i < rows; i++) {
        q[i].run_id = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
        q[i].name = strdup(PQgetvalue(r, (int)i, 1));
        snprintf(q[i].model_identity, sizeof q[i].model_identity, "%s", PQgetvalue(r, (int)i, 2));
        q[i].settings = strdup(PQgetvalue(r, (int)i, 3));
        q[i].priority = (int)strtol(PQgetvalue(r, (int)i, 4), NULL, 10);
        snprintf(q[i].status, sizeof q[i].status, "%s", PQgetvalue(r, (int)i, 5));
        if (!q[i].name || !q[i].settings) {
            PQclear(r);
            db_queue_free(q, i + 1);
            return log_seterr(err, errlen, "out of memory");
        }
    }
    PQclear(r);
    *out = q, *n = rows;
    return 0;
}

void db_queue_free(db_queued_t *q, size_t n) {
    for (size_t i = 0; q && i < n; i++) {
        free(q[i].name);
        free(q[i].settings);
    }
    free(q);
}

int db_queue_set_priority(db_t *db, const char *name_or_id, int priority, char *err, size_t errlen) {
    char pr[16];
    PGresult *r;
    snprintf(pr, sizeof pr, "%d", priority);
    if (db_exec(db,
                /* (A name first, else a decimal id: two key probes, where
                 * "name = $1 OR run_id::text = $1" reads every run.) */
                "UPDATE runs SET priority = $2 WHERE run_id = coalesce((SELECT run_id FROM runs WHERE name = $1), "
                "(SELECT run_id FROM runs WHERE run_id = CASE WHEN $1 ~ '^[0-9]{1,18}$' THEN $1::bigint END)) "
                "AND queued_at IS NOT NULL AND status IN ('queued', 'running') RETURNING run_id",
                2, (const char *const[]){name_or_id, pr}, &r, err, errlen, "changing the run's priority"))
        return -1;
    int found = PQntuples(r) == 1;
    PQclear(r);
    return found ? 0 : 1;
}
