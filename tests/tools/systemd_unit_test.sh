#!/usr/bin/env bash
# tools/systemd/derpd.service passes `systemd-analyze verify` (a copy whose
# ExecStart is the derpd just built), its system-call filter keeps io_uring and
# the other calls derpd makes, and its exposure score stays low.
set -euo pipefail
: "${DERPD_SOURCE_ROOT:?}" "${DERPD_BINARY:?}"
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze is not installed (Debian package systemd)"
  exit 77
fi
unit_src=$DERPD_SOURCE_ROOT/tools/systemd/derpd.service
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unit=$tmp/derpd.service
sed "s#^ExecStart=/usr/local/bin/derpd #ExecStart=$DERPD_BINARY #" "$unit_src" >"$unit"
grep -q "^ExecStart=$DERPD_BINARY " "$unit" || { echo "FAIL: no ExecStart=/usr/local/bin/derpd to rewrite"; exit 1; }

# 1. verify: exit 0 and nothing said about our unit (it may talk about others on the host).
if ! out=$(systemd-analyze verify "$unit" 2>&1); then
  echo "$out"
  echo "FAIL: systemd-analyze verify"
  exit 1
fi
if grep -E "derpd\.service|$tmp" <<<"$out"; then
  echo "FAIL: systemd-analyze verify has something to say about derpd.service"
  exit 1
fi
echo "ok: systemd-analyze verify"

# 2. The system calls the unit allows: the first SystemCallFilter= line is an
# allow list, later plain lines add to it, later ~ lines take away.
expand() {  # names and @groups -> system calls, one per line
  local name member
  for name in "$@"; do
    if [[ $name == @* ]]; then
      while read -r member; do
        [[ -z $member || $member == \#* ]] || expand "$member"
      done < <(systemd-analyze syscall-filter "$name" 2>/dev/null | tail -n +2)
    else
      echo "$name"
    fi
  done
}
declare -A allowed=()
while IFS= read -r line; do
  value=${line#SystemCallFilter=}
  deny=false
  if [[ $value == ~* ]]; then deny=true; value=${value#\~}; fi
  # shellcheck disable=SC2086  # split the list
  for call in $(expand $value); do
    if $deny; then unset "allowed[$call]"; else allowed[$call]=1; fi
  done
done < <(grep '^SystemCallFilter=' "$unit")
((${#allowed[@]} > 100)) || { echo "FAIL: only ${#allowed[@]} system calls allowed: filter not read"; exit 1; }
# What derpd calls (io_uring, pinning, signals, inotify, sockets, threads).
needed=(io_uring_setup io_uring_enter io_uring_register sched_setaffinity sched_getaffinity
  signalfd4 rt_sigprocmask inotify_init1 inotify_add_watch poll ppoll mmap munmap madvise
  socket bind listen setsockopt getsockname accept4 clone3 rseq getrandom openat)
missing=()
for call in "${needed[@]}"; do
  [ -n "${allowed[$call]:-}" ] || missing+=("$call")
done
if ((${#missing[@]})); then
  echo "FAIL: the unit's SystemCallFilter denies: ${missing[*]}"
  exit 1
fi
echo "ok: SystemCallFilter allows ${#allowed[@]} calls, including ${needed[*]}"

# 3. Hardening does not quietly erode: exposure (0 best, 10 worst) at most 3.0.
if ! out=$(systemd-analyze security --offline=yes --threshold=30 "$unit" 2>&1); then
  echo "$out"
  echo "FAIL: systemd-analyze security: exposure above 3.0"
  exit 1
fi
grep -o 'Overall exposure level.*' <<<"$out"
for want in "CapabilityBoundingSet=CAP_NET_BIND_SERVICE" "AmbientCapabilities=CAP_NET_BIND_SERVICE" \
  "Type=notify" "WatchdogSec=" "LimitNOFILE=1048576" "NoNewPrivileges=yes"; do
  grep -q "^$want" "$unit" || { echo "FAIL: $want missing"; exit 1; }
done

# 4. A fresh install: the shipped /etc/default/derpd has every setting
# commented out. With the unit's environment, derpd must stop at once with
# exit status 2 (which RestartPreventExitStatus keeps from looping) and say
# what to set, not start asking Let's Encrypt for derper's default name.
grep -q '^RestartPreventExitStatus=2$' "$unit" || { echo "FAIL: RestartPreventExitStatus=2 missing"; exit 1; }
default=$DERPD_SOURCE_ROOT/tools/systemd/derpd.default
if grep -Ev '^[[:space:]]*(#|$)' "$default"; then
  echo "FAIL: the shipped derpd.default sets something"
  exit 1
fi
env_args=()
while IFS= read -r line; do env_args+=("${line#Environment=}"); done < <(grep '^Environment=' "$unit")
set +e
env -i "${env_args[@]}" "$DERPD_BINARY" -c "$tmp/derper.key" -stun-port 0 >"$tmp/out" 2>&1
rc=$?
set -e
cat "$tmp/out"
[ "$rc" -eq 2 ] || { echo "FAIL: unconfigured derpd exited $rc, want 2"; exit 1; }
grep -q 'DERP_HOSTNAME' "$tmp/out" || { echo "FAIL: the message does not name DERP_HOSTNAME"; exit 1; }
echo "ok: unconfigured, derpd stops with status 2 and names DERP_HOSTNAME"
echo "PASS"
