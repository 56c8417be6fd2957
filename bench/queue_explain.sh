#!/usr/bin/env bash
# queue_explain.sh - the plans of the queue's statements (migration 013,
# common/db_queue.c) at scale: a database whose history holds 10^5 done runs
# (analyzed), 20 runs in the queue, one of them with 10^6 pending jobs.
# EXPLAIN (ANALYZE, BUFFERS) of: the queue server's poll (db_queue_list,
# every heartbeat), a submit (db_queue_submit) and a priority change
# (db_queue_set_priority), the updates rolled back.  Each should touch the
# queue's runs (a partial index) or one run (its key), never the history or
# the jobs.  Seconds of a private PostgreSQL cluster; the data is made in SQL.
# Usage: bench/queue_explain.sh [BUILD_DIR] [HISTORY_RUNS] [JOBS]   (default 100000 1000000)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
HISTORY=${2:-100000}
JOBS=${3:-1000000}
TMP=$(mktemp -d); chmod 755 "$TMP"
trap '"$ROOT/deploy/pg-cluster.sh" stop "$TMP/pg" immediate >/dev/null 2>&1; rm -rf "$TMP"' EXIT
DB=$("$ROOT/deploy/pg-cluster.sh" start "$TMP/pg")
"$BUILD/tokshift" db migrate --db "$DB" 2>/dev/null
q() { psql -X -q -v ON_ERROR_STOP=1 "$DB" -c "$1"; }
q "INSERT INTO runs (name, model_identity, settings, corpus, status, loaded_at, finished_at, queued_at, priority)
   SELECT 'old-' || i, 'm', '{}', '{}', 'done', now(), now(), CASE WHEN i % 2 = 0 THEN now() END, i % 7
     FROM generate_series(1, $HISTORY) i;
   INSERT INTO runs (name, model_identity, settings, corpus, status, loaded_at, queued_at, priority)
   SELECT 'queued-' || i, 'm', '{}', '{}', CASE WHEN i < 3 THEN 'running' ELSE 'queued' END, now(),
          clock_timestamp(), i % 3 FROM generate_series(1, 20) i;
   INSERT INTO jobs (run_id, job_id, n_docs, n_bytes)
   SELECT (SELECT run_id FROM runs WHERE name = 'queued-1'), j, 1, 100 FROM generate_series(0, $JOBS - 1) j;
   ANALYZE"
echo "== $HISTORY done runs, 20 queued, $JOBS jobs"
echo "== the queue server's poll (db_queue_list)"
q "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT run_id, name, model_identity, settings::text, priority, status FROM runs
   WHERE queued_at IS NOT NULL AND status IN ('queued', 'running') ORDER BY priority DESC, queued_at, run_id"
echo "== a submit (db_queue_submit; the statements as db_queue.c sends them, with parameters)"
id5=$(psql -X -At "$DB" -c "SELECT run_id FROM runs WHERE name = 'queued-5'")
q "BEGIN; PREPARE s(bigint, integer) AS UPDATE runs SET priority = \$2, queued_at = coalesce(queued_at, clock_timestamp()),
   status = CASE WHEN status = 'running' AND queued_at IS NOT NULL THEN status ELSE 'queued' END
   WHERE run_id = \$1 AND loaded_at IS NOT NULL AND status <> 'done' RETURNING run_id;
   EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE s($id5, 3); ROLLBACK"
echo "== a priority change (db_queue_set_priority), by name and by id"
id8=$(psql -X -At "$DB" -c "SELECT run_id FROM runs WHERE name = 'queued-8'")
for r in queued-7 "$id8"; do
  q "BEGIN; PREPARE p(text, integer) AS UPDATE runs SET priority = \$2 WHERE run_id = coalesce((SELECT run_id FROM runs
     WHERE name = \$1), (SELECT run_id FROM runs WHERE run_id = CASE WHEN \$1 ~ '^[0-9]{1,18}\$' THEN \$1::bigint END))
     AND queued_at IS NOT NULL AND status IN ('queued', 'running') RETURNING run_id;
     EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE p('$r', 9); ROLLBACK"
done
