#!/usr/bin/env bash
# The TLS benchmarks of PERFORMANCE.md, in one run (builds nothing):
#   - relay efficiency over TLS, 1280 B, bursty (burst 16) at fixed rates and
#     saturating, plus the sparse 50k packets/s from 10 senders one at a time;
#   - handshakes (TLS 1.3 + DERP) per server CPU-second, and a hold storm;
#   - server RSS per idle handshaken TLS connection at IDLE_COUNT clients;
#   - the same relay loads over plain HTTP, for comparison.
# derpd (1 shard, self-signed certificate for 127.0.0.1, STUN off) is pinned
# to SERVER_CPU, the generators to GEN_CPU. Prints one JSON line per scenario
# (with a "scenario" field) at the end; readable lines go to stderr as it runs.
#
#   bench/tls.sh [BUILD_DIR]
#   env: SERVER_CPU=0 GEN_CPU=1 RUN_SECONDS=3 RATES="10000 20000 30000 40000"
#        PAIRS=2 BURST=16 SIZE=1280 HANDSHAKES=3000 HOLD=1000 IDLE_COUNT=10000
set -euo pipefail
build=${1:-build}
server_cpu=${SERVER_CPU:-0}
gen_cpu=${GEN_CPU:-1}
secs=${RUN_SECONDS:-3}
rates=${RATES:-10000 20000 30000 40000}
pairs=${PAIRS:-2}
burst=${BURST:-16}
size=${SIZE:-1280}
handshakes=${HANDSHAKES:-3000}
hold=${HOLD:-1000}
idle=${IDLE_COUNT:-10000}
derpd=$build/src/derpd/derpd
for t in "$derpd" "$build"/bench/{relay_throughput,tls_handshake_storm,idle_tls_rss}; do
  [ -x "$t" ] || { echo "missing $t (build it first)"; exit 1; }
done
tmp=$(mktemp -d)
pid=""
stop_derpd() {
  [ -n "$pid" ] || return 0
  # SIGTERM drains gracefully; a second one stops at once.
  kill -TERM "$pid" 2>/dev/null || true
  sleep 0.2
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}
trap 'stop_derpd; rm -rf "$tmp"' EXIT

# Both sides hold IDLE_COUNT sockets.
want=$((2 * idle + 1000))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$want" ]; then
  ulimit -Hn "$want" 2>/dev/null || echo "note: cannot raise the hard file limit to $want" >&2
fi
ulimit -n "$(ulimit -Hn)"

port=""
start_derpd() {  # tls|plain
  local log=$tmp/derpd.$1.log args=(-a 127.0.0.1:0 -c "$tmp/k.key" --shards 1 -stun=false)
  if [ "$1" = tls ]; then
    mkdir -p "$tmp/certs"
    args+=(-certmode manual -certdir "$tmp/certs" -hostname 127.0.0.1 -http-port -1)
  fi
  taskset -c "$server_cpu" "$derpd" "${args[@]}" >"$log" 2>&1 &
  pid=$!
  port=""
  for _ in $(seq 1 100); do
    port=$(grep -o 'listening on https\?://127.0.0.1:[0-9]*' "$log" | sed 's/.*://' || true)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "derpd did not start"; cat "$log"; exit 1; }
}

results=$tmp/results.jsonl
run() {  # scenario command...
  local name=$1
  shift
  local out
  out=$(taskset -c "$gen_cpu" "$@") || true
  [ -n "$out" ] && echo "$out" | sed "s/^{/{\"scenario\":\"$name\",/" >>"$results"
}

relay=$build/bench/relay_throughput
echo "server on CPU $server_cpu, generator on CPU $gen_cpu; loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >&2

start_derpd tls
for r in $rates; do
  run "tls_bursty_${pairs}x${r}" "$relay" --tls --port "$port" --server-pid "$pid" \
    --pairs "$pairs" --burst "$burst" --size "$size" --rate "$r" --seconds "$secs"
done
run "tls_bursty_${pairs}x_saturating" "$relay" --tls --port "$port" --server-pid "$pid" \
  --pairs "$pairs" --burst "$burst" --size "$size" --rate 0 --seconds "$secs"
run tls_sparse_10x5000 "$relay" --tls --port "$port" --server-pid "$pid" \
  --pairs 10 --burst 1 --size "$size" --rate 5000 --seconds "$secs"
run tls_handshake_storm "$build/bench/tls_handshake_storm" --port "$port" --server-pid "$pid" \
  --threads 4 --count "$handshakes" --seconds 60
run tls_hold_storm "$build/bench/tls_handshake_storm" --port "$port" --server-pid "$pid" \
  --threads 8 --hold "$hold" --seconds 60
run "tls_idle_rss_$idle" "$build/bench/idle_tls_rss" --port "$port" --server-pid "$pid" \
  --count "$idle" --threads 4 --settle 1 --seconds 300
stop_derpd

start_derpd plain
for r in $rates; do
  run "plain_bursty_${pairs}x${r}" "$relay" --port "$port" --server-pid "$pid" \
    --pairs "$pairs" --burst "$burst" --size "$size" --rate "$r" --seconds "$secs"
done
run "plain_bursty_${pairs}x_saturating" "$relay" --port "$port" --server-pid "$pid" \
  --pairs "$pairs" --burst "$burst" --size "$size" --rate 0 --seconds "$secs"
run plain_sparse_10x5000 "$relay" --port "$port" --server-pid "$pid" \
  --pairs 10 --burst 1 --size "$size" --rate 5000 --seconds "$secs"
stop_derpd

cat "$results"
