#!/usr/bin/env bash
# The test command: installs the dependencies (idempotent), configures, builds, and runs every
# test with CTest. Tests that need a GPU print "SKIPPED: no CUDA device" and count as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
source scripts/common.sh
cst_build
ctest --test-dir "$CST_BUILD" --output-on-failure -j2 --timeout 900 "$@"
