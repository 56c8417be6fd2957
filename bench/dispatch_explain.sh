#!/usr/bin/env bash
# dispatch_explain.sh - the plans of the dispatch path's two prepared
# statements (common/db_run.c: db_jobs_lease, db_jobs_state; prepared once
# per session, db_exec_prepared) at 10^6 documents, in a database that
# already holds an earlier, analyzed run (plans from statistics that predate
# a big load are the danger: see bench/corpus_scale.sh).  Each is prepared
# as the coordinator prepares it and executed 6 times first, so that the
# plan shown is the one PostgreSQL keeps for the session (a generic plan
# once the custom ones cost no less), then EXPLAIN (ANALYZE, BUFFERS) of a
# batch of 64 jobs.  The data is made in SQL (a private cluster; about a
# minute).  Each plan must probe the jobs' and documents' keys per job of the
# batch, never scan the run.
# Usage: bench/dispatch_explain.sh [BUILD_DIR] [DOCS] [DOCS_PER_JOB]   (default 1000000 4)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
DOCS=${2:-1000000}
PER=${3:-4}
TMP=$(mktemp -d); chmod 755 "$TMP"
trap '"$ROOT/deploy/pg-cluster.sh" stop "$TMP/pg" immediate >/dev/null 2>&1; rm -rf "$TMP"' EXIT
DB=$("$ROOT/deploy/pg-cluster.sh" start "$TMP/pg")
"$BUILD/tokshift" db migrate --db "$DB" 2>/dev/null
q() { psql -X -q -v ON_ERROR_STOP=1 "$DB" -c "$1"; }
# run NAME N: a loaded run of N documents, PER to a job, all jobs pending.
run() {
  q "INSERT INTO runs (name, model_identity, settings, corpus, status, loaded_at) VALUES ('$1', 'm', '{}', '{}', 'running', now());
     INSERT INTO documents (run_id, doc_id, ext_id, source, text, n_bytes, job_id)
     SELECT r.run_id, d, 'd' || d, 'f:' || d, 'Once upon a time the cat sat on the mat.', 40, d / $PER
       FROM runs r, generate_series(0, $2 - 1) d WHERE r.name = '$1';
     INSERT INTO jobs (run_id, job_id, n_docs, n_bytes)
     SELECT r.run_id, j, $PER, 40 * $PER FROM runs r, generate_series(0, ($2 + $PER - 1) / $PER - 1) j WHERE r.name = '$1'"
}
run earlier 100000
q "ANALYZE"
run large "$DOCS"
RUN=$(psql -X -At "$DB" -c "SELECT run_id FROM runs WHERE name = 'large'")
echo "== an earlier run of 100000 documents (analyzed), then run $RUN: $DOCS documents, $PER per job (not analyzed)"
# The statements exactly as db_run.c prepares them.
LEASE="WITH u AS (SELECT * FROM unnest(\$2::bigint[], \$3::bigint[], \$4::text[]) AS u(job_id, token, worker)),
  l AS (UPDATE jobs j SET state = 'leased', attempts = j.attempts + 1, attempt_token = u.token,
  worker = u.worker, leased_at = now() FROM u
  WHERE j.run_id = \$1 AND j.job_id = u.job_id AND j.state = 'pending'
  RETURNING j.job_id, j.attempts, j.attempt_token)
  SELECT l.job_id, l.attempts, l.attempt_token, d.doc_id, d.text FROM l
  LEFT JOIN documents d ON d.run_id = \$1 AND d.job_id = l.job_id AND d.text IS NOT NULL
  ORDER BY l.job_id, d.doc_id"
STATE="SELECT u.i, j.state FROM unnest(\$2::bigint[]) WITH ORDINALITY AS u(job_id, i)
  JOIN jobs j ON j.run_id = \$1 AND j.job_id = u.job_id"
# batch K: the K-th batch of 64 job ids, tokens and names as array literals.
ids() { seq -s, $(($1 * 64)) $(($1 * 64 + 63)); }
toks() { seq -s, $(($1 * 64 + 1000)) $(($1 * 64 + 1063)); }
names() { local n; n=$(seq -s, 1 64 | sed 's/\([0-9]*\)/w\1/g'); echo "$n"; }
SQL="PREPARE lease(bigint, bigint[], bigint[], text[]) AS $LEASE;
PREPARE st(bigint, bigint[]) AS $STATE;
\\o /dev/null
"
for k in 1 2 3 4 5 6; do
  SQL+="EXECUTE lease($RUN, '{$(ids $k)}', '{$(toks $k)}', '{$(names)}'); EXECUTE st($RUN, '{$(ids $k)}');
"
done
SQL+="\\o
\\echo == db_jobs_lease, a batch of 64 jobs (the 7th execution in the session)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE lease($RUN, '{$(ids 7)}', '{$(toks 7)}', '{$(names)}');
\\echo == db_jobs_state, 64 jobs (the 7th execution in the session)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE st($RUN, '{$(ids 7)}');"
printf '%s\n' "$SQL" | psql -X -q -v ON_ERROR_STOP=1 "$DB"
