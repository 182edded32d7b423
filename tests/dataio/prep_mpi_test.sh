#!/usr/bin/env bash
# `mpirun -np 2 cst-prep` must write the same tokenizer and the same shards (file names and
# token datasets) as a 1-rank run, for an LM (pg19 layout) and an MLM (jsonl) corpus, and for the
# two together (two --input, one tokenizer); a bad input must make a 1-rank run exit 2 and the
# 2-rank job exit non-zero, printing "error: ...".
# usage: prep_mpi_test.sh <cst-prep> <work dir> <mpiexec> <h5diff>
set -euo pipefail
prep=$1 work=$2 mpiexec=$3 h5diff=$4
rm -rf "$work" && mkdir -p "$work"
mpirun_np2() { "$mpiexec" -np 2 --oversubscribe --bind-to none "$@"; }

# A deterministic pseudo-English text: gen <seed> <words>
gen() {
  awk -v seed="$1" -v n="$2" 'BEGIN {
    nw = split("the of and to in a is that for it as was with be by on not he I this are or his from at which but have an they you were her she there been one all we their has would when if so no will more", w, " ");
    x = seed; line = "";
    for (i = 0; i < n; i++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      word = w[int(x / 65536) % nw + 1];
      line = line (line == "" ? "" : " ") word;
      if (x % 11 == 0) line = line ".";
      if (x % 13 == 0) { print line; line = "" }
    }
    print line ".";
  }'
}
mkdir -p "$work/pg19/train" "$work/pg19/validation" "$work/jsonl"
for b in 11 12 13 14 15; do gen "$b" 4000 > "$work/pg19/train/$b.txt"; done
gen 21 3000 > "$work/pg19/validation/21.txt"
for d in $(seq 1 40); do
  printf '{"id": %d, "text": "%s"}\n' "$d" "$(gen "$d" 300 | tr '\n' ' ')" >> "$work/jsonl/part-$((d % 3)).jsonl"
done

compare() {  # compare <dir a> <dir b> <datasets...>
  local a=$1 b=$2; shift 2
  cmp "$a/tokenizer.model" "$b/tokenizer.model"
  diff <(cd "$a" && find . -name '*.h5' | sort) <(cd "$b" && find . -name '*.h5' | sort)
  local n=0
  for f in $(cd "$a" && find . -name '*.h5' | sort); do
    for d in "$@"; do "$h5diff" "$a/$f" "$b/$f" "$d"; done
    n=$((n + 1))
  done
  [ "$(find "$a" -path '*/train/*.h5' | wc -l)" -ge 2 ] || { echo "expected >= 2 train shards"; exit 1; }
  echo "ok: $n shards identical ($*)"
}

args_lm=(--input "$work/pg19" --task lm --vocab-size 300 --shard-tokens 3000 -q)
"$prep" "${args_lm[@]}" --output "$work/lm-np1"
mpirun_np2 "$prep" "${args_lm[@]}" --output "$work/lm-np2"
compare "$work/lm-np1" "$work/lm-np2" /tokens /doc_offsets

args_mlm=(--input "$work/jsonl" --task mlm --seq-len 32 --vocab-size 300 --shard-rows 50 --valid-fraction 0.2 -q)
"$prep" "${args_mlm[@]}" --output "$work/mlm-np1"
mpirun_np2 "$prep" "${args_mlm[@]}" --output "$work/mlm-np2"
compare "$work/mlm-np1" "$work/mlm-np2" /input_ids /input_mask /segment_ids

# Two corpora, one tokenizer: <output>/{books,web}/...
args_two=(--input "books=$work/pg19" --input "web=$work/jsonl" --task lm --vocab-size 300 --shard-tokens 3000 -q)
"$prep" "${args_two[@]}" --output "$work/two-np1"
mpirun_np2 "$prep" "${args_two[@]}" --output "$work/two-np2"
[ -d "$work/two-np1/books/train" ] && [ -d "$work/two-np1/web/train" ] || { echo "expected books/ and web/"; exit 1; }
compare "$work/two-np1" "$work/two-np2" /tokens /doc_offsets

set +e
"$prep" --input "$work/missing" --output "$work/bad" -q 2> "$work/bad1.err"
rc=$?
set -e
[ "$rc" = 2 ] || { echo "a missing input must exit 2, got $rc"; exit 1; }
grep -q "^error: input '.*missing' does not exist" "$work/bad1.err"
if mpirun_np2 "$prep" --input "$work/missing" --output "$work/bad" -q 2> "$work/bad.err"; then
  echo "a missing input must fail"; exit 1
fi
grep -q "error: input '.*missing' does not exist" "$work/bad.err"
echo "ok: bad input fails under mpirun"
