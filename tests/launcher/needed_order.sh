#!/usr/bin/env bash
# Passes when each binary given lists libstdc++ before every LibTorch library among its needed
# shared libraries (see the add_link_options comment in CMakeLists.txt). Prints the list.
set -euo pipefail
for bin in "$@"; do
  needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  echo "$bin: $(echo $needed)"
  first=$(echo "$needed" | grep -m1 -E '^(libstdc\+\+|libtorch|libc10)' || true)
  case "$first" in
    libstdc++*) ;;
    *) echo "FAIL: $bin: '$first' comes before libstdc++ among its needed libraries" >&2; exit 1 ;;
  esac
done
echo "PASS: libstdc++ comes first"
