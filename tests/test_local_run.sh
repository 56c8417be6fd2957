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
[ $fails -eq 0 ] && echo "test_local_run: ok" || exit 1
