#!/usr/bin/env bash
# The sanitizer stage of CI (.ci/run runs it after the README's test command):
#
#   tools/sanitize.sh [RELEASE_BUILD_DIR]      default: build-test (tools/test.sh's)
#
# 1. The release build's integration tests run against derpd built with ASan
#    and UBSan (-O1, line tables, libstdc++'s assertions, assert() on, any
#    undefined behaviour fatal): tests/fuzz/derpd_sanitized, linked by the main
#    build from the objects its libFuzzer targets use, which also build the
#    runtime and key-directory unit tests sanitized for the main suite. All
#    integration tests but three run: alloc_test preloads an allocation counter
#    that ASan's allocator cannot sit under, keepalive_test only waits two
#    minutes for a timer the wheel's unit tests cover, and tls_load_test is a
#    load (1,000 TLS clients) whose paths tls_test and hostile_test already
#    take under the sanitizers. Any sanitizer report,
#    even one at exit, fails the stage.
# 2. ThreadSanitizer on the mailbox and its SPSC rings (the only memory shared
#    between shards), with their concurrent unit tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/deps.sh
release=${1:-build-test}
tsan=${TSAN_BUILDDIR:-build-tsan}
[ -x "$release/src/derpd/derpd" ] || { echo "sanitize.sh: build $release first (tools/test.sh)" >&2; exit 1; }
release=$(cd "$release" && pwd)

tsan_units=(mailbox_test spsc_ring_test)
sanitized_derpd=$release/tests/fuzz/derpd_sanitized
[ -x "$sanitized_derpd" ] || { echo "sanitize.sh: $sanitized_derpd missing (needs clang++)" >&2; exit 1; }

rm -rf "$tsan"
reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1:abort_on_error=1"
mapfile -t integration < <(meson test -C "$release" --list 2>/dev/null |
  sed -n 's/^derpd:integration \/ //p' | grep -vx -e alloc_test -e keepalive_test -e tls_load_test)
ulimit -n 65536 2>/dev/null || true
meson test -C "$release" --no-rebuild --print-errorlogs --num-processes 2 \
  --timeout-multiplier 3 --wrapper "env DERPD_BINARY=$sanitized_derpd" "${integration[@]}"

if compgen -G "$reports/*" >/dev/null; then
  echo "sanitize.sh: sanitizer reports:" >&2
  cat "$reports"/* >&2
  exit 1
fi
echo "sanitize.sh: ASan+UBSan: ${#integration[@]} integration tests, no reports"

unset ASAN_OPTIONS UBSAN_OPTIONS
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
meson setup "$tsan" -Doptimization=1 -Ddebug=true -Db_sanitize=thread >/dev/null
ninja -C "$tsan" "${tsan_units[@]/#/tests/}"
# Without address-space randomisation: GCC 12's TSan runtime cannot map its
# shadow memory on kernels that randomise with more bits than it expects.
meson test -C "$tsan" --no-rebuild --print-errorlogs --num-processes 2 \
  --wrapper "setarch $(uname -m) -R" "${tsan_units[@]}"
echo "sanitize.sh: TSan: ${tsan_units[*]} clean"
