#!/usr/bin/env bash
# test_report.sh - `tokshift report` of two runs, rendered in real headless
# Chromium: two runs of 10 demo stories with the demo model (the second at
# temperature 0.5, another seed) through deploy/local-run.sh on a private
# PostgreSQL; the report of both on shared axes; its CSV files against the
# views; then tests/report_check.mjs loads the page in Chromium over the
# DevTools protocol: no script errors, every plot has axes and a legend and
# spans the page, the AUROC plot is there with a legend and its interval
# bars, nothing wider than the 1,400 px window; a screenshot is
# written to the temporary folder (kept, with the page, when the test fails).
# Skips (77) only when chromium or the test data is absent.
set -u
if [ -z "${TOKSHIFT_TESTDATA:-}" ]; then echo "skip: TOKSHIFT_TESTDATA is not set"; exit 77; fi
CHROMIUM=$(command -v chromium || command -v chromium-browser) || { echo "skip: no chromium (apt-get install chromium)"; exit 77; }
command -v node >/dev/null || { echo "skip: no node"; exit 77; }
[ -f "$TOKSHIFT_TESTDATA/models/stories260K.gguf" ] || { echo "FAIL: the model is missing"; exit 1; }
BIN=${TOKSHIFT_BUILD:-build}/tokshift
TMP=$(mktemp -d); chmod 755 "$TMP"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
cleanup() {
  deploy/pg-cluster.sh stop "$TMP/pg" immediate >/dev/null 2>&1
  if [ $fails -eq 0 ]; then rm -rf "$TMP"; else echo "kept $TMP (report/index.html, screenshot.png)"; fi
}
trap cleanup EXIT
conn=$(deploy/pg-cluster.sh start "$TMP/pg" 2>"$TMP/pgerr") || { fail "no cluster: $(cat "$TMP/pgerr")"; exit 1; }
export TOKSHIFT_MODEL_MIRROR=$TOKSHIFT_TESTDATA/models
head -10 deploy/demo/stories.jsonl > "$TMP/stories.jsonl"  # 10 of the 40 stories, 4 samples: the test stays short
deploy/local-run.sh --db "$conn" --data "$TMP" --workers 2 --run base -- --samples 4 -- "$TMP/stories.jsonl" >/dev/null 2>"$TMP/err1" \
  || fail "run base: $(tail -3 "$TMP/err1")"
deploy/local-run.sh --db "$conn" --data "$TMP" --workers 2 --run cool -- --samples 4 --temperature 0.5 --seed 7 -- "$TMP/stories.jsonl" >/dev/null 2>"$TMP/err2" \
  || fail "run cool: $(tail -3 "$TMP/err2")"

R=$TMP/report
"$BIN" report base cool --db "$conn" --out "$R" 2>"$TMP/rerr" || fail "tokshift report exited $?: $(cat "$TMP/rerr")"
[ "$(grep -o '<svg' "$R/index.html" 2>/dev/null | wc -l)" -eq 7 ] || fail "index.html does not hold 7 <svg> plots"
! grep -qiE '<script|(src|href)="?(https?:)?//|@import|url\(' "$R/index.html" 2>/dev/null || fail "index.html is not self-contained"
psqlc() { psql "$conn" -XAtqc "$1"; }
check_csv() {  # FILE HEADER_START VIEW_QUERY: one CSV row per view row of both runs
  [ -f "$R/$1" ] || { fail "no $1"; return; }
  head -1 "$R/$1" | grep -q "^$2" || fail "$1 header: $(head -1 "$R/$1")"
  local n=$(($(wc -l < "$R/$1") - 1)) want; want=$(psqlc "$3")
  [ "$n" -eq "$want" ] && [ "$want" -gt 0 ] || fail "$1 has $n rows, the view $want"
  for run in base cool; do grep -q "^$run," "$R/$1" || fail "$1 has no row of run $run"; done
}
runs="(SELECT run_id FROM runs WHERE name IN ('base', 'cool'))"
check_csv position_stats.csv 'run,kind,position,n,mean_surprisal' \
  "SELECT count(*) FROM position_stats WHERE run_id IN $runs AND kind IN ('human_cont', 'sample')"
check_csv shift_by_bucket.csv 'run,bucket,positions,n_human' "SELECT count(*) FROM shift_by_bucket WHERE run_id IN $runs"
check_csv calibration.csv 'run,kind,bin,n,mean_confidence,accuracy' "SELECT count(*) FROM calibration WHERE run_id IN $runs"
# Every document with a scored kind is counted once per kind.
check_csv document_gap.csv 'run,kind,gap_lo,gap_hi,docs' \
  "SELECT count(DISTINCT (run_id, k, b)) FROM document_summary, LATERAL (VALUES ('h', floor(mean_gap / 0.1)),
     ('c', floor(mean_gap_human_cont / 0.1)), ('s', floor(mean_gap_samples / 0.1))) v(k, b) WHERE run_id IN $runs AND b IS NOT NULL"
# The AUROC: each run's three statistics, the point estimate the view's
# (sequence_auroc, from mid-ranks in SQL; the report's from C: the same
# quotient of integers and halves, so equal to 1e-12), inside its interval.
check_csv auroc.csv 'run,stat,n_human,n_sample,auroc,lo95,hi95' "SELECT count(*) FROM sequence_auroc WHERE run_id IN $runs"
bad=$(psql "$conn" -XAtq -v ON_ERROR_STOP=1 2>&1 <<SQL
CREATE TEMP TABLE a (run text, stat text, n_human bigint, n_sample bigint, auroc float8, lo95 float8, hi95 float8);
\copy a FROM '$R/auroc.csv' WITH (FORMAT csv, HEADER true)
SELECT count(*) FROM a FULL JOIN (SELECT r.name AS run, v.* FROM sequence_auroc v JOIN runs r USING (run_id)
                                  WHERE r.name IN ('base', 'cool')) v USING (run, stat)
 WHERE a.n_human IS DISTINCT FROM v.n_human OR a.n_sample IS DISTINCT FROM v.n_sample
    OR NOT abs(a.auroc - v.auroc) <= 1e-12 OR NOT (a.lo95 <= a.auroc AND a.auroc <= a.hi95);
SQL
)
[ "$bad" = 0 ] || fail "auroc.csv differs from sequence_auroc, or an interval misses its estimate: $bad"
docs=$(awk -F, '$1 == "base" && $2 == "sample" { s += $5 } END { print s + 0 }' "$R/document_gap.csv")
[ "$docs" = "$(psqlc "SELECT count(*) FROM document_summary WHERE run_id IN (SELECT run_id FROM runs WHERE name = 'base') AND mean_gap_samples IS NOT NULL")" ] \
  || fail "document_gap.csv counts $docs documents with samples in run base"
# Position labels a spreadsheet would read as dates (2-3) are written 2..3.
grep -qE ',[0-9]+-[0-9]+,' "$R/shift_by_bucket.csv" && fail "shift_by_bucket.csv has a date-like label: $(grep -m1 -E ',[0-9]+-[0-9]+,' "$R/shift_by_bucket.csv")"
grep -q ',2\.\.3,' "$R/shift_by_bucket.csv" || fail "shift_by_bucket.csv lacks the bucket 2..3"

# The page in a real browser.
out=$(timeout 60 node tests/report_check.mjs "$CHROMIUM" "$R/index.html" "$TMP/screenshot.png" "$TMP/chrome" \
       "AUROC by statistic" 2>&1) \
  || fail "report_check: $out"
echo "$out" | head -c 2000; echo
[ "$(head -c 8 "$TMP/screenshot.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "no PNG screenshot"
[ -n "${TOKSHIFT_REPORT_SHOT:-}" ] && cp "$TMP/screenshot.png" "$TOKSHIFT_REPORT_SHOT"

# A missing run among several: a clear error, no folder.
"$BIN" report base no-such-run --db "$conn" --out "$TMP/none" 2>"$TMP/rerr"; rc=$?
[ $rc -ne 0 ] || fail "report with a missing run exited 0"
grep -q "no run named 'no-such-run'" "$TMP/rerr" || fail "report with a missing run: $(cat "$TMP/rerr")"
[ ! -e "$TMP/none" ] || fail "report with a missing run created its folder"

[ $fails -eq 0 ] && echo "test_report: ok" || exit 1
