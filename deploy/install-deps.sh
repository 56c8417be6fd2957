#!/usr/bin/env bash
# install-deps.sh - installs what tokshift needs to build and test, from
# Debian's archive and (pinned, via package-lock.json) the npm registry.
# Run as root (or with sudo available).  Idempotent.
#   --packages   only print the Debian packages it installs, one line
#                (.ci/run passes them to apt-get itself).
#   -h, --help   this text (installs nothing).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  "" | --packages) ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "install-deps.sh: unknown option '$1' (see install-deps.sh --help)" >&2; exit 2 ;;
esac

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

PKGS=(build-essential cmake pkg-config
      libopenblas-dev libzmq3-dev libprotobuf-c-dev protobuf-c-compiler
      libpq-dev postgresql postgresql-contrib libzstd-dev zlib1g-dev libpcre2-dev libjansson-dev
      libcurl4-openssl-dev   # tokshift fetch (cli/fetch.c)
      libmicrohttpd-dev   # the coordinator's --metrics endpoint
      ca-certificates curl bc python3
      chromium   # tests/test_report.sh renders the report in headless Chromium
      slurm-wlm munge)   # slurm-wlm, munge: tests/test_slurm.sh runs a one-machine Slurm
# Node.js may come from elsewhere (nodesource bundles npm); Debian's otherwise.
command -v node >/dev/null 2>&1 || PKGS+=(nodejs)
command -v npm >/dev/null 2>&1 || PKGS+=(npm)

if [ "${1:-}" = "--packages" ]; then echo "${PKGS[*]}"; exit 0; fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The llama.cpp reference for the conformance tests (prebuilt CPU binaries
# ship inside the npm packages; --ignore-scripts: nothing is built or fetched
# from anywhere else).
if [ ! -d tests/llamacpp/node_modules/node-llama-cpp ]; then
  echo "install-deps: npm ci in tests/llamacpp" >&2
  (cd tests/llamacpp && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
