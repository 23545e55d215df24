#!/usr/bin/env bash
# Installs the Debian 12 packages derpd needs to build, run and test.
# Idempotent: does nothing when everything is already there.
set -euo pipefail
packages=(
  meson ninja-build pkg-config g++
  liburing-dev android-libboringssl-dev libsodium-dev libabsl-dev libsystemd-dev
  nlohmann-json3-dev libtomlplusplus-dev libgtest-dev libgmock-dev libbenchmark-dev
  curl openssl        # independent TLS peers (s_client, curl) in the tests
  stun-client coturn   # real STUN clients for the integration tests
  prometheus           # promtool check metrics (tests/integration/promtool_test.cc)
  pebble               # a real ACME server (tests/integration/acme_test.cc)
  clang                # libFuzzer targets
  valgrind             # bench/callgrind.sh (valgrind.h is found at configure time)
  jq gnuplot-nox       # bench/run.sh's results, floor table and charts; derp_floor_quick
  systemd              # systemd-analyze, for the tests of tools/systemd/derpd.service
  libseccomp-dev       # compiles k8s/seccomp/derpd.json as runtimes do (seccomp_profile_test)
  buildah podman runc libcap2-bin  # tools/image.sh and its test (image_test)
  python3-kubernetes   # the API schema k8s_manifests_test checks k8s/ against
  python3-websockets python3-nacl  # an independent DERP-over-WebSocket client (websocket_test)
  chromium             # a real browser speaking DERP over WebSocket (chromium_test)
)
# npm fetches the browser test's page packages (tests/browser/package-lock.json):
# Debian's npm, unless one came with another nodejs (they would conflict).
command -v npm >/dev/null || packages+=(npm)
# kubectl renders k8s/ (kubectl kustomize): Debian's kubernetes-client, unless
# a kubectl is installed already (another package's would conflict with it).
command -v kubectl >/dev/null || packages+=(kubernetes-client)
# --list prints the packages, one line, for scripts that install them themselves.
if [ "${1:-}" = "--list" ]; then
  echo "${packages[*]}"
  exit 0
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
