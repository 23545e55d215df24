#!/usr/bin/env bash
# Installs derpd as a systemd service: the derpd and derpctl binaries from a
# build directory, the unit, the derpd system user, and a default
# /etc/default/derpd (never overwriting one that exists).
#
#   tools/install.sh [options] [BUILD_DIR]
#     BUILD_DIR      install the binaries already built there; without it,
#                    the release build in build-release/ is configured (if
#                    needed) and built first (--buildtype=release)
#     --prefix DIR   binaries go to DIR/bin (default /usr/local)
#     --destdir DIR  install under the staging root DIR; nothing on this
#                    machine changes (no user, no daemon-reload)
#     --dry-run      print what would be done, do nothing
set -euo pipefail

usage() { sed -n '2,14s/^# \{0,1\}//p' "$0"; }

src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=""
prefix=/usr/local
destdir=""
dry_run=false
while (($#)); do
  case "$1" in
    --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
    --destdir=*) destdir=${1#*=}; shift ;;
    --dry-run) dry_run=true; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *)
      [ -z "$build_dir" ] || { echo "install.sh: one build directory, please" >&2; exit 2; }
      build_dir=$1; shift ;;
  esac
done
if [ -z "$build_dir" ]; then
  # What users install is the release build (what the benchmarks measure too).
  build_dir=$src_dir/build-release
  if $dry_run; then
    echo "would build: meson setup $build_dir --buildtype=release; ninja -C $build_dir"
  else
    "$src_dir/tools/deps.sh"
    [ -f "$build_dir/build.ninja" ] || meson setup "$build_dir" --buildtype=release >/dev/null
    ninja -C "$build_dir" src/derpd/derpd tools/derpctl
  fi
fi
case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be absolute" >&2; exit 2 ;; esac
if [ -n "$destdir" ]; then
  $dry_run || mkdir -p "$destdir"
  [ ! -d "$destdir" ] || destdir=$(cd "$destdir" && pwd)
fi

derpd_bin=$build_dir/src/derpd/derpd
derpctl_bin=$build_dir/tools/derpctl
for f in "$derpd_bin" "$derpctl_bin"; do
  [ -x "$f" ] || $dry_run || { echo "install.sh: $f not found: build first (meson setup $build_dir --buildtype=release && ninja -C $build_dir)" >&2; exit 1; }
done
if [ -z "$destdir" ] && ! $dry_run && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (or with --destdir DIR, or --dry-run)" >&2
  exit 1
fi

# Runs a command, or only shows it with --dry-run.
run() {
  if $dry_run; then
    echo "would run: $*"
  else
    echo "+ $*"
    "$@"
  fi
}

bin_dir=$prefix/bin
unit=/etc/systemd/system/derpd.service
env_file=/etc/default/derpd
sysusers=/etc/sysusers.d/derpd.conf

run install -d -m 0755 "$destdir$bin_dir" "$destdir/etc/systemd/system" "$destdir/etc/default" \
  "$destdir/etc/sysusers.d"
run install -m 0755 "$derpd_bin" "$destdir$bin_dir/derpd"
run install -m 0755 "$derpctl_bin" "$destdir$bin_dir/derpctl"

# The unit, with ExecStart pointing at where derpd was just put.
unit_tmp=$(mktemp)
trap 'rm -f "$unit_tmp"' EXIT
sed "s#^ExecStart=/usr/local/bin/derpd #ExecStart=$bin_dir/derpd #" \
  "$src_dir/tools/systemd/derpd.service" >"$unit_tmp"
run install -m 0644 "$unit_tmp" "$destdir$unit"
run install -m 0644 "$src_dir/tools/systemd/derpd.sysusers" "$destdir$sysusers"

if [ -e "$destdir$env_file" ]; then
  echo "keeping the existing $destdir$env_file"
else
  run install -m 0644 "$src_dir/tools/systemd/derpd.default" "$destdir$env_file"
fi

systemd_running=false
[ "$(ps -p 1 -o comm= 2>/dev/null)" = "systemd" ] && systemd_running=true
if [ -z "$destdir" ]; then
  if ! getent passwd derpd >/dev/null; then
    if command -v systemd-sysusers >/dev/null; then
      run systemd-sysusers "$sysusers"
    else
      run useradd --system --user-group --home-dir /var/lib/derpd --no-create-home \
        --shell /usr/sbin/nologin --comment "derpd DERP relay" derpd
    fi
  fi
  if $systemd_running; then
    run systemctl daemon-reload
  else
    echo "systemd is not PID 1 here: skipped systemctl daemon-reload"
  fi
fi

if $dry_run; then
  echo "dry run: nothing was changed"
  exit 0
fi
cat <<EOF

Installed derpd under ${destdir:-/}. Next:
  1. Edit $env_file: at least DERP_HOSTNAME and DERP_CERT_MODE=manual
     (certificates in /var/lib/derpd/certs, <hostname>.crt and .key, owned by derpd;
     an IP-address hostname gets a self-signed certificate made there).
     To keep a derper identity: install -o derpd -m 0600 derper.key /var/lib/derpd/derper.key
  2. systemctl enable --now derpd
  3. systemctl status derpd; journalctl -u derpd -f
     $bin_dir/derpctl probe https://<hostname>
  Certificates changed: systemctl reload derpd. Unit changes: systemctl edit derpd.
EOF
