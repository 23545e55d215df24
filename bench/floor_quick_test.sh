#!/usr/bin/env bash
# The bench-quick smoke test of derp-floor: starts one, drives it with
# derp-bench's oneway (two steps of sparse 1280 B packets) and passes when
# every packet row is sane (derp-bench exits 0: packets delivered, clients
# connected). Nothing here judges speed.
#   floor_quick_test.sh DERP_BENCH DERP_FLOOR
set -euo pipefail
bench=${1:?usage: floor_quick_test.sh DERP_BENCH DERP_FLOOR}
floor=${2:?usage: floor_quick_test.sh DERP_BENCH DERP_FLOOR}
tmp=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
"$floor" --addr 127.0.0.1:0 >"$tmp/log" 2>&1 &
pid=$!
port=""
for _ in $(seq 1 100); do
  port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$tmp/log" | sed 's/.*://' || true)
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$port" ]; then
  echo "derp-floor did not start:"
  cat "$tmp/log"
  exit 1
fi
"$bench" --url "http://127.0.0.1:$port" --label sparse-floor --server-pid "$pid" \
  --scenarios oneway --sizes 1280 --pairs 4 --burst 1 --rates 2000,5000 --steps-only \
  --seconds 0.5 >"$tmp/rows.jsonl"
cat "$tmp/rows.jsonl"
# Every oneway row delivered (all but noise) what it sent, through the floor.
jq -e -s '[.[] | select(.scenario == "oneway")] | length == 2 and
  all(.ok and .delivered > 0 and .loss_pct < 1)' "$tmp/rows.jsonl" >/dev/null
