#!/usr/bin/env bash
# 2 ranks x 1 thread vs 1 rank x 2 threads: cst-train throughput on the same config, steps and
# global batch, measured back to back in one run. Prints a Markdown table.
#
#   bench/ranks_vs_threads.sh [build dir] [config] [steps]     (defaults: build configs/tiny_lm.cfg 40)
# Needs the KJV data of scripts/prepare-kjv.sh for the default config.
set -euo pipefail
build="${1:-build}"; config="${2:-configs/tiny_lm.cfg}"; steps="${3:-40}"
source "$(dirname "$0")/../scripts/common.sh"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common=(--config "$config" --train.steps "$steps" --log.interval 10 --log.eval_interval 0
        --checkpoint.save_final false --log.tensorboard false)
run() {  # name np threads
  OMP_NUM_THREADS=$3 mpirun -np "$2" --oversubscribe --bind-to none "$build/launcher/cst-train" "${common[@]}" \
    --dist.threads "$3" --log.dir "$out/$1" > "$out/$1.log" 2>&1 || { cat "$out/$1.log"; exit 1; }
}
run ranks2 2 1
run threads2 1 2
# Mean tokens/s and comm wait over the log records after the first (warm-up) one.
"$CST_PYTHON" - "$out/ranks2/metrics.jsonl" "$out/threads2/metrics.jsonl" <<'PY2'
import json, sys
def stats(path):
    r = [json.loads(l) for l in open(path) if '"train"' in l][1:]
    return (sum(x["tokens_per_s"] for x in r) / len(r), sum(x["comm_wait"] for x in r) / len(r))
(t2, c2), (t1, c1) = stats(sys.argv[1]), stats(sys.argv[2])
print("| layout | tokens/s | comm wait | speed vs 1 rank x 2 threads |")
print("|---|---|---|---|")
print(f"| 2 ranks x 1 thread | {t2:.0f} | {100 * c2:.1f}% | {t2 / t1:.2f} |")
print(f"| 1 rank x 2 threads | {t1:.0f} | {100 * c1:.1f}% | 1.00 |")
PY2
