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
#      rank (mpirun then ends the others). Every third trial is a pruning trial instead:
#      checkpoint.keep 1 and debug.prune_delay_ms 400, and rank 0 is killed as soon as it says
#      that it is pruning an older checkpoint, so the kill lands in the middle of the removal;
#   3. checks that no step_<N> folder looks committed while a file its manifest lists is gone;
#   4. reruns the same command with --resume auto, which must succeed.
# Leaves DIR/trial_i/model.h5 for the caller to compare with an uninterrupted run
# (tests/trainer/checkpoint_test.cpp does). Exit 0 when every check and resume succeeded.
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

# wait_for SECONDS CONDITION...: polls every 20 ms until CONDITION succeeds or the job ends.
wait_for() {
  local polls=$(($1 * 50)); shift
  for ((w = 0; w < polls; w++)); do
    "$@" || ! kill -0 "$job" 2> /dev/null && return 0
    sleep 0.02
  done
}
pruning_started() { grep -q '^\[checkpoint\] pruning' "$log/run1.out" 2> /dev/null; }
# Prints every file that a step_<N>/manifest.json lists but that is gone.
listed_but_missing() {
  local dir name
  for dir in "$log"/checkpoints/step_*; do
    [[ "${dir##*/}" =~ ^step_[0-9]+$ && -f "$dir/manifest.json" ]] || continue
    for name in $(grep -o '"name": *"[^"]*"' "$dir/manifest.json" | sed 's/.*"\([^"]*\)"$/\1/'); do
      [[ -e "$dir/$name" ]] || echo "$dir/$name"
    done
  done
}

mid_save=0 mid_prune=0 killed=0
for ((i = 1; i <= trials; i++)); do
  RANDOM=$((seed * 1000 + i))
  log="$out/trial_$i"
  rm -rf "$log" && mkdir -p "$log"
  delay_ms=$((50 + RANDOM % 250))
  async=$([[ $((i % 2)) -eq 0 ]] && echo true || echo false)
  kill_after=$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 2.0 * r / 32767 }')
  pick=$RANDOM
  prune_trial=$([[ $((i % 3)) -eq 0 ]] && echo 1 || echo 0)
  opts=(--log.dir "$log" --checkpoint.async "$async" --debug.save_delay_ms "$delay_ms")
  [[ $prune_trial -eq 1 ]] && opts+=(--checkpoint.keep 1 --debug.prune_delay_ms 400)
  launch "$@" "${opts[@]}" > "$log/run1.out" 2> "$log/run1.err" &
  job=$!
  if [[ $prune_trial -eq 1 ]]; then
    wait_for 60 pruning_started
  else
    wait_for 30 test -s "$log/metrics.jsonl"  # start-up and step 1
    sleep "$kill_after"
  fi
  victims=()
  for p in $(pgrep -f -- "--log.dir $log " || true); do
    [[ "$(cat /proc/"$p"/comm 2>/dev/null)" == "cst-train" ]] || continue
    # A pruning trial kills rank 0, the one that prunes.
    [[ $prune_trial -eq 0 ]] || tr '\0' '\n' < /proc/"$p"/environ 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=0' &&
      victims+=("$p")
  done
  what="finished before the kill"
  if [[ ${#victims[@]} -gt 0 ]]; then
    victim=${victims[$((pick % ${#victims[@]}))]}
    saving=$(compgen -G "$log/checkpoints/step_*.tmp" || true)
    if kill -9 "$victim" 2> /dev/null; then
      killed=$((killed + 1))
      what="killed pid $victim"
      if [[ $prune_trial -eq 1 ]]; then
        what+=" once rank 0 began pruning"
        pruning_started && [[ -n "$(compgen -G "$log/checkpoints/step_*.pruning" || true)" ]] &&
          { what+=" (mid-prune)"; mid_prune=$((mid_prune + 1)); }
      else
        what+=" ${kill_after}s after step 1"
      fi
      if [[ -n "$saving" ]]; then
        what+=" (mid-save: ${saving##*/})"
        mid_save=$((mid_save + 1))
      fi
    fi
  fi
  wait "$job" || true
  missing=$(listed_but_missing)
  if [[ -n "$missing" ]]; then
    echo "trial $i: after $what, a folder with a manifest lacks files it lists:" $missing >&2
    exit 1
  fi
  last=$(cat "$log/checkpoints/latest" 2> /dev/null || echo none)
  if ! launch "$@" --log.dir "$log" --resume auto > "$log/run2.out" 2> "$log/run2.err"; then
    echo "trial $i: --resume auto FAILED after: $what (latest: $last)" >&2
    tail -20 "$log/run2.err" >&2
    exit 1
  fi
  resumed=$(grep -o 'resumed from [^:]*' "$log/run2.out" || echo "fresh start")
  echo "trial $i: async=$async save_delay=${delay_ms}ms $what; latest was $last; $resumed"
done
echo "kill-test: $trials trials, $killed kills, $mid_save mid-save, $mid_prune mid-prune; every --resume auto succeeded"
