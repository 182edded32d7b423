#!/usr/bin/env bash
# Save and resume time of two builds of bench_checkpoint, measured in one run: the builds take
# turns (before, after, before, after, ...) so that both see the same machine load, and the
# table gives each round and the ratio of the medians.
#
#   bench/checkpoint_before_after.sh --before OLD/bench_checkpoint --after build/bench/bench_checkpoint \
#       [--rounds 3] [--dir /dev/shm] [-- bench_checkpoint options]
#
# The "after" figure is the default checksum's row (xxh3_128); a build from before checksums
# became selectable prints one row, which is used as is. Each run gets a fresh scratch folder
# under --dir, which bench_checkpoint removes.
set -euo pipefail

usage() { echo "usage: $0 --before BIN --after BIN [--rounds R] [--dir DIR] [-- bench options]" >&2; exit 2; }
before="" after="" rounds=3 dir=/dev/shm
while [[ $# -gt 0 ]]; do
  case "$1" in
    --before) before=${2:?}; shift 2 ;;
    --after) after=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --dir) dir=${2:?}; shift 2 ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[[ -x "$before" && -x "$after" ]] || usage
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "error: --rounds must be a positive integer, got '$rounds'" >&2; exit 2; }
[[ -d "$dir" ]] || { echo "error: --dir '$dir' is not a folder" >&2; exit 2; }
opts=("$@")
[[ ${#opts[@]} -gt 0 ]] || opts=(--steps 1 --repeats 3 --threads 1)

# One run of bin; prints "size save resume" of the row that stands for the build.
run_one() {
  local bin=$1 out scratch
  scratch="$dir/cst-ckpt-before-after-$$-$RANDOM"
  out=$("$bin" --dir "$scratch" "${opts[@]}" 2>&1) || { echo "$out" >&2; echo "error: $bin failed" >&2; exit 1; }
  # Rows of the save table: "| size | save | GB/s | load | GB/s |" (one row) or
  # "| checksum | size | save | GB/s | resume | GB/s | hash |" (one row per checksum).
  awk -F'|' '
    /^\| *xxh3_128 *\|/ { print $3, $4, $6; found = 1; exit }
    /^\| *[0-9.]+ *\| *[0-9.]+ *\|/ && !first { first = $2 " " $3 " " $5 }
    END { if (!found && first != "") print first }' <<<"$out"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf '| round | build | checkpoint (GB) | save (s) | resume (s) |\n| ---: | --- | ---: | ---: | ---: |\n'
bs=() br=() as=() ar=()
for ((r = 1; r <= rounds; ++r)); do
  read -r size save resume < <(run_one "$before")
  printf '| %d | before | %s | %s | %s |\n' "$r" "$size" "$save" "$resume"
  bs+=("$save") br+=("$resume")
  read -r size save resume < <(run_one "$after")
  printf '| %d | after | %s | %s | %s |\n' "$r" "$size" "$save" "$resume"
  as+=("$save") ar+=("$resume")
done
mbs=$(printf '%s\n' "${bs[@]}" | median) mas=$(printf '%s\n' "${as[@]}" | median)
mbr=$(printf '%s\n' "${br[@]}" | median) mar=$(printf '%s\n' "${ar[@]}" | median)
awk -v bs="$mbs" -v as="$mas" -v br="$mbr" -v ar="$mar" 'BEGIN {
  printf "\nmedians: save %.2f s -> %.2f s (%.2fx faster), resume %.2f s -> %.2f s (%.2fx faster)\n",
         bs, as, bs / as, br, ar, br / ar }'
