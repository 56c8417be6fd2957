#!/usr/bin/env bash
# test_drop_run.sh - `tokshift db drop-run`: two runs in a private
# PostgreSQL; dropping one needs --yes or the run's name typed on a terminal
# (script(1) gives it one), deletes all of that run's rows and drops its
# partition, and leaves the other run exactly as it was; a run that a
# coordinator serves is refused.
set -u
[ -n "${TOKSHIFT_TESTDATA:-}" ] || { echo "skip: TOKSHIFT_TESTDATA is not set"; exit 77; }
MODEL=$TOKSHIFT_TESTDATA/models/stories260K.gguf
[ -f "$MODEL" ] || { echo "FAIL: the model $MODEL is missing"; exit 1; }
command -v script >/dev/null 2>&1 || { echo "skip: script (util-linux) not found"; exit 77; }
BIN=${TOKSHIFT_BUILD:-build}
TS=$(cd "$BIN" && pwd)/tokshift
TMP=$(mktemp -d); chmod 755 "$TMP"
trap 'deploy/pg-cluster.sh stop "$TMP/pg" immediate >/dev/null 2>&1; rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

DB=$(deploy/pg-cluster.sh start "$TMP/pg" 2>"$TMP/pg.err") || { echo "FAIL: pg-cluster.sh: $(cat "$TMP/pg.err")"; exit 1; }
psqlc() { psql "$DB" -XAtqc "$1"; }
sed -n 1,3p deploy/demo/stories.jsonl > "$TMP/c.jsonl"
for run in keep gone; do
  TOKSHIFT_BUILD=$BIN deploy/local-run.sh --db "$DB" --model "$MODEL" --workers 1 --run "$run" --data "$TMP/data" \
    -- --job-docs 1 -- "$TMP/c.jsonl" >/dev/null 2>"$TMP/run-$run.err" || { echo "FAIL: run $run: $(tail -3 "$TMP/run-$run.err")"; exit 1; }
done
GONE=$(psqlc "SELECT run_id FROM runs WHERE name = 'gone'")
# Every row of a run: in each table with a run_id column (partitioned ones
# through their parent), "table=count", so that a table added later is
# checked too.
TABLES=$(psqlc "SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'run_id'
                WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                ORDER BY 1")
echo "$TABLES" | grep -qx sequence_stats || echo "$TABLES" | grep -qx token_stats || fail "no table of token statistics among: $TABLES"
counts() {  # RUN_ID
  local t q=""
  for t in $TABLES; do q="$q || ' $t=' || (SELECT count(*) FROM $t WHERE run_id = $1)"; done
  psqlc "SELECT ''$q"
}
zero() { counts "$1" | grep -q '=[1-9]' && return 1; return 0; }
KEEP=$(psqlc "SELECT run_id FROM runs WHERE name = 'keep'")
keep_before=$(counts "$KEEP"); gone_before=$(counts "$GONE")
keep_digest=$(psqlc "SELECT md5(string_agg(doc_id || ':' || seq_no || ':' || pos || ':' || logprob, ',' ORDER BY doc_id, seq_no, pos)) FROM token_view WHERE run_id = $KEEP")
for kv in runs=1 documents=3 jobs=3; do
  case "$gone_before " in *" $kv "*) ;; *) fail "run gone before the drop: $gone_before (want $kv)" ;; esac
done
parts=$(psqlc "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE pg_get_expr(c.relpartbound, c.oid) = 'FOR VALUES IN (''$GONE'')'")
[ "$parts" -ge 1 ] || fail "run gone has no partition to drop"

# Refusals: no terminal and no --yes; the wrong name typed; a missing run.
"$TS" db drop-run gone --db "$DB" </dev/null 2>"$TMP/e1"; rc=$?
[ $rc -eq 2 ] || fail "without --yes and a terminal: exit $rc, want 2"
grep -q 'without --yes' "$TMP/e1" || fail "no hint about --yes: $(cat "$TMP/e1")"
printf 'keep\n' | script -qec "'$TS' db drop-run gone --db '$DB'" /dev/null >"$TMP/tty1" 2>&1; rc=$?
[ $rc -eq 1 ] || fail "the wrong name typed: exit $rc, want 1: $(tail -2 "$TMP/tty1")"
grep -q "Type 'gone' to confirm" "$TMP/tty1" || fail "no prompt on the terminal: $(cat "$TMP/tty1")"
[ "$(counts "$GONE")" = "$gone_before" ] || fail "a refused drop changed the run: $(counts "$GONE")"
"$TS" db drop-run no-such-run --db "$DB" --yes 2>"$TMP/e2"; rc=$?
[ $rc -eq 1 ] && grep -q "no run named 'no-such-run'" "$TMP/e2" || fail "a missing run: exit $rc, $(cat "$TMP/e2")"

# A run that a coordinator serves (here one waiting for workers) is refused,
# naming the coordinator's session, and stays whole.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN/tokshift-coordinator" --run served --model "$MODEL" --db "$DB" --bind "tcp://127.0.0.1:$PORT" "$TMP/c.jsonl" \
  >/dev/null 2>"$TMP/served.log" &
cpid=$!
for _ in $(seq 1 100); do grep -q 'serving [0-9]* pending jobs' "$TMP/served.log" && break; sleep 0.1; done
"$TS" db drop-run served --db "$DB" --yes 2>"$TMP/e4" </dev/null; rc=$?
[ $rc -eq 1 ] && grep -q "not deleting run 'served': run [0-9]* is served by another coordinator (PostgreSQL session" "$TMP/e4" \
  || fail "dropping a served run: exit $rc, $(cat "$TMP/e4")"
[ "$(psqlc "SELECT count(*) FROM documents d JOIN runs r USING (run_id) WHERE r.name = 'served'")" = 3 ] || fail "the served run lost documents"
kill -TERM $cpid; wait $cpid 2>/dev/null
# Confirmed on a terminal: run gone is gone, partition and all.
printf 'gone\n' | script -qec "'$TS' db drop-run gone --db '$DB'" /dev/null >"$TMP/tty2" 2>&1; rc=$?
[ $rc -eq 0 ] || fail "confirmed drop: exit $rc: $(tail -3 "$TMP/tty2")"
grep -q "deleted run 'gone'.* $parts partition" "$TMP/tty2" || fail "no report of the drop: $(tail -2 "$TMP/tty2")"
zero "$GONE" || fail "rows of run gone remain: $(counts "$GONE")"
left=$(psqlc "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE pg_get_expr(c.relpartbound, c.oid) = 'FOR VALUES IN (''$GONE'')'")
[ "$left" = 0 ] || fail "$left partition(s) of run gone remain"
[ "$(counts "$KEEP")" = "$keep_before" ] || fail "run keep changed: $keep_before -> $(counts "$KEEP")"
[ "$(psqlc "SELECT md5(string_agg(doc_id || ':' || seq_no || ':' || pos || ':' || logprob, ',' ORDER BY doc_id, seq_no, pos)) FROM token_view WHERE run_id = $KEEP")" = "$keep_digest" ] \
  || fail "run keep's token rows changed"

# --yes, by id; then the same id again is a missing run.
"$TS" db drop-run "$KEEP" --db "$DB" --yes 2>"$TMP/e3" </dev/null || fail "drop-run --yes by id: $(cat "$TMP/e3")"
zero "$KEEP" || fail "rows of run keep remain: $(counts "$KEEP")"
"$TS" db drop-run "$KEEP" --db "$DB" --yes 2>/dev/null && fail "dropping a dropped run exited 0"

[ $fails -eq 0 ] && echo "test_drop_run: ok (run gone:$gone_before -> none, $parts partition dropped; run keep unchanged)" || exit 1
