#!/usr/bin/env bash
# k8s/seccomp/derpd.json, the seccomp profile derpd ships for Kubernetes and
# podman, is enough for derpd and no more than it says:
#  - every name in it is a real system call (libseccomp knows it);
#  - it allows io_uring, and a copy without the io_uring calls makes derpd
#    exit with its "seccomp filter" message (so the filter really applies);
#  - integration tests that reach nearly every subsystem (relay, TLS, signals
#    and reloads, mesh with DNS, client verification over a unix socket and
#    HTTP) pass with derpd confined by it, the filter compiled by libseccomp
#    from the JSON as runc and crun compile it (seccomp_profile_exec). The
#    ACME client adds no system call of its own (checked with a logging copy
#    of the profile over acme_test); it is left out to keep CI short.
set -euo pipefail
: "${DERPD_BINARY:?}" "${DERPD_SOURCE_ROOT:?}" "${DERPD_BUILD_ROOT:?}"
if [ -z "${SECCOMP_PROFILE_EXEC:-}" ] || [ ! -x "$SECCOMP_PROFILE_EXEC" ]; then
  echo "SKIP: seccomp_profile_exec was not built (libseccomp-dev missing; ./tools/deps.sh installs it)"
  exit 77
fi
profile=$DERPD_SOURCE_ROOT/k8s/seccomp/derpd.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$SECCOMP_PROFILE_EXEC" --check "$profile"
python3 - "$profile" "$tmp/no-io-uring.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
names = {n for rule in p["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" for n in rule["names"]}
need = {"io_uring_setup", "io_uring_enter", "io_uring_register"}
if not need <= names:
    sys.exit(f"FAIL: the profile does not allow {sorted(need - names)}")
if p["defaultAction"] == "SCMP_ACT_ALLOW":
    sys.exit("FAIL: the profile allows everything by default")
for rule in p["syscalls"]:
    rule["names"] = [n for n in rule["names"] if n not in need]
json.dump(p, open(sys.argv[2], "w"))
PY

status=0
"$SECCOMP_PROFILE_EXEC" "$tmp/no-io-uring.json" "$DERPD_BINARY" -a 127.0.0.1:0 -http-port -1 -stun-port 0 \
  -c "$tmp/key" >"$tmp/refused.log" 2>&1 || status=$?
if [ "$status" != 1 ] || ! grep -q "a seccomp filter" "$tmp/refused.log"; then
  echo "FAIL: without io_uring in the profile derpd should exit 1 naming seccomp (exit $status):"
  cat "$tmp/refused.log"
  exit 1
fi

printf '#!/bin/sh\nexec "%s" "%s" "%s" "$@"\n' "$SECCOMP_PROFILE_EXEC" "$profile" "$DERPD_BINARY" \
  >"$tmp/derpd-confined"
chmod +x "$tmp/derpd-confined"
export DERPD_BINARY=$tmp/derpd-confined
export DERPD_VERIFY_STANDINS=$DERPD_SOURCE_ROOT/tests/integration/verify_standins.py
failed=()
for t in relay_test tls_test lifecycle_test mesh_dns_test verify_test; do
  if ! "$DERPD_BUILD_ROOT/tests/integration/$t" >"$tmp/$t.log" 2>&1; then
    failed+=("$t")
    echo "== $t under the profile failed:"
    tail -40 "$tmp/$t.log"
  fi
done
((${#failed[@]} == 0)) || { echo "FAIL: under k8s/seccomp/derpd.json: ${failed[*]}"; exit 1; }
echo "ok: derpd runs its integration tests confined by k8s/seccomp/derpd.json"
