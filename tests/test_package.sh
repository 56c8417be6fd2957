#!/usr/bin/env bash
# test_package.sh - the .deb: CPack builds it from this build folder, dpkg
# installs it (its dependencies must already be satisfied: they are Debian's
# runtime library packages, which the build's -dev packages pull in), and
# the installed files alone run tokshift: `tokshift --version` prints the
# package's version, and the installed local-run.sh, from an empty folder,
# measures a one-document corpus with the installed programs into a private
# PostgreSQL (installed pg-cluster.sh).  The package is purged on exit.
#
# Skips (77) unless root with dpkg and cpack, or when a tokshift package or
# /usr/bin/tokshift is already there (it would be replaced, then removed).
set -u
skip() { echo "skip: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (dpkg -i)"
for p in dpkg dpkg-deb cpack; do command -v "$p" >/dev/null 2>&1 || skip "$p not found"; done
[ -n "${TOKSHIFT_TESTDATA:-}" ] || skip "TOKSHIFT_TESTDATA is not set"
if dpkg-query -W -f='${Status}' tokshift 2>/dev/null | grep -q 'ok installed'; then
  skip "a tokshift package is installed already; not replacing it (dpkg -P tokshift, then run again)"
fi
for b in tokshift tokshift-coordinator tokshift-worker; do
  [ ! -e "/usr/bin/$b" ] || skip "/usr/bin/$b exists outside any package; not replacing it"
done
MODEL=$(cd "$TOKSHIFT_TESTDATA/models" 2>/dev/null && pwd)/stories260K.gguf
[ -f "$MODEL" ] || { echo "FAIL: the model $MODEL is missing"; exit 1; }
BUILD=$(cd "${TOKSHIFT_BUILD:-build}" && pwd)

TMP=$(mktemp -d); chmod 755 "$TMP"
installed=0
cleanup() {
  [ ! -d "$TMP/data/pg" ] || /usr/share/tokshift/deploy/pg-cluster.sh stop "$TMP/data/pg" immediate >/dev/null 2>&1
  [ $installed = 0 ] || dpkg -P tokshift >/dev/null 2>&1 || echo "warning: could not purge the tokshift package"
  rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# Build and inspect the package.
cpack -G DEB --config "$BUILD/CPackConfig.cmake" -B "$TMP/pkg" >"$TMP/cpack.log" 2>&1 \
  || { fail "cpack: $(tail -5 "$TMP/cpack.log")"; exit 1; }
DEB=$(ls "$TMP"/pkg/tokshift_*.deb 2>/dev/null | head -1)
[ -n "$DEB" ] || { fail "cpack made no tokshift_*.deb: $(ls "$TMP/pkg")"; exit 1; }
VERSION=$(dpkg-deb -f "$DEB" Version)
DEPENDS=$(dpkg-deb -f "$DEB" Depends)
echo "package: $(basename "$DEB"), Depends: $DEPENDS"
for lib in libopenblas0 libzmq5 libpq5 libprotobuf-c1 libjansson4 libpcre2-8-0 libzstd1 zlib1g libcurl4 libmicrohttpd12; do
  echo "$DEPENDS" | grep -qE "(^|, )$lib( |,|$)" || fail "Depends lacks $lib"
done

# Install it; from now on only installed files are used, from an empty folder.
dpkg -i "$DEB" >"$TMP/dpkg.log" 2>&1 || { installed=1; fail "dpkg -i: $(tail -5 "$TMP/dpkg.log")"; exit 1; }
installed=1
cd "$TMP" || exit 1
for f in /usr/bin/tokshift /usr/bin/tokshift-coordinator /usr/bin/tokshift-worker \
         /usr/share/tokshift/sql/roles.sql /usr/share/tokshift/sql/queries/shift_by_position.sql \
         /usr/share/tokshift/deploy/local-run.sh /usr/share/tokshift/deploy/slurm/tokshift.sbatch \
         /usr/share/tokshift/deploy/slurm/tokshift-workers.sbatch; do
  [ -e "$f" ] || fail "the package did not install $f"
done
missing=$(ldd /usr/bin/tokshift /usr/bin/tokshift-coordinator /usr/bin/tokshift-worker 2>&1 | grep 'not found')
[ -z "$missing" ] || fail "unresolved libraries: $missing"
v=$(env -i PATH=/usr/bin:/bin tokshift --version 2>&1)
[ "$v" = "tokshift $VERSION" ] || fail "tokshift --version printed '$v', want 'tokshift $VERSION'"
for b in tokshift-coordinator tokshift-worker; do
  env -i PATH=/usr/bin:/bin "$b" --help >/dev/null 2>&1 || fail "$b --help exited non-zero"
done
for u in tokshift-coordinator.service tokshift-worker@.service; do
  grep -q '^ExecStart=/usr/bin/tokshift-' "/usr/share/tokshift/deploy/systemd/$u" \
    || fail "$u does not run the installed programs: $(grep '^ExecStart' "/usr/share/tokshift/deploy/systemd/$u")"
done
# systemd parses the installed units (a template needs an instance name).
if command -v systemd-analyze >/dev/null 2>&1; then
  mkdir "$TMP/units"
  cp /usr/share/tokshift/deploy/systemd/tokshift-coordinator.service "$TMP/units/"
  cp /usr/share/tokshift/deploy/systemd/tokshift-worker@.service "$TMP/units/tokshift-worker@1.service"
  (cd "$TMP/units" && systemd-analyze verify --man=no ./tokshift-coordinator.service ./tokshift-worker@1.service) \
    >"$TMP/verify.log" 2>&1 || fail "systemd-analyze verify: $(cat "$TMP/verify.log")"
  [ ! -s "$TMP/verify.log" ] || fail "systemd-analyze verify: $(cat "$TMP/verify.log")"
else
  echo "note: systemd-analyze not found; the units were not verified"
fi

# A one-document run, by the installed local-run.sh with the installed programs.
head -1 /usr/share/tokshift/deploy/demo/stories.jsonl > "$TMP/one.jsonl"
out=$(env -u TOKSHIFT_BUILD /usr/share/tokshift/deploy/local-run.sh --data "$TMP/data" --model "$MODEL" \
        --workers 1 --run pkg "$TMP/one.jsonl" 2>"$TMP/run.err")
rc=$?
[ $rc -eq 0 ] || fail "local-run.sh exited $rc: $(tail -5 "$TMP/run.err")"
grep -q 'programs in /usr/bin;' "$TMP/run.err" || fail "local-run.sh did not use /usr/bin: $(grep 'programs in' "$TMP/run.err")"
grep -q 'docs 1/1' "$TMP/run.err" || fail "the document was not measured: $(grep finished "$TMP/run.err")"
echo "$out" | grep -q 'positions  n_human  n_model' || fail "no summary table"
if conn=$(/usr/share/tokshift/deploy/pg-cluster.sh start "$TMP/data/pg" 2>"$TMP/pg.err"); then
  n=$(psql "$conn" -XAtqc "SELECT count(*) FROM token_view WHERE run_id = (SELECT run_id FROM runs WHERE name = 'pkg')")
  d=$(psql "$conn" -XAtqc "SELECT n_tokens FROM documents WHERE run_id = (SELECT run_id FROM runs WHERE name = 'pkg')")
  [ "${n:-0}" -gt "${d:-0}" ] && [ "${d:-0}" -gt 1 ] || fail "run pkg: $n token rows for a document of ${d:-no} tokens"
  echo "run pkg: 1 document of $d tokens, $n token rows (human text and continuations)"
else
  fail "cannot restart the cluster: $(cat "$TMP/pg.err")"
fi

[ $fails -eq 0 ] && echo "test_package: ok" || exit 1
