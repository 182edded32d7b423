#!/usr/bin/env bash
# CST against full attention on ListOps at equal steps (docs/BENCHMARKS.md, "Fine-tuning"):
#
#   scripts/listops-compare.sh <build dir> [--out runs/listops-compare] [--data data/listops-short]
#                              [--steps 300] [--train 2000] [--max-length 200] [--batch 32] [--np 1]
#                           [--extra "--model.d_model 64 ..."]  (options for every cst-train run)
#
# 1. scripts/listops_gen.py (LRA's procedure, lengths in (10, --max-length)) -> <data>/basic_*.tsv,
#    then cst-prep --task cls --format lra-listops at N = the next multiple of 64 -> <data>-cls.
# 2. configs/lra_listops.cfg and its full-attention twin, trained from scratch with the same
#    seed, data order and steps, at the short length (model.max_seq_len = N).
# 3. Prints the validation accuracy of both (last and best validation) and the majority-class
#    rate. Exit 1 when a run fails or reports a non-finite loss. <out> is this script's own
#    folder (marked by <out>/.listops-compare); a folder without the mark is refused.
set -euo pipefail

usage() { echo "usage: $0 <build dir> [--out DIR] [--data DIR] [--steps N] [--train N] [--max-length N] [--batch G] [--np W] [--extra ARGS]" >&2; exit 2; }
[ $# -ge 1 ] || usage
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$1"; shift
out="$root/runs/listops-compare" data="$root/data/listops-short" steps=300 ntrain=2000 maxlen=200 batch=32 np=1 extra=""
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || usage
  case "$1" in
    --out) out="$2" ;;
    --data) data="${2%/}" ;;
    --steps) steps="$2" ;;
    --train) ntrain="$2" ;;
    --max-length) maxlen="$2" ;;
    --batch) batch="$2" ;;
    --extra) extra="$2" ;;
    --np) np="$2" ;;
    *) usage ;;
  esac
  shift 2
done
train="$build/launcher/cst-train" prep="$build/launcher/cst-prep"
[ -x "$train" ] && [ -x "$prep" ] || { echo "error: build the cst-train and cst-prep targets first" >&2; exit 2; }
if [ -e "$out" ] && [ ! -f "$out/.listops-compare" ]; then
  echo "error: $out exists and was not made by this script: choose another --out" >&2; exit 2
fi
mkdir -p "$out" && touch "$out/.listops-compare"
launch=("$train")
[ "$np" = 1 ] || launch=(mpirun -np "$np" --oversubscribe --bind-to none "$train")
cd "$root"
source scripts/common.sh

n=$(( (maxlen + 2 + 63) / 64 * 64 ))  # <s> tokens </s>, whole slices
python3 scripts/listops_gen.py --output "$data" --train "$ntrain" --val 200 --test 200 --min-length 10 \
        --max-length "$maxlen" > /dev/null
overwrite=()
[ -f "$data-cls/cst-prep.json" ] && overwrite=(--overwrite)
"$prep" --task cls --format lra-listops --input "$data" --output "$data-cls" --seq-len "$n" -q "${overwrite[@]}"

run() {  # <log dir> <args...>
  local dir="$1"; shift
  rm -rf "$dir"
  local t0=$SECONDS
  "${launch[@]}" "$@" $extra --data.train "$data-cls/train" --data.valid "$data-cls/validation" --model.max_seq_len "$n" \
      --train.steps "$steps" --optim.lr 1e-3 --optim.warmup_steps $((steps / 10)) --log.eval_interval $((steps / 3)) \
      --checkpoint.interval 0 --train.global_batch "$batch" --train.micro_batch "$batch" \
      --log.dir "$dir" --log.peak_tflops 1 --log.tensorboard false > "$dir.log" 2>&1 ||
    { echo "error: run $dir failed:" >&2; tail -20 "$dir.log" >&2; exit 1; }
  echo "[listops-compare] $(basename "$dir"): $((SECONDS - t0)) s, $(grep '^eval' "$dir.log" | tail -1)"
}
run "$out/cst" --config configs/lra_listops.cfg
run "$out/full" --config configs/lra_listops_full.cfg

"$CST_PYTHON" - "$out" "$data-cls/validation" <<'PY'
import glob, json, math, sys
import h5py
out, valid = sys.argv[1], sys.argv[2]
labels = []
for f in sorted(glob.glob(valid + "/*.h5")):
    with h5py.File(f, "r") as h:
        labels += [int(x) for x in h["labels"][:] if x >= 0]
majority = max(labels.count(c) for c in set(labels)) / len(labels)
print("\n| attention | validation accuracy (last) | best validation | loss (last) |")
print("|---|---|---|---|")
for run in ("cst", "full"):
    e = [json.loads(l) for l in open(f"{out}/{run}/metrics.jsonl") if '"eval"' in l]
    if not e or not all(math.isfinite(x["loss"]) for x in e):
        sys.exit(f"error: {run}: non-finite validation loss or no validation")
    print(f"| {run} | {e[-1]['accuracy']:.4f} | {max(x['accuracy'] for x in e):.4f} | {e[-1]['loss']:.4f} |")
print(f"\nmajority class of the validation split: {majority:.4f} ({len(labels)} examples)")
PY
