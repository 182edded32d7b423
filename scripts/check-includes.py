#!/usr/bin/env python3
"""Checks the include graph and file sizes of the C++ tree (CI runs it after the format check).

  python3 scripts/check-includes.py

Fails (exit 1), printing each offence as file:line: message, when
  1. files of one folder include each other in a cycle, a file's pair being its header and
     source (foo.h + foo.cpp): pair A includes pair B and B includes A, directly or through
     other pairs of the folder;
  2. a file of a lower folder includes one of a higher folder. The order is
     common < comm, dataio < model < checkpoint < trainer < launcher; comm and dataio are
     siblings and do not include each other; bench/, tests/ and fuzz/ may include anything;
  3. a .cpp, .h, .cu, .py or .sh file is longer than 450 lines.
Reads the files git tracks and the untracked ones it does not ignore. Exit 0 when clean.
"""
import os
import re
import subprocess
import sys

MAX_LINES = 450
LEVEL = {"common": 0, "comm": 1, "dataio": 1, "model": 2, "checkpoint": 3, "trainer": 4, "launcher": 5}
SIZED = (".cpp", ".h", ".cu", ".py", ".sh")
CXX = (".cpp", ".h", ".cu")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def repo_files(root):
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root,
                         check=True, capture_output=True, text=True).stdout
    return sorted(f for f in out.splitlines() if os.path.isfile(os.path.join(root, f)))


def includes(root, path, files):
    """(line number, included repository path) of each quoted include that names a file here."""
    found = []
    with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            name = m.group(1)
            local = os.path.normpath(os.path.join(os.path.dirname(path), name))
            if name in files:
                found.append((n, name))
            elif local in files:
                found.append((n, local))
    return found


def pair(path):
    return os.path.splitext(path)[0]


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(set(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def main():
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], check=True, capture_output=True,
                          text=True).stdout.strip()
    files = repo_files(root)
    present = set(files)
    offences = []
    graph, edges = {}, {}  # pair -> pairs of the same folder it includes; (a, b) -> [(file, line)]
    for path in files:
        if path.endswith(SIZED):
            with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
                n = sum(1 for _ in f)
            if n > MAX_LINES:
                offences.append(f"{path}:{n}: {n} lines, more than {MAX_LINES}")
        if not path.endswith(CXX):
            continue
        top = path.split("/")[0]
        for line, inc in includes(root, path, present):
            inc_top = inc.split("/")[0]
            if top in LEVEL and inc_top in LEVEL and inc_top != top and LEVEL[inc_top] >= LEVEL[top]:
                why = "a sibling of" if LEVEL[inc_top] == LEVEL[top] else "above"
                offences.append(f"{path}:{line}: includes {inc}: {inc_top}/ is {why} {top}/")
            if os.path.dirname(inc) == os.path.dirname(path) and pair(inc) != pair(path):
                graph.setdefault(pair(path), set()).add(pair(inc))
                edges.setdefault((pair(path), pair(inc)), []).append((path, line))
    for comp in cycles(graph):
        names = ", ".join(sorted(comp))
        for a in sorted(comp):
            for b in sorted(graph[a] & comp):
                for path, line in edges[(a, b)]:
                    offences.append(f"{path}:{line}: includes {b} (an include cycle in one folder: {names})")
    for o in offences:
        print(o)
    if offences:
        print(f"check-includes: {len(offences)} offence(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
