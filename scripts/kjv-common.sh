# Sourced by the scripts that derive a corpus from scripts/prepare-kjv.sh's output
# (prepare-kjv-cls.sh, prepare-kjv-long.sh). Exit 2 on bad arguments.

# Arguments "<build dir> [kjv dir] [FLAG VALUE]": sets build, kjv (default <clone>/data/kjv, no
# trailing slash), prep (<build>/launcher/cst-prep, which must exist) and kjv_flag_value (VALUE,
# default DEFAULT). Usage: kjv_args <script> FLAG DEFAULT "$@".
kjv_args() {
  local script="$1" flag="$2"
  kjv_flag_value="$3"
  shift 3
  local args=()
  while [ $# -gt 0 ]; do
    case "$1" in
      "$flag") [ $# -ge 2 ] || kjv_usage "$script" "$flag"; kjv_flag_value="$2"; shift ;;
      *) args+=("$1") ;;
    esac
    shift
  done
  [ ${#args[@]} -ge 1 ] && [ ${#args[@]} -le 2 ] || kjv_usage "$script" "$flag"
  build="${args[0]}"
  kjv="${args[1]:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/data/kjv}"
  kjv="${kjv%/}"
  prep="$build/launcher/cst-prep"
  [ -x "$prep" ] || { echo "error: $prep not found: build the cst-prep target first" >&2; exit 2; }
}

kjv_usage() { echo "usage: $1 <build dir> [kjv dir] [$2 VALUE]" >&2; exit 2; }

# Runs scripts/prepare-kjv.sh into $kjv when its tokenizer or <kjv>-raw/<raw subdir> is missing.
# Usage: kjv_prepared <tag> <raw subdir>.
kjv_prepared() {
  if [ ! -f "$kjv/tokenizer.model" ] || [ ! -d "$kjv-raw/$2" ]; then
    echo "[$1] no tokenizer or $kjv-raw/$2: running prepare-kjv.sh" >&2
    "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/prepare-kjv.sh" "$build" "$kjv"
  fi
}
