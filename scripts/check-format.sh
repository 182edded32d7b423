#!/usr/bin/env bash
# Checks that the C++ sources follow .clang-format (Debian 12's clang-format 14).
#
#   scripts/check-format.sh                     every tracked *.h / *.cpp / *.cu
#   scripts/check-format.sh --changed [BASE]    only those changed since BASE (default: the
#                                               merge base with origin/main, else HEAD~1), plus
#                                               uncommitted and untracked ones
#   scripts/check-format.sh --fix [...]         rewrite the files in place instead
#
# Exit 0 when every file checked is formatted, 1 listing the others (with the first lines of
# their diff), 2 on bad usage or a missing clang-format.
set -euo pipefail
cd "$(dirname "$0")/.."
fix=0 changed=0 base=""
while [ $# -gt 0 ]; do
  case "$1" in
    --fix) fix=1 ;;
    --changed) changed=1; if [ $# -gt 1 ] && [[ "$2" != --* ]]; then base=$2; shift; fi ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
cf=$(command -v clang-format-14 || command -v clang-format || true)
[ -n "$cf" ] || { echo "error: clang-format not found (apt-get install clang-format)" >&2; exit 2; }
pattern='\.(h|cpp|cu)$'
if [ "$changed" = 1 ]; then
  if [ -z "$base" ]; then
    base=$(git merge-base HEAD origin/main 2>/dev/null || git rev-parse HEAD~1 2>/dev/null || git rev-parse HEAD)
  fi
  mapfile -t files < <( { git diff --name-only --diff-filter=d "$base"; git ls-files --others --exclude-standard; } |
                        grep -E "$pattern" | sort -u)
else
  mapfile -t files < <(git ls-files | grep -E "$pattern")
fi
bad=0
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  if [ "$fix" = 1 ]; then
    "$cf" -i --style=file "$f"
  elif ! diff -q "$f" <("$cf" --style=file "$f") >/dev/null; then
    echo "not formatted: $f"
    diff "$f" <("$cf" --style=file "$f") | sed -n '1,8s/^/    /p' || true  # sed reads all: no SIGPIPE
    bad=1
  fi
done
if [ "$bad" = 1 ]; then
  echo "run: scripts/check-format.sh --fix$([ "$changed" = 1 ] && echo " --changed $base")" >&2
  exit 1
fi
echo "[check-format] ${#files[@]} file(s) follow .clang-format ($("$cf" --version | head -1))"
