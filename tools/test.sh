#!/usr/bin/env bash
# The README's test command: installs what is missing, builds in a fresh
# build directory and runs every test (unit, integration, quick benchmarks).
# The build is the release configuration (werror on): what users install and
# what the benchmarks measure is what the tests check.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/deps.sh
builddir=${BUILDDIR:-build-test}
rm -rf "$builddir"
meson setup "$builddir" --buildtype=release >/dev/null
ninja -C "$builddir"
# Raise the open-file limit for the many-clients tests when we may.
ulimit -n 65536 2>/dev/null || true
meson test -C "$builddir" --print-errorlogs --num-processes 2
