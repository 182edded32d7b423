#!/usr/bin/env bash
# A classification task on the King James Bible for fine-tuning (docs/DATA.md "KJV
# classification"): which of six book groups a passage of 3 verses comes from, on chapters that
# LM/MLM pretraining never sees.
#
#   scripts/prepare-kjv-cls.sh <build dir> [kjv dir, default data/kjv] [--train-every K]
#
# Needs scripts/prepare-kjv.sh's output (run first when missing): the tokenizer
# <kjv>/tokenizer.model and the held-out chapters <kjv>-raw/heldout/ (every 7th chapter of the
# train books, left out of the train text and so of pretraining).
# 1. Passages: each held-out chapter cut into runs of 3 verses (a last run of 1 verse joins the
#    one before). Label = the book's group: law (Genesis-Deuteronomy), history (Joshua-Esther),
#    wisdom (Job-Song of Solomon), prophets (Isaiah-Malachi), gospels_acts (Matthew-Acts),
#    epistles_revelation (Romans-Revelation). Split by chapter: chapter 7k goes to validation
#    when k % 3 == 2 (chapters 14, 35, 56, ...), else to train.
#    -> <kjv>-cls-jsonl/{train,validation}.jsonl, one {"text", "label", "ref"} a line.
# 2. cst-prep --task cls --format jsonl with the KJV tokenizer, S = 128 ->
#    <kjv>/cls/{tokenizer.model,train,validation}/ (labels: the group names in sorted order).
# --train-every K (default 1) keeps every K-th train passage (the 1st, K+1-th, ... in file order)
# and all of validation: a smaller labelled budget, written beside the full task as
# <kjv>-cls-every<K>-jsonl/ and <kjv>/cls-every<K>/.
# A second run redoes both steps (--overwrite of what cst-prep wrote there); about 2 s.
set -euo pipefail

source "$(dirname "$0")/kjv-common.sh"
kjv_args "$0" --train-every 1 "$@"
every="$kjv_flag_value"
[[ "$every" =~ ^[1-9][0-9]{0,3}$ ]] || { echo "error: --train-every '$every' must be an integer in [1, 9999]" >&2; exit 2; }
kjv_prepared prepare-kjv-cls heldout
held="$kjv-raw/heldout"
name=cls
[ "$every" = 1 ] || name="cls-every$every"
jsonl="$kjv-$name-jsonl"
rm -rf "$jsonl.partial"
mkdir -p "$jsonl.partial"
python3 - "$held" "$jsonl.partial" <<'PY'
import json, os, re, sys
held, out = sys.argv[1], sys.argv[2]
# (last book number of the group, label), books numbered 1..66 in canonical order.
GROUPS = [(5, "law"), (17, "history"), (22, "wisdom"), (39, "prophets"), (44, "gospels_acts"),
          (66, "epistles_revelation")]
VERSES = 3
files = {"train": open(os.path.join(out, "train.jsonl"), "w"),
         "validation": open(os.path.join(out, "validation.jsonl"), "w")}
counts = {}
for name in sorted(os.listdir(held)):
    number, book = int(name[:2]), name[3:-4].replace("_", " ")
    label = next(g for last, g in GROUPS if number <= last)
    chapters = []  # [(chapter, [verse text])]
    for line in open(os.path.join(held, name)):
        line = line.rstrip("\n")
        m = re.match(r"^CHAPTER (\d+)$", line)
        if m:
            chapters.append((int(m.group(1)), []))
            continue
        m = re.match(r"^  (\d+) (.*)$", line)
        if m:
            chapters[-1][1].append(m.group(2).strip())
        elif line.strip() and chapters and chapters[-1][1]:
            chapters[-1][1][-1] += " " + line.strip()
    for chapter, verses in chapters:
        split = "validation" if (chapter // 7) % 3 == 2 else "train"
        runs = [list(range(i, min(i + VERSES, len(verses)))) for i in range(0, len(verses), VERSES)]
        if len(runs) > 1 and len(runs[-1]) == 1:
            last = runs.pop()
            runs[-1] += last
        for run in runs:
            ref = "%s %d:%d-%d" % (book, chapter, run[0] + 1, run[-1] + 1)
            files[split].write(json.dumps({"text": " ".join(verses[v] for v in run), "label": label,
                                           "ref": ref}) + "\n")
            counts[(split, label)] = counts.get((split, label), 0) + 1
for split in files:
    n = sum(c for (s, _), c in counts.items() if s == split)
    top = max(c for (s, _), c in counts.items() if s == split)
    print("[prepare-kjv-cls] %s: %d passages, majority class %.1f%%: %s" % (
        split, n, 100.0 * top / n,
        ", ".join("%s %d" % (g, counts.get((split, g), 0)) for _, g in GROUPS)))
PY
if [ "$every" != 1 ]; then
  awk -v k="$every" '(NR - 1) % k == 0' "$jsonl.partial/train.jsonl" > "$jsonl.partial/train.kept"
  mv "$jsonl.partial/train.kept" "$jsonl.partial/train.jsonl"
  echo "[prepare-kjv-cls] train: every $every-th passage kept: $(wc -l < "$jsonl.partial/train.jsonl") passages"
fi
rm -rf "$jsonl"
mv "$jsonl.partial" "$jsonl"
overwrite=()
[ -f "$kjv/$name/cst-prep.json" ] && overwrite=(--overwrite)
"$prep" --task cls --format jsonl --input "$jsonl" --output "$kjv/$name" --tokenizer "$kjv/tokenizer.model" \
        --seq-len 128 --shard-rows 4096 -q "${overwrite[@]}"
echo "[prepare-kjv-cls] shards: $kjv/$name/{train,validation}/shard-*.h5 (S = 128, 6 classes)"
