#!/usr/bin/env bash
# Does MLM pretraining help? On the KJV (docs/BENCHMARKS.md, "Fine-tuning"):
#
#   scripts/finetune-kjv.sh <build dir> [--out runs/finetune-kjv] [--data data/kjv]
#                           [--pretrain-steps 200] [--steps 100] [--seeds "1 2 3"] [--batch 32] [--np 1]
#                           [--extra "--model.d_model 64 ..."]  (options for every cst-train run)
#                           [--pretrained FILE]  (skip step 2: fine-tune from this MLM weights file)
#                           [--train-every K]  (label budget: every K-th train passage; default 1, all)
#
# 1. Data (in --data): scripts/prepare-kjv.sh (MLM shards of the train books, every 7th chapter held out) and
#    scripts/prepare-kjv-cls.sh (the 6-way book-group task on the held-out chapters).
# 2. Pretrain configs/tiny_mlm.cfg for --pretrain-steps steps -> <out>/mlm/model.h5 (with
#    --pretrained FILE: no pretraining here, FILE is the model fine-tuned below).
# 3. For each seed: fine-tune configs/tiny_cls.cfg from it (--init.weights) and train the same
#    classifier from scratch, --steps steps each, same data order and head init.
# 4. Prints a table: validation accuracy of each run at the last step (and the best), the mean
#    and spread (max - min) over the seeds, and the majority-class rate of the validation split.
#    Exit 1 when a run fails or reports a non-finite loss.
# <out> is this script's own folder (marked by <out>/.finetune-kjv): its runs are replaced on
# each call; a folder without the mark is refused.
set -euo pipefail

usage() { echo "usage: $0 <build dir> [--out DIR] [--data DIR] [--pretrain-steps N] [--steps N] [--seeds \"1 2 3\"] [--batch G] [--np W] [--extra ARGS] [--pretrained FILE] [--train-every K]" >&2; exit 2; }
[ $# -ge 1 ] || usage
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$1"; shift
out="$root/runs/finetune-kjv" data="$root/data/kjv" pretrain=200 steps=100 seeds="1 2 3" batch=32 np=1 extra="" pretrained="" every=1
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || usage
  case "$1" in
    --out) out="$2" ;;
    --data) data="${2%/}" ;;
    --pretrain-steps) pretrain="$2" ;;
    --steps) steps="$2" ;;
    --seeds) seeds="$2" ;;
    --batch) batch="$2" ;;
    --extra) extra="$2" ;;
    --np) np="$2" ;;
    --pretrained) pretrained="$(realpath "$2")" ;;
    --train-every) every="$2" ;;
    *) usage ;;
  esac
  shift 2
done
train="$build/launcher/cst-train"
[ -x "$train" ] || { echo "error: $train not found: build the cst-train and cst-prep targets first" >&2; exit 2; }
[ -z "$pretrained" ] || [ -f "$pretrained" ] || { echo "error: --pretrained '$pretrained' is not a file" >&2; exit 2; }
if [ -e "$out" ] && [ ! -f "$out/.finetune-kjv" ]; then
  echo "error: $out exists and was not made by this script: choose another --out" >&2; exit 2
fi
mkdir -p "$out" && touch "$out/.finetune-kjv"
launch=("$train")
[ "$np" = 1 ] || launch=(mpirun -np "$np" --oversubscribe --bind-to none "$train")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

cd "$root"
source scripts/common.sh
scripts/prepare-kjv.sh "$build" "$data" >/dev/null
scripts/prepare-kjv-cls.sh "$build" "$data" --train-every "$every"
cls="$data/cls"
[ "$every" = 1 ] || cls="$data/cls-every$every"
mlm_data=(--data.train "$data/mlm/train" --data.valid "$data/mlm/validation")
cls_data=(--data.train "$cls/train" --data.valid "$cls/validation")

# Quiet runs: the eval lines only (the full logs stay in <run>.log).
run() {  # <log dir> <args...>
  local dir="$1"; shift
  rm -rf "$dir"
  local t0=$SECONDS
  "${launch[@]}" "$@" $extra --train.global_batch "$batch" --train.micro_batch "$batch" \
      --log.dir "$dir" --log.peak_tflops 1 --log.tensorboard false > "$dir.log" 2>&1 ||
    { echo "error: run $dir failed:" >&2; tail -20 "$dir.log" >&2; exit 1; }
  echo "[finetune-kjv] $(basename "$dir"): $((SECONDS - t0)) s, $(grep '^eval' "$dir.log" | tail -1)"
}

if [ -z "$pretrained" ]; then
  run "$out/mlm" --config configs/tiny_mlm.cfg "${mlm_data[@]}" --train.steps "$pretrain" --log.eval_interval "$pretrain"
  pretrained="$out/mlm/model.h5"
fi
for s in $seeds; do
  run "$out/pretrained-s$s" --config configs/tiny_cls.cfg "${cls_data[@]}" --log.eval_interval $(((steps + 1) / 2)) --init.weights "$pretrained" \
      --train.seed "$s" --train.steps "$steps"
  run "$out/scratch-s$s" --config configs/tiny_cls.cfg "${cls_data[@]}" --log.eval_interval $(((steps + 1) / 2)) --train.seed "$s" --train.steps "$steps"
done

"$CST_PYTHON" - "$out" "$cls/validation" $seeds <<'PY'
import glob, json, math, sys
import h5py
out, valid, seeds = sys.argv[1], sys.argv[2], sys.argv[3:]
labels = []
for f in sorted(glob.glob(valid + "/*.h5")):
    with h5py.File(f, "r") as h:
        labels += [int(x) for x in h["labels"][:] if x >= 0]
majority = max(labels.count(c) for c in set(labels)) / len(labels)
def accs(run):
    e = [json.loads(l) for l in open(f"{out}/{run}/metrics.jsonl") if '"eval"' in l]
    bad = [x for x in e if not math.isfinite(x["loss"])]
    if not e or bad:
        sys.exit(f"error: {run}: non-finite validation loss or no validation: {bad or e}")
    return e[-1]["accuracy"], max(x["accuracy"] for x in e)
print(f"\n| init | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | spread (max - min) | best of run, mean |")
print("|---|" + "---|" * (len(seeds) + 3))
for kind in ("pretrained", "scratch"):
    a = [accs(f"{kind}-s{s}") for s in seeds]
    last = [x for x, _ in a]
    print(f"| {kind} | " + " | ".join(f"{x:.4f}" for x in last) +
          f" | {sum(last)/len(last):.4f} | {max(last)-min(last):.4f} | {sum(b for _, b in a)/len(a):.4f} |")
print(f"\nmajority class of the validation split: {majority:.4f} ({len(labels)} examples)")
PY
