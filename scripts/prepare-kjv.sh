#!/usr/bin/env bash
# The quickstart corpus: the King James Bible from Debian's bible-kjv package, prepared like
# PG-19 and tokenized by cst-prep.
#
#   scripts/prepare-kjv.sh <build dir> [output dir, default data/kjv] [--force] [--raw-only]
#
# 1. `bible "gen1:1-rev22:21"` -> <out>-raw/{train,validation,test}/<NN>-<Book>.txt, one document
#    per book (verse numbers dropped, chapters headed "CHAPTER n"). Deterministic split:
#    test = Lamentations, Malachi, Titus, Jude; validation = Ruth, Esther, Jonah, Mark,
#    Philemon; train = the other 57 books. Beside <out>, not inside it: cst-prep refuses an
#    input inside its output. Every 7th chapter (7, 14, 21, ...) of the train books is held out
#    of the train text (and so of LM/MLM pretraining) for the classification task of
#    scripts/prepare-kjv-cls.sh: <out>-raw/heldout/<NN>-<Book>.txt, "CHAPTER n" headers and the
#    verses as `bible` prints them (numbered "  <v> text", long verses wrapped).
# 2. cst-prep trains a unigram SentencePiece tokenizer (vocab 8000) on the train books and
#    writes LM token-stream shards: <out>/{tokenizer.model,train,validation,test}.
# 3. The same tokenizer makes MLM shards (S = 128): <out>/mlm/{train,validation,test}.
# Idempotent: a step whose output is complete is skipped (cst-prep's <folder>/cst-prep.json says
# so). --force redoes every step; cst-prep then runs with --overwrite, which replaces only the
# files it wrote before. ~10 s. --raw-only stops after step 1 (no build needed;
# scripts/gpu-prepare.sh uses it).
set -euo pipefail

usage() { echo "usage: $0 <build dir> [output dir] [--force] [--raw-only]" >&2; exit 2; }
force=0 raw_only=0
args=()
for a in "$@"; do
  case "$a" in
    --force) force=1 ;;
    --raw-only) raw_only=1 ;;
    *) args+=("$a") ;;
  esac
done
[ ${#args[@]} -ge 1 ] || usage
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${args[0]}"
out="${args[1]:-$root/data/kjv}"
prep="$build/launcher/cst-prep"
[ "$raw_only" = 1 ] || [ -x "$prep" ] || { echo "error: $prep not found: build the cst-prep target first" >&2; exit 2; }
command -v bible >/dev/null || { echo "error: 'bible' not found: apt-get install bible-kjv" >&2; exit 2; }
out="${out%/}"
raw="$out-raw"
complete() { [ -f "$1/cst-prep.json" ] && grep -q '"complete": true' "$1/cst-prep.json"; }
# Written into <out>-raw/.done: raw text of another layout (before chapters were held out) is
# rebuilt, and the shards made from it are redone.
raw_layout="kjv-raw 2: every 7th chapter of the train books held out"

# The layout of older versions of this script (raw text inside <out>, no cst-prep.json): made by
# this script, so --force may remove its pieces by name; without --force nothing is touched.
if [ -f "$out/.done" ] && [ ! -f "$out/cst-prep.json" ]; then
  [ "$force" = 1 ] || { echo "error: $out was made by an older prepare-kjv.sh: rerun with --force to rebuild it" >&2; exit 2; }
  rm -rf "$out/raw" "$out/mlm" "$out/train" "$out/validation" "$out/test" "$out/tokenizer.model" "$out/.done"
  rmdir "$out" 2>/dev/null || true
fi

if [ -f "$raw/.done" ] && [ "$force" = 0 ] && grep -qxF "$raw_layout" "$raw/.done"; then
  echo "[prepare-kjv] raw text: already in $raw"
else
  [ ! -f "$raw/.done" ] || grep -qxF "$raw_layout" "$raw/.done" || force=1  # older layout: redo the shards too
  [ ! -e "$raw" ] || [ -f "$raw/.done" ] ||
    { echo "error: $raw exists and was not made by this script: move it away or choose another output dir" >&2; exit 2; }
  partial="$raw.partial"  # built here, then renamed into place: a killed run leaves no half-made $raw
  rm -rf "$partial"
  mkdir -p "$partial/train" "$partial/validation" "$partial/test" "$partial/heldout"
  # Chapter headers are "<Book> <n>" lines after an empty line; verses are "  <v> text".
  bible "gen1:1-rev22:21" | awk -v raw="$partial" '
    BEGIN { split("Ruth Esther Jonah Mark Philemon", v, " "); for (i in v) split_of[v[i]] = "validation";
            split("Lamentations Malachi Titus Jude", t, " "); for (i in t) split_of[t[i]] = "test" }
    prev == "" && match($0, /^([123] )?[A-Z][a-z]+( of [A-Z][a-z]+)? [0-9]+$/) {
      book = $0; sub(/ [0-9]+$/, "", book); chapter = $0; sub(/.* /, "", chapter)
      if (book != current) {
        if (file) { close(file); close(held) }
        current = book; n++
        name = book; gsub(/ /, "_", name)
        s = (book in split_of) ? split_of[book] : "train"
        file = sprintf("%s/%s/%02d-%s.txt", raw, s, n, name)
        print book > file; print "" > file
        held = sprintf("%s/heldout/%02d-%s.txt", raw, n, name)
      }
      out = (s == "train" && chapter % 7 == 0) ? held : file
      print "CHAPTER " chapter > out
      prev = $0; next
    }
    { prev = $0; if (!file) next; line = $0; if (out == file) sub(/^  [0-9]+ /, "", line); print line > out }
    END { if (n != 66) { print "expected 66 books, found " n > "/dev/stderr"; exit 1 } }'
  echo "$raw_layout" > "$partial/.done"
  rm -rf "$raw"  # only ever one this script made (checked above)
  mv "$partial" "$raw"
  echo "[prepare-kjv] raw text: $(find "$raw"/train "$raw"/validation "$raw"/test -name "*.txt" | wc -l) books in $raw"
fi
[ "$raw_only" = 1 ] && exit 0

overwrite=()
[ "$force" = 1 ] && overwrite=(--overwrite)
if complete "$out" && [ "$force" = 0 ]; then
  echo "[prepare-kjv] LM shards: already in $out"
else
  # --overwrite also after a run that did not finish: the folder then holds only cst-prep's files.
  [ -f "$out/cst-prep.json" ] && overwrite=(--overwrite)
  "$prep" --input "$raw" --format pg19 --output "$out" --task lm --vocab-size 8000 \
          --model-type unigram --shard-tokens 262144 --seed 1234 "${overwrite[@]}"
  force=1  # a new tokenizer: the MLM shards are redone too
  overwrite=(--overwrite)
fi

if complete "$out/mlm" && [ "$force" = 0 ]; then
  echo "[prepare-kjv] MLM shards: already in $out/mlm"
else
  [ -f "$out/mlm/cst-prep.json" ] && overwrite=(--overwrite)
  "$prep" --input "$raw" --format pg19 --output "$out/mlm" --task mlm --seq-len 128 \
          --tokenizer "$out/tokenizer.model" --shard-rows 4096 "${overwrite[@]}"
fi

echo "[prepare-kjv] tokenizer:  $out/tokenizer.model"
echo "[prepare-kjv] LM shards:  $out/{train,validation,test}/shard-*.h5"
echo "[prepare-kjv] MLM shards: $out/mlm/{train,validation,test}/shard-*.h5 (S = 128)"
