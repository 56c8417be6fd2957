#!/usr/bin/env bash
# test_run_queue.sh - one coordinator serves a queue of runs from one fleet
# started once (tokshift-coordinator --submit / --serve-queue, migration
# 013): runs qa and qb are queued (qb later, then given the higher priority
# with `tokshift queue priority`), one `--serve-queue --exit-when-empty`
# coordinator and two `tokshift-worker --keep-serving` processes complete
# both, the coordinator is stopped (SIGTERM) and started again in between
# (it resumes every queued run), and each run's rows equal those of the same
# run served on its own (runs ra, rb: one coordinator per run, as before).
# qb, of the higher priority, is finished first.  A worker of a model that no
# queued run uses is told so (SHUTDOWN, model mismatch).  A coordinator of
# its own for a run the queue server serves is refused (the serving lock).
# Its metrics endpoint shows each run's figures, equal to PostgreSQL's.
# Real PostgreSQL (deploy/pg-cluster.sh) and ZeroMQ on loopback.
set -u
[ -n "${TOKSHIFT_TESTDATA:-}" ] || { echo "skip: TOKSHIFT_TESTDATA is not set"; exit 77; }
MODEL=$TOKSHIFT_TESTDATA/models/stories260K.gguf
[ -f "$MODEL" ] || { echo "FAIL: the model $MODEL is missing"; exit 1; }
BIN=${TOKSHIFT_BUILD:-build}
TMP=$(mktemp -d); chmod 755 "$TMP"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  deploy/pg-cluster.sh stop "$TMP/pg" immediate >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

DB=$(deploy/pg-cluster.sh start "$TMP/pg" 2>"$TMP/pg.err") || { echo "FAIL: pg-cluster.sh: $(cat "$TMP/pg.err")"; exit 1; }
"$BIN/tokshift" db migrate --db "$DB" 2>"$TMP/migrate.err" || { echo "FAIL: migrate: $(cat "$TMP/migrate.err")"; exit 1; }
psqlc() { psql "$DB" -XAtqc "$1"; }
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
EP=tcp://127.0.0.1:$(port)
sed -n 1,6p deploy/demo/stories.jsonl > "$TMP/a.jsonl"
sed -n 7,12p deploy/demo/stories.jsonl > "$TMP/b.jsonl"
SET=(--job-docs 1 --prefix-lengths 16 --cont-len 8 --samples 2 --seed 7)
SCHED=(--db "$DB" --bind "$EP" --heartbeat 200 --progress 1)
worker() {  # NAME: a --keep-serving worker of the model, in the background
  "$BIN/tokshift-worker" --connect "$EP" --model "$MODEL" --db "$DB" --name "$1" --keep-serving \
    --heartbeat 200 --reconnect-ms 200 --reconnect-max-ms 1000 2>"$TMP/worker-$1.log" &
  pids+=($!)
}
digest() {  # RUN: its rows, by document id and sequence
  psqlc "SELECT md5(string_agg(d.ext_id || ':' || s.seq_no || ':' || s.kind || ':' || coalesce(s.cut, -1) || ':' ||
                 s.token_id::text || s.logprob::text || s.entropy::text || s.rank::text || s.top1_logprob::text ||
                 s.varentropy::text, ',' ORDER BY d.ext_id, s.seq_no)) || ' ' || count(*)
           FROM sequence_stats s JOIN documents d USING (run_id, doc_id) JOIN runs r USING (run_id) WHERE r.name = '$1'"
}

# The references: each run on its own coordinator.
worker w1
for r in a b; do
  timeout 60 "$BIN/tokshift-coordinator" --run "r$r" --model "$MODEL" "${SCHED[@]}" "${SET[@]}" "$TMP/$r.jsonl" \
    >/dev/null 2>"$TMP/coord-r$r.log" || fail "run r$r exited $?: $(tail -3 "$TMP/coord-r$r.log")"
done

# The queue: qa, then qb; qb's priority raised above qa's.
for r in a b; do
  "$BIN/tokshift-coordinator" --run "q$r" --model "$MODEL" --db "$DB" --submit "${SET[@]}" "$TMP/$r.jsonl" \
    2>"$TMP/submit-q$r.log" || fail "submitting q$r exited $?: $(tail -3 "$TMP/submit-q$r.log")"
done
[ "$(psqlc "SELECT string_agg(name || ':' || status, ' ' ORDER BY priority DESC, queued_at) FROM runs WHERE queued_at IS NOT NULL")" = "qa:queued qb:queued" ] \
  || fail "the queue after two submits: $(psqlc "SELECT string_agg(name || ':' || status, ' ') FROM runs")"
"$BIN/tokshift" queue priority qb 5 --db "$DB" 2>"$TMP/prio.err" || fail "tokshift queue priority: $(cat "$TMP/prio.err")"
"$BIN/tokshift" queue --db "$DB" >"$TMP/queue.out" 2>&1 || fail "tokshift queue exited $?"
[ "$(awk 'NR > 1 { print $4 }' "$TMP/queue.out" | tr '\n' ' ')" = "qb qa " ] || fail "tokshift queue: $(cat "$TMP/queue.out")"
"$BIN/tokshift" queue priority nosuchrun 1 --db "$DB" 2>/dev/null && fail "a priority for a run not in the queue was accepted"

# Served, stopped after a few jobs, served again until the queue is empty.
"$BIN/tokshift-coordinator" --serve-queue "${SCHED[@]}" 2>"$TMP/coord-q1.log" >/dev/null &
cpid=$!; pids+=($cpid)
for _ in $(seq 1 100); do
  [ "$(psqlc "SELECT count(*) FROM jobs j JOIN runs r USING (run_id) WHERE r.name LIKE 'q%' AND j.state = 'done'")" -ge 2 ] && break
  sleep 0.1
done
kill -TERM $cpid; rc=0; wait $cpid || rc=$?
[ $rc -eq 130 ] || fail "the queue server exited $rc on SIGTERM, want 130: $(tail -3 "$TMP/coord-q1.log")"
worker w2
MPORT=$(port)
timeout 90 "$BIN/tokshift-coordinator" --serve-queue --exit-when-empty "${SCHED[@]}" --metrics "127.0.0.1:$MPORT" \
  --metrics-linger 20 >"$TMP/coord-q2.out" 2>"$TMP/coord-q2.log" &
cpid=$!; pids+=($cpid)
for _ in $(seq 1 600); do
  grep -q 'the queue is empty' "$TMP/coord-q2.log" && break
  kill -0 $cpid 2>/dev/null || break
  sleep 0.1
done
# Its metrics, lingering: each run's final figures equal PostgreSQL's.
curl -fsS "http://127.0.0.1:$MPORT/metrics" >"$TMP/metrics.txt" 2>&1 || fail "scraping the queue server's metrics failed"
for r in qa qb; do
  want=$(psqlc "SELECT count(*) FILTER (WHERE state = 'done') || ' ' || coalesce(sum(n_tokens), 0) FROM jobs j JOIN runs r USING (run_id) WHERE r.name = '$r'")
  got="$(grep "^tokshift_jobs{run=\"$r\",state=\"done\"}" "$TMP/metrics.txt" | cut -d' ' -f2) $(grep "^tokshift_tokens_done_total{run=\"$r\"}" "$TMP/metrics.txt" | cut -d' ' -f2)"
  [ "$got" = "$want" ] || fail "metrics of run $r: jobs done and tokens '$got', PostgreSQL says '$want'"
  grep -q "^tokshift_run_complete{run=\"$r\"} 1" "$TMP/metrics.txt" || fail "metrics: run $r not complete"
done
[ "$(grep -c '^# HELP tokshift_jobs ' "$TMP/metrics.txt")" = 1 ] || fail "metrics: the family tokshift_jobs is not described once"
kill -TERM $cpid 2>/dev/null; rc=0; wait $cpid || rc=$?
[ $rc -eq 0 ] || fail "the queue server exited $rc: $(tail -3 "$TMP/coord-q2.log")"
grep -q "run 'qa' (id [0-9]*, priority 0): serving" "$TMP/coord-q2.log" && grep -q "run 'qb' (id [0-9]*, priority 5): serving" "$TMP/coord-q2.log" \
  || fail "the restarted queue server did not resume both runs: $(grep serving "$TMP/coord-q2.log")"
for r in a b; do
  st=$(psqlc "SELECT r.status || ' ' || count(*) FILTER (WHERE j.state = 'done') || '/' || count(*) FROM runs r JOIN jobs j USING (run_id) WHERE r.name = 'q$r' GROUP BY r.status")
  [ "$st" = "done 6/6" ] || fail "run q$r: '$st', want 'done 6/6'"
  want=$(digest "r$r"); got=$(digest "q$r")
  [ -n "$want" ] && [ "${want#* }" -gt 0 ] && [ "$got" = "$want" ] || fail "run q$r's rows differ from r$r's: $got, want $want"
done
# qb (priority 5) is complete before qa: its last job commits first.
order=$(psqlc "SELECT string_agg(name, ' ' ORDER BY finished_at) FROM runs WHERE name LIKE 'q%'")
[ "$order" = "qb qa" ] || fail "runs finished in the order '$order', want 'qb qa' (priority)"
for w in w1 w2; do grep -q "joined run" "$TMP/worker-$w.log" || fail "worker $w joined no run"; done
[ "$(psqlc "SELECT count(DISTINCT worker) FROM jobs j JOIN runs r USING (run_id) WHERE r.name LIKE 'q%'")" -ge 1 ] || fail "no worker recorded"

# A queue whose one run is of another model (no worker has it, so it stays
# served): a worker is told that no queued run uses its model, and a
# coordinator of its own for that run is refused, naming the queue server's
# session (a run has one coordinator at a time).
FAKE=$(printf 'f%.0s' $(seq 64))
"$BIN/tokshift-coordinator" --run qc --model-identity "$FAKE" --db "$DB" --submit "${SET[@]}" "$TMP/a.jsonl" \
  2>"$TMP/submit-qc.log" || fail "submitting qc exited $?: $(tail -3 "$TMP/submit-qc.log")"
"$BIN/tokshift-coordinator" --serve-queue "${SCHED[@]}" 2>"$TMP/coord-q3.log" >/dev/null &
cpid=$!; pids+=($cpid)
for _ in $(seq 1 60); do grep -q 'no run in the queue can use worker' "$TMP/worker-w1.log" && break; sleep 0.2; done
grep -q 'no run in the queue can use worker' "$TMP/worker-w1.log" \
  || fail "the worker was not told that no queued run fits it: $(tail -3 "$TMP/worker-w1.log"; tail -3 "$TMP/coord-q3.log")"
grep -q "run 'qc' (id [0-9]*, priority 0): serving" "$TMP/coord-q3.log" || fail "qc is not served: $(tail -3 "$TMP/coord-q3.log")"
rc=0
timeout 30 "$BIN/tokshift-coordinator" --run qc --model-identity "$FAKE" --db "$DB" --bind "tcp://127.0.0.1:$(port)" \
  "${SET[@]}" "$TMP/a.jsonl" >/dev/null 2>"$TMP/second.log" || rc=$?
[ $rc -eq 1 ] && grep -q "run 'qc': run [0-9]* is served by another coordinator (PostgreSQL session [0-9]* " "$TMP/second.log" \
  || fail "a second coordinator for a served run exited $rc: $(tail -2 "$TMP/second.log")"
kill -TERM $cpid; wait $cpid

for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
wait 2>/dev/null
pids=()
if [ $fails -ne 0 ]; then tail -n 20 "$TMP/coord-q2.log"; exit 1; fi
echo "test_run_queue: ok (two queued runs on one queue server and two --keep-serving workers, resumed after a stop, rows equal to separate runs)"
