#!/usr/bin/env bash
# pipeline.sh - the distributed run's figures, each against a reference
# measured in the same run:
#   1. a worker's write path: tokens written per second by db_commit_job
#      (from the jobs table's n_tokens / write_s of a real run) vs a plain
#      binary COPY of the same sequence rows into an index-less logged table
#      (psql);
#      and the fraction of a worker's time spent writing;
#   2. the coordinator's dispatch with 1,000 no-op workers (bench_dispatch,
#      in 2 processes of their own, committing each poll round's jobs in one
#      statement): jobs/s, the coordinator's CPU per job (so: the jobs/s it
#      could serve at 100% of a core) and PostgreSQL's CPU per job for the
#      coordinator's statements (all the cluster's processes, read from
#      /proc before and after, less the no-op workers' backends);
#   3. PostgreSQL's own commit rate on this machine (pgbench's simple-update
#      transactions, durable as a worker's result commit, and asynchronous
#      as the coordinator's bookkeeping), the other ceiling: every job's
#      results commit once;
#   4. bench/simulate_fleet.py with the figures of 2 and 3: where a
#      10^9-token run on 100 and 1,000 workers saturates.
# Usage: bench/pipeline.sh [BUILD_DIR]   (TOKSHIFT_MODEL_MIRROR as for the demo)
# Environment: TOKSHIFT_BENCH_PARTS (default "1 2 3": which parts to run; 4
# follows 2 and 3), TOKSHIFT_BENCH_JOBS (no-op jobs of part 2, default
# 30000), TOKSHIFT_BENCH_WORKERS (default 1000), TOKSHIFT_BENCH_BASELINE (a
# tokshift-coordinator binary, e.g. an earlier version's, measured first in
# part 2 as the reference of the ratios).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
TMP=$(mktemp -d); chmod 755 "$TMP"
trap '"$ROOT/deploy/pg-cluster.sh" stop "$TMP/pg" immediate >/dev/null 2>&1; rm -rf "$TMP"' EXIT
DB=$("$ROOT/deploy/pg-cluster.sh" start "$TMP/pg")
"$BUILD/tokshift" db migrate --db "$DB" 2>/dev/null
q() { psql -X -At -v ON_ERROR_STOP=1 "$DB" -c "$1"; }
PARTS=" ${TOKSHIFT_BENCH_PARTS:-1 2 3} "
SIM_WRITE=()  # part 1's write rate, when it runs, for the simulation

if [[ $PARTS == *" 1 "* ]]; then
MODEL=$("$ROOT/deploy/fetch-model.sh" "$TMP/models")
echo "== 1. the write path (one worker, demo corpus x 5, 4 cuts x 16 samples x 32 tokens)"
for i in 1 2 3 4 5; do sed "s/\"id\":\"demo-/\"id\":\"r$i-demo-/" "$ROOT/deploy/demo/stories.jsonl"; done > "$TMP/corpus.jsonl"
PORT=$((20000 + RANDOM % 12000))
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
SIM_WRITE=(--pg-write-tps "$OURS")

fi

# CPU seconds used so far by the cluster's processes: the postmaster's own
# and its reaped children's (fields 14-17 of /proc/PID/stat), and its live
# children's.
pg_cpu() {
  local pm t=0
  pm=$(head -1 "$TMP/pg/postmaster.pid")
  { awk '{print $14 + $15 + $16 + $17}' "/proc/$pm/stat"
    for c in $(pgrep -P "$pm"); do awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || true; done
  } | awk -v hz="$(getconf CLK_TCK)" '{s += $1} END {printf "%.2f", s / hz}'
}

# One dispatch run of coordinator binary $1 as run $2: sets COORD_MS and
# PG_MS (CPU per job of the coordinator while serving, and of PostgreSQL
# less the no-op workers' backends) and RATE (jobs/s).
dispatch_run() {
  local bin=$1 run=$2 port c coord0 coord1 pg0 pg1 done bench_pg
  port=$((20000 + RANDOM % 12000))
  # (--liveness 30: 1,000 workers on a shared 2-core machine may answer late.)
  "$bin" --run "$run" --model-identity "$IDENT" --db "$DB" --bind "tcp://127.0.0.1:$port" \
    --job-docs 1 --cont-len 1 --samples 0 --liveness 30 --progress 3600 "$TMP/tiny.jsonl" > /dev/null 2> "$TMP/$run.log" &
  c=$!
  # The load first (its CPU is not dispatch's): wait until it is complete.
  for _ in $(seq 600); do [ "$(q "SELECT loaded_at IS NOT NULL FROM runs WHERE name = '$run'")" = t ] && break; sleep 0.1; done
  pg0=$(pg_cpu)
  "$BUILD/bench/bench_dispatch" "tcp://127.0.0.1:$port" "$DB" "$IDENT" "$NW" 2 "$c" | tee "$TMP/$run.out"
  # (From the moment all workers were welcomed: HELLOs are start-up.)
  coord0=$(grep -o 'coord_cpu0_s=[0-9.]*' "$TMP/$run.out" | cut -d= -f2)
  wait "$c" || true
  pg1=$(pg_cpu)
  coord1=$(grep -o 'coordinator CPU [0-9.]*' "$TMP/$run.log" | cut -d' ' -f3)
  done=$(q "SELECT count(*) FROM jobs j JOIN runs r USING (run_id) WHERE r.name = '$run' AND j.state = 'done'")
  COORD_MS=$(echo "($coord1 - $coord0) * 1000 / $done" | bc -l)
  bench_pg=$(grep -o 'bench_pg_cpu_s=[0-9.]*' "$TMP/$run.out" | cut -d= -f2)
  PG_MS=$(echo "($pg1 - $pg0 - $bench_pg) * 1000 / $done" | bc -l)
  RATE=$(grep -o '[0-9]* jobs/s' "$TMP/$run.out" | cut -d' ' -f1)
  printf 'exactly once: %d of %d jobs done in PostgreSQL\n' "$done" "$NJOBS"
  printf 'coordinator: %.2f s CPU loading, starting and welcoming the workers, %.2f s serving: %.4f ms CPU per job, so %.0f jobs/s at 100%% of one core\n' \
    "$coord0" "$(echo "$coord1 - $coord0" | bc -l)" "$COORD_MS" "$(echo "1000 / $COORD_MS" | bc -l)"
  printf 'PostgreSQL: %.2f s CPU in the run, %.2f s of it the no-op workers'"'"' commits; the rest (the coordinator'"'"'s statements and the server'"'"'s background work): %.4f ms per job, so %.0f jobs/s per core\n' \
    "$(echo "$pg1 - $pg0" | bc -l)" "$bench_pg" "$PG_MS" "$(echo "1000 / $PG_MS" | bc -l)"
}

if [[ $PARTS == *" 2 "* ]]; then
NJOBS=${TOKSHIFT_BENCH_JOBS:-30000}
NW=${TOKSHIFT_BENCH_WORKERS:-1000}
IDENT=$(printf '%064d' 0)
awk -v n="$NJOBS" 'BEGIN { for (i = 1; i <= n; i++) printf "{\"id\": \"%d\", \"text\": \"x\"}\n", i }' > "$TMP/tiny.jsonl"
if [ -n "${TOKSHIFT_BENCH_BASELINE:-}" ]; then
  echo "== 2a. the reference: coordinator $TOKSHIFT_BENCH_BASELINE, same workers and jobs"
  dispatch_run "$TOKSHIFT_BENCH_BASELINE" dispatch_ref
  REF_COORD_MS=$COORD_MS REF_PG_MS=$PG_MS REF_RATE=$RATE
fi
echo "== 2. dispatch: $NJOBS no-op jobs, $NW no-op workers (2 processes), loopback"
dispatch_run "$BUILD/tokshift-coordinator" dispatch
if [ -n "${TOKSHIFT_BENCH_BASELINE:-}" ]; then
  printf 'against the reference: %.2fx the jobs/s, %.2fx its coordinator CPU per job, %.2fx its PostgreSQL CPU per job\n' \
    "$(echo "$RATE / $REF_RATE" | bc -l)" "$(echo "$COORD_MS / $REF_COORD_MS" | bc -l)" "$(echo "$PG_MS / $REF_PG_MS" | bc -l)"
fi
fi

if [[ $PARTS == *" 3 "* ]]; then
echo "== 3. PostgreSQL's own commit rate (pgbench simple-update, 4 clients, 5 s each)"
pgbench -q -i -s 1 "$DB" >/dev/null 2>&1
tps() { PGOPTIONS="-c synchronous_commit=$1" pgbench -n -c 4 -j 2 -T 5 -b simple-update "$DB" 2>/dev/null |
          grep -o 'tps = [0-9.]*' | head -1 | cut -d' ' -f3; }
SYNC=$(tps on); ASYNC=$(tps off)
printf 'durable commits (synchronous_commit on, as a worker'"'"'s results): %.0f/s; asynchronous (the coordinator'"'"'s bookkeeping): %.0f/s\n' "$SYNC" "$ASYNC"
fi

if [[ $PARTS == *" 2 "* && $PARTS == *" 3 "* ]]; then
echo "== 4. a 10^9-token run on 100 and 1,000 workers (bench/simulate_fleet.py, the figures above; a worker's"
echo "   tokens/s and the stored bytes per token are its stated defaults: see bench/simulate_fleet.py --help)"
for tpj in 65536 512; do
  echo "-- jobs of $tpj tokens"
  python3 "$ROOT/bench/simulate_fleet.py" --coord-cpu-ms "$COORD_MS" --pg-cpu-ms "$PG_MS" --pg-commits "$SYNC" \
    --tokens-per-job "$tpj" "${SIM_WRITE[@]}"
done
fi
