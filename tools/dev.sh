#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs derpd
# for a developer on 127.0.0.1:3340 (plain HTTP, STUN on UDP 3478) with a key
# file under .dev/.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/deps.sh
[ -d build ] || meson setup build --buildtype=debugoptimized >/dev/null
ninja -C build src/derpd/derpd tools/derpctl
mkdir -p .dev
echo "derpd: http://127.0.0.1:3340  (try: ./build/tools/derpctl probe http://127.0.0.1:3340)"
exec ./build/src/derpd/derpd -dev -c .dev/derper.key "$@"
