#!/usr/bin/env bash
# derpd where io_uring is refused, as in a container under its runtime's
# default seccomp profile: a real seccomp filter (seccomp_exec) makes the
# io_uring system calls fail with EPERM, then with ENOSYS. derpd must exit at
# once, before binding anything, with one error naming the cause and the
# shipped profile that fixes it.
set -euo pipefail
: "${DERPD_BINARY:?}" "${SECCOMP_EXEC:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# expect ERRNO TEXT: derpd under the filter fails with TEXT in its one error.
expect() {
  local errno=$1 text=$2 log=$tmp/$1.log status=0
  timeout 10 "$SECCOMP_EXEC" "$errno" "$DERPD_BINARY" -a 127.0.0.1:0 -http-port -1 -stun-port 0 \
    -c "$tmp/key" >"$log" 2>&1 || status=$?
  if [ "$status" != 1 ]; then
    echo "FAIL: errno $errno: exit status $status, want 1:"
    cat "$log"
    exit 1
  fi
  if ! grep -q "error io_uring: io_uring_setup failed .*$text" "$log" ||
     ! grep -q "k8s/seccomp/derpd.json" "$log"; then
    echo "FAIL: errno $errno: the error does not say '$text' and name the profile:"
    cat "$log"
    exit 1
  fi
  if grep -q "listening on\|shards:" "$log"; then
    echo "FAIL: errno $errno: derpd went on starting:"
    cat "$log"
    exit 1
  fi
  [ "$(grep -c . "$log")" = 1 ] || { echo "FAIL: errno $errno: more than one line:"; cat "$log"; exit 1; }
}
expect 1 "a seccomp filter refuses it"
expect 38 "either a seccomp filter hides io_uring"
echo "ok: refused io_uring is reported with its fix"
