#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang with ASan + UBSan, a build folder of their own) and
# runs each of them for S seconds, J at a time, from its seed corpus (fuzz/corpus/<target>/)
# plus the corpus earlier runs grew in <build>/corpus/<target>/. docs/FUZZING.md.
#
#   scripts/fuzz.sh [--seconds 60] [--jobs 2] [--build build-fuzz] [--targets fuzz_jsonl,fuzz_shard]
#
# Exit 0 when no target found anything; 1 otherwise, with the reproducer of each finding in
# <build>/findings/<target>/ (rerun one with: <build>/fuzz/<target> <file>). 2 on bad usage.
# 77 (a skip under CTest) when no clang with libFuzzer is installed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seconds=60 jobs=2 build="$root/build-fuzz" only=""
usage() { echo "usage: $0 [--seconds S] [--jobs J] [--build DIR] [--targets a,b]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=${2:?}; shift 2 ;;
    --jobs) jobs=${2:?}; shift 2 ;;
    --build) build=${2:?}; shift 2 ;;
    --targets) only=${2:?}; shift 2 ;;
    *) usage ;;
  esac
done
[[ "$seconds" =~ ^[1-9][0-9]*$ && "$jobs" =~ ^[1-9][0-9]*$ ]] || usage

cxx=$(command -v clang++-14 || command -v clang++ || true)
cc=$(command -v clang-14 || command -v clang || true)
if [ -z "$cxx" ] || ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, long) { return 0; }' |
     "$cxx" -x c++ -fsanitize=fuzzer -o /dev/null - 2>/dev/null; then
  echo "SKIPPED: no clang with libFuzzer (apt-get install clang-14 libclang-rt-14-dev)"
  exit 77
fi

t0=$(date +%s)
if [ ! -f "$build/CMakeCache.txt" ]; then
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S "$root" -B "$build" -G Ninja -DCST_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc" "${launcher[@]}" >/dev/null
fi
cmake --build "$build" -j"$(nproc)"
echo "[fuzz] build: $(( $(date +%s) - t0 )) s"

mapfile -t targets < "$build/fuzz_targets.txt"
if [ -n "$only" ]; then IFS=, read -r -a targets <<< "$only"; fi
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"

run_one() {  # run_one <target>: one libFuzzer session; its log in <build>/logs/<target>.log
  local t=$1
  mkdir -p "$build/corpus/$t" "$build/findings/$t" "$build/logs"
  local start rc=0
  start=$(date +%s)
  # -malloc_limit_mb: an allocation sized by the input is a finding; -timeout: so is a hang.
  nice -n 10 "$build/fuzz/$t" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=4096 -malloc_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$build/findings/$t/" \
    "$build/corpus/$t" "$root/fuzz/corpus/$t" > "$build/logs/$t.log" 2>&1 || rc=$?
  echo $(( $(date +%s) - start )) > "$build/logs/$t.seconds"
  return $rc
}

status=0 running=0 failed=()
pids=() names=()
for t in "${targets[@]}"; do
  run_one "$t" & pids+=($!) names+=("$t")
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then failed+=("${names[$i]}"); status=1; fi
done

printf '| target | seconds | runs | exec/s | corpus | result |\n| --- | ---: | ---: | ---: | ---: | --- |\n'
for t in "${targets[@]}"; do
  log="$build/logs/$t.log"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(find "$build/corpus/$t" -type f | wc -l)
  result=ok
  for f in "${failed[@]+"${failed[@]}"}"; do
    [ "$f" = "$t" ] && result="FOUND: $(grep -m1 -E '^SUMMARY|ERROR: libFuzzer|runtime error' "$log" || echo 'see the log') ($log)"
  done
  echo "| $t | $(cat "$build/logs/$t.seconds") | ${runs:-?} | ${eps:-?} | $corpus | $result |"
done
echo "[fuzz] total: $(( $(date +%s) - t0 )) s"
exit $status
