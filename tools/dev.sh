#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs derpd
# for a developer on 127.0.0.1:3340 (TLS with a self-signed certificate made at
# start, STUN on UDP 3478, /metrics) with a key file under .dev/.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/deps.sh
[ -d build ] || meson setup build --buildtype=debugoptimized >/dev/null
ninja -C build src/derpd/derpd tools/derpctl
mkdir -p .dev
echo "derpd: https://127.0.0.1:3340 (self-signed; it prints the derpctl command that pins it)"
exec ./build/src/derpd/derpd -dev -c .dev/derper.key "$@"
