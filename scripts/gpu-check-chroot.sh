#!/usr/bin/env bash
# Tests scripts/gpu-check.sh without a GPU, in the setting it is written for: a clean Debian 12
# chroot (debootstrap: compiler, CMake, ninja, python3, nothing else) that has none of our
# dependencies, with this clone, the torch venv and the CUDA toolkit bind-mounted in. The
# script then has only .gpu-debs/ to build from, and runs with --cpu-dry-run. A build that
# picked up a header or library of this machine's own packages could not happen there.
#
#   bash scripts/gpu-check-chroot.sh [chroot dir, default /tmp/gpu-chroot] [gpu-check.sh options]
#
# Needs root (debootstrap, mounts in a private mount namespace) and Debian's mirror. The first
# run makes the chroot (~3 minutes); the dry run then builds the GPU-check targets (~10 minutes
# on 2 cores). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CHROOT=/tmp/gpu-chroot
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then CHROOT=$1; shift; fi
source scripts/common.sh
[ "$(id -u)" -eq 0 ] || { echo "error: needs root (debootstrap, mount)" >&2; exit 2; }
[ -x "$CST_PYTHON" ] || { echo "error: $CST_PYTHON not found: run scripts/install-deps.sh" >&2; exit 2; }
[ -d .gpu-debs/debs ] || bash scripts/gpu-prepare.sh
CUDA=$(readlink -f /usr/local/cuda)
if [ ! -f "$CHROOT/.cst-ready" ]; then
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap
  rm -rf "$CHROOT"
  debootstrap --variant=minbase --include=g++,cmake,ninja-build,python3,make,xz-utils,procps \
    bookworm "$CHROOT" http://deb.debian.org/debian
  touch "$CHROOT/.cst-ready"
fi
# Everything is mounted in a private mount namespace: nothing stays mounted afterwards.
exec unshare -m bash -euo pipefail -c '
  CHROOT=$1 ROOT=$2 VENV=$3 CUDA=$4
  bind() { mkdir -p "$CHROOT$2"; mount --bind "$1" "$CHROOT$2"; }
  bind "$ROOT" "$ROOT"
  bind "$VENV" "$VENV"
  bind "$CUDA" "$CUDA"; ln -sfn "$CUDA" "$CHROOT/usr/local/cuda"
  mount -t proc proc "$CHROOT/proc"
  mount -t sysfs sysfs "$CHROOT/sys"
  bind /dev /dev
  mount -t tmpfs tmpfs "$CHROOT/dev/shm"
  mount -t tmpfs tmpfs "$CHROOT/tmp"
  chroot "$CHROOT" /usr/bin/env -i PATH=/usr/local/cuda/bin:/usr/bin:/bin HOME=/root \
    CST_GPU_PYTHON="$VENV/bin/python" OUT="$ROOT/runs/gpu-check-dry" CST_GPU_BUILD="$ROOT/build-gpu-dry" \
    bash "$ROOT/scripts/gpu-check.sh" --cpu-dry-run "${@:5}"
' _ "$CHROOT" "$ROOT" "$CST_VENV" "$CUDA" "$@"
