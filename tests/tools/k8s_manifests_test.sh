#!/usr/bin/env bash
# k8s/: both deployments render with kustomize (kubectl kustomize: Debian 12's
# kubectl 1.20 or a newer one), every object is valid for the Kubernetes API's
# schema offline (k8s_validate.py over python3-kubernetes' models: unknown or
# misspelled fields fail), the derpd pods are hardened as README promises, and
# derpd's own configuration code accepts the flags and DERP_* variables they
# pass. No cluster runs here, so nothing is applied.
set -euo pipefail
: "${DERPD_SOURCE_ROOT:?}" "${DERPD_BINARY:?}"
kubectl=$(command -v kubectl || true)
[ -n "$kubectl" ] || { echo "SKIP: no kubectl (Debian package kubernetes-client)"; exit 77; }
/usr/bin/python3 -c 'import kubernetes, yaml' 2>/dev/null ||
  { echo "SKIP: python3-kubernetes is not installed"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for k in base statefulset; do
  echo "== k8s/$k"
  "$kubectl" kustomize "$DERPD_SOURCE_ROOT/k8s/$k" >"$tmp/$k.yaml" 2>"$tmp/$k.err" ||
    { echo "FAIL: kubectl kustomize k8s/$k:"; cat "$tmp/$k.err"; exit 1; }
  /usr/bin/python3 "$DERPD_SOURCE_ROOT/tests/tools/k8s_validate.py" --derpd "$DERPD_BINARY" \
    <"$tmp/$k.yaml"
done
grep -q "^kind: StatefulSet" "$tmp/statefulset.yaml" && ! grep -q "^  name: derpd$" <(
  awk '/^kind: DaemonSet/{d=1} /^---/{d=0} d' "$tmp/statefulset.yaml") ||
  { echo "FAIL: k8s/statefulset must run derpd as a StatefulSet, not a DaemonSet"; exit 1; }
echo "ok: k8s/base and k8s/statefulset render, validate and configure derpd"
