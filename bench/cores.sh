#!/usr/bin/env bash
# cores.sh - N single-threaded workers against one worker with N threads, on
# the same work: N documents of bench_continue (a document's whole
# measurement with the README's cut settings), measured in one run.
#
#   bench/cores.sh [SHAPE] [DOC_TOKENS] [N]      (defaults: llama 600 nproc)
#
# Layout A runs the N documents one after another with OPENBLAS_NUM_THREADS=N;
# layout B runs N processes at once with 1 thread each.  Prints both wall
# times and B's speed-up (the default layout in deploy/ is the faster one).
# Model construction (random weights) is inside both timings alike.  What it
# is not: a test; on a shared machine the figures move with the load (the
# load average is printed).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${TOKSHIFT_BUILD:-$ROOT/build}/bench/bench_continue
shape=${1:-llama} D=${2:-600} N=${3:-$(nproc)}
[ -x "$BIN" ] || { echo "cores.sh: build first ($BIN missing)" >&2; exit 1; }
now() { date +%s.%N; }
t0=$(now)
for i in $(seq 1 "$N"); do OPENBLAS_NUM_THREADS=$N "$BIN" "$shape" "$D" 1 > /dev/null; done
t1=$(now)
pids=()
for i in $(seq 1 "$N"); do OPENBLAS_NUM_THREADS=1 "$BIN" "$shape" "$D" 1 > /dev/null & pids+=($!); done
for p in "${pids[@]}"; do wait "$p"; done
t2=$(now)
a=$(echo "$t1 - $t0" | bc) b=$(echo "$t2 - $t1" | bc)
echo "shape $shape, $N documents of $D tokens; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "A: 1 worker x $N threads: $a s"
echo "B: $N workers x 1 thread: $b s"
echo "B speed-up over A: $(echo "scale=2; $a / $b" | bc)"
