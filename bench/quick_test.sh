#!/usr/bin/env bash
# The bench-quick smoke test of derp-bench: starts a derpd of its own (TLS,
# self-signed for 127.0.0.1, 2 shards, STUN on), runs `derp-bench --quick`
# against it and passes when every row is sane (derp-bench exits 0: packets
# delivered, clients connected, STUN answered). Nothing here judges speed.
#   quick_test.sh DERP_BENCH   (env DERPD_BINARY: the derpd to start)
set -euo pipefail
bench=${1:?usage: quick_test.sh DERP_BENCH}
derpd=${DERPD_BINARY:?DERPD_BINARY is not set}
tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    sleep 0.2
    kill -TERM "$pid" 2>/dev/null || true  # a second SIGTERM ends the drain
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir "$tmp/certs"
"$derpd" -a 127.0.0.1:0 -http-port -1 -stun-port 0 -c "$tmp/k.key" --shards 2 \
  -certmode manual -certdir "$tmp/certs" -hostname 127.0.0.1 >"$tmp/log" 2>&1 &
pid=$!
port=""
for _ in $(seq 1 100); do
  port=$(grep -o 'listening on https://127.0.0.1:[0-9]*' "$tmp/log" | sed 's/.*://' || true)
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$port" ]; then
  echo "derpd did not start:"
  cat "$tmp/log"
  exit 1
fi
stun=$(grep -o 'STUN listening on udp://127.0.0.1:[0-9]*' "$tmp/log" | sed 's/.*://')
"$bench" --quick --url "https://127.0.0.1:$port" --insecure --label derpd-quick \
  --server-pid "$pid" --stun "127.0.0.1:$stun"
