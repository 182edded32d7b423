# shellcheck shell=bash
# Sourced by slurm/*.sbatch inside a SLURM batch job: launches cst-train on every task of the
# allocation, resumes from the newest checkpoint, and turns the pre-timeout/preemption signal
# into "save, exit, requeue". See docs/SLURM.md.
#
# Settings (environment variables, exported to the job by sbatch; defaults in brackets):
#   CONFIG               cst-train config file                   [set by the .sbatch script]
#   BUILD_DIR            build folder holding launcher/cst-train  [build]
#   RUN_DIR              log.dir: metrics.jsonl, TensorBoard, model.h5  [runs/<job name>-<job id>]
#                        (the job id survives a requeue, so the requeued run finds its checkpoints)
#   CHECKPOINT_DIR       checkpoint.dir                           [$RUN_DIR/checkpoints]
#   CHECKPOINT_INTERVAL  checkpoint.interval in steps ("" = the config's value)  [""]
#   EXTRA_ARGS           more cst-train options, e.g. "--train.steps 500 --optim.lr 1e-3"  [""]
#   LAUNCHER             auto | srun | mpirun  (auto: srun --mpi=pmix if `srun --mpi=list` has
#                        pmix, else mpirun)                       [auto]
#   REQUEUE              1: after a USR1-triggered save, `scontrol requeue` the job  [1]
#
#   CST_ROOT             the clone; relative paths start there   [set by the .sbatch script]
#
# Exit status: the training step's (0 finished, 138 saved after SIGUSR1 and requeued,
# 143 saved after SIGTERM), or 2 when the setup is wrong (no cst-train, no config).

cst_die() { echo "[cst-slurm] error: $*" >&2; exit 2; }
cst_log() { echo "[cst-slurm] $(date '+%F %T') $*"; }

# --- NCCL / network environment -------------------------------------------------------------
# Only NCCL_DEBUG gets a default here; the rest are site settings, exported before sbatch (the
# job inherits the submitting shell's environment) or set in a copy of the .sbatch script:
#   NCCL_SOCKET_IFNAME   interface(s) for NCCL's bootstrap and socket transport, e.g. "ib0",
#                        "eth0", or "^lo,docker" (everything but); must be routable between nodes
#   NCCL_IB_HCA          InfiniBand / RoCE adapters to use, e.g. "mlx5_0,mlx5_1" or "=mlx5_0:1"
#   NCCL_IB_DISABLE      1 = no InfiniBand (TCP sockets only), for Ethernet-only clusters
#   NCCL_IB_GID_INDEX    RoCE v2 GID index (often 3); unset for native InfiniBand
#   NCCL_IB_TIMEOUT      IB verbs timeout exponent (default 18; raise on large fabrics)
#   NCCL_NET_GDR_LEVEL   GPUDirect RDMA distance, e.g. "PHB"; NCCL_P2P_LEVEL likewise for NVLink/PCIe
#   NCCL_DEBUG           WARN (default here), INFO to see the rings/trees and transports chosen,
#                        with NCCL_DEBUG_SUBSYS=INIT,NET to narrow it
#   NCCL_DEBUG_FILE      e.g. "nccl-%h-%p.log": one file per host and pid instead of the job log
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
# cst-train's intra-op threads: one per CPU given to the task.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"
# Open MPI refuses root unless told (containers, CI).
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

BUILD_DIR="${BUILD_DIR:-build}"
RUN_DIR="${RUN_DIR:-runs/${SLURM_JOB_NAME:-cst}-${SLURM_JOB_ID:-}}"
CHECKPOINT_DIR="${CHECKPOINT_DIR:-$RUN_DIR/checkpoints}"
CHECKPOINT_INTERVAL="${CHECKPOINT_INTERVAL:-}"
EXTRA_ARGS="${EXTRA_ARGS:-}"
LAUNCHER="${LAUNCHER:-auto}"
REQUEUE="${REQUEUE:-1}"

# cst_launch_cmd: fills the array LAUNCH with the launcher prefix for every task of the job.
cst_launch_cmd() {
  local kind="$LAUNCHER"
  if [ "$kind" = auto ]; then
    if srun --mpi=list 2>&1 | grep -qw pmix; then kind=srun; else kind=mpirun; fi
  fi
  case "$kind" in
    srun)
      # 22.05+: srun no longer inherits --cpus-per-task from the batch allocation: pass it.
      # --kill-on-bad-exit=0: a rank still writing its checkpoint must not be killed because a
      # peer already exited 138; real failures end the job through MPI_Abort.
      LAUNCH=(srun --mpi=pmix --kill-on-bad-exit=0 --ntasks="$SLURM_NTASKS"
              --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}")
      ;;
    mpirun)
      # Open MPI reads the allocation from SLURM; export what the ranks need by name.
      local v
      LAUNCH=(mpirun -np "$SLURM_NTASKS" --bind-to none)
      [ -n "${SLURM_NTASKS_PER_NODE:-}" ] && LAUNCH+=(--map-by "ppr:${SLURM_NTASKS_PER_NODE%%(*}:node")
      for v in $(compgen -e | grep -E '^(NCCL_|CUDA_|UCX_|OMP_NUM_THREADS$|LD_LIBRARY_PATH$|PATH$)'); do
        LAUNCH+=(-x "$v")
      done
      ;;
    *) cst_die "LAUNCHER must be auto, srun or mpirun, not '$LAUNCHER'" ;;
  esac
  LAUNCHER_USED="$kind"
}

# cst_train_job <default config>: the whole job; outside SLURM (no SLURM_JOB_ID) it exits 2 at
# once with a message. Returns the training step's exit status.
cst_train_job() {
  if [ -z "${SLURM_JOB_ID:-}" ]; then
    echo "error: $(basename "$0") is a SLURM batch script: submit it with 'sbatch $0' (SLURM_JOB_ID is not set)." >&2
    echo "       To train without SLURM: mpirun -np N $BUILD_DIR/launcher/cst-train --config ${CONFIG:-$1}" >&2
    exit 2
  fi
  cd "$CST_ROOT" || cst_die "cannot cd to CST_ROOT '$CST_ROOT'"
  CONFIG="${CONFIG:-$1}"
  # --signal=B:USR1@120 sends USR1 to this shell only: pass it to the launcher (srun and mpirun
  # forward it to every task), which makes every rank save at the next step boundary and exit 138.
  # scancel / time limit: SLURM sends TERM to the tasks itself; note it and pass it on too.
  # Installed before the launch: an early signal must not kill this shell (the default action).
  local preempted=0 signal_name="" pid=""
  trap 'preempted=1; signal_name=USR1; cst_log "SIGUSR1: asking every rank to checkpoint and exit"; [ -z "$pid" ] || kill -USR1 "$pid" 2>/dev/null || true' USR1
  trap 'signal_name=TERM; cst_log "SIGTERM: the job is ending (cancel or time limit)"; [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true' TERM

  local exe="$BUILD_DIR/launcher/cst-train"
  [ -x "$exe" ] || cst_die "$exe not found (set BUILD_DIR, or build the cst-train target)"
  [ -f "$CONFIG" ] || cst_die "config '$CONFIG' not found (set CONFIG; paths are relative to $PWD)"
  mkdir -p "$RUN_DIR"

  local args=(--config "$CONFIG" --log.dir "$RUN_DIR")
  local help
  help="$("$exe" --help 2>/dev/null)"  # not piped into grep -q: pipefail + SIGPIPE
  if grep -q -- '--resume' <<<"$help"; then
    mkdir -p "$CHECKPOINT_DIR"
    args+=(--checkpoint.dir "$CHECKPOINT_DIR" --resume auto)
    [ -n "$CHECKPOINT_INTERVAL" ] && args+=(--checkpoint.interval "$CHECKPOINT_INTERVAL")
  else
    cst_log "warning: this cst-train has no --resume: a preempted run restarts from step 0"
  fi
  # shellcheck disable=SC2206  # EXTRA_ARGS is a word list on purpose
  args+=($EXTRA_ARGS)
  cst_launch_cmd

  cst_log "job $SLURM_JOB_ID ($SLURM_JOB_NAME), restart ${SLURM_RESTART_COUNT:-0}:" \
          "$SLURM_JOB_NUM_NODES node(s) [$SLURM_JOB_NODELIST], $SLURM_NTASKS task(s)," \
          "${SLURM_CPUS_PER_TASK:-1} CPU(s)/task, GPUs: ${SLURM_GPUS_PER_TASK:-${SLURM_GPUS_ON_NODE:-none}}"
  cst_log "run dir $RUN_DIR, checkpoints $CHECKPOINT_DIR, launcher $LAUNCHER_USED"
  cst_log "${LAUNCH[*]} $exe ${args[*]}"

  # The launcher runs in the background so that this shell can take signals while it waits
  # (bash runs a trap only between commands; `wait` returns early on a trapped signal).
  "${LAUNCH[@]}" "$exe" "${args[@]}" &
  pid=$!
  [ "$preempted" = 0 ] || kill -USR1 "$pid" 2>/dev/null || true  # USR1 came during the setup
  local rc
  while true; do
    rc=0
    wait "$pid" || rc=$?
    kill -0 "$pid" 2>/dev/null || break  # gone (reaped): rc is its exit status
  done
  trap - USR1 TERM
  cst_log "training step exited with status $rc${signal_name:+ (after SIG$signal_name)}"

  if [ "$preempted" = 1 ] && [ "$rc" -ne 0 ] && [ "$REQUEUE" = 1 ]; then
    cst_log "requeueing job $SLURM_JOB_ID: the next run resumes from $CHECKPOINT_DIR"
    trap '' TERM  # requeue ends this shell's job; exit quietly
    scontrol requeue "$SLURM_JOB_ID" || cst_log "error: scontrol requeue failed (is the job --requeue?)"
  fi
  return "$rc"
}
