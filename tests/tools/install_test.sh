#!/usr/bin/env bash
# tools/install.sh --destdir into a staging root: the binaries, unit, sysusers
# file and env file land with the right modes; an existing env file is kept;
# --prefix moves the binaries and the unit's ExecStart; --dry-run changes nothing.
set -euo pipefail
: "${DERPD_SOURCE_ROOT:?}" "${DERPD_BUILD_ROOT:?}"
install_sh=$DERPD_SOURCE_ROOT/tools/install.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
expect_file() {  # root path mode
  [ -f "$1$2" ] || fail "$2 not installed under $1"
  local mode
  mode=$(stat -c %a "$1$2")
  [ "$mode" = "$3" ] || fail "$2 has mode $mode, want $3"
}

root=$tmp/root
out=$("$install_sh" --destdir "$root" "$DERPD_BUILD_ROOT" 2>&1) || { echo "$out"; fail "install.sh"; }
echo "$out"
expect_file "$root" /usr/local/bin/derpd 755
expect_file "$root" /usr/local/bin/derpctl 755
expect_file "$root" /etc/systemd/system/derpd.service 644
expect_file "$root" /etc/sysusers.d/derpd.conf 644
expect_file "$root" /etc/default/derpd 644
cmp -s "$DERPD_BUILD_ROOT/src/derpd/derpd" "$root/usr/local/bin/derpd" || fail "derpd differs"
cmp -s "$DERPD_BUILD_ROOT/tools/derpctl" "$root/usr/local/bin/derpctl" || fail "derpctl differs"
"$root/usr/local/bin/derpd" -version | grep -q '^derpd ' || fail "installed derpd does not run"
grep -q '^ExecStart=/usr/local/bin/derpd ' "$root/etc/systemd/system/derpd.service" ||
  fail "unit ExecStart"
cmp -s "$DERPD_SOURCE_ROOT/tools/systemd/derpd.default" "$root/etc/default/derpd" ||
  fail "env file is not tools/systemd/derpd.default"
for var in DERP_ADDR DERP_HOSTNAME DERP_CERT_MODE DERP_CERT_DIR DERP_STUN_PORT DERPD_ARGS; do
  grep -q "^#$var=" "$root/etc/default/derpd" || fail "env file has no commented $var example"
done
! grep -v '^#' "$root/etc/default/derpd" | grep -q . || fail "env file sets something by default"
# Nothing outside the staging root: no user, no daemon-reload.
grep -qE 'systemd-sysusers|useradd|daemon-reload' <<<"$out" && fail "touched the host: $out"
echo "ok: fresh install"

# An existing env file survives a reinstall, content and mode.
printf 'DERP_HOSTNAME=mine.example.com\n' >"$root/etc/default/derpd"
chmod 600 "$root/etc/default/derpd"
out=$("$install_sh" --destdir "$root" "$DERPD_BUILD_ROOT" 2>&1) || { echo "$out"; fail "reinstall"; }
grep -q 'keeping the existing' <<<"$out" || fail "reinstall did not say it kept the env file"
[ "$(cat "$root/etc/default/derpd")" = "DERP_HOSTNAME=mine.example.com" ] || fail "env file overwritten"
expect_file "$root" /etc/default/derpd 600
echo "ok: existing env file kept"

# --prefix: binaries and ExecStart move together.
root2=$tmp/root2
"$install_sh" --prefix /opt/derpd --destdir "$root2" "$DERPD_BUILD_ROOT" >/dev/null
expect_file "$root2" /opt/derpd/bin/derpd 755
expect_file "$root2" /opt/derpd/bin/derpctl 755
grep -q '^ExecStart=/opt/derpd/bin/derpd -c ' "$root2/etc/systemd/system/derpd.service" ||
  fail "--prefix: ExecStart not rewritten"
[ ! -e "$root2/usr/local/bin/derpd" ] || fail "--prefix: derpd also in /usr/local/bin"
echo "ok: --prefix"

# --dry-run writes nothing, with or without --destdir.
out=$("$install_sh" --dry-run --destdir "$tmp/dry" "$DERPD_BUILD_ROOT" 2>&1) || { echo "$out"; fail "dry run"; }
[ ! -e "$tmp/dry" ] || fail "--dry-run created $tmp/dry"
grep -q "^would run: install -m 0755 .*/usr/local/bin/derpd" <<<"$out" || fail "dry run output: $out"
out=$("$install_sh" --dry-run "$DERPD_BUILD_ROOT" 2>&1) || { echo "$out"; fail "dry run on /"; }
grep -q '^+ ' <<<"$out" && fail "--dry-run ran something: $out"
# Without a build directory it would build the release configuration first.
out=$("$install_sh" --dry-run --destdir "$tmp/dry" 2>&1) || { echo "$out"; fail "dry run, no build dir"; }
grep -q "^would build: meson setup .*/build-release --buildtype=release" <<<"$out" ||
  fail "dry run without a build directory does not build release: $out"
echo "ok: --dry-run"

# Usage errors.
set +e
"$install_sh" --bogus >/dev/null 2>&1
[ $? -eq 2 ] || fail "unknown option not exit 2"
"$install_sh" --destdir "$tmp/none" "$tmp/no-build" >/dev/null 2>&1
[ $? -eq 1 ] || fail "missing build dir not exit 1"
set -e
[ ! -e "$tmp/none/usr" ] || fail "installed something without binaries"
echo "PASS"
