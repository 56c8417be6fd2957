#!/usr/bin/env bash
# pipeline.sh - the distributed run's figures, each against a reference
# measured in the same run:
#   1. a worker's write path: tokens written per second by db_commit_job
#      (from the jobs table's n_tokens / write_s of a real run) vs a plain
#      binary COPY of the same sequence rows into an index-less logged table
#      (psql);
#      and the fraction of a worker's time spent writing;
#   2. the coordinator's dispatch rate with many no-op workers, and its CPU
#      time per job (so: how many jobs/s it could serve at 100% of a core).
# Usage: bench/pipeline.sh [BUILD_DIR]   (TOKSHIFT_MODEL_MIRROR as for the demo)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
TMP=$(mktemp -d); chmod 755 "$TMP"
trap '"$ROOT/deploy/pg-cluster.sh" stop "$TMP/pg" immediate >/dev/null 2>&1; rm -rf "$TMP"' EXIT
DB=$("$ROOT/deploy/pg-cluster.sh" start "$TMP/pg")
MODEL=$("$ROOT/deploy/fetch-model.sh" "$TMP/models")
"$BUILD/tokshift" db migrate --db "$DB" 2>/dev/null
q() { psql -X -At -v ON_ERROR_STOP=1 "$DB" -c "$1"; }

echo "== 1. the write path (one worker, demo corpus x 5, 4 cuts x 16 samples x 32 tokens)"
for i in 1 2 3 4 5; do sed "s/\"id\":\"demo-/\"id\":\"r$i-demo-/" "$ROOT/deploy/demo/stories.jsonl"; done > "$TMP/corpus.jsonl"
PORT=$((20000 + RANDOM % 20000))
"$BUILD/tokshift-coordinator" --run bench --model "$MODEL" --db "$DB" --bind "tcp://127.0.0.1:$PORT" --job-docs 8 \
  --prefix-lengths 16,32,64,128 --cont-len 32 --samples 16 "$TMP/corpus.jsonl" > /dev/null 2> "$TMP/coord.log" &
C=$!
"$BUILD/tokshift-worker" --connect "tcp://127.0.0.1:$PORT" --model "$MODEL" --db "$DB" 2> "$TMP/worker.log"
wait $C
q "SELECT format('worker: %s tokens in %s jobs; writing %s tokens/s (db_commit_job, incl. rollups, the job update and commit); %s%% of the worker''s time writing (compute %s s, write %s s)',
     sum(n_tokens), count(*), round(sum(n_tokens) / sum(write_s)), round((100 * sum(write_s) / (sum(write_s) + sum(compute_s)))::numeric, 1),
     round(sum(compute_s)::numeric, 2), round(sum(write_s)::numeric, 2)) FROM jobs WHERE run_id = 1"
ROWS=$TMP/rows.bin
psql -X -q "$DB" -c "\\copy (SELECT * FROM sequence_stats_r1) TO '$ROWS' (FORMAT binary)"
q "CREATE TABLE ref_copy (LIKE sequence_stats)"
START=$(date +%s.%N)
psql -X -q "$DB" -c "\\copy ref_copy FROM '$ROWS' (FORMAT binary)"
END=$(date +%s.%N)
N=$(q "SELECT sum(cardinality(token_id)) FROM ref_copy")
REF=$(echo "$N / ($END - $START)" | bc -l)
OURS=$(q "SELECT sum(n_tokens) / sum(write_s) FROM jobs WHERE run_id = 1")
printf 'reference: plain binary COPY of the same %d tokens (sequence rows) into an index-less logged table: %.0f tokens/s (psql \\copy)\n' "$N" "$REF"
printf 'ratio: %.2f of the plain COPY rate\n' "$(echo "$OURS / $REF" | bc -l)"

echo "== 2. dispatch: many no-op workers"
for i in $(seq 1 3000); do printf '{"id": "%d", "text": "x"}\n' "$i"; done > "$TMP/tiny.jsonl"
PORT=$((20000 + RANDOM % 20000))
IDENT=$(printf '%064d' 0)
"$BUILD/tokshift-coordinator" --run dispatch --model-identity "$IDENT" --db "$DB" --bind "tcp://127.0.0.1:$PORT" \
  --job-docs 1 --cont-len 1 --samples 0 --progress 3600 "$TMP/tiny.jsonl" > /dev/null 2> "$TMP/coord2.log" &
C=$!
for _ in $(seq 600); do grep -qs serving "$TMP/coord2.log" && break; sleep 0.1; done
"$BUILD/bench/bench_dispatch" "tcp://127.0.0.1:$PORT" "$DB" "$IDENT" 200
wait $C || true
grep -o 'coordinator CPU.*' "$TMP/coord2.log"
