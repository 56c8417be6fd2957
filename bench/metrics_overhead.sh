#!/usr/bin/env bash
# metrics_overhead.sh - what the metrics endpoint costs the coordinator: the
# dispatch of N no-op jobs to W no-op workers (bench_dispatch, as in
# pipeline.sh part 2), alternately without --metrics (the reference) and
# with --metrics scraped every 100 ms by curl, R rounds each; prints the
# coordinator's CPU per job and jobs/s of each round, the medians and the
# ratio with/without.  Everything in one private PostgreSQL cluster.
# Usage: bench/metrics_overhead.sh [BUILD_DIR] [N_JOBS] [N_WORKERS] [ROUNDS]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
N=${2:-3000}
W=${3:-200}
R=${4:-3}
TMP=$(mktemp -d); chmod 755 "$TMP"
trap '"$ROOT/deploy/pg-cluster.sh" stop "$TMP/pg" immediate >/dev/null 2>&1; rm -rf "$TMP"' EXIT
DB=$("$ROOT/deploy/pg-cluster.sh" start "$TMP/pg" 2>/dev/null)
"$BUILD/tokshift" db migrate --db "$DB" 2>/dev/null
for i in $(seq 1 "$N"); do printf '{"id": "%d", "text": "x"}\n' "$i"; done > "$TMP/tiny.jsonl"
IDENT=$(printf '%064d' 0)

one() {  # RUN_NAME [COORDINATOR OPTIONS...]: prints "ms_per_job jobs_per_s"
  local run=$1; shift
  local port=$((20000 + RANDOM % 12000))
  "$BUILD/tokshift-coordinator" --run "$run" --model-identity "$IDENT" --db "$DB" --bind "tcp://127.0.0.1:$port" \
    --job-docs 1 --cont-len 1 --samples 0 --progress 3600 "$@" "$TMP/tiny.jsonl" > /dev/null 2> "$TMP/$run.log" &
  local c=$! s=""
  for _ in $(seq 600); do grep -qs serving "$TMP/$run.log" && break; sleep 0.1; done
  local url; url=$(grep -o 'metrics at http[^ ]*' "$TMP/$run.log" | cut -d' ' -f3 || true)
  if [ -n "$url" ]; then
    (while kill -0 $c 2>/dev/null; do curl -s -o /dev/null "$url" || true; sleep 0.1; done) & s=$!
  fi
  local rate; rate=$("$BUILD/bench/bench_dispatch" "tcp://127.0.0.1:$port" "$DB" "$IDENT" "$W" 2>&1 | grep -o '[0-9.]* jobs/s' | cut -d' ' -f1)
  wait $c || true
  [ -z "$s" ] || wait $s || true
  local ms; ms=$(grep -o '([0-9.]* ms per job)' "$TMP/$run.log" | tr -d '(' | cut -d' ' -f1)
  echo "$ms $rate"
}
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

: > "$TMP/off"; : > "$TMP/on"
for r in $(seq 1 "$R"); do
  off=$(one "off$r"); on=$(one "on$r" --metrics 127.0.0.1:0)
  echo "round $r: without --metrics ${off% *} ms/job, ${off#* } jobs/s; with --metrics (scraped every 100 ms) ${on% *} ms/job, ${on#* } jobs/s"
  echo "$off" >> "$TMP/off"; echo "$on" >> "$TMP/on"
done
moff=$(cut -d' ' -f1 "$TMP/off" | median); mon=$(cut -d' ' -f1 "$TMP/on" | median)
roff=$(cut -d' ' -f2 "$TMP/off" | median); ron=$(cut -d' ' -f2 "$TMP/on" | median)
printf 'median of %d rounds, %d jobs to %d no-op workers: coordinator CPU %s ms/job without, %s with (ratio %.3f); %s jobs/s without, %s with (ratio %.3f)\n' \
  "$R" "$N" "$W" "$moff" "$mon" "$(echo "$mon / $moff" | bc -l)" "$roff" "$ron" "$(echo "$ron / $roff" | bc -l)"
