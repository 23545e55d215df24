#!/usr/bin/env bash
# derpd's memory against its shard count (issue 18): resident memory of a
# plain derpd with SHARD_COUNTS shards (they may outnumber this machine's
# cores), first idle, before any client, then after CLIENTS idle clients have
# connected, been announced to every shard (so every pair of shards has
# exchanged mail and has its mailbox ring) and left.
#   bench/memory.sh [BUILD_DIR]        env: SHARD_COUNTS="2 16 64 128" CLIENTS=1000
# Prints a markdown table on stdout.
set -euo pipefail
build=${1:-build}
derpd=$build/src/derpd/derpd
bench=$build/bench/derp-bench
for t in "$derpd" "$bench"; do
  [ -x "$t" ] || { echo "missing $t (build it first: ninja -C $build src/derpd/derpd bench/derp-bench)" >&2; exit 1; }
done
clients=${CLIENTS:-1000}
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
rss_mib() { awk '/^VmRSS:/{printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

echo "| shards | idle RSS (MiB) | after $clients clients (MiB) |"
echo "|---:|---:|---:|"
for n in ${SHARD_COUNTS:-2 16 64 128}; do
  log=$tmp/derpd-$n.log
  "$derpd" -a 127.0.0.1:0 -stun-port 0 -http-port -1 -c "$tmp/derpd.key" --shards "$n" \
    --max-conns-per-ip 0 --max-handshakes-per-shard 0 >"$log" 2>&1 &
  pid=$!
  port=""
  for _ in $(seq 1 100); do
    port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$log" | sed 's/.*://' || true)
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "derpd --shards $n did not start:" >&2; cat "$log" >&2; exit 1; }
  sleep 1  # every shard has entered its loop
  idle=$(rss_mib "$pid")
  "$bench" --url "http://127.0.0.1:$port" --scenarios idle --idle-counts "$clients" --server-pid "$pid" \
    --seconds 1 >/dev/null 2>"$tmp/bench.err" || { cat "$tmp/bench.err" >&2; exit 1; }
  sleep 1
  echo "| $n | $idle | $(rss_mib "$pid") |"
  kill -TERM "$pid"; sleep 0.2; kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
done
