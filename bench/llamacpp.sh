#!/usr/bin/env bash
# llamacpp.sh - llama.cpp's own benchmarks beside tokshift's, on the same
# random-weight F32 GGUF, in one run.
#
#   bench/llamacpp.sh build              clone and build llama-bench and
#                                        llama-batched-bench (once)
#   bench/llamacpp.sh run MODEL.gguf     llama-bench (prompt 512, decode 128)
#                                        and llama-batched-bench (npl 8 over a
#                                        shared 256-token prompt, 32 tokens)
#   bench/llamacpp.sh compare [SHAPE...] side by side (default gpt2 smollm
#                                        llama; REPS=3, DOC=1024 tokens):
#       bench_continue writes each shape's random F32 GGUF, then tokshift
#       and llama.cpp run on it interleaved, REPS times; prints min and
#       median of each figure and the ratios of issue 10:
#         sampled tok/s (K = 8 rows of every cut decoded together, C = 32)
#           / llama-batched-bench S_TG at npl 8 over a shared 256-token
#           prompt (goal >= 1.5);
#         whole document (all rows a worker stores / time) / the same rows
#           one sequence at a time through llama.cpp: the document scored
#           at llama-bench's pp512 speed, then each of the (K + 1) rows of
#           every cut alone, its prefix at pp512 speed and its C tokens at
#           tg128 speed (goal >= 3).  The llama.cpp side is modelled from
#           its own measured speeds and computes only the last logits of a
#           prompt, both in its favour.
#       tokshift's figures are process CPU time (1 thread), llama.cpp's
#       wall time: run it on a quiet machine (the load is printed).
#
# The source is the git bundle that the conformance tests' npm package
# (node-llama-cpp) ships: tests/llamacpp/node_modules/node-llama-cpp/llama/
# gitRelease.bundle.  It is cloned and built under the build folder
# (${TOKSHIFT_BUILD:-build}/llamacpp), never into the repository, at nice 10
# (the machine may be shared), CPU only, 1 thread at run time unless
# THREADS says otherwise.  What it is not: a test.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${TOKSHIFT_BUILD:-$ROOT/build}
DIR=$BUILD/llamacpp
BUNDLE=$ROOT/tests/llamacpp/node_modules/node-llama-cpp/llama/gitRelease.bundle
THREADS=${THREADS:-1}
case "${1:-}" in
  build)
    [ -f "$BUNDLE" ] || { echo "llamacpp.sh: $BUNDLE missing (npm ci in tests/llamacpp, or link node_modules)" >&2; exit 1; }
    [ -d "$DIR/src" ] || git clone -q "$BUNDLE" "$DIR/src"
    nice -n 10 cmake -S "$DIR/src" -B "$DIR/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=OFF \
      -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF > "$DIR/configure.log"
    nice -n 10 cmake --build "$DIR/build" -j2 --target llama-bench llama-batched-bench > "$DIR/build.log"
    ls "$DIR/build/bin/llama-bench" "$DIR/build/bin/llama-batched-bench"
    ;;
  run)
    M=${2:?usage: llamacpp.sh run MODEL.gguf}
    "$DIR/build/bin/llama-bench" -m "$M" -t "$THREADS" -p 512 -n 128 -r 3 -o md
    "$DIR/build/bin/llama-batched-bench" -m "$M" -t "$THREADS" -c 4096 -b 512 -ub 512 -npp 256 -ntg 32 -npl 1,8 -pps
    ;;
  compare)
    shift
    BC=$BUILD/bench/bench_continue
    [ -x "$BC" ] || { echo "llamacpp.sh: build tokshift first ($BC missing)" >&2; exit 1; }
    [ -x "$DIR/build/bin/llama-bench" ] || { echo "llamacpp.sh: run 'llamacpp.sh build' first" >&2; exit 1; }
    export LD_LIBRARY_PATH=$DIR/build/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    REPS=${REPS:-3} DOC=${DOC:-1024}
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    shapes=("$@"); [ ${#shapes[@]} -gt 0 ] || shapes=(gpt2 smollm llama)
    for sh in "${shapes[@]}"; do
      g=$tmp/$sh.gguf
      TOKSHIFT_BENCH_GGUF=$g OPENBLAS_NUM_THREADS=$THREADS "$BC" "$sh" 16 1 > "$tmp/$sh.head"
      for r in $(seq 1 "$REPS"); do
        OPENBLAS_NUM_THREADS=$THREADS "$BC" "$sh" "$DOC" 1 > "$tmp/$sh.ts.$r"
        "$DIR/build/bin/llama-bench" -m "$g" -t "$THREADS" -p 512 -n 128 -r 1 -o csv 2>/dev/null > "$tmp/$sh.lb.$r"
        "$DIR/build/bin/llama-batched-bench" -m "$g" -t "$THREADS" -c 4096 -b 512 -ub 512 -npp 256 -ntg 32 -npl 8 \
          -pps --output-format jsonl 2>/dev/null | grep '^{' > "$tmp/$sh.bb.$r"
      done
      head -n 2 "$tmp/$sh.head"
      python3 - "$tmp" "$sh" "$REPS" <<'PY'
import csv, json, statistics, sys, re
tmp, sh, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
fig = {k: [] for k in ("score", "sampled", "document", "pp512", "tg128", "S_TG8", "llama_doc", "r_tg", "r_doc")}
for r in range(1, reps + 1):
    ts = open(f"{tmp}/{sh}.ts.{r}").read()
    num = lambda pat: float(re.search(pat, ts, re.M).group(1))
    D, W, nc, every, C, K = map(int, re.search(r"^document: (\d+) tokens, W (\d+) S \d+, (\d+) cuts every (\d+), C (\d+), K (\d+)", ts, re.M).groups())
    score, sampled, doc = num(r"^score\s+(\d+)"), num(r"^batched\s+(\d+)"), num(r"^document\s+(\d+)")
    pp = tg = None
    for row in csv.DictReader(open(f"{tmp}/{sh}.lb.{r}")):
        if int(row["n_prompt"]) > 0: pp = float(row["avg_ts"])
        else: tg = float(row["avg_ts"])
    stg = [json.loads(l) for l in open(f"{tmp}/{sh}.bb.{r}")][-1]["speed_tg"]
    # The document's cuts (bench_continue's: multiples of `every` with room for C).
    cuts = [c for c in range(every, D - C + 1, every)][:nc]
    rows = (D - 1) + len(cuts) * (K + 1) * C
    t = (D - 1) / pp + sum((K + 1) * (min(c, W - C) / pp + C / tg) for c in cuts)
    for k, v in (("score", score), ("sampled", sampled), ("document", doc), ("pp512", pp), ("tg128", tg),
                 ("S_TG8", stg), ("llama_doc", rows / t), ("r_tg", sampled / stg), ("r_doc", doc / (rows / t))):
        fig[k].append(v)
print(f"{sh}: {reps} repetitions, interleaved; min / median")
names = {"score": "tokshift scoring tok/s", "sampled": "tokshift sampled tok/s (K=8, C=32, batched)",
         "document": "tokshift whole document, stored tok/s", "pp512": "llama-bench pp512 tok/s",
         "tg128": "llama-bench tg128 tok/s", "S_TG8": "llama-batched-bench S_TG tok/s (npl 8, pps)",
         "llama_doc": "llama.cpp one sequence at a time, stored tok/s (modelled)",
         "r_tg": "ratio sampled / S_TG8 (goal >= 1.5)", "r_doc": "ratio whole document (goal >= 3)"}
for k, v in fig.items():
    print(f"  {names[k]:58s} {min(v):9.2f} {statistics.median(v):9.2f}")
PY
    done
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 2 ;;
esac
