#!/usr/bin/env bash
# Builds derpd's OCI container image with Debian's buildah, from scratch: no
# base image, no registry. The image holds derpd and derpctl, the shared
# libraries they load (found with ldd) and the dynamic loader, the CA
# certificates (for ACME and -verify-client-url), and a non-root user
# `derper` (65532) whose home /var/lib/derper is the state directory: derpd's
# default key file (-c /var/lib/derper/derper.key) and certificate directory
# (~/.cache/tailscale/derper-certs) are under it, so mount a volume there.
# derpd carries the file capability cap_net_bind_service, so the non-root
# user binds ports 443 and 80 with no other privilege (the container must
# then be allowed that one capability, and not run with no_new_privs, which
# drops file capabilities: k8s/ does both).
#
# The entrypoint is derpd itself, which reads the DERP_* variables of the
# popular derper images (DERP_DOMAIN, DERP_CERT_MODE, DERP_CERT_DIR,
# DERP_ADDR, DERP_STUN, DERP_STUN_PORT, DERP_HTTP_PORT, DERP_VERIFY_CLIENTS,
# DERP_VERIFY_CLIENT_URL, ...; README "Flags"); arguments go to derpd.
#
#   tools/image.sh [--build-dir DIR] [--tag NAME]
#     --build-dir DIR  take derpd and derpctl from this build (default: build
#                      a release build in build-image/)
#     --tag NAME       the image's name (default localhost/derpd:VERSION)
# Run it under io_uring-allowing seccomp: podman run --security-opt
# seccomp=k8s/seccomp/derpd.json ... (a runtime's default profile refuses
# io_uring, and derpd says so and exits).
set -euo pipefail
cd "$(dirname "$0")/.."
build="" tag=""
while (($#)); do
  case $1 in
    --build-dir) build=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    *) echo "image.sh: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
  esac
done
version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" meson.build | head -1)
tag=${tag:-localhost/derpd:$version}
for tool in buildah setcap ldd; do
  command -v "$tool" >/dev/null || { echo "image.sh: needs $tool (./tools/deps.sh installs it)" >&2; exit 1; }
done
if [ -z "$build" ]; then
  ./tools/deps.sh
  build=build-image
  [ -f "$build/build.ninja" ] || meson setup "$build" --buildtype=release -Dtests=false >/dev/null
  ninja -C "$build" src/derpd/derpd tools/derpctl
fi
derpd=$build/src/derpd/derpd derpctl=$build/tools/derpctl
for b in "$derpd" "$derpctl"; do [ -x "$b" ] || { echo "image.sh: $b is missing" >&2; exit 1; }; done

root=$(mktemp -d)
ctr=""
trap 'rm -rf "$root"; [ -z "$ctr" ] || buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
install -D -m 0755 "$derpd" "$root/usr/bin/derpd"
install -D -m 0755 "$derpctl" "$root/usr/bin/derpctl"
# Every library either binary loads, at the path the loader will look for it,
# and the loader itself (ldd prints it without "=>"; "FILE:" lines name the
# binaries).
ldd "$derpd" "$derpctl" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*[^:]$/ {print $1}' |
  sort -u | while read -r lib; do cp -L --parents "$lib" "$root/"; done
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$root/etc"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nderper:x:65532:65532:derpd:/var/lib/derper:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nderper:x:65532:\n' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
install -d -m 1777 "$root/tmp"
install -d -m 0700 "$root/var/lib/derper"
setcap cap_net_bind_service=+ep "$root/usr/bin/derpd"

ctr=$(buildah from scratch)
# A tar keeps the file capability (an extended attribute) and the owners.
tar --xattrs --xattrs-include='security.capability' --numeric-owner -C "$root" -cf "$root.tar" .
chown_state=(--owner 65532 --group 65532)
tar --numeric-owner "${chown_state[@]}" -C "$root" -rf "$root.tar" ./var/lib/derper
buildah add "$ctr" "$root.tar" / >/dev/null
rm -f "$root.tar"
buildah config \
  --user 65532:65532 \
  --env HOME=/var/lib/derper \
  --workingdir /var/lib/derper \
  --entrypoint '["/usr/bin/derpd"]' --cmd '' \
  --port 443/tcp --port 80/tcp --port 3478/udp \
  --volume /var/lib/derper \
  --label org.opencontainers.image.title=derpd \
  --label org.opencontainers.image.description="DERP relay and STUN server for Tailscale and Headscale, wire-compatible with derper" \
  --label org.opencontainers.image.version="$version" \
  "$ctr"
buildah commit --quiet "$ctr" "$tag" >/dev/null
echo "image.sh: built $tag ($(du -sh "$root" | cut -f1) unpacked)"
