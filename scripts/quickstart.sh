#!/usr/bin/env bash
# The main job end to end on a fresh Debian 12 machine: installs the dependencies, builds,
# prepares the King James Bible (Debian's bible-kjv, Project Gutenberg book #10) like PG-19,
# trains configs/tiny_lm.cfg (a tiny causal CST) with `mpirun -np 2` on CPU for a few minutes,
# plots the loss curves to runs/tiny_lm/loss.png, and ends by continuing a verse with the trained
# weights (cst-generate, seeded sampling). Extra arguments go to cst-train, e.g.
#   bash scripts/quickstart.sh --train.steps 50
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
source scripts/common.sh
cst_build cst-train cst-prep cst-generate
bash scripts/prepare-kjv.sh "$CST_BUILD"
rm -rf runs/tiny_lm
OMP_NUM_THREADS=1 mpirun -np 2 --oversubscribe --bind-to none \
  "$CST_BUILD/launcher/cst-train" --config configs/tiny_lm.cfg "$@"
"$CST_PYTHON" scripts/plot_metrics.py runs/tiny_lm
"$CST_BUILD/launcher/cst-generate" --weights runs/tiny_lm/model.h5 --tokenizer data/kjv/tokenizer.model \
  --prompt "And God said, Let there be light:" --max-new-tokens 40 \
  --temperature 0.8 --top-k 40 --seed 1
