#!/usr/bin/env bash
# corpus_scale.sh - the coordinator's start-up at corpus scale (issue 8):
# in a database that already holds an earlier, analyzed run (a research
# database always does, and then plans made from old statistics turn linear
# statements quadratic), synthetic corpora of 10^5 and 10^6 short documents:
#   - time from starting the coordinator to the first job done by a real
#     worker (the demo model stories260K; goal <= 10 s at 10^6),
#   - the load's total time, and its growth 10^5 -> 10^6 (goal <= 11x for
#     10x the documents: linear),
#   - the coordinator's peak RSS (VmHWM),
# then EXPLAIN (ANALYZE, BUFFERS) of each statement that the load and the
# dispatch run per batch or per job, at 10^6 documents.  The reference of
# each ratio is measured in the same run.
# Usage: bench/corpus_scale.sh [BUILD_DIR] [SMALL LARGE]   (default 100000 1000000)
# The model: $TOKSHIFT_TESTDATA/models/stories260K.gguf, else deploy/fetch-model.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
SMALL=${2:-100000}
LARGE=${3:-1000000}
TMP=$(mktemp -d); chmod 755 "$TMP"
trap 'kill $(jobs -p) 2>/dev/null || true; "$ROOT/deploy/pg-cluster.sh" stop "$TMP/pg" immediate >/dev/null 2>&1; rm -rf "$TMP"' EXIT
DB=$("$ROOT/deploy/pg-cluster.sh" start "$TMP/pg")
if [ -n "${TOKSHIFT_TESTDATA:-}" ] && [ -f "$TOKSHIFT_TESTDATA/models/stories260K.gguf" ]; then
  MODEL=$(cd "$TOKSHIFT_TESTDATA/models" && pwd)/stories260K.gguf
else
  MODEL=$("$ROOT/deploy/fetch-model.sh" "$TMP/models")
fi
"$BUILD/tokshift" db migrate --db "$DB" 2>/dev/null
q() { psql -X -At -v ON_ERROR_STOP=1 "$DB" -c "$1"; }
now() { date +%s.%N; }

# corpus N PREFIX: N short JSONL documents (ids PREFIX-0 ...).
corpus() {
  awk -v n="$1" -v p="$2" 'BEGIN { for (i = 0; i < n; i++)
    printf "{\"id\":\"%s-%d\",\"text\":\"Document %d. Once upon a time the cat sat on the mat and looked at the dog.\"}\n", p, i, i }' \
    > "$TMP/$2.jsonl"
}

# load NAME [worker]: runs a coordinator on $TMP/NAME.jsonl until its load is
# complete (with a worker: and its first job done), then stops it; prints
# "first_job_s load_s peak_rss_kb" and keeps the logs in $TMP.
load() {
  local name=$1 port=$((20000 + RANDOM % 12000)) t0 first=- c w="" rss
  t0=$(now)
  "$BUILD/tokshift-coordinator" --run "$name" --model "$MODEL" --db "$DB" --bind "tcp://127.0.0.1:$port" \
    --progress 3600 "$TMP/$name.jsonl" > /dev/null 2> "$TMP/$name-coord.log" &
  c=$!
  if [ "${2:-}" = worker ]; then
    "$BUILD/tokshift-worker" --connect "tcp://127.0.0.1:$port" --model "$MODEL" --db "$DB" --threads 1 \
      2> "$TMP/$name-worker.log" &
    w=$!
    # The queue starts at job 0; one worker: job 0 is the first done (a
    # primary-key probe, so polling costs nothing that grows).
    until [ "$(q "SELECT count(*) FROM jobs j JOIN runs r USING (run_id) WHERE r.name = '$name' AND j.job_id = 0 AND j.state = 'done'")" = 1 ]; do
      sleep 0.05
    done
    first=$(echo "$(now) - $t0" | bc -l)
  fi
  until [ "$(q "SELECT loaded_at IS NOT NULL FROM runs WHERE name = '$name'")" = t ]; do sleep 0.2; done
  rss=$(awk '/VmHWM/ { print $2 }' /proc/$c/status)
  kill -TERM $c ${w:+$w}
  wait $c ${w:+$w} || true
  local secs
  secs=$(grep -o 'loaded ([0-9]* batches here) in [0-9.]* s' "$TMP/$name-coord.log" | grep -o '[0-9.]* s$' | tr -d ' s')
  echo "$first $secs $rss"
}

echo "== an earlier run of $SMALL documents, loaded and analyzed"
corpus "$SMALL" earlier
read -r _ s _ < <(load earlier)
q "ANALYZE" > /dev/null
echo "earlier: $SMALL documents loaded in $s s"

echo "== the corpora, each with one worker (stories260K, 1 thread)"
corpus "$SMALL" small
read -r f1 s1 r1 < <(load small worker)
printf '%8d documents: first job done after %.2f s; loaded in %.2f s; coordinator peak RSS %.1f MiB\n' "$SMALL" "$f1" "$s1" "$(echo "$r1 / 1024" | bc -l)"
corpus "$LARGE" large
read -r f2 s2 r2 < <(load large worker)
printf '%8d documents: first job done after %.2f s; loaded in %.2f s; coordinator peak RSS %.1f MiB\n' "$LARGE" "$f2" "$s2" "$(echo "$r2 / 1024" | bc -l)"
printf 'growth of the load time for %.0fx the documents: %.2fx (goal <= %.0fx: linear plus 10%%)\n' \
  "$(echo "$LARGE / $SMALL" | bc -l)" "$(echo "$s2 / $s1" | bc -l)" "$(echo "1.1 * $LARGE / $SMALL" | bc -l)"

RUN=$(q "SELECT run_id FROM runs WHERE name = 'large'")
JOB=$(q "SELECT job_id FROM jobs WHERE run_id = $RUN AND state = 'pending' ORDER BY job_id DESC LIMIT 1")
echo "== EXPLAIN (ANALYZE, BUFFERS) at $LARGE documents of run $RUN ($(q "SELECT count(*) FROM documents") documents and $(q "SELECT count(*) FROM jobs") jobs in the tables)"
x() { echo "-- $1"; psql -X -q -v ON_ERROR_STOP=1 "$DB" -c "BEGIN" -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) $2" -c "ROLLBACK" | grep -v '^ *$'; }
x "load: a batch's 10,000 ids looked up (db_load_existing_ids)" \
  "SELECT u.i, d.source FROM unnest((SELECT array_agg('large-' || g) FROM generate_series(500000, 509999) g)) WITH ORDINALITY AS u(ext_id, i)
   JOIN documents d ON d.run_id = $RUN AND d.ext_id = u.ext_id AND d.text IS NOT NULL"
x "load: the run's position moves with a batch (db_loader_commit)" \
  "UPDATE runs SET load_next_doc = load_next_doc + 10000, n_docs = coalesce(n_docs, 0) + 10000 WHERE run_id = $RUN AND load_next_doc = (SELECT load_next_doc FROM runs WHERE run_id = $RUN) AND loaded_at IS NOT NULL RETURNING run_id"
x "dispatch: lease a job (db_job_lease)" \
  "UPDATE jobs SET state = 'leased', attempts = attempts + 1, attempt_token = 1, worker = 'w', leased_at = now() WHERE run_id = $RUN AND job_id = $JOB AND state = 'pending' RETURNING attempts"
x "dispatch: a job's documents (db_job_docs)" \
  "SELECT doc_id, text FROM documents WHERE run_id = $RUN AND job_id = $JOB AND text IS NOT NULL ORDER BY doc_id"
x "dispatch: a job's state on DONE (db_job_state)" "SELECT state FROM jobs WHERE run_id = $RUN AND job_id = $JOB"
x "dispatch: release a job (db_job_release)" \
  "UPDATE jobs SET state = CASE WHEN attempts >= 3 THEN 'failed' ELSE 'pending' END, error = 'x' WHERE run_id = $RUN AND job_id = $JOB AND state = 'leased' AND attempt_token = 1 RETURNING state"
x "start and idle checks: progress (db_progress; linear in the run's jobs)" \
  "SELECT p.jobs, p.jobs_done, r.n_docs, r.n_docs_error FROM run_progress p JOIN runs r USING (run_id) WHERE p.run_id = $RUN"
x "start: pending jobs (db_jobs_pending; linear in the run's jobs)" \
  "SELECT job_id FROM jobs WHERE run_id = $RUN AND state = 'pending' ORDER BY job_id"
x "start: leases to adopt (db_jobs_leased; linear in the run's jobs)" \
  "SELECT job_id, attempt_token, worker FROM jobs WHERE run_id = $RUN AND state = 'leased' ORDER BY job_id"
