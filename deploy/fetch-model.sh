#!/usr/bin/env bash
# fetch-model.sh [DEST_DIR] - obtains the demo model stories260K.gguf (pinned
# by its sha256) and prints its path on stdout.
#
#   1. DEST_DIR/stories260K.gguf, if it is there with the right sha256;
#   2. else a copy from the folder $TOKSHIFT_MODEL_MIRROR, if it holds one;
#   3. else a download from Hugging Face (ggml-org/tiny-llamas) with curl.
#
# Every copy is verified before it is moved into place; a file with the wrong
# sha256 is refused, wherever it is, with both hashes in the message.
# DEST_DIR defaults to data/models under the repository root (ignored by git).
# TOKSHIFT_MODEL_URL overrides the download address (any URL curl takes).
# Other models (any GGUF file or Hugging Face directory, verified against
# the Hub's SHA-256s): `tokshift fetch REPO[:FILE]` (README: Using a real model).
set -euo pipefail
umask 022

PROG=fetch-model.sh
NAME=stories260K.gguf
SHA256=270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d
URL=${TOKSHIFT_MODEL_URL:-https://huggingface.co/ggml-org/tiny-llamas/resolve/main/$NAME}

die() {  # die MESSAGE [HINT]
  echo "$PROG: error: $1" >&2
  if [ $# -gt 1 ] && [ -n "$2" ]; then echo "$PROG: hint: $2" >&2; fi
  exit 1
}

case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
  -*) echo "$PROG: unknown option '$1' (usage: $PROG [DEST_DIR])" >&2; exit 2 ;;
esac
[ $# -le 1 ] || { echo "$PROG: too many arguments (usage: $PROG [DEST_DIR])" >&2; exit 2; }

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | awk '{print $1}'
  elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | awk '{print $1}'
  else die "neither sha256sum nor shasum is installed" "install coreutils"
  fi
}
# verify FILE LABEL [HINT]: refuse FILE (named LABEL) unless its sha256 is the pinned one.
verify() {
  local got; got=$(sha256_of "$1")
  [ "$got" = "$SHA256" ] || die "$2 has the wrong sha256: expected $SHA256, got $got" \
    "${3:-it is not the pinned $NAME (damaged, truncated or another model): remove or replace it}"
}

DEST=${1:-$(cd "$(dirname "$0")/.." && pwd -P)/data/models}
mkdir -p "$DEST" || die "cannot create $DEST"
DEST=$(cd "$DEST" && pwd -P)
OUT=$DEST/$NAME

if [ -e "$OUT" ]; then
  verify "$OUT" "$OUT"
  echo "$OUT"; exit 0
fi

TMP=$(mktemp "$DEST/.$NAME.XXXXXX") || die "cannot write to $DEST"
trap 'rm -f "$TMP"' EXIT

MIRROR=${TOKSHIFT_MODEL_MIRROR:-}
if [ -n "$MIRROR" ] && [ -f "$MIRROR/$NAME" ]; then
  verify "$MIRROR/$NAME" "$MIRROR/$NAME (TOKSHIFT_MODEL_MIRROR)" "fix the mirror $MIRROR (TOKSHIFT_MODEL_MIRROR), or unset TOKSHIFT_MODEL_MIRROR to download"
  cp "$MIRROR/$NAME" "$TMP"
  verify "$TMP" "the copy of $MIRROR/$NAME"
  echo "$PROG: copied $NAME from $MIRROR" >&2
else
  if [ -n "$MIRROR" ]; then echo "$PROG: $MIRROR (TOKSHIFT_MODEL_MIRROR) has no $NAME" >&2; fi
  command -v curl >/dev/null 2>&1 || die "curl is not installed, and $NAME is neither in $DEST nor in a mirror" \
    "install curl, or set TOKSHIFT_MODEL_MIRROR to a folder holding $NAME"
  echo "$PROG: downloading $URL" >&2
  curl -fsSL --retry 2 --connect-timeout 20 --max-time 600 -o "$TMP" "$URL" \
    || die "could not download $URL (offline?)" \
         "put $NAME (sha256 $SHA256) in $DEST, or set TOKSHIFT_MODEL_MIRROR to a folder holding it"
  verify "$TMP" "the download from $URL" "the server sent something else; try again later, or use a mirror (TOKSHIFT_MODEL_MIRROR)"
fi
chmod 644 "$TMP"
mv -f "$TMP" "$OUT"
trap - EXIT
echo "$OUT"
