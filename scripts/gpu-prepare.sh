#!/usr/bin/env bash
# Prepares, on this Debian 12 machine, what scripts/gpu-check.sh needs on a GPU machine that has
# CUDA, nvcc, CMake and PyTorch but no Boost, HDF5, MPI, GoogleTest, SentencePiece or protobuf
# development packages, and no network:
#
#   .gpu-debs/debs/*.deb   Debian 12 packages, fetched with `apt-get download` (not installed):
#                          the -dev packages of our dependencies and the run-time closure of
#                          their libraries, less the base system every Linux has (libc, libstdc++, ...)
#   .gpu-debs/kjv/         the King James Bible split into books (scripts/prepare-kjv.sh), the
#                          text the bf16 training step is trained on
#   .gpu-debs/MANIFEST     package, version and size of every .deb
#
# .gpu-debs/ is git-ignored; a device run carries it (`carry: [".gpu-debs"]`). The whole folder
# must stay under 60 MiB (checked). Idempotent: a second run with the same package versions
# downloads nothing.
#
#   bash scripts/gpu-prepare.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."
OUTDIR=.gpu-debs
LIMIT_MIB=60
[ "${1:-}" = "--force" ] && rm -rf "$OUTDIR"

# Development packages: headers, link-time .so links, CMake/pkg-config files, protoc.
DEV_PKGS=(libboost-program-options1.74-dev libboost1.74-dev
          libhdf5-dev
          libopenmpi-dev openmpi-bin openmpi-common
          libgtest-dev libgmock-dev
          libsentencepiece-dev
          libprotobuf-dev protobuf-compiler
          libssl-dev
          nlohmann-json3-dev libxxhash-dev)
# Libraries our programs load, directly or through the libraries above.
RUNTIME_ROOTS=(libboost-program-options1.74.0 libhdf5-103-1 hdf5-tools libopenmpi3 openmpi-bin
               libsentencepiece0 libprotobuf32 libprotoc32 libssl3)
# The base system (present on any glibc Linux with a C++ compiler), tools we do not run, and the
# X11 / OpenCL chain that only hwloc's optional, dlopen()ed plugins use.
EXCLUDE='^(libc6|libgcc-s1|libstdc\+\+6|gcc-12-base|libcrypt1|zlib1g|liblzma5|libzstd1|libbz2-1\.0|libuuid1|libudev1|libffi8|libgmp10|libpcre2-8-0|libtinfo6|libmd0|libbsd0|libedit2|readline-common|libreadline8|adduser|passwd|dpkg|tar|debconf|cdebconf|install-info|libdebian-installer4|libnewt0\.52|libslang2|libtextwrap1|libaudit.*|libpam.*|libselinux1|libsemanage.*|libsepol2|libcap-ng0|libdb5\.3|openssh-client|libcbor0\.8|libfido2-1|libhwloc-plugins|libxnvctrl0|libx11-.*|libxcb1|libxau6|libxdmcp6|libxext6|ocl-icd-libopencl1)$'

command -v apt-get >/dev/null || { echo "error: apt-get not found: run this on Debian 12" >&2; exit 2; }
mapfile -t closure < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
                         --no-replaces --no-enhances --no-pre-depends "${RUNTIME_ROOTS[@]}" |
                       grep -v '^[ <]' | sort -u | grep -Ev "$EXCLUDE")
mapfile -t pkgs < <(printf '%s\n' "${closure[@]}" "${DEV_PKGS[@]}" | sort -u)

# Candidate versions, one apt-cache call for all.
declare -A version
while read -r p v; do version[$p]=$v; done < <(apt-cache show --no-all-versions "${pkgs[@]}" |
                                               awk '/^Package:/ {p = $2} /^Version:/ {print p, $2}')
mkdir -p "$OUTDIR/debs"
# Drop files of packages no longer in the list, or of other versions.
for f in "$OUTDIR"/debs/*.deb; do
  [ -e "$f" ] || continue
  p=$(dpkg-deb -f "$f" Package) v=$(dpkg-deb -f "$f" Version)
  [ "${version[$p]:-}" = "$v" ] || { echo "[gpu-prepare] removing stale $f"; rm -f "$f"; }
done
need=()
for p in "${pkgs[@]}"; do
  v=${version[$p]:-}
  [ -n "$v" ] || { echo "error: package $p has no candidate version (run apt-get update)" >&2; exit 2; }
  # apt-get download names files <package>_<version, ':' as %3a>_<arch>.deb
  compgen -G "$OUTDIR/debs/${p}_${v//:/%3a}_*.deb" >/dev/null || need+=("$p")
done
if [ ${#need[@]} -eq 0 ]; then
  echo "[gpu-prepare] ${#pkgs[@]} packages: already in $OUTDIR/debs"
else
  echo "[gpu-prepare] downloading ${#need[@]} of ${#pkgs[@]} packages"
  sandbox=()
  [ "$(id -u)" -eq 0 ] && sandbox=(-o APT::Sandbox::User=root)
  (cd "$OUTDIR/debs" && apt-get download -q "${sandbox[@]}" "${need[@]}")
fi
for f in "$OUTDIR"/debs/*.deb; do
  printf '%s %s %s\n' "$(dpkg-deb -f "$f" Package)" "$(dpkg-deb -f "$f" Version)" "$(stat -c %s "$f")"
done > "$OUTDIR/MANIFEST"

# The training text: the KJV books, as the quickstart prepares them (no build needed for this step).
if [ ! -f "$OUTDIR/kjv/.done" ]; then
  command -v bible >/dev/null || { echo "error: 'bible' not found: apt-get install bible-kjv" >&2; exit 2; }
  rm -rf "$OUTDIR/kjv"
  tmp=$(mktemp -d)
  bash scripts/prepare-kjv.sh none "$tmp/kjv" --raw-only
  mv "$tmp/kjv-raw" "$OUTDIR/kjv"
  rm -rf "$tmp"
fi

mib=$(du -sm "$OUTDIR" | cut -f1)
echo "[gpu-prepare] $OUTDIR: $(ls "$OUTDIR"/debs/*.deb | wc -l) packages, $(find "$OUTDIR/kjv" -name '*.txt' | wc -l) text files, ${mib} MiB"
if [ "$mib" -ge "$LIMIT_MIB" ]; then
  echo "error: $OUTDIR is ${mib} MiB, over the ${LIMIT_MIB} MiB a device run may carry" >&2
  exit 1
fi
