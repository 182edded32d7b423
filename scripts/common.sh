# Sourced by the other scripts: where the venv is and how CMake finds LibTorch.
CST_VENV="${CST_VENV:-$HOME/.cache/cst-train/venv}"
CST_PYTHON="$CST_VENV/bin/python"
CST_BUILD="${CST_BUILD:-build}"
cst_torch_prefix() { "$CST_PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)'; }
# ccache (when installed) is keyed on paths relative to the clone, so clones share their objects.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
# Configure (once) and build the given targets (default: everything) in $CST_BUILD.
cst_build() {
  if [ ! -f "$CST_BUILD/build.ninja" ]; then
    local launcher=()
    command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
    cmake -S . -B "$CST_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$(cst_torch_prefix)" "${launcher[@]}"
  fi
  local targets=()
  for t in "$@"; do targets+=(--target "$t"); done
  cmake --build "$CST_BUILD" -j"$(nproc)" "${targets[@]}"
}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
