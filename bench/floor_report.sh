#!/usr/bin/env bash
# The floor comparison of one bench/run.sh run (bench/README.md "The floor"):
# reads its rows (JSON lines), prints a markdown table of server CPU per packet
# for the floor, derpd and (when run) derper at each offered load, plain and
# TLS, with the ratios, and draws two charts with gnuplot (if installed):
#   bench/floor_report.sh ROWS.jsonl|bench/results/RUN.json OUT_PREFIX
# writes OUT_PREFIX-cpu.svg (server µs per packet against offered load) and
# OUT_PREFIX-latency.svg (one-way p50 and p99 against offered load).
# The TLS floor is the plain floor plus AES-128-GCM open+seal of each frame's
# bytes at the rate derp-bench measured on this machine in the same run.
set -euo pipefail
out=$2
# Either run.sh's rows (JSON lines) or a saved bench/results/<run>.json.
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
jq -c 'if type == "object" and has("rows") then .rows[] else . end' "$1" >"$rows"

# One line per (target, offered load): target offered us_per_pkt p50 p99 pps.
# The unpaced step (offered 0) is shown as "max" and plotted at its delivered rate.
table=$(jq -r 'select(.scenario == "oneway" and (.target | startswith("sparse-")) and .ok)
  | [.target, .offered_pps, (.server_us_per_pkt // 0), .lat_p50_us, .lat_p99_us, .pps]
  | @tsv' "$rows")
if [ -z "$table" ]; then
  echo "no floor rows in $rows" >&2
  exit 1
fi
aead=$(jq -r 'select(.scenario == "reference" and .target == "sparse-floor") | .aead_open_seal_Bps' \
  "$rows" | head -1)
frame_bytes=$((1280 + 37))

value() {  # value TARGET OFFERED COLUMN(3..6)
  awk -F'\t' -v t="$1" -v o="$2" -v c="$3" '$1 == t && $2 == o { print $c; exit }' <<<"$table"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2fx", a / b; else print "-" }'; }
fmt() { awk -v a="$1" 'BEGIN { if (a > 0) printf "%.2f", a; else print "-" }'; }
lat() {  # lat TARGET OFFERED: "p50/p99", whole µs
  awk -v a="$(value "$1" "$2" 4)" -v b="$(value "$1" "$2" 5)" \
    'BEGIN { if (a > 0) printf "%.0f/%.0f", a, b; else print "-" }'
}

echo "### Server CPU per packet against the floor (1280 B, 10 pairs, one packet per write)"
echo
echo "TLS floor = plain floor + AES-128-GCM open+seal of ${frame_bytes} B at $(awk -v a="$aead" \
  'BEGIN { printf "%.2f GB/s", a / 1e9 }') (this machine, this run). µs of server CPU per packet."
echo
has_derper=$(awk -F'\t' '$1 ~ /derper/ { print "yes"; exit }' <<<"$table")
header="| offered | floor | derpd | ratio | TLS floor | derpd TLS | ratio | p50/p99 µs: floor, derpd, derpd TLS |"
sep="|---|---|---|---|---|---|---|---|"
if [ -n "$has_derper" ]; then
  header+=" derper | derper TLS | derper TLS / derpd TLS |"
  sep+="---|---|---|"
fi
echo "$header"
echo "$sep"
for offered in $(awk -F'\t' '$1 == "sparse-floor" { print $2 }' <<<"$table"); do
  f=$(value sparse-floor "$offered" 3)
  d=$(value sparse-derpd "$offered" 3)
  dt=$(value sparse-derpd-tls "$offered" 3)
  tf=$(awk -v f="$f" -v a="$aead" -v b="$frame_bytes" 'BEGIN { print f + 1e6 * b / a }')
  label=$offered
  [ "$offered" = 0 ] && label=max
  line="| $label | $(fmt "$f") | $(fmt "$d") | $(ratio "$d" "$f") | $(fmt "$tf") | $(fmt "$dt")"
  line+=" | $(ratio "$dt" "$tf") | $(lat sparse-floor "$offered"), $(lat sparse-derpd "$offered"),"
  line+=" $(lat sparse-derpd-tls "$offered") |"
  if [ -n "$has_derper" ]; then
    p=$(value sparse-derper "$offered" 3)
    pt=$(value sparse-derper-tls "$offered" 3)
    line+=" $(fmt "$p") | $(fmt "$pt") | $(ratio "$pt" "$dt") |"
  fi
  echo "$line"
done
echo

if ! command -v gnuplot >/dev/null; then
  echo "(charts skipped: gnuplot not installed; apt-get install gnuplot-nox)" >&2
  exit 0
fi
data=$(mktemp -d)
trap 'rm -rf "$data" "$rows"' EXIT
targets=$(awk -F'\t' '{ print $1 }' <<<"$table" | sort -u)
for t in $targets; do
  # x: the offered load, or for the unpaced step what was delivered.
  awk -F'\t' -v t="$t" '$1 == t { x = ($2 > 0 ? $2 : $6); print x / 1000, $3, $4, $5 }' \
    <<<"$table" | sort -n >"$data/$t.dat"
done
awk -v a="$aead" -v b="$frame_bytes" '{ print $1, $2 + 1e6 * b / a }' \
  "$data/sparse-floor.dat" >"$data/sparse-floor-tls.dat"
plots_cpu="" plots_lat="" n=0
for t in $targets sparse-floor-tls; do
  n=$((n + 1))
  name=${t#sparse-}
  plots_cpu+="'$data/$t.dat' using 1:2 with linespoints linecolor $n title '$name', "
  [ "$t" = sparse-floor-tls ] && continue
  # One colour per server: p50 solid, p99 dashed.
  plots_lat+="'$data/$t.dat' using 1:3 with linespoints linecolor $n title '$name p50', "
  plots_lat+="'$data/$t.dat' using 1:4 with linespoints linecolor $n dashtype 2 title '$name p99', "
done
gnuplot <<EOF
set terminal svg size 800,480 dynamic font "sans,12"
set grid
set key top right
set xlabel "offered load (k packets/s; the last point of each line is unpaced)"
set output "$out-cpu.svg"
set ylabel "server CPU per packet (µs)"
set yrange [0:*]
plot ${plots_cpu%, }
set output "$out-latency.svg"
set ylabel "one-way latency (µs)"
set logscale y
set yrange [*:*]
plot ${plots_lat%, }
EOF
echo "charts: $out-cpu.svg $out-latency.svg" >&2
