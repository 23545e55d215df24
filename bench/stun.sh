#!/usr/bin/env bash
# STUN answers/s of one derpd shard beside the machine's raw UDP loopback echo
# rate, both measured in this run by the same generator (bench/stun_flood).
# Server on CPU $SERVER_CPU, generator on CPU $LOAD_CPU.
#   bench/stun.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
build=${1:-build}
secs=${2:-3}
server_cpu=${SERVER_CPU:-0}
load_cpu=${LOAD_CPU:-1}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

taskset -c "$server_cpu" "$build/src/derpd/derpd" -a 127.0.0.1:0 -c "$tmp/k.key" --shards 1 \
  -stun-port 0 >"$tmp/log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q 'listening on http' "$tmp/log" && break; sleep 0.05; done
stun_port=$(grep -o 'udp://127.0.0.1:[0-9]*' "$tmp/log" | sed 's/.*://')
echo_port=$((20000 + RANDOM % 20000))
taskset -c "$server_cpu" "$build/bench/stun_flood" --echo-port "$echo_port" &
pids+=($!)
sleep 0.2

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# Runs the generator against a server; prints answers/s and answers per second
# of the server's CPU time (what one fully busy core would answer).
measure() {  # port server_pid label
  local before after out rate
  before=$(cpu_ticks "$2")
  out=$(taskset -c "$load_cpu" "$build/bench/stun_flood" --port "$1" --seconds "$secs")
  after=$(cpu_ticks "$2")
  rate=$(sed 's/.*"answers_per_sec":\([0-9]*\).*/\1/' <<<"$out")
  awk -v r="$rate" -v t=$((after - before)) -v hz="$hz" -v s="$secs" -v l="$3" -v o="$out" \
    'BEGIN { cpu = t / hz / s; printf "%s %s\n  server CPU %.0f%%, answers per server CPU-second %.0f\n", l, o, 100 * cpu, (cpu > 0 ? r / cpu : 0) }'
}
measure "$stun_port" "${pids[0]}" "derpd STUN:"
measure "$echo_port" "${pids[1]}" "UDP echo:  "
