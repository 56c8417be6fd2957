#!/usr/bin/env bash
# llamacpp.sh - llama.cpp's own benchmarks beside tokshift's, on the same
# random-weight F32 GGUF, in one run.
#
#   bench/llamacpp.sh build              clone and build llama-bench and
#                                        llama-batched-bench (once)
#   bench/llamacpp.sh run MODEL.gguf     llama-bench (prompt 512, decode 128)
#                                        and llama-batched-bench (npl 8 over a
#                                        shared 256-token prompt, 32 tokens)
#   bench/llamacpp.sh quant              quantized files: a Llama 768/12/12/4/
#                                        2048 model (random F32 weights, a
#                                        synthetic 32000-token SentencePiece
#                                        vocabulary: bench_continue llama),
#                                        llama-quantize'd to Q4_K_M and Q8_0;
#                                        on each file (and the F32 one)
#                                        tokshift's bench_quant file (scoring
#                                        512 tokens, forward alone, 128 decode
#                                        steps) and llama-bench -p 512 -n 128,
#                                        interleaved, REPS times (default 5);
#                                        prints best and median tokens/s and
#                                        the ratios
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
BIN=${LLAMACPP_BIN:-$DIR/build/bin} # llama.cpp's tools, if built elsewhere
REPS=${REPS:-5}
case "${1:-}" in
  build)
    [ -f "$BUNDLE" ] || { echo "llamacpp.sh: $BUNDLE missing (npm ci in tests/llamacpp, or link node_modules)" >&2; exit 1; }
    [ -d "$DIR/src" ] || git clone -q "$BUNDLE" "$DIR/src"
    nice -n 10 cmake -S "$DIR/src" -B "$DIR/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=OFF \
      -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF > "$DIR/configure.log"
    nice -n 10 cmake --build "$DIR/build" -j2 --target llama-bench llama-batched-bench llama-quantize > "$DIR/build.log"
    ls "$DIR/build/bin/llama-bench" "$DIR/build/bin/llama-batched-bench"
    ;;
  run)
    M=${2:?usage: llamacpp.sh run MODEL.gguf}
    "$BIN/llama-bench" -m "$M" -t "$THREADS" -p 512 -n 128 -r 3 -o md
    "$BIN/llama-batched-bench" -m "$M" -t "$THREADS" -c 4096 -b 512 -ub 512 -npp 256 -ntg 32 -npl 1,8 -pps
    ;;
  quant)
    OUT=$DIR/quant
    mkdir -p "$OUT"
    F32=$OUT/llama768.F32.gguf
    [ -f "$F32" ] || TOKSHIFT_BENCH_GGUF=$F32 OPENBLAS_NUM_THREADS=1 "$BUILD/bench/bench_continue" llama 2 1 > /dev/null
    FILES=("$F32")
    for T in Q4_K_M Q8_0; do
      [ -f "$OUT/llama768.$T.gguf" ] ||
        nice -n 10 "$BIN/llama-quantize" "$F32" "$OUT/llama768.$T.gguf" "$T" "$THREADS" > "$OUT/quantize.$T.log" 2>&1
      FILES+=("$OUT/llama768.$T.gguf")
    done
    : > "$OUT/tokshift.txt"
    : > "$OUT/llamacpp.jsonl"
    for r in $(seq "$REPS"); do # interleaved: a shared machine's load hits both
      for F in "${FILES[@]}"; do
        OPENBLAS_NUM_THREADS=$THREADS "$BUILD/bench/bench_quant" file "$F" >> "$OUT/tokshift.txt"
        "$BIN/llama-bench" -m "$F" -t "$THREADS" -p 512 -n 128 -r 1 -o jsonl 2> /dev/null >> "$OUT/llamacpp.jsonl"
      done
    done
    grep -m1 '^CPU SIMD' "$OUT/tokshift.txt"
    python3 - "$OUT/tokshift.txt" "$OUT/llamacpp.jsonl" "$THREADS" << 'PY'
import json, statistics, sys
tok, llc = {}, {}
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "file":
        tok.setdefault(f[1], []).append([float(x) for x in f[2:]])
for line in open(sys.argv[2]):
    j = json.loads(line)
    name = j["model_filename"].rsplit("/", 1)[-1]
    llc.setdefault(name, {}).setdefault("pp" if j["n_prompt"] else "tg", []).append(j["avg_ts"])
def bm(xs): return "%6.1f %6.1f" % (max(xs), statistics.median(xs))
print("tokens/s, %s thread(s), best and median of %d interleaved runs; tokshift in wall time (per CPU second in"
      " brackets, best); llama.cpp: llama-bench -p 512 -n 128 (wall)" % (sys.argv[3], len(next(iter(tok.values())))))
print("%-24s %7s %8s %6s | %-13s %-13s %-13s %5s | %-13s %-13s %5s" % ("file", "file MB", "resid MB", "fwd MB",
      "ts score", "ts prefill", "llama pp512", "ratio", "ts decode", "llama tg128", "ratio"))
for name in sorted(tok, key=lambda n: -tok[n][0][8]):
    rs = tok[name]; col = lambda i: [r[i] for r in rs]
    pp, tg = llc.get(name, {}).get("pp", [0]), llc.get(name, {}).get("tg", [0])
    print("%-24s %7.1f %8.1f %6.1f | %s %s %s %5.2f | %s %s %5.2f" % (name, rs[0][8], min(col(6)), rs[0][7],
          bm(col(0)), bm(col(1)), bm(pp), statistics.median(col(0)) / max(statistics.median(pp), 1e-9), bm(col(2)),
          bm(tg), statistics.median(col(2)) / max(statistics.median(tg), 1e-9)))
    print("%-24s %7s %8s %6s | [%5.1f]       [%5.1f]       %13s %5s | [%5.1f]" % ("", "", "", "", max(col(3)),
          max(col(4)), "", "", max(col(5))))
print("ratio: tokshift / llama.cpp, medians (scoring = all logits + statistics, against llama.cpp's forward pass)")
PY
    ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 2 ;;
esac
