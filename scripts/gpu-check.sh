#!/usr/bin/env bash
# Verifies the GPU path in one command on a machine with an NVIDIA GPU (docs/GPU.md). Steps:
#   1. find the dependencies: the system's own packages (a machine set up with
#      scripts/install-deps.sh), or the Debian packages scripts/gpu-prepare.sh fetched into
#      .gpu-debs/ for a machine without them and without network, unpacked into a sysroot
#      (dpkg-deb -x, or ar + tar; nothing installed)
#   2. configure against the machine's own LibTorch (torch.utils.cmake_prefix_path) and NCCL
#      (the nvidia-nccl wheel beside torch, else the CUDA toolkit), with CST_REQUIRE_CUDA=ON
#   3. build cst-train, cst-prep, bench_attention and the CUDA tests
#   4. run the checks:
#        nccl      NCCL collectives and the bucketed reducer on one rank (mpirun -np 1)
#        cuda      model forward and backward on CUDA equal to CPU
#        bench     CST vs full attention (explicit scores, and SDPA's fused kernels):
#                  training tokens/s, peak memory and MFU at
#                  N = 4096, 8192, 16384 against a bf16 GEMM peak measured in the same run
#        bf16      a bf16-autocast training run (NCCL, one rank, ZeRO-1) on the KJV: finite,
#                  falling loss, close to a float32 run of the same steps; tokens/s and MFU
#        resume    the bf16 run resumed from its half-way checkpoint ends where it ended
#        full      the full-attention baseline, same shape and steps, trains through SDPA
#                  (step 5 of this run and of the bf16 run profiled: time per phase and kernel)
#   5. write $OUT/report.md: device, versions, PASS/FAIL per check and the figures
#      ($OUT/gpu-check.log holds every command's output)
#
#   bash scripts/gpu-check.sh [--packages auto|system|carried] [--corpus DIR] [--cpu-dry-run]
#                             [--only nccl,cuda,bench,bf16]
#                             [--bench-n 4096,8192,16384] [--bench-tokens 16384] [--bench-max-full-n 16384]
#
# --packages: `system` uses what is installed (scripts/install-deps.sh); `carried` unpacks
# .gpu-debs/debs; `auto` (default) takes carried when .gpu-debs/debs exists, else system.
# --corpus: a PG-19-layout folder of text (train/ and validation/ of *.txt) for the training
# checks; default .gpu-debs/kjv when carried, else data/kjv-raw (made with Debian's bible-kjv by
# scripts/prepare-kjv.sh --raw-only when missing).
# --cpu-dry-run runs the same steps on CPU at small sizes (no NCCL, no bf16), to test this
# script where there is no GPU; its report says so, and the GPU-only checks count as not run.
# --only runs the checks named (the build always; resume and full go with bf16); the --bench-*
# options set bench_attention's sequence lengths, tokens per step and the largest N for
# explicit-score full attention on the GPU (the defaults are the check's; larger N measure long
# context); a dry run keeps its own small sizes.
# Environment: OUT (report folder; default runs/gpu-check), CST_GPU_PYTHON (the python with
# torch; default the venv of scripts/install-deps.sh when it exists, else python3), CST_SYSROOT
# (default /tmp/cst-sysroot), CST_GPU_BUILD (default build-gpu), JOBS (default nproc),
# CST_GPU_DEADLINE (seconds the whole script may take, default 540, 1800 for a dry run: every
# step's time limit is cut to what is left, and a step with no time left fails as "no time
# left", so the report is written before a caller's time limit), CST_COMMIT (the commit named
# in the report, where the tree travels without .git).
# The report is rewritten after every step, so a run cut off from outside still leaves one.
# Exit status: 0 when every check passed, 1 when one failed, 2 on bad usage or missing inputs.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DRY=0 ONLY=nccl,cuda,bench,bf16 BENCH_N=4096,8192,16384 BENCH_TOKENS=16384 BENCH_MAX_FULL_N=16384
PACKAGES=auto CORPUS=""
usage() { echo "error: $1 (see --help)" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry-run) DRY=1 ;;
    --only|--bench-n|--bench-tokens|--bench-max-full-n|--packages|--corpus)
      [ $# -ge 2 ] || usage "$1 needs a value"
      case "$1" in
        --only) ONLY=$2 ;; --bench-n) BENCH_N=$2 ;; --bench-tokens) BENCH_TOKENS=$2 ;;
        --packages) PACKAGES=$2 ;; --corpus) CORPUS=$2 ;; *) BENCH_MAX_FULL_N=$2 ;;
      esac
      shift ;;
    -h|--help) awk 'NR > 1 && /^set -uo/ { exit } NR > 1' "$0"; exit 0 ;;
    *) usage "unknown argument '$1'" ;;
  esac
  shift
done
for c in ${ONLY//,/ }; do
  case "$c" in nccl|cuda|bench|bf16) ;; *) usage "--only: unknown check '$c' (nccl, cuda, bench, bf16)" ;; esac
done
case "$PACKAGES" in
  auto) if [ -d .gpu-debs/debs ]; then PACKAGES=carried; else PACKAGES=system; fi ;;
  system|carried) ;;
  *) usage "--packages: '$PACKAGES' (auto, system or carried)" ;;
esac
[[ "$BENCH_N" =~ ^[0-9]+(,[0-9]+)*$ ]] || usage "--bench-n: '$BENCH_N' is not a comma list of whole numbers"
[[ "$BENCH_TOKENS" =~ ^[0-9]+$ ]] || usage "--bench-tokens: '$BENCH_TOKENS' is not a whole number"
[[ "$BENCH_MAX_FULL_N" =~ ^[0-9]+$ ]] || usage "--bench-max-full-n: '$BENCH_MAX_FULL_N' is not a whole number"
want() { [[ ",$ONLY," == *",$1,"* ]]; }
OUT=${OUT:-$ROOT/runs/gpu-check}
VENV_PY=${CST_VENV:-$HOME/.cache/cst-train/venv}/bin/python
if [ -n "${CST_GPU_PYTHON:-}" ]; then PY=$CST_GPU_PYTHON; elif [ -x "$VENV_PY" ]; then PY=$VENV_PY; else PY=python3; fi
SYS=${CST_SYSROOT:-/tmp/cst-sysroot}
BUILD=${CST_GPU_BUILD:-$ROOT/build-gpu}
JOBS=${JOBS:-$(nproc)}
WORK=$BUILD/gpu-check-work
mkdir -p "$OUT" "$WORK"
REPORT=$OUT/report.md
LOG=$OUT/gpu-check.log
: > "$LOG"
T_START=$(date +%s)
DEADLINE=${CST_GPU_DEADLINE:-$([ "$DRY" = 1 ] && echo 1800 || echo 540)}
[[ "$DEADLINE" =~ ^[0-9]+$ ]] && [ "$DEADLINE" -ge 60 ] ||
  { echo "error: CST_GPU_DEADLINE='$DEADLINE' must be a whole number of seconds >= 60" >&2; exit 2; }
COMMIT=${CST_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
elapsed() { echo $(( $(date +%s) - T_START )); }
if [ "$PACKAGES" = carried ]; then
  [ -d .gpu-debs/debs ] || { echo "error: .gpu-debs/debs not found: run scripts/gpu-prepare.sh on Debian 12 and carry .gpu-debs" >&2; exit 2; }
  CORPUS=${CORPUS:-.gpu-debs/kjv}
else
  for t in mpicc h5cc protoc; do
    command -v $t >/dev/null || { echo "error: '$t' not found: install the dependencies (bash scripts/install-deps.sh) or use --packages carried" >&2; exit 2; }
  done
  if [ -z "$CORPUS" ]; then
    CORPUS=data/kjv-raw
    [ -f "$CORPUS/.done" ] || bash scripts/prepare-kjv.sh none data/kjv --raw-only ||
      { echo "error: no corpus: pass --corpus DIR (PG-19 layout) or install bible-kjv" >&2; exit 2; }
  fi
fi
[ -d "$CORPUS/train" ] || { echo "error: --corpus '$CORPUS' has no train/ folder (PG-19 layout: train/*.txt, validation/*.txt)" >&2; exit 2; }

say() { echo "[gpu-check +$(elapsed)s] $*" | tee -a "$LOG"; }
results=()  # "name|PASS or FAIL or NOT RUN|detail"
record() { results+=("$1|$2|$3"); say "$1: $2 $3"; write_report; }
# write_report: (re)writes $REPORT from the results so far; sets failed=1 if any check failed
# (or, on a GPU, was not run).
bench=()
write_report() {
  failed=0
  {
    echo "# gpu-check report"
    echo
    [ "$DRY" = 1 ] && echo "**CPU DRY RUN: no GPU was used; these are not GPU results.**" && echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $COMMIT"
    echo "- device: $GPU_NAME"
    echo "- torch $TORCH_VERSION (CUDA $TORCH_CUDA); $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo 'nvcc not found'); $(g++ --version | head -1); $(cmake --version | head -1)"
    echo "- dependencies: $PACKAGES packages; corpus $CORPUS"
    echo "- OS: $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-unknown}"); $(nproc) CPUs; total $(elapsed) s so far"
    echo
    echo "| check | result | detail |"
    echo "|---|---|---|"
    for r in "${results[@]}"; do
      IFS='|' read -r n s d <<< "$r"
      echo "| $n | $s | $d |"
      [ "$s" = FAIL ] && failed=1
      [ "$s" = "NOT RUN" ] && [ "$DRY" = 0 ] && failed=1
    done
    echo
    if [ -f "$WORK/bench.out" ]; then
      echo "## CST vs full attention (bench_attention ${bench[*]})"
      echo
      grep -v '^\[W' "$WORK/bench.out"
    fi
    for p in "train-a:CST (${label_a:-})" "train-d:full attention (${label_a:-})"; do
      if [ -f "$WORK/${p%%:*}/profile_step5.md" ]; then
        echo
        echo "## Step 5 of the ${p#*:} training run, profiled"
        echo
        cat "$WORK/${p%%:*}/profile_step5.md"
      fi
    done
  } > "$REPORT"
}
# run_logged NAME TIMEOUT_S CMD...: runs CMD with a time limit (cut to the time left before
# the deadline, less 20 s for the report), its output into the log and into $WORK/NAME.out.
# Returns CMD's status: 124 on timeout, 125 when no time was left to start it.
run_logged() {
  local name=$1 limit=$2; shift 2
  local left=$(( DEADLINE - $(elapsed) - 20 ))
  [ "$left" -lt "$limit" ] && limit=$left
  echo "---- $name (time limit ${limit}s): $*" >> "$LOG"
  if [ "$limit" -lt 5 ]; then
    echo "---- $name: not started, the deadline of ${DEADLINE}s is reached" | tee "$WORK/$name.out" >> "$LOG"
    return 125
  fi
  timeout --kill-after=5 "$limit" "$@" > "$WORK/$name.out" 2>&1
  local rc=$?
  cat "$WORK/$name.out" >> "$LOG"
  echo "---- $name: exit $rc after $(elapsed)s in all" >> "$LOG"
  return $rc
}
# why_failed RC: the words for a run_logged status in a FAIL line.
why_failed() {
  case $1 in 124|137) echo "timed out" ;; 125) echo "no time left" ;; *) echo "exit $1" ;; esac
}

# ---- 0. the machine ------------------------------------------------------------------------
TORCH_INFO=$("$PY" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.utils.cmake_prefix_path, torch.cuda.is_available())' 2>>"$LOG") ||
  { echo "error: '$PY' cannot import torch (set CST_GPU_PYTHON)" >&2; exit 2; }
read -r TORCH_VERSION TORCH_CUDA TORCH_PREFIX TORCH_HAS_GPU <<< "$TORCH_INFO"
GPU_NAME=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
[ -n "$GPU_NAME" ] || GPU_NAME="none (nvidia-smi: $(command -v nvidia-smi || echo not found))"
if [ "$DRY" = 0 ] && [ "$TORCH_HAS_GPU" != True ]; then
  echo "error: torch sees no CUDA device (use --cpu-dry-run to test this script without a GPU)" >&2; exit 2
fi
say "device: $GPU_NAME; torch $TORCH_VERSION (CUDA $TORCH_CUDA) at $TORCH_PREFIX; dry run: $DRY; deadline ${DEADLINE}s"
rm -f "$WORK"/*.out  # a warm machine keeps the build folder: no figures from an earlier run
{ echo "---- tools:"; for t in nvcc g++ cmake ninja dpkg-deb ar; do echo "$t: $(command -v $t || echo missing)"; done
  ls -d /usr/local/cuda* 2>&1; nproc; free -g 2>/dev/null | head -2; } >> "$LOG"

# ---- 1. the dependencies: the system's, or the carried Debian packages in a sysroot --------
SYSENV=(env)
CMAKE_DEPS=(-DCMAKE_PREFIX_PATH="$TORCH_PREFIX")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
if [ "$PACKAGES" = carried ]; then
  stamp=$(cat .gpu-debs/MANIFEST 2>/dev/null | md5sum | cut -c1-32)
  if [ -f "$SYS/.cst-stamp" ] && [ "$(cat "$SYS/.cst-stamp")" = "$stamp" ]; then
    say "sysroot $SYS: already unpacked"
  else
    rm -rf "$SYS" && mkdir -p "$SYS"
    for deb in .gpu-debs/debs/*.deb; do
      if command -v dpkg-deb >/dev/null; then
        dpkg-deb -x "$deb" "$SYS"
      else  # a .deb is an ar archive holding data.tar.{xz,zst,gz}
        tmp=$(mktemp -d) && (cd "$tmp" && ar x "$ROOT/$deb") && tar -xf "$tmp"/data.tar.* -C "$SYS" && rm -rf "$tmp"
      fi || { echo "error: cannot unpack $deb" >&2; exit 2; }
    done
    # Debian makes these names with update-alternatives at install time.
    for t in mpicc mpicxx mpirun mpiexec; do ln -sf "$t.openmpi" "$SYS/usr/bin/$t"; done
    echo "$stamp" > "$SYS/.cst-stamp"
    say "sysroot $SYS: unpacked $(ls .gpu-debs/debs/*.deb | wc -l) packages"
  fi
  ARCH_LIB=$SYS/usr/lib/x86_64-linux-gnu
  # The unpacked libraries are older builds of some that the system may have too (OpenSSL, curl,
  # ...): only our own programs get them, through SYSENV, never the system's tools (cmake, g++,
  # python). The build finds them through full paths, -rpath-link and two wrappers.
  SYS_LD="$ARCH_LIB:$SYS/lib/x86_64-linux-gnu:$ARCH_LIB/openmpi/lib:$ARCH_LIB/hdf5/serial"
  SYSENV=(env "LD_LIBRARY_PATH=$SYS_LD${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  mkdir -p "$SYS/wrap"
  for t in mpicc:mpicc.openmpi protoc:protoc; do
    printf '#!/bin/sh\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" "$@"\n' \
      "$SYS_LD" "$SYS/usr/bin/${t#*:}" > "$SYS/wrap/${t%%:*}"
    chmod +x "$SYS/wrap/${t%%:*}"
  done
  export PATH="$SYS/usr/bin:$PATH"
  export CPATH="$SYS/usr/include/x86_64-linux-gnu${CPATH:+:$CPATH}"  # openssl/configuration.h
  # OpenMPI and its PMIx were built for /usr: point them at the sysroot. One node, so shared
  # memory only (no UCX / libfabric probing), and no ssh / rsh needed (mpirun insists on finding
  # one even when it launches nothing remotely).
  export OPAL_PREFIX="$SYS/usr" PMIX_INSTALL_PREFIX="$ARCH_LIB/pmix2" OMPI_MCA_plm_rsh_agent=false
  # PMIx otherwise also loads plugins from the system's /usr/lib/.../pmix2 when the machine has
  # a PMIx of its own (seen on the GPU machine: "undefined symbol", then no compression).
  export PMIX_MCA_mca_base_component_path="$ARCH_LIB/pmix2/lib/pmix"
  export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader OMPI_MCA_mtl=^ofi,psm,psm2 OMPI_MCA_osc=^ucx
  CMAKE_DEPS=(-DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$SYS/usr" -DMPI_C_COMPILER="$SYS/wrap/mpicc"
              -DProtobuf_PROTOC_EXECUTABLE="$SYS/wrap/protoc" -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$SYS_LD"
              -DCMAKE_SHARED_LINKER_FLAGS="-Wl,-rpath-link,$SYS_LD")
else
  say "dependencies: the system's (mpicc $(command -v mpicc), h5cc $(command -v h5cc))"
fi
# One rank under mpirun, as users launch it; should mpirun itself not work on this machine
# (a sandboxed kernel, say), the MPI programs run as singletons (MPI_Init without mpirun), and
# the report says so.
MPIRUN=(mpirun -np 1 --bind-to none) LAUNCH="mpirun -np 1"
if ! run_logged mpirun_probe 30 "${SYSENV[@]}" "${MPIRUN[@]}" true; then
  MPIRUN=() LAUNCH="singleton (mpirun -np 1 failed here: see mpirun_probe in gpu-check.log)"
fi
say "launch: $LAUNCH"

# ---- 2 + 3. configure and build ------------------------------------------------------------
generator=(-G Ninja)
command -v ninja >/dev/null || generator=(-G "Unix Makefiles")
cuda_flag=-DCST_REQUIRE_CUDA=ON
[ "$DRY" = 1 ] && cuda_flag=-DCST_REQUIRE_CUDA=OFF
TARGETS=(cst-train cst-prep bench_attention comm_nccl_test model_cuda_test)
run_logged configure 600 cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${CMAKE_DEPS[@]}" \
  -DCST_BUILD_BENCH=ON -DCST_BUILD_TESTS=ON "$cuda_flag"
rc=$? step=configure
if [ $rc -eq 0 ]; then
  run_logged build 1200 cmake --build "$BUILD" -j"$JOBS" $(printf -- '--target %s ' "${TARGETS[@]}")
  rc=$? step=build
fi
if [ $rc -eq 0 ]; then
  record build PASS "($(grep -m1 'cst-train: Torch' "$WORK/configure.out" | sed 's/^-- //'))"
else  # the first error lines go into the report, which is what a caller sees first
  record build FAIL "($step: $(why_failed $rc); $(grep -m3 -E 'error:|Error|FAILED:' "$WORK/$step.out" | cut -c1-160 | tr '|\n' '/ '))"
fi
built() { [ -x "$BUILD/$1" ]; }

# ---- 4a. NCCL all-reduce on one rank -------------------------------------------------------
gtest_check() {  # NAME BINARY [mpirun]: PASS when the suite passed and skipped nothing
  local name=$1 bin=$2 launcher=("${@:3}")
  if ! built "$bin"; then record "$name" FAIL "(not built)"; return; fi
  run_logged "$name" 120 "${SYSENV[@]}" "${launcher[@]}" "$BUILD/$bin" --gtest_color=no
  local rc=$? out="$WORK/$name.out"
  local summary
  summary=$(grep -E '^\[  PASSED  \]|^\[  SKIPPED \] [0-9]|^\[  FAILED  \] [0-9]' "$out" | tr '\n' ' ')
  if [ "$DRY" = 1 ] && grep -q "SKIPPED: no CUDA device" "$out"; then
    record "$name" "NOT RUN" "(dry run: $(grep -m1 -o 'SKIPPED: no CUDA device[^)]*)\?' "$out"))"
  elif [ $rc -eq 0 ] && ! grep -q "SKIPPED" "$out" && grep -q '^\[  PASSED  \]' "$out"; then
    record "$name" PASS "($summary)"
  else
    record "$name" FAIL "($(why_failed $rc); $summary)"
  fi
}
want nccl && gtest_check nccl tests/comm/comm_nccl_test "${MPIRUN[@]}"
want cuda && gtest_check cuda tests/model/model_cuda_test

# ---- 4b. CST vs full attention (before the MPI runs: it needs no MPI) ----------------------
if ! want bench; then
  :
elif built bench/bench_attention; then
  if [ "$DRY" = 1 ]; then
    bench=(--device cpu --n 256,512 --tokens 1024 --iters 1)
  else
    bench=(--device cuda --n "$BENCH_N" --max-full-n "$BENCH_MAX_FULL_N" --tokens "$BENCH_TOKENS" --iters 10 --set vocab_size=32000
           --set d_model=512 --set n_heads=8 --set n_layers=4 --set d_ff=2048 --set slice_len=64 --set alpha=3)
  fi
  run_logged bench 240 "${SYSENV[@]}" "$BUILD/bench/bench_attention" "${bench[@]}"
  rc=$?
  if [ $rc -eq 0 ] && grep -q '^| [0-9]' "$WORK/bench.out"; then
    record bench PASS "(table below)"
  else
    record bench FAIL "($(why_failed $rc); see bench in gpu-check.log)"
  fi
else
  record bench FAIL "(not built)"
fi

# ---- 4c. bf16 training on the KJV ----------------------------------------------------------
# loss_summary DIR: "first last n_finite n_total tokens_per_s mfu" of the train lines of
# DIR/metrics.jsonl ("nan nan 0 0 0 0" when there are none).
loss_summary() {
  "$PY" - "$1/metrics.jsonl" 2>>"$LOG" <<'EOF' || echo nan nan 0 0 0 0
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"train"' in l]
fin = [r for r in rows if math.isfinite(r["loss"])]
last = rows[-1] if rows else {"loss": float("nan"), "tokens_per_s": 0, "mfu": 0}
print(rows[0]["loss"] if rows else "nan", last["loss"], len(fin), len(rows), round(last["tokens_per_s"]), last["mfu"])
EOF
}
# train NAME DIR ARGS...: one cst-train run (time limit 150 s) logging into a fresh $WORK/DIR.
train() {
  local name=$1 dir=$WORK/$2; shift 2
  rm -rf "$dir"
  run_logged "$name" 150 "${SYSENV[@]}" "${MPIRUN[@]}" "$BUILD/launcher/cst-train" "$@" --log.dir "$dir"
}
if ! want bf16; then
  :
elif built launcher/cst-prep && built launcher/cst-train; then
  if [ -f "$WORK/kjv/.done" ] || { run_logged prep 120 "${SYSENV[@]}" "$BUILD/launcher/cst-prep" --input "$CORPUS" --format pg19 \
         --output "$WORK/kjv" --overwrite --task lm --vocab-size 8000 --model-type unigram --seed 1234 && touch "$WORK/kjv/.done"; }; then
    if [ "$DRY" = 1 ]; then
      shape=(--model.d_model 64 --model.n_heads 2 --model.n_layers 1 --model.d_ff 128 --model.slice_len 16
             --model.max_seq_len 256 --data.seq_len 256 --train.global_batch 4 --train.micro_batch 2
             --dist.backend mpi --dist.device cpu)
      prec_a=(--dist.bf16 off) label_a="float32 (dry run)" steps=20
    else
      shape=(--model.n_layers 4 --model.max_seq_len 4096 --data.seq_len 4096 --train.global_batch 16
             --train.micro_batch 8 --dist.backend nccl --dist.device cuda)
      prec_a=(--dist.bf16 on) label_a=bf16 steps=60
    fi
    common=(--config configs/pg19_longctx.cfg --data.train "$WORK/kjv/train" --data.valid "$WORK/kjv/validation"
            --model.vocab_size 8000 --model.dropout 0 --train.steps $steps --optim.warmup_steps 10 --optim.lr 1e-3
            --log.interval 10 --log.eval_interval 0 --log.eval_batches 4 --checkpoint.zero_stage 1 "${shape[@]}")
    half=$(( steps / 2 ))
    # Step 5 of the CST run and of the full-attention run is profiled (<dir>/profile_step5.md: time
    # per phase with the device synchronised at each border, and per operator / CUDA kernel); the
    # report shows both. The tokens/s in the report are those of the last log interval.
    train train_bf16 train-a "${common[@]}" "${prec_a[@]}" --checkpoint.interval $half --log.profile_step 5
    rc_a=$?
    train train_fp32 train-b "${common[@]}" --dist.bf16 off
    rc_b=$?
    read -r a_first a_last a_fin a_n a_tps a_mfu <<< "$(loss_summary "$WORK/train-a")"
    read -r b_first b_last b_fin b_n b_tps b_mfu <<< "$(loss_summary "$WORK/train-b")"
    cp "$WORK/train-a/metrics.jsonl" "$OUT/train-bf16.jsonl" 2>/dev/null
    cp "$WORK/train-b/metrics.jsonl" "$OUT/train-fp32.jsonl" 2>/dev/null
    peak=$(grep -h -m1 "GEMM peak" "$WORK/train_bf16.out" | sed 's/.*GEMM peak: //')
    detail="($LAUNCH; $label_a: loss $a_first -> $a_last over $steps steps, $a_tps tok/s, MFU $(awk -v m="$a_mfu" 'BEGIN{printf "%.1f%%", 100*m}');"
    detail+=" float32: loss $b_first -> $b_last, $b_tps tok/s; GEMM peak $peak)"
    if [ $rc_a -eq 0 ] && [ $rc_b -eq 0 ] && [ "$a_n" -gt 0 ] && [ "$a_fin" = "$a_n" ] && [ "$b_fin" = "$b_n" ] &&
       awk -v a="$a_first" -v b="$a_last" -v c="$b_last" 'BEGIN { exit !(b < a && (b - c < 0.05 * c) && (c - b < 0.05 * c)) }'; then
      record bf16 PASS "$detail"
    else
      record bf16 FAIL "($(why_failed $rc_a), $(why_failed $rc_b); finite $a_fin/$a_n, $b_fin/$b_n) $detail"
    fi
    # 4d. resume: the bf16 run again from its ZeRO-1 checkpoint at half way (model, AdamW state,
    # data position, CUDA RNG) must end where the uninterrupted run ended. GPU kernels are not all
    # deterministic (atomics in backward), so "equal" is within 1e-3 relative; the report says
    # whether the final losses are bitwise equal as printed.
    train train_resume train-c "${common[@]}" "${prec_a[@]}" --resume "$WORK/train-a/checkpoints/step_$half"
    rc_c=$?
    read -r _ c_last c_fin c_n _ _ <<< "$(loss_summary "$WORK/train-c")"
    read -r rel rel_ok <<< "$("$PY" -c 'import math, sys
a, c = (float(x) for x in sys.argv[1:])
r = abs(a - c) / abs(a) if math.isfinite(a) and math.isfinite(c) and a != 0 else math.inf
print("%.2e" % r, int(r <= 1e-3))' "$a_last" "$c_last" 2>>"$LOG" || echo inf 0)"
    same=$([ "$a_last" = "$c_last" ] && echo "bitwise equal as printed" || echo "not bitwise equal")
    detail="(resumed at step $half of $steps: final loss $c_last, uninterrupted $a_last, relative difference $rel, $same)"
    if [ $rc_a -eq 0 ] && [ $rc_c -eq 0 ] && grep -q "resumed from" "$WORK/train_resume.out" && [ "$c_n" -gt 0 ] &&
       [ "$c_fin" = "$c_n" ] && [ "$rel_ok" = 1 ]; then
      record resume PASS "$detail"
    else
      record resume FAIL "($(why_failed $rc_c)) $detail"
    fi
    # 4e. full: the full-attention baseline (configs/pg19_longctx_full.cfg, same shape and steps)
    # trains through SDPA's fused kernels (dist.sdpa auto = on CUDA); its tokens/s beside CST's.
    full=("${common[@]}")
    full[1]=configs/pg19_longctx_full.cfg
    train train_full train-d "${full[@]}" "${prec_a[@]}" --log.profile_step 5
    rc_d=$?
    read -r d_first d_last d_fin d_n d_tps d_mfu <<< "$(loss_summary "$WORK/train-d")"
    sdpa_said=$(grep -c "full attention through SDPA" "$WORK/train_full.out")
    detail="($label_a, $([ "$sdpa_said" -gt 0 ] && echo "through SDPA" || echo "explicit scores"): loss $d_first -> $d_last,"
    detail+=" $d_tps tok/s against CST's $a_tps, MFU $(awk -v m="$d_mfu" 'BEGIN{printf "%.1f%%", 100*m}'))"
    if [ $rc_d -eq 0 ] && [ "$d_n" -gt 0 ] && [ "$d_fin" = "$d_n" ] && { [ "$DRY" = 1 ] || [ "$sdpa_said" -gt 0 ]; } &&
       awk -v a="$d_first" -v b="$d_last" 'BEGIN { exit !(b < a) }'; then
      record full PASS "$detail"
    else
      record full FAIL "($(why_failed $rc_d); finite $d_fin/$d_n) $detail"
    fi
  else
    record bf16 FAIL "(cst-prep failed on $CORPUS)"
    record resume FAIL "(cst-prep failed on $CORPUS)"
    record full FAIL "(cst-prep failed on $CORPUS)"
  fi
else
  record bf16 FAIL "(not built)"
  record resume FAIL "(not built)"
  record full FAIL "(not built)"
fi

# ---- 5. the report (written by every record too) ------------------------------------------
write_report
cat "$REPORT" | tee -a "$LOG"
exit $failed
