#!/usr/bin/env bash
# Installs everything cst-train needs to build, test and run on Debian 12, idempotently:
#   * Debian packages (compiler, CMake, OpenMPI, HDF5, Boost.Program_options, GoogleTest,
#     SentencePiece, nlohmann-json, xxHash, the KJV quickstart corpus, SLURM + munge for the batch-job tests,
#     clang + libFuzzer for the fuzz targets);
#   * LibTorch as the C++ library of a pinned PyPI torch wheel, plus h5py / tensorboard /
#     matplotlib / safetensors (readers of what we write) and scipy (the oracle of the metric
#     tests), in a venv OUTSIDE the clone:
#     ${CST_VENV:-$HOME/.cache/cst-train/venv}.
# A second run changes nothing and prints "already installed" for each part.
# Prints the CMAKE_PREFIX_PATH line to use on its last line.
set -euo pipefail

TORCH_VERSION="2.12.0"   # CUDA 13.0 build on PyPI; matches the toolkit at /usr/local/cuda
VENV="${CST_VENV:-$HOME/.cache/cst-train/venv}"
PY_PKGS=("torch==${TORCH_VERSION}" "h5py==3.14.0" "tensorboard==2.20.0" "matplotlib==3.10.3" "numpy<2.3"
         "scipy==1.15.3" "safetensors==0.5.3")

DEB_PKGS=(build-essential cmake ninja-build pkg-config git ca-certificates
          python3 python3-venv python3-dev
          libssl-dev
          nlohmann-json3-dev libxxhash-dev clang-format
          libopenmpi-dev openmpi-bin
          libhdf5-dev hdf5-tools
          libboost-program-options-dev
          libgtest-dev libgmock-dev
          libsentencepiece-dev sentencepiece ccache
          libprotobuf-dev protobuf-compiler
          bible-kjv
          slurm-wlm munge
          clang-14 libclang-rt-14-dev)

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${DEB_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "[install-deps] Debian packages: already installed"
else
  echo "[install-deps] Debian packages to install: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  sudo_if_needed apt-get update -qq
  sudo_if_needed apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

stamp="$VENV/.cst-deps"
want="torch=${TORCH_VERSION} ${PY_PKGS[*]}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "[install-deps] Python venv $VENV: already installed"
else
  echo "[install-deps] creating venv $VENV with ${PY_PKGS[*]}"
  mkdir -p "$(dirname "$VENV")"
  [ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_PKGS[@]}"
  echo "$want" > "$stamp"
fi
echo "CMAKE_PREFIX_PATH=$("$VENV/bin/python" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
