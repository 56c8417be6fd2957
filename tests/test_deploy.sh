#!/usr/bin/env bash
# test_deploy.sh - the supporting pieces of the distributed run, as a user
# runs them: deploy/pg-cluster.sh (a private PostgreSQL cluster: start, query,
# idempotent start, stop, restart keeps the data), deploy/fetch-model.sh (the
# pinned model from a mirror; a corrupted copy is refused with both hashes),
# and the demo corpus deploy/demo/stories.jsonl.  Runs in the project root.
# Without TOKSHIFT_TESTDATA the model part is skipped (exit 77 once the rest
# has passed).
set -u
PG=deploy/pg-cluster.sh
FETCH=deploy/fetch-model.sh
CORPUS=deploy/demo/stories.jsonl
SHA=270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

TMP=$(mktemp -d)
D=$(mktemp -d)   # the cluster's folder: its own mktemp dir, so the server's user can reach it
cleanup() {
  "$PG" stop "$D" immediate >/dev/null 2>&1
  rm -rf "$TMP" "$D"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

for f in "$PG" "$FETCH"; do [ -x "$f" ] || fail "$f is not executable"; done
command -v psql >/dev/null 2>&1 || { echo "FAIL: psql is not installed (deploy/install-deps.sh installs it)"; exit 1; }

# install-deps.sh --help explains and installs nothing (it exits before any
# apt-get); an unknown option is a usage error.
h=$(deploy/install-deps.sh --help 2>&1) && echo "$h" | grep -q -- '--packages' || fail "install-deps.sh --help: $h"
deploy/install-deps.sh --frobnicate >/dev/null 2>&1; [ $? -eq 2 ] || fail "install-deps.sh with an unknown option must exit 2"

# ---------------------------------------------------------------- cluster
conninfo_re='^host=127\.0\.0\.1 port=[0-9]+ dbname=tokshift user=[^ ]+$'
C=$("$PG" start "$D" 2> "$TMP/start.err") || { cat "$TMP/start.err"; fail "pg-cluster.sh start exited non-zero"; }
[ "$(printf '%s\n' "$C" | wc -l)" -eq 1 ] && [[ "$C" =~ $conninfo_re ]] || fail "start did not print one connection string line: '$C'"
q() { psql "$C" -X -A -t -v ON_ERROR_STOP=1 -c "$1" 2>&1; }
[ "$(q 'SELECT 1 + 1')" = 2 ] || fail "query through '$C': $(q 'SELECT 1 + 1')"
[ "$(q 'SHOW listen_addresses')" = 127.0.0.1 ] || fail "listen_addresses is $(q 'SHOW listen_addresses'), not 127.0.0.1"
[ "$(q 'SHOW server_encoding')" = UTF8 ] || fail "server_encoding is not UTF8"
[ "$(q 'SHOW lc_collate')" = C ] || fail "lc_collate is not C"
sock=$(q 'SHOW unix_socket_directories'); case "$sock" in "$D"*) ;; *) fail "unix socket directory '$sock' is not inside $D" ;; esac
[ -s "$D/postgresql.log" ] || fail "no log at $D/postgresql.log"
q 'CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)' >/dev/null || fail "create table"

C2=$("$PG" start "$D" 2>/dev/null) || fail "a second start (already running) exited non-zero"
[ "$C2" = "$C" ] || fail "a second start printed '$C2', not '$C'"
"$PG" status "$D" >/dev/null || fail "status of a running cluster is not 0"
[ "$("$PG" conninfo "$D")" = "$C" ] || fail "conninfo differs from start's line"

"$PG" stop "$D" fast >/dev/null 2>&1 || fail "stop fast exited non-zero"
"$PG" status "$D" >/dev/null 2>&1 && fail "status is 0 after stop"
psql "$C" -X -c 'SELECT 1' >/dev/null 2>&1 && fail "the server still answers after stop"

C3=$("$PG" start "$D" 2> "$TMP/start.err") || { cat "$TMP/start.err"; fail "start after stop exited non-zero"; }
[ "$C3" = "$C" ] || fail "start after stop printed '$C3', not '$C' (the port must be kept)"
[ "$(q 'SELECT x FROM kept')" = 42 ] || fail "the table did not survive a restart: $(q 'SELECT x FROM kept')"
"$PG" stop "$D" >/dev/null 2>&1 || fail "stop exited non-zero"
"$PG" status "$D" >/dev/null 2>&1 && fail "status is 0 after the second stop"

"$PG" start "$TMP/nonempty-$$" --port nope >/dev/null 2>&1 && fail "start accepted --port nope"
mkdir -p "$TMP/nonempty"; touch "$TMP/nonempty/x"
"$PG" start "$TMP/nonempty" > "$TMP/out" 2> "$TMP/err" && fail "start accepted a non-empty folder that is not a cluster"
grep -q 'not empty' "$TMP/err" || fail "no clear error for a non-empty folder: $(cat "$TMP/err")"
[ -s "$TMP/out" ] && fail "a failed start printed on stdout"

# ---------------------------------------------------------------- corpus
command -v node >/dev/null 2>&1 || fail "node is not installed (deploy/install-deps.sh installs it)"
node -e '
const fs = require("fs");
const buf = fs.readFileSync(process.argv[1]);
if (!buf.equals(Buffer.from(buf.toString("utf8"), "utf8"))) throw new Error("not valid UTF-8");
const lines = buf.toString("utf8").split("\n");
if (lines.pop() !== "") throw new Error("the last line does not end with a newline");
const ids = new Set();
lines.forEach((l, i) => {
  let o;
  try { o = JSON.parse(l); } catch (e) { throw new Error(`line ${i + 1}: ${e.message}`); }
  if (o === null || typeof o !== "object" || Array.isArray(o)) throw new Error(`line ${i + 1}: not an object`);
  if (typeof o.text !== "string" || !o.text.trim()) throw new Error(`line ${i + 1}: no text`);
  if (typeof o.id !== "string" || !o.id) throw new Error(`line ${i + 1}: no id`);
  if (ids.has(o.id)) throw new Error(`line ${i + 1}: id ${o.id} twice`);
  ids.add(o.id);
  if (typeof o.title !== "string" || !o.title) throw new Error(`line ${i + 1}: no title`);
  if (o.words !== o.text.split(/\s+/).filter(Boolean).length) throw new Error(`line ${i + 1}: words is not the word count of the text`);
});
if (lines.length < 40) throw new Error(`${lines.length} stories, fewer than 40`);
' "$CORPUS" 2> "$TMP/err" || fail "$CORPUS: $(tail -1 "$TMP/err")"

# ------------------------------------------------------------------ model
if [ -z "${TOKSHIFT_TESTDATA:-}" ]; then
  if [ "$fails" -eq 0 ]; then echo "skip: the model part (TOKSHIFT_TESTDATA is not set); the rest passed"; exit 77; fi
  echo "$fails failure(s)"; exit 1
fi
MIRROR=$TOKSHIFT_TESTDATA/models
[ -f "$MIRROR/stories260K.gguf" ] || { echo "FAIL: $MIRROR/stories260K.gguf is missing"; exit 1; }
# Nothing here may reach the network: a download would fail at once.
export TOKSHIFT_MODEL_URL=file:///nonexistent/stories260K.gguf

dest=$TMP/models
p=$(TOKSHIFT_MODEL_MIRROR=$MIRROR "$FETCH" "$dest" 2> "$TMP/err") || fail "fetch-model.sh from the mirror exited non-zero: $(cat "$TMP/err")"
[ "$p" = "$(cd "$dest" 2>/dev/null && pwd -P)/stories260K.gguf" ] || fail "fetch-model.sh printed '$p', not the model's path in $dest"
cmp -s "$dest/stories260K.gguf" "$MIRROR/stories260K.gguf" || fail "the copy differs from the mirror's file"
p2=$(env -u TOKSHIFT_MODEL_MIRROR "$FETCH" "$dest" 2>/dev/null) || fail "fetch-model.sh with the model already in place exited non-zero"
[ "$p2" = "$p" ] || fail "second fetch printed '$p2', not '$p'"

# A corrupted copy in the mirror is refused, naming both hashes.
mkdir -p "$TMP/badmirror"
cp "$MIRROR/stories260K.gguf" "$TMP/badmirror/"
printf 'X' | dd of="$TMP/badmirror/stories260K.gguf" bs=1 seek=4096 conv=notrunc 2>/dev/null
bad=$(sha256sum "$TMP/badmirror/stories260K.gguf" | awk '{print $1}')
[ "$bad" != "$SHA" ] || fail "the corrupted copy still has the right sha256"
TOKSHIFT_MODEL_MIRROR=$TMP/badmirror "$FETCH" "$TMP/m2" > "$TMP/out" 2> "$TMP/err" && fail "fetch-model.sh accepted a corrupted mirror copy"
grep -q "$SHA" "$TMP/err" && grep -q "$bad" "$TMP/err" || fail "the refusal does not name both hashes: $(cat "$TMP/err")"
[ -e "$TMP/m2/stories260K.gguf" ] && fail "the corrupted copy was put in place"
[ -s "$TMP/out" ] && fail "a refused fetch printed on stdout"

# A wrong file already in DEST is refused too, and left alone.
mkdir -p "$TMP/m3"; cp "$TMP/badmirror/stories260K.gguf" "$TMP/m3/"
TOKSHIFT_MODEL_MIRROR=$MIRROR "$FETCH" "$TMP/m3" >/dev/null 2> "$TMP/err" && fail "fetch-model.sh accepted a wrong file in DEST"
grep -q "$bad" "$TMP/err" || fail "the refusal of DEST's wrong file does not name its hash"

# No copy anywhere and no network: a clear error, nothing left behind.
TOKSHIFT_MODEL_MIRROR=$TMP/empty "$FETCH" "$TMP/m4" >/dev/null 2> "$TMP/err" && fail "fetch-model.sh succeeded with no source"
grep -q 'could not download' "$TMP/err" || fail "no clear error when the download fails: $(cat "$TMP/err")"
[ -z "$(ls -A "$TMP/m4" 2>/dev/null)" ] || fail "a failed download left files in DEST: $(ls -A "$TMP/m4")"
# The download path itself (curl, verified before it is moved into place).
if command -v curl >/dev/null 2>&1; then
  p5=$(TOKSHIFT_MODEL_URL="file://$(cd "$MIRROR" && pwd -P)/stories260K.gguf" "$FETCH" "$TMP/m5" 2> "$TMP/err") || fail "download through curl (file://) failed: $(cat "$TMP/err")"
  cmp -s "$p5" "$MIRROR/stories260K.gguf" || fail "the downloaded file differs"
  TOKSHIFT_MODEL_URL="file://$TMP/badmirror/stories260K.gguf" "$FETCH" "$TMP/m6" >/dev/null 2> "$TMP/err" && fail "a corrupted download was accepted"
  grep -q "$bad" "$TMP/err" || fail "the refused download does not name its hash"
  [ -z "$(ls -A "$TMP/m6" 2>/dev/null)" ] || fail "a refused download left files in DEST"
fi

if [ "$fails" -ne 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo "ok"
