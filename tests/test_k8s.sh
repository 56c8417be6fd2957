#!/usr/bin/env bash
# test_k8s.sh - deploy/k8s/ checked offline (tests/check_k8s.py: YAML, the
# Kubernetes API's models from python3-kubernetes, the references between
# the manifests, the programs' options).  Where a kubectl is installed (it
# is not a dependency), the kustomization is also rendered by `kubectl
# kustomize` and the result checked against the models.
# Skips (77) without a python3 that has python3-yaml and python3-kubernetes.
set -u
BIN=${TOKSHIFT_BUILD:-build}
PY=""
for p in /usr/bin/python3 python3; do
  if "$p" -c 'import yaml, kubernetes' 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || { echo "skip: no python3 with yaml and kubernetes (Debian: apt-get install python3-kubernetes)"; exit 77; }
args=(deploy/k8s --bin "$BIN")
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize deploy/k8s > "$TMP/rendered.yaml" || { echo "FAIL: kubectl kustomize deploy/k8s"; exit 1; }
  args+=(--rendered "$TMP/rendered.yaml")
else
  echo "note: no kubectl here; the kustomization is not rendered"
fi
"$PY" tests/check_k8s.py "${args[@]}"
