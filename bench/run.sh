#!/usr/bin/env bash
# The full derp-bench suite (PERFORMANCE.md) against a freshly started derpd,
# TLS (self-signed for 127.0.0.1) and plain HTTP; builds nothing.
#   bench/run.sh [BUILD_DIR]
# env: SERVER_CPUS=0 LOAD_CPUS=1 SHARDS=1 STEP_SECONDS=2 BENCH_ARGS="..."
#      DERPD_ARGS="..." (more flags for every derpd started), FLOOR_ARGS="..."
#      (derp-floor's, e.g. --batch-wait-us 200 to match derpd's --batch-wait), FLOOR_ONLY=1
#      DERPER=/path/to/derper  also runs Tailscale's derper the same way
# Writes bench/results/<date>-<commit>.json (every row, with the machine) and
# prints a markdown summary on stdout; progress and the readable tables go
# to stderr.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
server_cpus=${SERVER_CPUS:-0}
load_cpus=${LOAD_CPUS:-1}
shards=${SHARDS:-1}
step=${STEP_SECONDS:-2}
derpd=$build/src/derpd/derpd
bench=$build/bench/derp-bench
floor=$build/bench/derp-floor
for t in "$derpd" "$bench" "$floor"; do
  [ -x "$t" ] || { echo "missing $t (build it first: ninja -C $build src/derpd/derpd bench/derp-bench bench/derp-floor)" >&2; exit 1; }
done
if [ -n "${DERPER:-}" ] && [ ! -x "$DERPER" ]; then echo "DERPER=$DERPER is not executable" >&2; exit 1; fi

tmp=$(mktemp -d)
pid=""
stop_server() {
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  sleep 0.3
  kill -TERM "$pid" 2>/dev/null || true  # derpd: a second SIGTERM ends the drain
  sleep 0.2
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}
trap 'stop_server; rm -rf "$tmp"' EXIT

# The idle scenario holds up to 50k connections on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

port="" stun_port=""
# start_server NAME BINARY tls|plain: starts it on 127.0.0.1 and sets pid, port, stun_port.
start_server() {
  local name=$1 bin=$2 mode=$3 log=$tmp/$1.log args
  port="" stun_port=""
  rm -rf "$tmp/certs" && mkdir -p "$tmp/certs"
  if [ "$bin" = "$floor" ]; then
    # shellcheck disable=SC2206
    args=(--addr 127.0.0.1:0 ${FLOOR_ARGS:-})
  elif [ "$bin" = "$derpd" ]; then
    # The loads come from one address and connect thousands at once.
    args=(-a 127.0.0.1:0 -stun-port 0 -http-port -1 -c "$tmp/$name.key" --shards "$shards"
          --max-conns-per-ip 0 --max-handshakes-per-shard 0 "${derpd_extra[@]}")
    # shellcheck disable=SC2206
    args+=(${DERPD_ARGS:-})
  else
    # derper logs the address it was given, so give it fixed free ports.
    port=$((20000 + RANDOM % 20000)) stun_port=$((40000 + RANDOM % 20000))
    args=(-a "127.0.0.1:$port" -stun-port "$stun_port" -http-port -1 -c "$tmp/$name.json")
  fi
  [ "$mode" = tls ] && args+=(-certmode manual -certdir "$tmp/certs" -hostname 127.0.0.1)
  [ "$bin" = "$floor" ] && [ "$mode" = tls ] && { echo "the floor is plain only" >&2; exit 1; }
  taskset -c "$server_cpus" "$bin" "${args[@]}" >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    if [ "$bin" = "$floor" ]; then
      port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$log" | sed 's/.*://' || true)
      [ -n "$port" ] && break
    elif [ "$bin" = "$derpd" ]; then
      port=$(grep -o 'listening on https\?://127.0.0.1:[0-9]*' "$log" | sed 's/.*://' || true)
      stun_port=$(grep -o 'STUN listening on udp://127.0.0.1:[0-9]*' "$log" | sed 's/.*://' || true)
      [ -n "$port" ] && break
    elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! kill -0 "$pid" 2>/dev/null || [ -z "$port" ]; then
    echo "$name did not start:" >&2
    cat "$log" >&2
    exit 1
  fi
}

derpd_extra=()  # more derpd flags for one run_bench (the rate-limited run)
rows=$tmp/rows.jsonl
md=$tmp/summary.md
: >"$rows"
: >"$md"
# run_bench NAME BINARY tls|plain SCENARIOS [DERP-BENCH ARGS]
run_bench() {
  local name=$1 scheme=http stun=()
  [ "$3" = tls ] && scheme=https
  start_server "$1" "$2" "$3"
  [ -n "$stun_port" ] && stun=(--stun "127.0.0.1:$stun_port")
  echo "== $name: pid $pid on CPUs $server_cpus, https? $scheme, port $port" >&2
  # shellcheck disable=SC2086
  "$bench" --url "$scheme://127.0.0.1:$port" --insecure --label "$name" \
    --server-pid "$pid" --server-cpus "$server_cpus" --load-cpus "$load_cpus" \
    "${stun[@]}" --scenarios "$4" --seconds "$step" \
    --markdown "$md" ${5:-} ${BENCH_ARGS:-} >>"$rows" || echo "note: $name had rows that are not sane" >&2
  stop_server
}

# The floor (bench/README.md): derp-floor, derpd and derper under the same
# sparse load (one 1280 B packet per write, 10 pairs) at 20k, 50k and 100k
# packets/s, then unpaced; FLOOR_ONLY=1 runs only this.
run_floor() {
  local args="--sizes 1280 --pairs 10 --burst 1 --rates 20000,50000,100000,max --steps-only"
  run_bench sparse-floor "$floor" plain oneway "$args"
  run_bench sparse-derpd "$derpd" plain oneway "$args"
  run_bench sparse-derpd-tls "$derpd" tls oneway "$args"
  if [ -n "${DERPER:-}" ]; then
    run_bench sparse-derper "$DERPER" plain oneway "$args"
    run_bench sparse-derper-tls "$DERPER" tls oneway "$args"
  fi
}

# run_mesh_bench: two plain derpd nodes of one mesh region on 127.0.0.1 and
# 127.0.0.2 (same port, both pinned like the single server); oneway senders on
# node 1, receivers on node 2, so every packet is forwarded between the nodes.
# Compare with derpd-plain's oneway rows of the same run. CPU is node 1's.
run_mesh_bench() {
  local p=$((20000 + RANDOM % 20000)) psk=$tmp/mesh.psk pids=() n
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$psk"
  for n in 1 2; do
    taskset -c "$server_cpus" "$derpd" -a "127.0.0.$n:$p" -stun=false -http-port -1 \
      -c "$tmp/mesh$n.key" --shards "$shards" -mesh-psk-file "$psk" \
      -mesh-with "127.0.0.1:$p,127.0.0.2:$p" >"$tmp/mesh$n.log" 2>&1 &
    pids+=($!)
  done
  for _ in $(seq 1 100); do
    grep -q 'mesh: linked to' "$tmp/mesh1.log" && grep -q 'mesh: linked to' "$tmp/mesh2.log" && break
    sleep 0.1
  done
  echo "== derpd-mesh: pids ${pids[*]} on CPUs $server_cpus, port $p" >&2
  # shellcheck disable=SC2086
  "$bench" --url "http://127.0.0.1:$p" --receiver-url "http://127.0.0.2:$p" --label derpd-mesh \
    --server-pid "${pids[0]}" --load-cpus "$load_cpus" --scenarios oneway --sizes 1280 \
    --seconds "$step" --markdown "$md" ${BENCH_ARGS:-} >>"$rows" ||
    echo "note: derpd-mesh had rows that are not sane" >&2
  kill -INT "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}

# The per-client receive limit: 10 MB sent as fast as possible at 1 MB/s, one
# shard, beside an echo pair (bench/README.md, ratelimit).
echo '{"PerClientRateLimitBytesPerSec": 1000000}' >"$tmp/rate.json"
if [ -z "${FLOOR_ONLY:-}" ]; then
  derpd_extra=(-rate-config "$tmp/rate.json" --shards 1)
  run_bench derpd-ratelimit "$derpd" plain ratelimit
  derpd_extra=()
  run_bench derpd-tls "$derpd" tls oneway,echo,idle,storm,stun
  run_bench derpd-plain "$derpd" plain oneway,echo,idle
  run_mesh_bench
  if [ -n "${DERPER:-}" ]; then
    run_bench derper-tls "$DERPER" tls oneway,echo,idle,storm,stun
    run_bench derper-plain "$DERPER" plain oneway,echo,idle
  fi
fi
run_floor

commit=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$here" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo "-dirty" || true)
date=$(date -u +%Y-%m-%dT%H%M%SZ)
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
mkdir -p "$here/results"
out=$here/results/$date-$commit$dirty.json
jq -n --arg date "$date" --arg commit "$commit$dirty" --arg cpu "$cpu" \
  --arg kernel "$(uname -r)" --argjson nproc "$(nproc)" --arg server_cpus "$server_cpus" \
  --arg load_cpus "$load_cpus" --argjson shards "$shards" --slurpfile rows "$rows" \
  '{date: $date, commit: $commit, machine: {cpu: $cpu, nproc: $nproc, kernel: $kernel},
    server_cpus: $server_cpus, load_cpus: $load_cpus, derpd_shards: $shards, rows: $rows}' >"$out"
echo "results: $out" >&2
floor_md=$tmp/floor.md
"$here/floor_report.sh" "$rows" "${out%.json}" >"$floor_md" || echo "note: no floor table" >&2

echo "## derp-bench $date, commit $commit$dirty"
echo
echo "$cpu, $(nproc) CPUs, Linux $(uname -r); server on CPU $server_cpus ($shards shard(s)),"
echo "harness on CPU $load_cpus; load average $(cut -d' ' -f1-3 /proc/loadavg)."
cat "$md"
echo
cat "$floor_md"
