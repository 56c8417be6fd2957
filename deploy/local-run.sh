#!/usr/bin/env bash
# local-run.sh - a whole tokshift run on this machine, in one command.
#
#   deploy/local-run.sh [--db CONNINFO] [--model PATH] [--workers N] [--run NAME]
#                       [--data DIR] [-- COORDINATOR-OPTIONS...] [CORPUS...]
#
# Starts a private PostgreSQL cluster in DIR/pg (DIR defaults to data/ in a
# checkout, ~/.local/share/tokshift when installed; skipped when --db is
# given or PGHOST/PGDATABASE are set), applies the schema, starts a
# coordinator on a free loopback port and N workers (default: one per core),
# runs CORPUS (default: the demo stories) with the demo model (fetched and
# verified by deploy/fetch-model.sh unless --model is given) to completion,
# and prints the summary table: human vs model by position bucket.  The
# cluster is stopped at the end, its data kept; the last lines say how to
# query the results with psql.  Logs go to DIR/logs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROG=local-run.sh
# The programs: TOKSHIFT_BUILD, else a checkout's build/, else (installed by
# `cmake --install` or the .deb: this script is PREFIX/share/tokshift/deploy/)
# PREFIX/bin.  An installed script keeps its data under the user's home.
data=$ROOT/data
if [ -n "${TOKSHIFT_BUILD:-}" ]; then BUILD=$TOKSHIFT_BUILD
elif [ ! -d "$ROOT/build" ] && [ -x "$ROOT/../../bin/tokshift" ]; then
  BUILD=$(cd "$ROOT/../../bin" && pwd); data=${XDG_DATA_HOME:-${HOME:-.}/.local/share}/tokshift
else BUILD=$ROOT/build; fi
die() { echo "$PROG: error: $1" >&2; [ $# -gt 1 ] && echo "$PROG: hint: $2" >&2; exit 1; }

db="" model="" workers=$(nproc) run="local-$(date +%Y%m%d-%H%M%S)" data_given=0 coord_opts=() corpus=()
while [ $# -gt 0 ]; do
  case "$1" in
    --db) db=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --run) run=$2; shift 2 ;;
    --data) data=$2; data_given=1; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; while [ $# -gt 0 ] && [ "$1" != "--" ]; do coord_opts+=("$1"); shift; done; [ $# -gt 0 ] && shift ;;
    -*) die "unknown option '$1'" "see $PROG --help" ;;
    *) corpus+=("$1"); shift ;;
  esac
done
[ ${#corpus[@]} -gt 0 ] || corpus=("$ROOT/deploy/demo/stories.jsonl")
data=$(realpath -m "$data")  # the closing hint must work from any directory
for b in tokshift tokshift-coordinator tokshift-worker; do
  [ -x "$BUILD/$b" ] || die "$BUILD/$b is missing" "build first: cmake -B build -S . && cmake --build build -j"
done
mkdir -p "$data/logs"
[ -n "$model" ] || model=$("$ROOT/deploy/fetch-model.sh" "$data/models")

started_pg=0
if [ -z "$db" ] && [ -z "${PGHOST:-}${PGDATABASE:-}" ]; then
  chmod o+x "$data" 2>/dev/null || true  # the server's user must reach data/pg when we are root
  if [ "$(id -u)" = 0 ] && [ $data_given = 0 ] && ! runuser -u nobody -- test -x "$data" 2>/dev/null; then
    # The checkout sits where an unprivileged server cannot reach (e.g. under /root).
    data=/var/lib/tokshift && mkdir -p "$data/logs" && chmod 755 "$data"
    echo "$PROG: the checkout is not reachable by the PostgreSQL server's user; using $data" >&2
  fi
  db=$("$ROOT/deploy/pg-cluster.sh" start "$data/pg")
  started_pg=1
fi
"$BUILD/tokshift" db migrate --db "$db" 2> "$data/logs/migrate.log" || die "migration failed: $(cat "$data/logs/migrate.log")"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
       || node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
endpoint="tcp://127.0.0.1:$port"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ $started_pg = 1 ]; then "$ROOT/deploy/pg-cluster.sh" stop "$data/pg" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "tokshift: run '$run': ${#corpus[@]} corpus file(s), model $(basename "$model"), $workers worker(s), programs in $BUILD; logs in $data/logs" >&2
"$BUILD/tokshift-coordinator" --run "$run" --model "$model" --db "$db" --bind "$endpoint" \
  --prefix-lengths 16,32,64 --cont-len 32 --samples 8 --job-docs 4 "${coord_opts[@]}" "${corpus[@]}" \
  > "$data/logs/$run-summary.txt" 2> >(tee "$data/logs/$run-coordinator.log" | grep --line-buffered -E 'jobs|error|warn' >&2) &
coord=$!
# One single-threaded worker per core by default: decoding (most of a
# worker's time) is single-threaded code, so N workers x 1 thread beat one
# worker x N threads (bench/cores.sh measures both); with fewer workers than
# cores, each gets its share of BLAS threads for the prefills.
threads=$(( $(nproc) / workers )); [ "$threads" -ge 1 ] || threads=1
for i in $(seq 1 "$workers"); do
  "$BUILD/tokshift-worker" --connect "$endpoint" --model "$model" --db "$db" --name "local-$i" --threads "$threads" \
    2> "$data/logs/$run-worker-$i.log" &
  pids+=($!)
done
rc=0
wait $coord || rc=$?
[ $rc -eq 0 ] || die "the coordinator exited $rc; see $data/logs/$run-coordinator.log"
echo
echo "Human vs model, by position after the cut (run '$run'; surprisal, entropy and gap in nats):"
cat "$data/logs/$run-summary.txt"
echo
if [ $started_pg = 1 ]; then
  echo "Query the results: psql \"\$($ROOT/deploy/pg-cluster.sh start $data/pg)\" -c 'SELECT * FROM shift_by_bucket'"
else
  echo "Query the results: psql \"$db\" -c 'SELECT * FROM shift_by_bucket'"
fi
