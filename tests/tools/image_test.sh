#!/usr/bin/env bash
# The container image (tools/image.sh) under podman, as a user runs it:
#  - built from scratch by buildah from this build's binaries (no registry);
#  - under the runtime's default seccomp profile, derpd either runs or exits
#    with its one-line io_uring message (podman's default refuses io_uring);
#  - under k8s/seccomp/derpd.json, read-only root, every capability dropped
#    but NET_BIND_SERVICE, as the image's non-root user, configured only by
#    DERP_* variables (manual TLS for an IP certificate on port 443 of a
#    loopback address of its own: the file capability lets the non-root user
#    bind it), it relays DERP (derpctl probe from outside the container),
#    answers STUN, and stops gracefully on SIGTERM (podman stop).
# Skipped (77) where podman or buildah is missing or cannot run containers.
set -euo pipefail
: "${DERPD_SOURCE_ROOT:?}" "${DERPD_BUILD_ROOT:?}" "${DERPCTL_BINARY:?}"
for t in podman buildah setcap openssl; do
  command -v "$t" >/dev/null || { echo "SKIP: $t is not installed (./tools/deps.sh installs it)"; exit 77; }
done
tag=localhost/derpd-image-test:$$
tmp=$(mktemp -d)
ctr=derpd-image-test-$$
cleanup() {
  podman rm -f "$ctr" "$ctr-default" >/dev/null 2>&1 || true
  podman rmi -f "$tag" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

if ! "$DERPD_SOURCE_ROOT/tools/image.sh" --build-dir "$DERPD_BUILD_ROOT" --tag "$tag" >"$tmp/build.log" 2>&1; then
  if grep -q -i "permission denied\|not permitted\|user namespace" "$tmp/build.log"; then
    echo "SKIP: buildah cannot build images here:"; cat "$tmp/build.log"; exit 77
  fi
  echo "FAIL: tools/image.sh:"; cat "$tmp/build.log"; exit 1
fi

# This sandbox's limits cannot be raised (no CAP_SYS_RESOURCE): ask for the
# ones we have. Some hosts' crun refuses hybrid cgroup hierarchies: use runc
# where the default runtime cannot start a container.
run=(podman run --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
if ! "${run[@]}" --rm --network host --entrypoint /usr/bin/derpctl "$tag" help >"$tmp/try.log" 2>&1; then
  if command -v runc >/dev/null &&
     "${run[@]}" --runtime runc --rm --network host --entrypoint /usr/bin/derpctl "$tag" help >"$tmp/try.log" 2>&1; then
    run+=(--runtime runc)
  else
    echo "SKIP: podman cannot run containers here:"; cat "$tmp/try.log"; exit 77
  fi
fi

# 1. The runtime's default seccomp profile.
"${run[@]}" -d --name "$ctr-default" --network host "$tag" -a 127.0.0.1:0 -http-port -1 \
  -stun-port 0 -c /tmp/derper.key >/dev/null
for _ in $(seq 1 50); do
  [ "$(podman inspect -f '{{.State.Running}}' "$ctr-default")" = true ] || break
  sleep 0.1
done
podman logs "$ctr-default" >"$tmp/default.log" 2>&1 || true
if [ "$(podman inspect -f '{{.State.Running}}' "$ctr-default")" = true ]; then
  echo "the runtime's default seccomp profile allows io_uring here"
else
  code=$(podman inspect -f '{{.State.ExitCode}}' "$ctr-default")
  if [ "$code" != 1 ] || ! grep -q "error io_uring: io_uring_setup failed .*k8s/seccomp/derpd.json" "$tmp/default.log"; then
    echo "FAIL: under the default profile derpd exited $code without its io_uring message:"
    cat "$tmp/default.log"; exit 1
  fi
  echo "the runtime's default seccomp profile refuses io_uring; derpd said so"
fi
podman rm -f "$ctr-default" >/dev/null

# 2. Confined as in k8s/, configured by DERP_* only.
ip=127.83.$((RANDOM % 250 + 1)).$((RANDOM % 250 + 1))
stun=$((30000 + RANDOM % 20000))
mkdir -p "$tmp/certs" "$tmp/state"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$ip" \
  -addext "subjectAltName=IP:$ip" -keyout "$tmp/certs/$ip.key" -out "$tmp/certs/$ip.crt" 2>/dev/null
chmod 0644 "$tmp/certs/$ip.key"
chown -R 65532:65532 "$tmp/state"
"${run[@]}" -d --name "$ctr" --network host \
  --security-opt "seccomp=$DERPD_SOURCE_ROOT/k8s/seccomp/derpd.json" \
  --read-only --cap-drop ALL --cap-add NET_BIND_SERVICE --user 65532:65532 \
  -v "$tmp/certs:/certs:ro" -v "$tmp/state:/var/lib/derper" \
  -e DERP_DOMAIN="$ip" -e DERP_CERT_MODE=manual -e DERP_CERT_DIR=/certs \
  -e DERP_ADDR="$ip:443" -e DERP_HTTP_PORT=-1 -e DERP_STUN_PORT="$stun" \
  "$tag" >/dev/null
ok=""
for _ in $(seq 1 100); do
  podman logs "$ctr" >"$tmp/ctr.log" 2>&1 || true
  if grep -q "listening on https://$ip:443" "$tmp/ctr.log"; then ok=1; break; fi
  [ "$(podman inspect -f '{{.State.Running}}' "$ctr")" = true ] || break
  sleep 0.1
done
[ -n "$ok" ] || { echo "FAIL: derpd in the container did not listen:"; podman logs "$ctr"; exit 1; }
grep -q "shards: " "$tmp/ctr.log" || { echo "FAIL: no shards line"; cat "$tmp/ctr.log"; exit 1; }
if ! "$DERPCTL_BINARY" probe --ca "$tmp/certs/$ip.crt" "https://$ip/derp" >"$tmp/probe.log" 2>&1; then
  echo "FAIL: derpctl probe through the container:"; cat "$tmp/probe.log"; podman logs "$ctr"; exit 1
fi
cat "$tmp/probe.log"
[ -s "$tmp/state/derper.key" ] || { echo "FAIL: the key was not written to the state volume"; exit 1; }
if command -v stunclient >/dev/null; then
  stunclient --localaddr 127.0.0.1 "$ip" "$stun" | grep -q "Binding test: success" || {
    echo "FAIL: STUN through the container"; podman logs "$ctr"; exit 1; }
fi
podman stop -t 15 "$ctr" >/dev/null
code=$(podman inspect -f '{{.State.ExitCode}}' "$ctr")
[ "$code" = 0 ] || { echo "FAIL: derpd exited $code on SIGTERM:"; podman logs "$ctr"; exit 1; }
echo "ok: the image relays DERP confined by k8s/seccomp/derpd.json, as a non-root user on port 443"
