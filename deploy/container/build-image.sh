#!/usr/bin/env bash
# build-image.sh - builds the tokshift container image with podman, from a
# Debian base made here by mmdebstrap: no container registry is needed, only
# Debian's archive (the base's packages and the build's apt-get).
#   --tag NAME        the image's name (default localhost/tokshift:VERSION)
#   --suite S         Debian suite of the base (default bookworm)
#   --mirror URL      Debian archive (default http://deb.debian.org/debian)
#   --security URL    Debian's security archive (default
#                     http://deb.debian.org/debian-security; "" for none)
#   --apt-cache DIR   a folder of .deb files that mmdebstrap and the build's
#                     apt-get take packages from and add the ones they
#                     download to (e.g. /var/cache/apt/archives): a second
#                     build downloads only the package lists
#   --base-only       make and import the base image only
#   -h, --help        this text
# Environment: PODMAN (default "podman"; e.g. "podman --root DIR --runroot
# DIR" for a private store), PODMAN_BUILD_OPTS (more options for `podman
# build`, e.g. "--isolation chroot").  Prints the image's name on stdout.
#
# The base is `mmdebstrap --variant=minbase SUITE` (about Docker Hub's
# debian:SUITE-slim), imported as localhost/tokshift-base:SUITE and reused
# while that image exists.  With Docker Hub at hand, no base is needed:
#   docker build -f deploy/container/Containerfile -t tokshift .
# (the Containerfile's BASE defaults to debian:bookworm-slim).
set -euo pipefail
cd "$(dirname "$0")/../.."

TAG="" SUITE=bookworm MIRROR=http://deb.debian.org/debian SECURITY=http://deb.debian.org/debian-security CACHE="" BASE_ONLY=0
die() { echo "build-image.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG=${2:?--tag needs a name}; shift 2 ;;
    --suite) SUITE=${2:?--suite needs a suite}; shift 2 ;;
    --mirror) MIRROR=${2:?--mirror needs a URL}; shift 2 ;;
    --security) SECURITY=${2?--security needs a URL or ""}; shift 2 ;;
    --apt-cache) CACHE=$(cd "${2:?--apt-cache needs a folder}" && pwd) || die "no folder $2"; shift 2 ;;
    --base-only) BASE_ONLY=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
read -r -a PODMAN <<< "${PODMAN:-podman}"
read -r -a BUILD_OPTS <<< "${PODMAN_BUILD_OPTS:-}"
command -v "${PODMAN[0]}" >/dev/null || die "${PODMAN[0]} not found (Debian: apt-get install podman runc)"
VERSION=$(sed -n 's/^project(tokshift VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
[ -n "$TAG" ] || TAG=localhost/tokshift:${VERSION:-latest}
BASE=localhost/tokshift-base:$SUITE
log() { echo "build-image: [${SECONDS}s] $*" >&2; }

if ! "${PODMAN[@]}" image exists "$BASE"; then
  command -v mmdebstrap >/dev/null || die "mmdebstrap not found (Debian: apt-get install mmdebstrap)"
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
  hooks=()
  if [ -n "$CACHE" ]; then
    # mmdebstrap's own recipe for a package cache (man mmdebstrap, EXAMPLES).
    hooks=(--skip=download/empty --skip=essential/unlink
           --setup-hook='mkdir -p "$1"/var/cache/apt/archives/'
           --setup-hook="sync-in $CACHE /var/cache/apt/archives/"
           --customize-hook="sync-out /var/cache/apt/archives $CACHE")
  fi
  sources=("deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main")
  [ -z "$SECURITY" ] || sources+=("deb $SECURITY $SUITE-security main")
  log "mmdebstrap --variant=minbase $SUITE from $MIRROR"
  # merged-/usr set up as debootstrap does (symlinks, usr-is-merged) rather
  # than by the usrmerge package, which would leave perl in the image.
  mmdebstrap --quiet --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr "${hooks[@]}" \
    --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
    "$SUITE" "$TMP/base.tar" "${sources[@]}" >&2
  "${PODMAN[@]}" import --change 'CMD ["/bin/bash"]' "$TMP/base.tar" "$BASE" >/dev/null
  rm -f "$TMP/base.tar"
  log "base image $BASE"
fi
[ $BASE_ONLY = 0 ] || { echo "$BASE"; exit 0; }

vols=()
[ -z "$CACHE" ] || vols=(--volume "$CACHE:/var/cache/apt/archives")
log "building $TAG"
"${PODMAN[@]}" build --network host --pull=never --build-arg BASE="$BASE" "${vols[@]}" "${BUILD_OPTS[@]}" \
  -f deploy/container/Containerfile -t "$TAG" . >&2
log "image $TAG"
echo "$TAG"
