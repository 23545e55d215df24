#!/usr/bin/env bash
# Instructions per relayed packet, from valgrind's callgrind: a number that
# does not depend on the machine's noise. Runs derpd (1 shard) under callgrind
# twice for the same time, relaying N1 and then N2 packets of SIZE bytes with derp-bench
# (one oneway step at a fixed rate, one sender/receiver pair),
# and reports (I2 - I1) / (N2 - N1), which cancels start-up and handshakes.
# With "tls" derpd serves TLS (self-signed for 127.0.0.1) and the generator
# writes bursts through TLS. Set KEEP=DIR to keep the callgrind outputs there
# (for callgrind_annotate); BURST=N sets the packets per write (default 8).
#
#   bench/callgrind.sh [BUILD_DIR] [SIZE] [plain|tls]
set -euo pipefail
build=${1:-build}
size=${2:-1280}
mode=${3:-plain}
derpd=$build/src/derpd/derpd
gen=$build/bench/derp-bench
command -v valgrind >/dev/null || { echo "valgrind not installed"; exit 77; }
grep -q 'DERPD_HAVE_VALGRIND_H 1' "$build/derpd_config.h" || {
  echo "$build was configured without valgrind/valgrind.h: derpd would hang under valgrind;"
  echo "install valgrind and reconfigure (meson setup --reconfigure $build)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tls_server=()
scheme=http
if [ "$mode" = tls ]; then
  mkdir -p "$tmp/certs"
  tls_server=(-certmode manual -certdir "$tmp/certs" -hostname 127.0.0.1 -http-port -1)
  scheme=https
fi

run() {  # packets -> prints total instructions and delivered packets
  local rate=$1 seconds=$2 out=$tmp/cg.$1
  valgrind --tool=callgrind --callgrind-out-file="$out" "$derpd" -a 127.0.0.1:0 \
    -c "$tmp/k.key" --shards 1 -stun=false "${tls_server[@]}" >"$tmp/log.$1" 2>&1 &
  local pid=$! port=""
  for _ in $(seq 1 200); do
    port=$(grep -o 'https\?://127.0.0.1:[0-9]*' "$tmp/log.$1" | sed 's/.*://' || true)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "derpd did not start"; cat "$tmp/log.$1"; exit 1; }
  local delivered
  delivered=$("$gen" --url "$scheme://127.0.0.1:$port" --insecure --scenarios oneway \
    --steps-only --rates "$rate" --pairs 1 --sizes "$size" --seconds "$seconds" \
    --burst "${BURST:-8}" 2>/dev/null | grep '"scenario":"oneway"' |
    sed 's/.*"delivered":\([0-9]*\).*/\1/' || true)
  kill -TERM $pid
  sleep 0.5
  kill -TERM $pid 2>/dev/null || true  # a second SIGTERM ends the drain at once
  wait $pid || true
  if [ -n "${KEEP:-}" ]; then cp "$out" "$KEEP/callgrind.$mode.$1.out"; fi
  local instr
  instr=$(grep -E '^(summary|totals):' "$out" | head -1 | awk '{print $2}')
  echo "$instr $delivered"
}

# Same duration, different rates: start-up, handshakes and idle wake-ups cancel.
read -r i1 n1 < <(run 1000 4)
read -r i2 n2 < <(run 3000 4)
echo "run 1: $n1 packets, $i1 instructions"
echo "run 2: $n2 packets, $i2 instructions"
awk -v i1="$i1" -v i2="$i2" -v n1="$n1" -v n2="$n2" -v s="$size" \
  'BEGIN { printf "instructions per relayed %d-byte packet: %.0f\n", s, (i2 - i1) / (n2 - n1) }'
