#!/usr/bin/env bash
# test_local_run.sh - the README's main command works: deploy/local-run.sh
# starts its own PostgreSQL, runs the demo corpus with the demo model (from
# the mirror, verified by sha256) through a coordinator and two workers, and
# prints the summary table.
set -u
if [ -z "${TOKSHIFT_TESTDATA:-}" ]; then echo "skip: TOKSHIFT_TESTDATA is not set"; exit 77; fi
[ -f "$TOKSHIFT_TESTDATA/models/stories260K.gguf" ] || { echo "FAIL: the model is missing"; exit 1; }
TMP=$(mktemp -d); chmod 755 "$TMP"; trap 'deploy/pg-cluster.sh stop "$TMP/pg" immediate >/dev/null 2>&1; rm -rf "$TMP"' EXIT
out=$(TOKSHIFT_MODEL_MIRROR=$TOKSHIFT_TESTDATA/models deploy/local-run.sh --data "$TMP" --workers 2 --run readme 2>"$TMP/err")
rc=$?
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
[ $rc -eq 0 ] || fail "local-run.sh exited $rc: $(tail -5 "$TMP/err")"
echo "$out"
echo "$out" | grep -q 'positions  n_human  n_model' || fail "no summary table"
[ "$(echo "$out" | grep -cE '^ +[0-9]+(-[0-9]+)? +[0-9]+ +[0-9]+ ')" -ge 5 ] || fail "summary has fewer than 5 position buckets"
grep -q "docs 40/40" "$TMP/err" || fail "not every demo document was measured: $(grep finished "$TMP/err")"
# The closing hint works from any directory (absolute paths): run its
# cluster command from /.
hint=$(echo "$out" | sed -n 's/^Query the results: psql "\$(\(.*\))" -c .*/\1/p')
[ -n "$hint" ] || fail "no closing hint with the cluster command: $(echo "$out" | tail -2)"
(cd / && eval "$hint" >/dev/null 2>&1) || fail "the closing hint's '$hint' fails outside the checkout"

# tokshift report: the HTML page (one inline SVG per plot) and the CSV files,
# whose rows match the views'.  local-run.sh stopped the cluster; restart it.
BIN=${TOKSHIFT_BUILD:-build}/tokshift
if conn=$(deploy/pg-cluster.sh start "$TMP/pg" 2>"$TMP/pgerr"); then
  R=$TMP/report
  "$BIN" report readme --db "$conn" --out "$R" 2>"$TMP/rerr" || fail "tokshift report exited $?: $(cat "$TMP/rerr")"
  [ -f "$R/index.html" ] || fail "no index.html"
  [ "$(grep -o '<svg' "$R/index.html" 2>/dev/null | wc -l)" -eq 7 ] || fail "index.html does not hold 7 <svg> plots"
  for t in 'Mean surprisal' 'Mean entropy' 'Mean gap' 'Shift by position bucket' 'Accuracy vs confidence' 'Documents by mean gap' \
           'AUROC by statistic'; do
    grep -q "$t" "$R/index.html" 2>/dev/null || fail "index.html lacks the plot '$t'"
  done
  ! grep -qiE '<script|(src|href)="?(https?:)?//|@import|url\(' "$R/index.html" 2>/dev/null || fail "index.html is not self-contained"
  psqlc() { psql "$conn" -XAtqc "$1"; }
  rid=$(psqlc "SELECT run_id FROM runs WHERE name = 'readme'")
  check_csv() {  # FILE HEADER_START EXPECTED_ROWS
    [ -f "$R/$1" ] || { fail "no $1"; return; }
    head -1 "$R/$1" | grep -q "^$2" || fail "$1 header: $(head -1 "$R/$1")"
    local n=$(($(wc -l < "$R/$1") - 1))
    [ "$n" -eq "$3" ] && [ "$3" -gt 0 ] || fail "$1 has $n rows, the view $3"
  }
  check_csv position_stats.csv 'run,kind,position,n,mean_surprisal' \
    "$(psqlc "SELECT count(*) FROM position_stats WHERE run_id = $rid AND kind IN ('human_cont', 'sample')")"
  check_csv shift_by_bucket.csv 'run,bucket,positions,n_human' "$(psqlc "SELECT count(*) FROM shift_by_bucket WHERE run_id = $rid")"
  check_csv calibration.csv 'run,kind,bin,n,mean_confidence,accuracy' "$(psqlc "SELECT count(*) FROM calibration WHERE run_id = $rid")"
  # A run that does not exist: a clear error and a non-zero exit.
  "$BIN" report no-such-run --db "$conn" --out "$TMP/none" 2>"$TMP/rerr"; rc=$?
  [ $rc -ne 0 ] || fail "report of a missing run exited 0"
  grep -q "no run named 'no-such-run'" "$TMP/rerr" || fail "report of a missing run: $(cat "$TMP/rerr")"
  [ ! -e "$TMP/none" ] || fail "report of a missing run created its folder"
else
  fail "cannot restart the cluster: $(cat "$TMP/pgerr")"
fi

[ $fails -eq 0 ] && echo "test_local_run: ok" || exit 1
