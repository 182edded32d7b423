#!/usr/bin/env python3
"""scripts/listops_gen.py against an evaluator written here from the LRA task's definition.

Runs the generator (small sizes) twice with one seed and once with another, then checks every
row of every file: the header, the digit target, the source parsed token by token (parentheses
skipped, '[OP' opens, ']' closes) and evaluated here (MED as int(statistics.median)), equal to
the target; the length (tokens but parentheses) inside the bounds, depth and argument counts
within the limits; sources distinct across files; equal files for equal seeds. Exit 0 only when
all hold.
"""
import os
import statistics
import subprocess
import sys
import tempfile

GEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "listops_gen.py")
OPS = {"[MAX": max, "[MIN": min, "[MED": lambda a: int(statistics.median(a)), "[SM": lambda a: sum(a) % 10}
ARGS = dict(train=300, val=40, test=40, min_length=20, max_length=400, max_depth=6, max_args=5)


def evaluate(source):
    """(value, length, depth, most arguments) of a source, or raises ValueError."""
    stack, result, length, depth, most = [], None, 0, 0, 0
    for tok in source.split():
        if tok in "()":
            continue
        length += 1
        if tok in OPS:
            stack.append((tok, []))
            depth = max(depth, len(stack))
        elif tok == "]":
            op, args = stack.pop()
            if len(args) < 2:
                raise ValueError("operator with %d arguments" % len(args))
            most = max(most, len(args))
            v = OPS[op](args)
            if stack:
                stack[-1][1].append(v)
            else:
                result = v
        elif tok.isdigit() and len(tok) == 1:
            if stack:
                stack[-1][1].append(int(tok))
            else:
                result = int(tok)
                depth = max(depth, 1)
        else:
            raise ValueError("unknown token %r" % tok)
    if stack or result is None:
        raise ValueError("unbalanced source")
    if source.count("(") != source.count(")"):
        raise ValueError("unbalanced parentheses")
    return result, length, depth + (1 if most else 0), most


def run(out, seed):
    cmd = [sys.executable, GEN, "--output", out, "--seed", str(seed)]
    for k, v in ARGS.items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return {n: open(os.path.join(out, "basic_%s.tsv" % n)).read() for n in ("train", "val", "test")}


def main():
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        a, b, c = run(os.path.join(tmp, "a"), 7), run(os.path.join(tmp, "b"), 7), run(os.path.join(tmp, "c"), 8)
    if a != b:
        failures.append("seed 7 gave different files on two runs")
    if a == c:
        failures.append("seeds 7 and 8 gave the same files")
    seen, targets, ops = set(), set(), set()
    for name, text in a.items():
        lines = text.rstrip("\n").split("\n")
        if lines[0] != "Source\tTarget":
            failures.append("%s: header %r" % (name, lines[0]))
        if len(lines) - 1 != ARGS[name]:
            failures.append("%s: %d rows, %d asked" % (name, len(lines) - 1, ARGS[name]))
        for i, line in enumerate(lines[1:], 2):
            source, target = line.split("\t")
            try:
                value, length, depth, most = evaluate(source)
            except ValueError as e:
                failures.append("%s line %d: %s" % (name, i, e))
                continue
            if str(value) != target:
                failures.append("%s line %d: evaluates to %d, target %s" % (name, i, value, target))
            if not ARGS["min_length"] < length < ARGS["max_length"]:
                failures.append("%s line %d: length %d" % (name, i, length))
            # The generator's depth counts the digits' level: an operator tree of depth d has
            # digits at level d + 1 at most.
            if depth > ARGS["max_depth"] or most > ARGS["max_args"]:
                failures.append("%s line %d: depth %d, %d arguments" % (name, i, depth, most))
            if source in seen:
                failures.append("%s line %d: a source seen before" % (name, i))
            seen.add(source)
            targets.add(value)
            ops.update(t for t in source.split() if t in OPS)
    if len(targets) < 5 or len(ops) != 4:
        failures.append("too little variety: targets %s, operators %s" % (sorted(targets), sorted(ops)))
    for f in failures[:20]:
        print("FAIL", f)
    print("%d rows checked, %d failures" % (len(seen), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
