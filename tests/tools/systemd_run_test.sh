#!/usr/bin/env bash
# The unit under real systemd: a copy of tools/systemd/derpd.service with a
# unique name (in /run/systemd/system, gone at reboot), ExecStart the derpd
# just built, is started (Type=notify: start returns once READY=1 came), probed
# with derpctl over TLS (an IP certificate derpd writes into its
# StateDirectory), reloaded, kept alive by the watchdog, and stopped cleanly.
# Everything it made is removed. Needs systemd as PID 1 and root; skips (77)
# otherwise.
set -euo pipefail
: "${DERPD_SOURCE_ROOT:?}" "${DERPD_BINARY:?}" "${DERPCTL_BINARY:?}"
pid1=$(ps -p 1 -o comm= 2>/dev/null || true)
if [ "$pid1" != "systemd" ]; then
  echo "SKIP: PID 1 is '${pid1:-unknown}', not systemd: the unit cannot be run for real here"
  exit 77
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: installing a system unit needs root"
  exit 77
fi
state=$(systemctl is-system-running 2>/dev/null || true)
case "$state" in
  running | degraded) ;;
  *) echo "SKIP: systemd is '$state', not running"; exit 77 ;;
esac

name=derpd-test-$$-$RANDOM
unit_path=/run/systemd/system/$name.service
# Under /run, not /tmp: the unit's PrivateTmp= would hide the binary.
stage=$(mktemp -d "/run/$name.XXXXXX")
cleanup() {
  systemctl stop "$name.service" >/dev/null 2>&1 || true
  rm -f "$unit_path"
  systemctl daemon-reload || true
  systemctl reset-failed "$name.service" >/dev/null 2>&1 || true
  rm -rf "$stage" "/var/lib/$name" "/var/lib/private/$name"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  systemctl status --no-pager "$name.service" || true
  journalctl --no-pager -u "$name.service" | tail -40 || true
  exit 1
}

chmod 0755 "$stage"
install -m 0755 "$DERPD_BINARY" "$stage/derpd"
# Loopback, any free port, TLS with a self-signed certificate for 127.0.0.1
# that derpd writes into its certificate directory (the StateDirectory).
cat >"$stage/env" <<ENV
DERP_ADDR=127.0.0.1:0
DERP_HOSTNAME=127.0.0.1
DERP_CERT_MODE=manual
DERP_HTTP_PORT=-1
DERP_STUN_PORT=0
DERPD_ARGS="-shards 2 -drain-timeout 2s"
ENV
# The shipped unit with: our binary, our name for the state, our env file, a
# dynamic user (no derpd user on this machine) and a short watchdog.
sed -e "s#^ExecStart=/usr/local/bin/derpd -c /var/lib/derpd/#ExecStart=$stage/derpd -c /var/lib/$name/#" \
  -e "s#^StateDirectory=derpd derpd/certs#StateDirectory=$name $name/certs#" \
  -e "s#^Environment=DERP_CERT_DIR=/var/lib/derpd/certs#Environment=DERP_CERT_DIR=/var/lib/$name/certs#" \
  -e "s#^EnvironmentFile=.*#EnvironmentFile=$stage/env#" \
  -e "s#^User=derpd#DynamicUser=yes#" -e "/^Group=derpd/d" \
  -e "s#^WatchdogSec=.*#WatchdogSec=2s#" \
  "$DERPD_SOURCE_ROOT/tools/systemd/derpd.service" >"$unit_path"
for want in "ExecStart=$stage/derpd" "StateDirectory=$name" "DynamicUser=yes" "WatchdogSec=2s"; do
  grep -q "^$want" "$unit_path" || fail "could not adapt the unit ($want)"
done
systemctl daemon-reload

timeout 60 systemctl start "$name.service" || fail "systemctl start"
[ "$(systemctl is-active "$name.service")" = active ] || fail "not active after start"
status=$(systemctl show -p StatusText --value "$name.service")
echo "STATUS: $status"
port=$(sed -n 's#^listening on https://127\.0\.0\.1:\([0-9]*\).*#\1#p' <<<"$status")
[ -n "$port" ] || fail "STATUS= does not say where derpd listens: $status"
[ -s "/var/lib/$name/derper.key" ] || fail "no key file in the StateDirectory"

probe() { "$DERPCTL_BINARY" probe --timeout 5s --insecure "https://127.0.0.1:$port"; }
probe || fail "derpctl probe"
echo "ok: started, READY, probed on port $port"

# Reload (SIGHUP via ExecReload): still active, still serving.
timeout 30 systemctl reload "$name.service" || fail "systemctl reload"
[ "$(systemctl is-active "$name.service")" = active ] || fail "not active after reload"
journalctl --no-pager -u "$name.service" | grep -q "SIGHUP" || fail "reload not logged"
probe || fail "derpctl probe after reload"
echo "ok: reloaded"

# The watchdog (2 s here) is fed: alive after several periods, pings recorded.
first=$(systemctl show -p WatchdogTimestampMonotonic --value "$name.service")
sleep 5
second=$(systemctl show -p WatchdogTimestampMonotonic --value "$name.service")
[ "$(systemctl is-active "$name.service")" = active ] || fail "the watchdog killed derpd"
[ "${second:-0}" -gt "${first:-0}" ] || fail "no WATCHDOG=1 recorded ($first -> $second)"
[ "$(systemctl show -p NRestarts --value "$name.service")" = 0 ] || fail "derpd restarted"
echo "ok: watchdog fed"

# Stop: SIGTERM, a drain with no clients, exit 0.
timeout 60 systemctl stop "$name.service" || fail "systemctl stop"
result=$(systemctl show -p Result --value "$name.service")
code=$(systemctl show -p ExecMainStatus --value "$name.service")
{ [ "$result" = success ] && [ "$code" = 0 ]; } || fail "stop: Result=$result ExecMainStatus=$code"
journalctl --no-pager -u "$name.service" | grep -q "stopped" || fail "no 'stopped' in the journal"
echo "PASS"
