// TrainConfig: everything cst-train takes, as typed structs with in-class defaults. Each option
// is declared once in the field table (train_config.cpp) under its group (model, data, init,
// train, optim, dist, checkpoint, log, debug); config files use [group] sections, the command line
// --group.key. validate() runs once after merging and throws cst::InputError naming the key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/backend.h"
#include "common/fields.h"
#include "common/parallel_layout.h"
#include "model/config.h"

namespace cst::trainer {

enum class OptimizerKind { kAdamW, kLamb };
enum class Schedule { kLinear, kCosine, kConstant };
// Execution choices (how to compute, not what); `auto` is resolved once, by resolve_execution
// (trainer/execution.h), for the device found.
enum class Toggle { kAuto, kOn, kOff };          // auto | on | off
enum class DeviceChoice { kAuto, kCpu, kCuda };  // auto (CUDA when present) | cpu | cuda
enum class Checkpointing { kNone, kBlock };      // none | block

// data.train and data.valid are a shard file or folder of *.h5, or a blend of several:
// "w1 path1 w2 path2 ..." (docs/DATA.md, Blends; dataio/blend.h).
struct DataOptions {
  std::string train;             // the train split, or a blend of train splits
  std::string valid;             // validation split(s) ("" = no validation)
  int64_t seq_len = 256;         // LM: N tokens per sample (windows of N+1); MLM: 0 = the shards' S
  std::string tokenizer_sha256;  // expected tokenizer of the shards ("" = not checked)
  int64_t prefetch = 4;          // batches the loader reads ahead
  double mask_prob = 0.15;       // MLM dynamic masking: fraction of tokens predicted
  bool reset_position = false;   // resume: every corpus from position 0 (the model, optimizer and
                                 // step are restored); needed to resume with a changed blend
};

// Fine-tuning from pretrained weights (docs/WEIGHTS.md, "Fine-tuning"): read at a fresh start
// only (a resume restores its checkpoint instead).
struct InitOptions {
  std::string weights;  // weights file or checkpoint step folder of a bidirectional run ("" = random init)
};

struct TrainOptions {
  int64_t steps = 1000;       // optimizer steps
  int64_t global_batch = 32;  // samples per step over all ranks
  int64_t micro_batch = 8;    // samples per forward/backward on one rank
  int64_t seed = 1234;        // init, data order, masking, dropout (per rank: seed + rank)
  // none | block: keep only each block's input and recompute the block in backward
  Checkpointing activation_checkpointing = Checkpointing::kNone;
};

struct OptimOptions {
  OptimizerKind name = OptimizerKind::kAdamW;
  double lr = 1e-3;                       // peak learning rate
  double min_lr = 0.0;                    // learning rate at the end of the decay
  int64_t warmup_steps = 100;             // linear warmup from 0
  Schedule schedule = Schedule::kCosine;  // decay after warmup
  double weight_decay = 0.01;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double grad_clip = 1.0;  // max global grad norm (0 = off)
  bool decay_all = false;  // also decay LayerNorm weights, biases and embeddings
};

struct DistOptions {
  comm::Backend backend = comm::Backend::kAuto;  // auto | local | mpi | nccl
  DeviceChoice device = DeviceChoice::kAuto;     // auto | cpu | cuda (CUDA device = local rank)

  int64_t threads = 0;            // intra-op threads per rank (0 = cores / ranks on this host)
  double bucket_first_mb = 1.0;   // first gradient bucket (MiB)
  double bucket_mb = 25.0;        // later buckets (MiB)
  double comm_timeout_s = 600.0;  // watchdog: a collective taking longer aborts the job
  Toggle bf16 = Toggle::kAuto;    // auto (on for CUDA) | on | off: autocast to bfloat16
  Toggle sdpa = Toggle::kAuto;    // auto (on for CUDA) | on | off: model.arch = full through
                                  // at::scaled_dot_product_attention (ModelConfig::full_sdpa)
  int64_t seq_parallel = 1;       // S: each sequence split over S ranks (docs/SEQUENCE_PARALLEL.md);
                                  // the W ranks form W / S data-parallel groups of S
};

// Sharded checkpoints (docs/CHECKPOINT.md): <dir>/step_<N>/ with a manifest, model.h5, one
// optimizer + RNG shard per rank; committed atomically; `latest` names the newest.
struct CheckpointOptions {
  bool save_final = true;        // write <log.dir>/model.h5 (docs/WEIGHTS.md) at the end
  int64_t weights_interval = 0;  // also every k steps to <log.dir>/model_step<k>.h5 (0 = off)
  std::string dir;               // checkpoint folder ("" = <log.dir>/checkpoints)
  int64_t interval = 0;          // steps between checkpoints (0 = only at the end and on preemption)
  int64_t keep = 3;              // complete checkpoints kept; older ones pruned after a commit (0 = all)
  bool async = false;            // write in a background thread (host copy at the step boundary)
  int64_t zero_stage = 0;        // 0: optimizer state replicated; 1: partitioned over ranks (ZeRO-1)
  std::string resume;            // "" = fresh start; "auto" = newest complete checkpoint in dir; or a path
  std::string keep_best;         // "" = off; else an eval metric as in metrics.jsonl (valid/accuracy,
                                 // valid/<corpus>/f1, valid/loss...): its best checkpoint is kept
  std::string resolved_dir(const std::string& log_dir) const { return dir.empty() ? log_dir + "/checkpoints" : dir; }
};

struct LogOptions {
  std::string dir = "runs/default";  // metrics.jsonl, TensorBoard events, weights
  int64_t interval = 10;             // steps between log lines
  int64_t eval_interval = 100;       // steps between validations (0 = only at the end)
  int64_t eval_batches = 0;          // max validation batches per corpus of data.valid (0 = the whole split)
  bool tensorboard = true;           // write TensorBoard event files
  double peak_tflops = 0.0;          // per-device peak for MFU (0 = measure a 2048^3 GEMM)
  int64_t profile_step = 0;          // this step runs profiled: <log.dir>/profile_step<k>.md (0 = off)
};

struct DebugOptions {
  int64_t fail_rank = -1;  // tests: this rank throws at step fail_at_step
  int64_t fail_at_step = -1;
  int64_t hang_rank = -1;  // tests: this rank sleeps before the collective at hang_at_step
  int64_t hang_at_step = -1;
  int64_t signal_rank = -1;  // tests: this rank raises debug.signal on itself after step signal_at_step
  int64_t signal_at_step = -1;
  int64_t signal = 10;         // SIGUSR1 on Linux
  int64_t save_delay_ms = 0;   // tests: checkpoint writers sleep this long mid-save (widens kill windows)
  int64_t prune_delay_ms = 0;  // tests: rank 0 sleeps this long mid-prune, after removing a first file
};

// Upper bounds of TrainConfig::validate() (with ModelConfig's): steps x global_batch samples
// stays far inside int64.
inline constexpr int64_t kMaxSteps = 10000000000;  // 1e10 optimizer steps
inline constexpr int64_t kMaxBatch = 16777216;     // 2^24 samples per step or per micro-batch

struct TrainConfig {
  model::ModelConfig model;
  DataOptions data;
  InitOptions init;
  TrainOptions train;
  OptimOptions optim;
  DistOptions dist;
  CheckpointOptions checkpoint;
  LogOptions log;
  DebugOptions debug;

  // Every field: "model.<ModelConfig field>" and the groups above.
  static const std::vector<Field<TrainConfig>>& fields();
  void set(const std::string& key, const std::string& value);  // InputError on unknown key/bad value
  std::string get(const std::string& key) const;
  std::string to_string() const;  // "[group]\nkey = value" INI text, loadable with --config

  // Throws InputError naming the key and value. world_size: the job's number of ranks.
  void validate(int world_size) const;
  // The layout of rank `rank` of world_size (dist.seq_parallel, model.slice_len, model.arch,
  // model.task), unchecked: ParallelLayout's constructor checks it.
  LayoutSpec layout_spec(int world_size, int rank) const;
  // Micro-steps per optimizer step: global_batch / (data-parallel replicas x micro_batch), the
  // replicas those of `layout` (made from layout_spec()).
  int64_t micro_steps(const ParallelLayout& layout) const;
};

// InputError unless `metric` names an evaluation metric as metrics.jsonl does (valid/<m> or
// valid/<corpus>/<m>, m one of cls_metrics.h's names, loss or ppl) and there is a validation split.
void check_keep_best(const std::string& metric, bool has_valid);

// Learning rate at optimizer step `step` (0-based): linear warmup to lr over warmup_steps,
// then linear or cosine decay to min_lr at `steps`, or constant.
double learning_rate(const OptimOptions& o, int64_t steps, int64_t step);

const char* to_string(OptimizerKind k);

}  // namespace cst::trainer
