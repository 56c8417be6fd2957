#!/usr/bin/env bash
# test_image.sh - the container image, built and run here:
#   1. deploy/container/build-image.sh builds it (mmdebstrap base from
#      Debian's archive, podman build of deploy/container/Containerfile)
#      into a private podman store in a temp folder (removed on exit);
#   2. from the image: `tokshift --version`, the user (10001, not root), no
#      compiler (nor perl) in the runtime stage;
#   3. a one-document run from the image only: a coordinator container and a
#      --keep-serving worker container (host network, read-only root
#      filesystem as in deploy/k8s/, the model mounted read-only) against
#      this test's PostgreSQL on loopback (deploy/pg-cluster.sh); the run
#      completes with its token rows; the worker's liveness probe, taken
#      from deploy/k8s/worker.yaml, passes in the worker's container, and
#      `podman stop` (SIGTERM to PID 1) ends the worker with exit 0.
#
# Needs root, podman, mmdebstrap, Debian's archive over the network (the
# base's packages and the build's apt-get; the only network it uses), and
# TOKSHIFT_TESTDATA; skips (77) without them.  Takes several minutes: it
# compiles tokshift again inside the build stage.  TOKSHIFT_TEST_IMAGE=0
# skips it.
set -u
skip() { echo "skip: $*"; exit 77; }
[ "${TOKSHIFT_TEST_IMAGE:-1}" != 0 ] || skip "TOKSHIFT_TEST_IMAGE=0"
[ "$(id -u)" -eq 0 ] || skip "needs root (podman's rootful store; mmdebstrap's root mode)"
for p in podman mmdebstrap psql; do
  command -v "$p" >/dev/null 2>&1 || skip "$p not found (Debian: apt-get install podman runc mmdebstrap)"
done
[ -n "${TOKSHIFT_TESTDATA:-}" ] || skip "TOKSHIFT_TESTDATA is not set"
MODEL=$TOKSHIFT_TESTDATA/models/stories260K.gguf
[ -f "$MODEL" ] || { echo "FAIL: the model $MODEL is missing"; exit 1; }
timeout 20 bash -c 'exec 3<>/dev/tcp/deb.debian.org/80' 2>/dev/null || skip "Debian's archive (deb.debian.org:80) is not reachable"

TMP=$(mktemp -d); chmod 755 "$TMP"
PODMAN_ARGS=(--root "$TMP/store" --runroot "$TMP/run")
pm() { podman "${PODMAN_ARGS[@]}" "$@"; }
cleanup() {
  pm rm -a -f -t 0 >/dev/null 2>&1
  deploy/pg-cluster.sh stop "$TMP/pg" immediate >/dev/null 2>&1
  pm rmi -a -f >/dev/null 2>&1
  # The private store's own mounts (overlay layers, its shm), then the folder.
  findmnt -rn -o TARGET | grep -F "$TMP/" | sort -r | while read -r m; do umount "$m" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
step() { echo "[${SECONDS}s] $*"; }

# Limits the containers can have here: podman's defaults raise
# RLIMIT_NOFILE and RLIMIT_NPROC, which a sandbox that may not raise hard
# limits refuses (on the machine this was written on, runc could not set
# even this shell's own NPROC; 4096 processes are plenty for one program).
# runc where installed: crun refuses hosts with cgroup v1 and v2 mounted.
cat > "$TMP/containers.conf" <<EOC
[containers]
default_ulimits = ["nofile=$(ulimit -Sn):$(ulimit -Sn)", "nproc=4096:4096"]
EOC
if command -v runc >/dev/null 2>&1; then printf '[engine]\nruntime = "runc"\n' >> "$TMP/containers.conf"; fi
export CONTAINERS_CONF=$TMP/containers.conf
pm info >"$TMP/info.log" 2>&1 || skip "podman does not work here: $(tail -1 "$TMP/info.log")"

step "building the image (deploy/container/build-image.sh)"
t0=$SECONDS
IMAGE=$(PODMAN="podman ${PODMAN_ARGS[*]}" deploy/container/build-image.sh --tag localhost/tokshift:test 2>"$TMP/build.log")
rc=$?
if [ $rc -ne 0 ]; then
  tail -n 30 "$TMP/build.log"
  if grep -qE 'OCI runtime|setrlimit|cgroups|user namespace|mount.*(permission|not permitted)' "$TMP/build.log"; then
    skip "podman cannot run containers in this environment (see the lines above)"
  fi
  echo "FAIL: build-image.sh exited $rc"; exit 1
fi
step "built $IMAGE in $((SECONDS - t0)) s ($(pm image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"

VERSION=$(sed -n 's/^project(tokshift VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
v=$(pm run --rm "$IMAGE" --version 2>&1)
[ "$v" = "tokshift $VERSION" ] || fail "tokshift --version in the image printed '$v', want 'tokshift $VERSION'"
u=$(pm run --rm "$IMAGE" sh -c 'echo $(id -u):$(id -g); command -v cc gcc cmake perl || true' 2>&1)
[ "$u" = 10001:10001 ] || fail "the image runs as '$u' (and has these?), want 10001:10001 and no compiler or perl"
for b in coordinator worker; do
  pm run --rm "$IMAGE" "$b" --help >/dev/null 2>&1 || fail "entrypoint '$b --help' exited non-zero"
done

# A one-document run, every program from the image.
DB=$(deploy/pg-cluster.sh start "$TMP/pg" 2>"$TMP/pg.err") || { echo "FAIL: pg-cluster.sh: $(cat "$TMP/pg.err")"; exit 1; }
mkdir -m 755 "$TMP/models" "$TMP/corpus"
install -m 0644 "$MODEL" "$TMP/models/"
head -1 deploy/demo/stories.jsonl > "$TMP/corpus/one.jsonl"; chmod 644 "$TMP/corpus/one.jsonl"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# As deploy/k8s/: read-only root filesystem, memory-backed /tmp and
# /run/tokshift, the model and the corpus read-only.
RO=(--network host --read-only --tmpfs /tmp --tmpfs /run/tokshift:mode=1777
    -v "$TMP/models:/models:ro" -v "$TMP/corpus:/corpus:ro")
pm run --rm --network host "$IMAGE" db migrate --db "$DB" >"$TMP/migrate.log" 2>&1 \
  || { echo "FAIL: tokshift db migrate (image): $(tail -3 "$TMP/migrate.log")"; exit 1; }
# The worker as deploy/k8s/worker.yaml runs it (its --alive-file and probe).
read -r ALIVE PROBE < <(python3 - <<'EOP'
import re, shlex, yaml
d = [x for x in yaml.safe_load_all(open("deploy/k8s/worker.yaml")) if x][0]
c = d["spec"]["template"]["spec"]["containers"][0]
alive = re.search(r"--alive-file\s+(\S+)", " ".join(c["command"])).group(1)
print(alive, shlex.join(c["livenessProbe"]["exec"]["command"]))
EOP
)
[ -n "${ALIVE:-}" ] || { echo "FAIL: no --alive-file and liveness probe found in deploy/k8s/worker.yaml"; exit 1; }
pm run -d --name ts-worker "${RO[@]}" "$IMAGE" worker --connect "tcp://127.0.0.1:$PORT" \
  --model /models/stories260K.gguf --db "$DB" --name img-worker --keep-serving --alive-file "$ALIVE" >/dev/null \
  || { echo "FAIL: cannot start the worker container"; exit 1; }
step "coordinator container: a run of one document"
pm run --name ts-coord "${RO[@]}" "$IMAGE" coordinator --run img --model /models/stories260K.gguf --db "$DB" \
  --bind "tcp://127.0.0.1:$PORT" --prefix-lengths 16 --cont-len 8 --samples 2 /corpus/one.jsonl \
  >"$TMP/coord.out" 2>"$TMP/coord.err" &
cpid=$!
for _ in $(seq 1 600); do kill -0 $cpid 2>/dev/null || break; sleep 0.2; done
if kill -0 $cpid 2>/dev/null; then fail "the coordinator did not finish within 120 s"; pm stop -t 2 ts-coord >/dev/null 2>&1; fi
wait $cpid; rc=$?
[ $rc -eq 0 ] || fail "the coordinator container exited $rc: $(tail -5 "$TMP/coord.err")"
grep -q 'docs 1/1' "$TMP/coord.err" || fail "the document was not measured: $(tail -3 "$TMP/coord.err")"
psqlc() { psql "$DB" -XAtqc "$1"; }
st=$(psqlc "SELECT status FROM runs WHERE name = 'img'")
n=$(psqlc "SELECT count(*) FROM token_view WHERE run_id = (SELECT run_id FROM runs WHERE name = 'img')")
d=$(psqlc "SELECT n_tokens FROM documents WHERE run_id = (SELECT run_id FROM runs WHERE name = 'img')")
w=$(psqlc "SELECT string_agg(DISTINCT worker, ',') FROM jobs WHERE run_id = (SELECT run_id FROM runs WHERE name = 'img')")
[ "$st" = done ] && [ "$w" = img-worker ] || fail "run img: status '$st', jobs by '$w', want done by img-worker"
[ "${d:-0}" -gt 1 ] && [ "${n:-0}" -gt "${d:-0}" ] || fail "run img: $n token rows for a document of ${d:-no} tokens"
step "run img: 1 document of $d tokens, $n token rows, by the worker container"

# The worker waits for the next run (--keep-serving); the probe passes.
sleep 2
[ "$(pm inspect -f '{{.State.Running}}' ts-worker)" = true ] || fail "the --keep-serving worker container exited: $(pm logs ts-worker 2>&1 | tail -3)"
eval "pm exec ts-worker $PROBE" || fail "the liveness probe of deploy/k8s/worker.yaml failed in the worker: $PROBE"
pm stop -t 30 ts-worker >/dev/null
rc=$(pm inspect -f '{{.State.ExitCode}}' ts-worker)
[ "$rc" = 0 ] || fail "the worker container exited $rc on SIGTERM (podman stop), want 0: $(pm logs ts-worker 2>&1 | tail -3)"

[ $fails -eq 0 ] && echo "test_image: ok" || exit 1
