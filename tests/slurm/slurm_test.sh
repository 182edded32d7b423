#!/usr/bin/env bash
# The SLURM batch scripts against a real one-node cluster (scripts/slurm-cluster.sh):
#   1. slurm/*.sbatch run outside SLURM exit 2 with a clear message;
#   2. a tiny 2-task training job submitted with sbatch trains, checkpoints and writes model.h5;
#   3. the same job again, sent SIGUSR1 mid-run (as --signal=B:USR1@120 would): it saves, exits
#      138, is requeued, resumes from that checkpoint and ends with bit-identical parameters.
# The cluster is always stopped (trap). Needs root (SlurmUser=root), slurm-wlm and munge;
# otherwise prints SKIPPED and exits 77. Prints "N passed, M failed" last.
#
#   tests/slurm/slurm_test.sh <build dir> [python with h5py]
# KEEP_TMP=1 keeps the temporary folder (cluster state, logs, runs) for a look afterwards.
set -uo pipefail

[ $# -ge 1 ] || { echo "usage: $0 <build dir> [python with h5py]" >&2; exit 2; }
build="$(cd "$1" && pwd)"
python="${2:-${CST_PYTHON:-$HOME/.cache/cst-train/venv/bin/python}}"
src="$(cd "$(dirname "$0")/../.." && pwd)"
export PATH="$PATH:/usr/sbin"

steps=300          # optimizer steps of each job
ckpt_interval=50   # checkpoint.interval
signal_at=60       # job 2 gets SIGUSR1 once metrics.jsonl reaches this step (leaves ~240 steps
                   # for the signal to land: seconds even on a fast CPU)

if [ "$(id -u)" -ne 0 ]; then echo "SKIPPED: needs root (the test cluster runs SlurmUser=root)"; exit 77; fi
for exe in munged slurmctld slurmd sbatch; do
  command -v "$exe" >/dev/null || { echo "SKIPPED: $exe not found (apt-get install slurm-wlm munge)"; exit 77; }
done
for exe in cst-train cst-prep; do
  [ -x "$build/launcher/$exe" ] || { echo "error: $build/launcher/$exe not built" >&2; exit 2; }
done

passed=0 failed=0
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
# check <description> <command...>
check() { local d="$1"; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }

tmp="$(mktemp -d /tmp/cst-slurm-test.XXXXXX)"
chmod 755 "$tmp"  # munged wants every folder above its socket searchable by all
cluster="$tmp/cluster"
finish() {
  if [ "$failed" -gt 0 ] || [ "${KEEP_TMP:-0}" = 1 ]; then
    for f in "$tmp"/*.out "$cluster/log/slurmctld.log" "$cluster/log/slurmd.log"; do
      [ -f "$f" ] && { echo "---- $f (last 40 lines) ----"; tail -n 40 "$f"; }
    done
  fi
  bash "$src/scripts/slurm-cluster.sh" stop "$cluster" || true
  if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
  echo "$passed passed, $failed failed"
}
trap finish EXIT

# ---- 1. outside SLURM: fail fast ------------------------------------------------------------
for script in train_mlm train_pg19 train_pg19_sp; do
  out="$(env -u SLURM_JOB_ID bash "$src/slurm/$script.sbatch" 2>&1)"
  rc=$?
  # shellcheck disable=SC2016  # the bash -c script expands its own arguments
  check "$script.sbatch outside SLURM exits 2 with a message (rc $rc)" \
        bash -c '[ "$1" -eq 2 ] && grep -q "SLURM_JOB_ID is not set" <<<"$2"' _ "$rc" "$out"
done

# ---- data and config: a tiny LM corpus tokenized by cst-prep --------------------------------
# Deterministic pseudo-English from a fixed word list (an LCG picks the words).
gen_text() {  # gen_text <dir> <documents> <sentences> <seed>
  mkdir -p "$1"
  awk -v dir="$1" -v docs="$2" -v sentences="$3" -v seed="$4" 'BEGIN {
    n = split("the a one every small old new green quiet river stone king house road light " \
              "water field city tree bird song night morning wind fire ship story child hand " \
              "word door garden walks sees keeps finds brings holds turns hears makes follows " \
              "carries remembers slowly again near under over beside before after with and then", w, " ")
    x = seed
    for (d = 0; d < docs; d++) {
      f = sprintf("%s/%02d.txt", dir, d)
      for (s = 0; s < sentences; s++) {
        len = 6 + (x % 9); line = ""
        for (k = 0; k < len; k++) {
          x = (x * 1103515245 + 12345) % 2147483648
          line = line (k ? " " : "") w[1 + int(x / 65536) % n]
        }
        print toupper(substr(line, 1, 1)) substr(line, 2) "." > f
      }
      close(f)
    }
  }'
}
gen_text "$tmp/raw/train" 4 400 7
gen_text "$tmp/raw/validation" 1 200 99
if ! "$build/launcher/cst-prep" --input "$tmp/raw" --format pg19 --output "$tmp/data" --task lm \
       --vocab-size 128 --model-type unigram --seed 1 --quiet > "$tmp/prep.log" 2>&1; then
  cat "$tmp/prep.log"; fail "cst-prep made the test corpus"; exit 1
fi
cat > "$tmp/tiny.cfg" <<EOF
[model]
arch = cst
task = lm
vocab_size = 128
d_model = 32
n_heads = 2
n_layers = 1
d_ff = 64
max_seq_len = 64
slice_len = 16
alpha = 2
dropout = 0.1

[data]
train = $tmp/data/train
valid = $tmp/data/validation
seq_len = 64

[train]
steps = $steps
global_batch = 4
micro_batch = 2
seed = 1234

[optim]
lr = 3e-3
warmup_steps = 10

[dist]
backend = mpi
device = cpu
threads = 1

[log]
interval = 10
eval_interval = 0
eval_batches = 2
tensorboard = false
peak_tflops = 1
EOF

# ---- 2. the cluster ---------------------------------------------------------------------------
# Two free ports from a random base, so that a second test (or a system SLURM) does not collide.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for ((t = 0; t < 20; t++)); do
  base=$((20000 + RANDOM % 20000))
  port_free "$base" && port_free $((base + 1)) && break
done
export CST_SLURMCTLD_PORT="$base" CST_SLURMD_PORT=$((base + 1))
if ! bash "$src/scripts/slurm-cluster.sh" start "$cluster"; then fail "cluster starts"; exit 1; fi
pass "cluster starts"
# shellcheck disable=SC2016
check "cluster start is idempotent" bash -c \
  'bash "$1" start "$2" | grep -q "slurmctld: already running"' _ "$src/scripts/slurm-cluster.sh" "$cluster"
export SLURM_CONF="$cluster/slurm.conf"
echo "srun MPI plugins: $(srun --mpi=list 2>&1 | tr '\n\t' '  ')"

# submit <run dir> <launcher>: submits slurm/train_mlm.sbatch as a 2-task CPU job from $tmp (so
# that the log is $tmp/cst-mlm-<id>.out); prints the job id.
submit() {
  (cd "$tmp" && CST_ROOT="$src" CONFIG="$tmp/tiny.cfg" BUILD_DIR="$build" RUN_DIR="$1" LAUNCHER="$2" \
     CHECKPOINT_INTERVAL="$ckpt_interval" EXTRA_ARGS="" \
     sbatch --parsable --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-task=0 \
            --time=10 "$src/slurm/train_mlm.sbatch")
}
job_field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
# wait_done <job id> <seconds>: until the job is COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
wait_done() {
  local t
  for ((t = 0; t < $2; t++)); do
    case "$(job_field "$1" JobState)" in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED) return 0 ;;
    esac
    sleep 1
  done
  echo "job $1 still $(job_field "$1" JobState) after $2 s"
  return 1
}
last_step() { [ -f "$1/metrics.jsonl" ] && sed -n 's/.*"kind": "train", "step": \([0-9]*\).*/\1/p' "$1/metrics.jsonl" | tail -n 1; }
# Complete checkpoints on disk (docs/CHECKPOINT.md: <dir>/step_<N>/; *.tmp are unfinished).
checkpoints() { find "$1/checkpoints" -mindepth 1 -maxdepth 1 -type d -name 'step_*' ! -name '*.tmp' 2>/dev/null | sort -V; }

# ---- 3. a plain job ---------------------------------------------------------------------------
run1="$tmp/run1"
# Job 1 launches with mpirun, job 2 with srun --mpi=pmix (LAUNCHER=auto): both paths are tested,
# and the final parameters must agree across them.
job1="$(submit "$run1" mpirun)" || { fail "sbatch accepts train_mlm.sbatch"; exit 1; }
echo "job $job1: plain run of $steps steps, launched by mpirun"
wait_done "$job1" 120
check "job $job1 completed with exit code 0:0 ($(job_field "$job1" JobState) $(job_field "$job1" ExitCode))" \
      test "$(job_field "$job1" JobState) $(job_field "$job1" ExitCode)" = "COMPLETED 0:0"
check "job $job1 log is named %x-%j: cst-mlm-$job1.out" test -s "$tmp/cst-mlm-$job1.out"
check "job $job1 ran 2 tasks" grep -q "2 task(s)" "$tmp/cst-mlm-$job1.out"
check "job $job1 launched with mpirun" grep -q "launcher mpirun" "$tmp/cst-mlm-$job1.out"
check "job $job1 trained $steps steps (metrics.jsonl: $(last_step "$run1"))" test "$(last_step "$run1")" = "$steps"
check "job $job1 wrote model.h5" test -s "$run1/model.h5"
check "job $job1 checkpointed ($(checkpoints "$run1" | wc -l) in $run1/checkpoints)" test -n "$(checkpoints "$run1")"

# ---- 4. a preempted, requeued and resumed job ---------------------------------------------------
run2="$tmp/run2"
job2="$(submit "$run2" auto)" || { fail "sbatch accepts train_mlm.sbatch"; exit 1; }
log2="$tmp/cst-mlm-$job2.out"
want=mpirun
srun --mpi=list 2>&1 | grep -qw pmix && want=srun
echo "job $job2: SIGUSR1 at step >= $signal_at, then requeue and resume"
for ((t = 0; t < 600; t++)); do  # 0.2 s polls, 120 s
  s="$(last_step "$run2")"
  [ -n "$s" ] && [ "$s" -ge "$signal_at" ] && break
  sleep 0.2
done
s="$(last_step "$run2")"
if [ -n "$s" ] && [ "$s" -lt "$steps" ]; then
  scancel --signal=USR1 --batch "$job2"
  pass "job $job2 signalled mid-run (metrics at step $s of $steps)"
else
  fail "job $job2 signalled mid-run (metrics at step '${s}' of $steps)"
fi
# The first run saves and exits 138; the batch shell requeues; the job waits cred_expire (10 s).
for ((t = 0; t < 120; t++)); do grep -q "requeueing job" "$log2" 2>/dev/null && break; sleep 0.5; done
saved="$(sed -n 's/^signal 10 received: saving a checkpoint at step \([0-9]*\).*/\1/p' "$log2" | head -n 1)"
check "job $job2 saved a checkpoint on SIGUSR1 (step '$saved', at or after step $s)" \
      test -n "$saved" -a "${saved:-0}" -ge "${s:-$steps}"
check "job $job2: step_$saved is complete before the requeued run starts ($(checkpoints "$run2" | xargs -n 1 basename 2>/dev/null | tr '\n' ' '))" \
      test -f "$run2/checkpoints/step_$saved/manifest.json"
wait_done "$job2" 180
check "job $job2 launched with $want (LAUNCHER=auto)" grep -q "launcher $want" "$log2"
check "job $job2 completed with exit code 0:0 ($(job_field "$job2" JobState) $(job_field "$job2" ExitCode))" \
      test "$(job_field "$job2" JobState) $(job_field "$job2" ExitCode)" = "COMPLETED 0:0"
check "job $job2: the batch shell forwarded SIGUSR1 and the step exited 138" \
      grep -q "training step exited with status 138 (after SIGUSR1)" "$log2"
# 138 is also what srun reports for a task killed by SIGUSR1: demand cst-train's own exit.
check "job $job2: cst-train itself exited 138 after saving" grep -q "^preempted by signal 10: exit 138" "$log2"
check "job $job2 was requeued (Restarts=$(job_field "$job2" Restarts))" test "$(job_field "$job2" Restarts)" = 1
check "job $job2 ran again as restart 1 in the same log" grep -q "restart 1:" "$log2"
check "job $job2 trained to step $steps (metrics.jsonl: $(last_step "$run2"))" test "$(last_step "$run2")" = "$steps"
# The second run starts from the checkpoint the first one saved, not from step 0: its part of
# the log (after "restart 1") names that checkpoint, and logs no step at or before it.
second="$(sed -n '/restart 1:/,$p' "$log2")"
check "job $job2 resumed from step_$saved after the restart" \
      grep -qE "^resumed from .*step_$saved: step $saved," <<<"$second"
first_step="$(grep -oE '^step +[0-9]+' <<<"$second" | head -n 1 | grep -oE '[0-9]+')"
check "job $job2: the resumed run's first logged step ($first_step) is after step $saved" \
      test "${first_step:-0}" -gt "${saved:-$steps}"
check "job $job2 ends with the same parameters as uninterrupted job $job1" \
      "$python" - "$run1/model.h5" "$run2/model.h5" <<'EOF'
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
names = sorted(k for k in a if isinstance(a[k], h5py.Dataset))
if names != sorted(k for k in b if isinstance(b[k], h5py.Dataset)):
    sys.exit("different parameter names")
bad = [k for k in names if a[k].shape != b[k].shape or not np.array_equal(a[k][()], b[k][()])]
for k in bad[:5]:
    print(f"  {k}: max |diff| {np.abs(a[k][()] - b[k][()]).max() if a[k].shape == b[k].shape else 'shape'}")
print(f"  {len(names) - len(bad)} of {len(names)} tensors identical")
sys.exit(1 if bad or not names else 0)
EOF
[ "$failed" -eq 0 ]
