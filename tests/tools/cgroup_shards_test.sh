#!/usr/bin/env bash
# The shard count follows a cgroup CPU quota (a container's CPU limit), as
# Kubernetes sets it: derpd is started inside a real cgroup of this machine
# with a quota of half a CPU and must start one unpinned shard, naming the
# quota's file; --shards still wins over the quota. cgroup v2 (cpu.max) is
# used where its cpu controller can be enabled, else v1's cpu controller
# (cpu.cfs_quota_us). Skipped (77) without root or a writable cpu controller.
set -euo pipefail
: "${DERPD_BINARY:?}"
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root to create a cgroup"; exit 77; }
name=derpd-test-$$
dir="" quota_file=""
if [ -w /sys/fs/cgroup/cpu ] && [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
  dir=/sys/fs/cgroup/cpu/$name
  mkdir "$dir"
  echo 50000 >"$dir/cpu.cfs_quota_us"
  quota_file=$dir/cpu.cfs_quota_us
elif [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
  grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu >/sys/fs/cgroup/cgroup.subtree_control
  dir=/sys/fs/cgroup/$name
  mkdir "$dir"
  echo "50000 100000" >"$dir/cpu.max"
  quota_file=$dir/cpu.max
else
  echo "SKIP: no writable cgroup cpu controller (v1 /sys/fs/cgroup/cpu or v2 with cpu)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rmdir "$dir" 2>/dev/null || true; rm -rf "$tmp"' EXIT

# run_in_cgroup LOG ARGS...: derpd in the cgroup for a moment, its log in LOG.
run_in_cgroup() {
  local log=$1
  shift
  sh -c 'echo $$ >"$0/cgroup.procs"; exec timeout -s INT 2 "$@"' "$dir" "$DERPD_BINARY" \
    -a 127.0.0.1:0 -http-port -1 -stun-port 0 -c "$tmp/key" "$@" >"$log" 2>&1 || true
}

run_in_cgroup "$tmp/quota.log"
if ! grep -q "shards: 1 (cgroup CPU quota 0.50 CPUs ($quota_file) of [0-9]* CPUs in the affinity mask), not pinned" "$tmp/quota.log"; then
  echo "FAIL: derpd under a half-CPU quota did not start one unpinned shard:"
  cat "$tmp/quota.log"
  exit 1
fi
grep -q "listening on" "$tmp/quota.log" || { echo "FAIL: derpd did not listen:"; cat "$tmp/quota.log"; exit 1; }

run_in_cgroup "$tmp/flag.log" --shards 3
if ! grep -q "shards: 3 (--shards), each pinned to a CPU" "$tmp/flag.log"; then
  echo "FAIL: --shards 3 did not win over the quota:"
  cat "$tmp/flag.log"
  exit 1
fi
echo "ok: quota gives 1 shard ($quota_file); --shards overrides"
