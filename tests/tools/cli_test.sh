#!/usr/bin/env bash
# The command line as a user meets it: -version prints "derpd <version>",
# -help prints the grouped flags with Go's defaults and exits 0, and an unknown
# flag, a bad value or a derper flag whose feature is not built yet stops
# startup with exit 2 and a message naming the flag.
set -euo pipefail
: "${DERPD_BINARY:?}" "${DERPD_VERSION:?}"
fail() { echo "FAIL: $*"; exit 1; }

for flag in -version --version; do
  out=$("$DERPD_BINARY" "$flag") || fail "$flag exited $?"
  [ "$out" = "derpd $DERPD_VERSION" ] || fail "$flag printed '$out', want 'derpd $DERPD_VERSION'"
done

for flag in -help --help -h; do
  help=$("$DERPD_BINARY" "$flag") || fail "$flag exited $?"
  grep -q '^Usage: derpd' <<<"$help" || fail "$flag: no usage line"
done
grep -qx '  -tcp-keepalive-time duration' <<<"$help" || fail "-help: no '-tcp-keepalive-time duration'"
grep -q '(default ":443")$' <<<"$help" || fail "-help: -a shows no default"
echo "ok: -version and -help"

# Each case: the flag the message must name, then derpd's arguments.
expect_usage_error() {
  local names=$1 rc=0 err
  shift
  err=$("$DERPD_BINARY" "$@" 2>&1 >/dev/null) || rc=$?
  [ "$rc" = 2 ] || fail "derpd $*: exit $rc, want 2 ($err)"
  grep -qF -- "$names" <<<"$err" || fail "derpd $*: message does not name $names: $err"
}
expect_usage_error -no-such-flag -no-such-flag
expect_usage_error -http-port -http-port eighty
expect_usage_error -tcp-user-timeout -tcp-user-timeout=15
expect_usage_error -mesh-with -mesh-with derp2.example.com
expect_usage_error -verify-client-url --verify-client-url=ftp://admit.example/check
expect_usage_error -verify-clients -verify-clients=maybe
expect_usage_error -accept-connection-limit -accept-connection-limit 0
expect_usage_error -max-conns-per-ip --max-conns-per-ip=-5
expect_usage_error -acme-email -acme-email=ops.example.com
expect_usage_error -acme-eab-key -acme-eab-kid=kid-1
expect_usage_error "-certmode gcp needs" -certmode gcp -acme-email ops@example.com
echo "ok: usage errors exit 2 naming the flag"

# -check-config parses as for a run (flags over DERP_* variables) and prints
# the settings without starting; errors are the run's.
out=$(DERP_DOMAIN=n1.derp.example.com DERP_HTTP_PORT=8080 "$DERPD_BINARY" -check-config \
  -http-port 8081 -mesh-with a.example.com -mesh-psk-file /etc/derp/mesh.key) ||
  fail "-check-config exited $?"
grep -qx "  -hostname n1.derp.example.com" <<<"$out" || fail "-check-config hostname: $out"
grep -qx "  -http-port 8081" <<<"$out" || fail "-check-config: the flag must win: $out"
grep -qx "  -mesh-with a.example.com" <<<"$out" || fail "-check-config mesh: $out"
rc=0
err=$(DERP_HTTP_PORT=eighty "$DERPD_BINARY" -check-config 2>&1) || rc=$?
[ "$rc" = 2 ] && grep -q "DERP_HTTP_PORT" <<<"$err" || fail "-check-config with a bad variable: $rc $err"
echo "ok: -check-config"
