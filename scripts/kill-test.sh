#!/usr/bin/env bash
# Random kill -9 trials for sharded checkpoints (docs/CHECKPOINT.md).
#
#   scripts/kill-test.sh --bin build/launcher/cst-train [--mpiexec mpirun] --out DIR \
#       [--trials 10] [--seed 1] [--np 2] -- <cst-train options without --log.dir>
#
# Trial i (random numbers from seed*1000+i, so every run of the script does the same):
#   1. starts the job with --log.dir DIR/trial_i, checkpoints every `checkpoint.interval` as
#      given, async on even trials, and a random debug.save_delay_ms (50-300 ms) so that a good
#      share of the kills lands in the middle of a save;
#   2. once step 1 is logged (metrics.jsonl), after a further random 0-2 s, kill -9 one random
#      rank (mpirun then ends the others);
#   3. reruns the same command with --resume auto, which must succeed.
# Leaves DIR/trial_i/model.h5 for the caller to compare with an uninterrupted run
# (tests/trainer/checkpoint_test.cpp does). Exit 0 when every resume succeeded.
set -euo pipefail

bin="" mpiexec="mpirun" out="" trials=10 seed=1 np=2
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --mpiexec) mpiexec="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --trials) trials="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --np) np="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "kill-test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ -n "$bin" && -n "$out" ]] || { echo "kill-test.sh: --bin and --out are required" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mkdir -p "$out"
launch() { "$mpiexec" -np "$np" --oversubscribe --bind-to none "$bin" "$@"; }

mid_save=0 killed=0
for ((i = 1; i <= trials; i++)); do
  RANDOM=$((seed * 1000 + i))
  log="$out/trial_$i"
  rm -rf "$log" && mkdir -p "$log"
  delay_ms=$((50 + RANDOM % 250))
  async=$([[ $((i % 2)) -eq 0 ]] && echo true || echo false)
  kill_after=$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 2.0 * r / 32767 }')
  pick=$RANDOM
  opts=(--log.dir "$log" --checkpoint.async "$async" --debug.save_delay_ms "$delay_ms")
  launch "$@" "${opts[@]}" > "$log/run1.out" 2> "$log/run1.err" &
  job=$!
  for ((w = 0; w < 1500; w++)); do  # up to 30 s for start-up and step 1
    [[ -s "$log/metrics.jsonl" ]] || ! kill -0 "$job" 2> /dev/null && break
    sleep 0.02
  done
  sleep "$kill_after"
  victims=()
  for p in $(pgrep -f -- "--log.dir $log " || true); do
    [[ "$(cat /proc/"$p"/comm 2>/dev/null)" == "cst-train" ]] && victims+=("$p")
  done
  what="finished before the kill"
  if [[ ${#victims[@]} -gt 0 ]]; then
    victim=${victims[$((pick % ${#victims[@]}))]}
    saving=$(compgen -G "$log/checkpoints/step_*.tmp" || true)
    if kill -9 "$victim" 2> /dev/null; then
      killed=$((killed + 1))
      what="killed pid $victim ${kill_after}s after step 1"
      if [[ -n "$saving" ]]; then
        what+=" (mid-save: ${saving##*/})"
        mid_save=$((mid_save + 1))
      fi
    fi
  fi
  wait "$job" || true
  last=$(cat "$log/checkpoints/latest" 2> /dev/null || echo none)
  if ! launch "$@" --log.dir "$log" --resume auto > "$log/run2.out" 2> "$log/run2.err"; then
    echo "trial $i: --resume auto FAILED after: $what (latest: $last)" >&2
    tail -20 "$log/run2.err" >&2
    exit 1
  fi
  resumed=$(grep -o 'resumed from [^:]*' "$log/run2.out" || echo "fresh start")
  echo "trial $i: async=$async save_delay=${delay_ms}ms $what; latest was $last; $resumed"
done
echo "kill-test: $trials trials, $killed kills, $mid_save mid-save; every --resume auto succeeded"
