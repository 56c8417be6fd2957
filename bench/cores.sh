#!/usr/bin/env bash
# cores.sh - N single-threaded workers against one worker with N threads, on
# the same work: N documents of bench_continue (a document's whole
# measurement with the README's cut settings), measured in one run.
#
#   bench/cores.sh [SHAPE] [DOC_TOKENS] [N]      (defaults: llama 600 nproc)
#
# Layout O runs the N documents one after another on one core (1 thread):
# the single-core reference.  Layout A runs them one after another with
# OPENBLAS_NUM_THREADS=N; layout B runs N processes at once with 1 thread
# each.  Prints the three wall times and A's and B's speed-up over O (the
# default layout in deploy/ is the faster of A and B; the goal is >= 0.9 N).
# Model construction (random weights) is inside both timings alike.  What it
# is not: a test; on a shared machine the figures move with the load (the
# load average is printed).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${TOKSHIFT_BUILD:-$ROOT/build}/bench/bench_continue
shape=${1:-llama} D=${2:-600} N=${3:-$(nproc)}
[ -x "$BIN" ] || { echo "cores.sh: build first ($BIN missing)" >&2; exit 1; }
now() { date +%s.%N; }
head -n 3 < <(OPENBLAS_NUM_THREADS=1 "$BIN" "$shape" 16 1 2>&1) || true
to=$(now)
for i in $(seq 1 "$N"); do OPENBLAS_NUM_THREADS=1 "$BIN" "$shape" "$D" 1 > /dev/null; done
t0=$(now)
for i in $(seq 1 "$N"); do OPENBLAS_NUM_THREADS=$N "$BIN" "$shape" "$D" 1 > /dev/null; done
t1=$(now)
pids=()
for i in $(seq 1 "$N"); do OPENBLAS_NUM_THREADS=1 "$BIN" "$shape" "$D" 1 > /dev/null & pids+=($!); done
for p in "${pids[@]}"; do wait "$p"; done
t2=$(now)
o=$(echo "$t0 - $to" | bc) a=$(echo "$t1 - $t0" | bc) b=$(echo "$t2 - $t1" | bc)
echo "shape $shape, $N documents of $D tokens; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "O: 1 worker x 1 thread (one core): $o s"
echo "A: 1 worker x $N threads: $a s"
echo "B: $N workers x 1 thread: $b s"
echo "A speed-up over O: $(echo "scale=2; $o / $a" | bc)"
echo "B speed-up over O: $(echo "scale=2; $o / $b" | bc)"
echo "B speed-up over A: $(echo "scale=2; $a / $b" | bc)"
