#!/usr/bin/env bash
# llamacpp.sh - llama.cpp's own benchmarks beside tokshift's, on the same
# random-weight F32 GGUF, in one run.
#
#   bench/llamacpp.sh build              clone and build llama-bench and
#                                        llama-batched-bench (once)
#   bench/llamacpp.sh run MODEL.gguf     llama-bench (prompt 512, decode 128)
#                                        and llama-batched-bench (npl 8 over a
#                                        shared 256-token prompt, 32 tokens)
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
  *) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 2 ;;
esac
