#!/usr/bin/env bash
# The main job end to end on a fresh Debian 12 machine: installs the dependencies, builds,
# prepares the King James Bible (Debian's bible-kjv, Project Gutenberg book #10) like PG-19,
# trains configs/tiny_lm.cfg (a tiny causal CST) with `mpirun -np 2` on CPU for a few minutes,
# and plots the loss curves to runs/tiny_lm/loss.png. Extra arguments go to cst-train, e.g.
#   bash scripts/quickstart.sh --train.steps 50
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
source scripts/common.sh
cst_build cst-train cst-prep
bash scripts/prepare-kjv.sh "$CST_BUILD"
rm -rf runs/tiny_lm
OMP_NUM_THREADS=1 mpirun -np 2 --oversubscribe --bind-to none \
  "$CST_BUILD/launcher/cst-train" --config configs/tiny_lm.cfg "$@"
"$CST_PYTHON" scripts/plot_metrics.py runs/tiny_lm
