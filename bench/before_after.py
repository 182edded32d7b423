#!/usr/bin/env python3
"""Two builds of one benchmark, measured by turns in one run.

    bench/before_after.py --before OLD/bench_x --after build/bench/bench_x [--rounds 3]
        [--launch "mpirun -np 2 --oversubscribe --bind-to none"] [--columns REGEX] -- bench options

Runs before, after, before, after, ... (--rounds pairs), so that both builds see the same
machine load, each with the same options (under --launch when given). Every Markdown table row
the benchmark prints ("| key | v1 | v2 | ...", after its header row) is kept per build and round.
Prints each round's rows, then for every row key and every numeric column whose header matches
--columns (default: throughput columns, "tok"), the median over the rounds of each build and
the ratio after / before. Exit 1 when a run fails or the two builds print different tables.
"""
import argparse
import re
import shlex
import statistics
import subprocess
import sys


def tables(text):
    """{(header tuple, row key): [cells]} of every Markdown table row in text."""
    out, header = {}, None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        if header is None:
            header = tuple(cells)
        else:
            out[(header, cells[0])] = cells
    return out


def number(cell):
    m = re.fullmatch(r"(-?[0-9.]+(?:e[-+]?[0-9]+)?)%?", cell)
    return float(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--launch", default="")
    ap.add_argument("--columns", default="tok")
    ap.add_argument("options", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    if a.rounds < 1:
        sys.exit(f"error: --rounds must be >= 1, got {a.rounds}")
    opts = a.options[1:] if a.options[:1] == ["--"] else a.options
    runs = {"before": [], "after": []}
    for r in range(1, a.rounds + 1):
        for build in ("before", "after"):
            cmd = shlex.split(a.launch) + [getattr(a, build)] + opts
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                sys.stderr.write(p.stdout + p.stderr)
                sys.exit(f"error: round {r}, {build}: {' '.join(cmd)} exited {p.returncode}")
            t = tables(p.stdout)
            if not t:
                sys.exit(f"error: round {r}, {build}: no table in the output of {' '.join(cmd)}")
            runs[build].append(t)
            for (header, _), cells in t.items():
                print(f"round {r} {build:6} | " + " | ".join(cells) + " |")
            sys.stdout.flush()
    keys = list(runs["after"][0])
    if set(keys) != set(runs["before"][0]):
        sys.exit("error: the two builds print different tables (columns or rows differ)")
    print("\n| row | column | before (median) | after (median) | after / before |")
    print("|---|---|---:|---:|---:|")
    for key in keys:
        header, row = key
        for i, col in enumerate(header[1:], start=1):
            if not re.search(a.columns, col):
                continue
            vals = {b: [number(t[key][i]) for t in runs[b] if i < len(t[key])] for b in runs}
            if any(v is None for b in vals for v in vals[b]) or not all(vals.values()):
                continue
            mb, ma = statistics.median(vals["before"]), statistics.median(vals["after"])
            ratio = f"{ma / mb:.3f}" if mb else ""
            print(f"| {row} | {col} | {mb:g} | {ma:g} | {ratio} |")


if __name__ == "__main__":
    main()
