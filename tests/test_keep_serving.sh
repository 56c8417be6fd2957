#!/usr/bin/env bash
# test_keep_serving.sh - one `tokshift-worker --keep-serving` process serves
# consecutive runs without restarting: run a completes, the worker stays; a
# coordinator of another model is refused and the worker stays; run b, on the
# same endpoint, completes with the same worker; SIGTERM then ends it with
# exit 0.  Its --alive-file (the Kubernetes liveness probe's file) is touched
# between runs, with no coordinator, and not while the worker is stopped
# (SIGSTOP: what a hung worker looks like to the probe).
# Real PostgreSQL (deploy/pg-cluster.sh) and ZeroMQ on loopback.
set -u
[ -n "${TOKSHIFT_TESTDATA:-}" ] || { echo "skip: TOKSHIFT_TESTDATA is not set"; exit 77; }
MODEL=$TOKSHIFT_TESTDATA/models/stories260K.gguf
[ -f "$MODEL" ] || { echo "FAIL: the model $MODEL is missing"; exit 1; }
BIN=${TOKSHIFT_BUILD:-build}
TMP=$(mktemp -d); chmod 755 "$TMP"
wpid=""
cleanup() {
  [ -z "$wpid" ] || kill -9 "$wpid" 2>/dev/null
  deploy/pg-cluster.sh stop "$TMP/pg" immediate >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

DB=$(deploy/pg-cluster.sh start "$TMP/pg" 2>"$TMP/pg.err") || { echo "FAIL: pg-cluster.sh: $(cat "$TMP/pg.err")"; exit 1; }
"$BIN/tokshift" db migrate --db "$DB" 2>"$TMP/migrate.err" || { echo "FAIL: migrate: $(cat "$TMP/migrate.err")"; exit 1; }
psqlc() { psql "$DB" -XAtqc "$1"; }
EP=tcp://127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -n 1,4p deploy/demo/stories.jsonl > "$TMP/a.jsonl"
sed -n 5,8p deploy/demo/stories.jsonl > "$TMP/b.jsonl"

# Short heartbeats and reconnect delays, so that the worker notices a
# coordinator gone (and finds the next one) within a second or two.
"$BIN/tokshift-worker" --connect "$EP" --model "$MODEL" --db "$DB" --name keeper --keep-serving \
  --alive-file "$TMP/alive" --heartbeat 200 --reconnect-ms 200 --reconnect-max-ms 1000 2>"$TMP/worker.log" &
wpid=$!
coordinator() {  # RUN [OPTIONS...]: serves RUN to completion (60 s at most)
  local run=$1; shift
  timeout 60 "$BIN/tokshift-coordinator" --run "$run" --db "$DB" --bind "$EP" --heartbeat 200 --job-docs 1 \
    --prefix-lengths 16 --cont-len 8 --samples 2 "$@" >/dev/null 2>"$TMP/coord-$run.log"
}
run_ok() {  # RUN: complete, every job done by the one worker
  local st; st=$(psqlc "SELECT r.status || ' ' || count(*) FILTER (WHERE j.state = 'done' AND j.worker = 'keeper')
                         || '/' || count(*) FROM runs r JOIN jobs j USING (run_id) WHERE r.name = '$1' GROUP BY r.status")
  [ "$st" = "done 4/4" ] || fail "run $1: '$st', want 'done 4/4' (status, jobs done by keeper / jobs)"
}

coordinator a --model "$MODEL" "$TMP/a.jsonl" || fail "run a: the coordinator exited $?: $(tail -3 "$TMP/coord-a.log")"
run_ok a
sleep 0.5
kill -0 "$wpid" 2>/dev/null || fail "the worker exited after run a: $(tail -3 "$TMP/worker.log")"
grep -q 'waiting for the next run' "$TMP/worker.log" || fail "the worker did not say it waits for the next run"

# No coordinator now: the link thread still beats or reconnects at least
# every max(200 ms, 1000 ms), so 2.5 s must move the file's time; stopped,
# 1.5 s must not.
mtime() { python3 -c 'import os, sys; print(os.stat(sys.argv[1]).st_mtime_ns)' "$TMP/alive" 2>/dev/null || echo none; }
t1=$(mtime); sleep 2.5; t2=$(mtime)
[ "$t1" != none ] && [ "$t2" != none ] && [ "$t2" -gt "$t1" ] \
  || fail "--alive-file not touched between runs: mtime $t1, then $t2"
kill -STOP "$wpid"; sleep 0.3; t1=$(mtime); sleep 1.5; t2=$(mtime); kill -CONT "$wpid"
[ "$t1" = "$t2" ] || fail "--alive-file touched while the worker was stopped: $t1, then $t2"

# A run of another model: refused, and the worker keeps waiting.
"$BIN/tokshift-coordinator" --run other --db "$DB" --bind "$EP" --heartbeat 200 --job-docs 1 \
  --model-identity "$(printf '%064d' 0)" "$TMP/b.jsonl" >/dev/null 2>"$TMP/coord-other.log" &
cpid=$!
for _ in $(seq 1 50); do grep -q 'model mismatch' "$TMP/worker.log" && break; sleep 0.2; done
grep -q 'model mismatch' "$TMP/worker.log" || fail "the worker was not refused by the other model's coordinator"
kill -TERM $cpid; wait $cpid
kill -0 "$wpid" 2>/dev/null || fail "the worker exited after another model's run: $(tail -3 "$TMP/worker.log")"

coordinator b --model "$MODEL" "$TMP/b.jsonl" || fail "run b: the coordinator exited $?: $(tail -3 "$TMP/coord-b.log")"
run_ok b
kill -0 "$wpid" 2>/dev/null || fail "the worker exited after run b"
[ "$(grep -c 'joined run' "$TMP/worker.log")" -eq 2 ] || fail "the worker joined $(grep -c 'joined run' "$TMP/worker.log") runs, want 2"

kill -TERM "$wpid"
rc=0; wait "$wpid" || rc=$?
wpid=""
[ $rc -eq 0 ] || fail "the worker exited $rc on SIGTERM"

if [ $fails -ne 0 ]; then tail -n 15 "$TMP/worker.log"; exit 1; fi
echo "test_keep_serving: ok (one worker process served runs a and b, refused another model's run)"
