#!/usr/bin/env bash
# A long-context corpus from the King James Bible for sequence-parallel runs of a million tokens
# and more (docs/SEQUENCE_PARALLEL.md "One million tokens"):
#
#   scripts/prepare-kjv-long.sh <build dir> [kjv dir, default data/kjv] [--copies 2]
#
# Needs scripts/prepare-kjv.sh's output (run first when missing): its tokenizer and raw text.
# The 57 train books, in canonical order, make one document; the document holds them --copies
# times in a row (about 0.79M tokens each copy: two hold a window of 2^20 + 1 tokens), and a
# model that uses long context can lower its loss on the second copy by recalling the first.
# A token window never crosses shards and a shard never splits a document, so the one document
# is one shard: <kjv>/long/train/shard-*.h5 (cst-prep --task lm with the KJV tokenizer, no
# validation split). A second run redoes it (--overwrite of what cst-prep wrote there).
set -euo pipefail

source "$(dirname "$0")/kjv-common.sh"
kjv_args "$0" --copies 2 "$@"
copies="$kjv_flag_value"
[[ "$copies" =~ ^[1-9][0-9]?$ ]] || { echo "error: --copies '$copies' must be an integer in [1, 99]" >&2; exit 2; }
kjv_prepared prepare-kjv-long train
raw="$kjv-long-raw"
[ ! -e "$raw" ] || [ -f "$raw/.prepare-kjv-long" ] ||
  { echo "error: $raw exists and was not made by this script: move it away" >&2; exit 2; }
rm -rf "$raw"
mkdir -p "$raw/train"
touch "$raw/.prepare-kjv-long"
doc="$raw/train/kjv-x$copies.txt"
for ((c = 0; c < copies; c++)); do
  for f in "$kjv-raw"/train/*.txt; do cat "$f"; echo; done
done > "$doc"
overwrite=()
[ -f "$kjv/long/cst-prep.json" ] && overwrite=(--overwrite)
"$prep" --input "$raw" --format pg19 --output "$kjv/long" --task lm --tokenizer "$kjv/tokenizer.model" \
        --shard-tokens $((copies * 1100000)) "${overwrite[@]}"
echo "[prepare-kjv-long] one document of $copies copies of the train books: $kjv/long/train/shard-*.h5"
