#!/bin/sh
# Runs a libFuzzer binary for a bounded time over its checked-in seed corpus.
# New inputs go to a scratch directory in the build tree, never the sources.
#   run_fuzzer.sh BINARY WORKDIR SEED_CORPUS [SECONDS]
set -eu
exe=$1 work=$2 seeds=$3 secs=${4:-10}
mkdir -p "$work"
# libFuzzer exits 77 on a crash by default, which meson counts as a skip:
# a crash or a timeout must fail the test.
exec "$exe" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 \
  -error_exitcode=1 -timeout_exitcode=1 \
  -artifact_prefix="$work/" -print_final_stats=1 "$work" "$seeds"
