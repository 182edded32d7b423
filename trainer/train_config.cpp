#include "trainer/train_config.h"

#include <cmath>
#include <map>
#include <sstream>

#include "common/error.h"
#include "dataio/blend.h"
#include "trainer/cls_metrics.h"

namespace cst::trainer {
namespace {

const EnumTable<OptimizerKind> kOptim = {{"adamw", OptimizerKind::kAdamW}, {"lamb", OptimizerKind::kLamb}};
const EnumTable<Schedule> kSchedule = {
    {"linear", Schedule::kLinear}, {"cosine", Schedule::kCosine}, {"constant", Schedule::kConstant}};
const EnumTable<Toggle> kToggle = {{"auto", Toggle::kAuto}, {"on", Toggle::kOn}, {"off", Toggle::kOff}};
const EnumTable<DeviceChoice> kDevice = {
    {"auto", DeviceChoice::kAuto}, {"cpu", DeviceChoice::kCpu}, {"cuda", DeviceChoice::kCuda}};
const EnumTable<Checkpointing> kCheckpointing = {{"none", Checkpointing::kNone}, {"block", Checkpointing::kBlock}};

using C = TrainConfig;

std::vector<Field<C>> make_fields() {
  std::vector<Field<C>> f;
  // model.<field>, declared in model/config.cpp: the model's fields, then how to compute it.
  std::vector<model::ModelConfig::Field> model_fields = model::ModelConfig::fields();
  for (const auto& ef : model::ModelConfig::execution_fields()) model_fields.push_back(ef);
  for (const auto& mf : model_fields) {
    f.push_back({"model." + mf.name, mf.kind, mf.help, [g = mf.get](const C& c) { return g(c.model); },
                 [s = mf.set, key = "model." + mf.name](C& c, const std::string& v) {
                   try {
                     s(c.model, v);
                   } catch (const InputError&) {
                     CST_THROW_INPUT(key << " = '" << v << "' is not a valid value");
                   }
                 }});
  }
  std::vector<Field<C>> rest = {
      CST_FIELD_STRING(C, "data.train", data.train,
                       "train split: a shard file or a folder of *.h5 shards, or a blend 'w1 path1 w2 path2 ...'"),
      CST_FIELD_STRING(C, "data.valid", data.valid, "validation split or blend (empty: no validation)"),
      CST_FIELD_INT(C, "data.seq_len", data.seq_len, "LM: tokens per sample N; MLM: 0 = the shards' length"),
      CST_FIELD_STRING(C, "data.tokenizer_sha256", data.tokenizer_sha256, "expected tokenizer hash of the shards"),
      CST_FIELD_INT(C, "data.prefetch", data.prefetch, "batches the loader reads ahead"),
      CST_FIELD_FLOAT(C, "data.mask_prob", data.mask_prob, "MLM: fraction of tokens masked"),
      CST_FIELD_BOOL(C, "data.reset_position", data.reset_position,
                     "resume with every corpus at position 0 (model, optimizer, step kept); allows a changed blend"),
      CST_FIELD_STRING(C, "init.weights", init.weights,
                       "fine-tune from a weights file or checkpoint step folder of an mlm or cls run (fresh start "
                       "only): its encoder and shape, a new head"),
      CST_FIELD_INT(C, "train.steps", train.steps, "optimizer steps"),
      CST_FIELD_INT(C, "train.global_batch", train.global_batch, "samples per step over all ranks"),
      CST_FIELD_INT(C, "train.micro_batch", train.micro_batch, "samples per forward/backward per rank"),
      CST_FIELD_INT(C, "train.seed", train.seed, "seed of init, data order, masking, dropout"),
      CST_FIELD_ENUM(C, "train.activation_checkpointing", train.activation_checkpointing, kCheckpointing,
                     "none | block: recompute each block in backward instead of keeping its activations"),
      CST_FIELD_ENUM(C, "optim.name", optim.name, kOptim, "adamw | lamb"),
      CST_FIELD_FLOAT(C, "optim.lr", optim.lr, "peak learning rate"),
      CST_FIELD_FLOAT(C, "optim.min_lr", optim.min_lr, "final learning rate"),
      CST_FIELD_INT(C, "optim.warmup_steps", optim.warmup_steps, "linear warmup steps"),
      CST_FIELD_ENUM(C, "optim.schedule", optim.schedule, kSchedule, "linear | cosine | constant"),
      CST_FIELD_FLOAT(C, "optim.weight_decay", optim.weight_decay, "decoupled weight decay"),
      CST_FIELD_FLOAT(C, "optim.beta1", optim.beta1, "Adam beta1"),
      CST_FIELD_FLOAT(C, "optim.beta2", optim.beta2, "Adam beta2"),
      CST_FIELD_FLOAT(C, "optim.eps", optim.eps, "Adam epsilon"),
      CST_FIELD_FLOAT(C, "optim.grad_clip", optim.grad_clip, "max global gradient norm (0 = off)"),
      CST_FIELD_BOOL(C, "optim.decay_all", optim.decay_all, "decay norms, biases and embeddings too"),
      CST_FIELD_ENUM(C, "dist.backend", dist.backend, comm::backend_names(), "auto | local | mpi | nccl"),
      CST_FIELD_ENUM(C, "dist.device", dist.device, kDevice, "auto | cpu | cuda (device = local rank)"),
      CST_FIELD_INT(C, "dist.threads", dist.threads, "intra-op threads per rank (0 = cores / local ranks)"),
      CST_FIELD_FLOAT(C, "dist.bucket_first_mb", dist.bucket_first_mb, "first gradient bucket, MiB"),
      CST_FIELD_FLOAT(C, "dist.bucket_mb", dist.bucket_mb, "gradient bucket size, MiB"),
      CST_FIELD_FLOAT(C, "dist.comm_timeout_s", dist.comm_timeout_s, "collective watchdog timeout, seconds"),
      CST_FIELD_ENUM(C, "dist.bf16", dist.bf16, kToggle, "auto | on | off: bfloat16 autocast (CUDA)"),
      CST_FIELD_ENUM(C, "dist.sdpa", dist.sdpa, kToggle,
                     "auto | on | off: model.arch = full through fused scaled-dot-product attention (auto: on CUDA)"),
      CST_FIELD_INT(C, "dist.seq_parallel", dist.seq_parallel,
                    "S: split each sequence over S ranks (CST; divides the world size; N / S a multiple of L)"),
      CST_FIELD_BOOL(C, "checkpoint.save_final", checkpoint.save_final, "write <log.dir>/model.h5 at the end"),
      CST_FIELD_INT(C, "checkpoint.weights_interval", checkpoint.weights_interval,
                    "also write weights every k steps (0 = off)"),
      CST_FIELD_STRING(C, "checkpoint.dir", checkpoint.dir, "checkpoint folder (empty: <log.dir>/checkpoints)"),
      CST_FIELD_INT(C, "checkpoint.interval", checkpoint.interval,
                    "steps between checkpoints (0 = only at the end and on preemption)"),
      CST_FIELD_INT(C, "checkpoint.keep", checkpoint.keep, "complete checkpoints kept, newest first (0 = all)"),
      CST_FIELD_BOOL(C, "checkpoint.async", checkpoint.async, "write checkpoints in a background thread"),
      CST_FIELD_INT(C, "checkpoint.zero_stage", checkpoint.zero_stage,
                    "0: optimizer state on every rank; 1: partitioned over ranks (ZeRO-1)"),
      CST_FIELD_STRING(C, "checkpoint.resume", checkpoint.resume,
                       "resume from: empty = fresh start, auto = newest complete checkpoint in checkpoint.dir, "
                       "or a step_<N> folder (also --resume)"),
      CST_FIELD_STRING(C, "checkpoint.keep_best", checkpoint.keep_best,
                       "keep the checkpoint of the best value of this eval metric (valid/accuracy, valid/f1, "
                       "valid/<corpus>/mcc, valid/loss...; empty = off) beside the newest checkpoint.keep"),
      CST_FIELD_STRING(C, "log.dir", log.dir, "run folder: metrics.jsonl, TensorBoard events, weights"),
      CST_FIELD_INT(C, "log.interval", log.interval, "steps between log lines"),
      CST_FIELD_INT(C, "log.eval_interval", log.eval_interval, "steps between validations (0 = at the end)"),
      CST_FIELD_INT(C, "log.eval_batches", log.eval_batches, "max validation batches per corpus (0 = all)"),
      CST_FIELD_BOOL(C, "log.tensorboard", log.tensorboard, "write TensorBoard event files"),
      CST_FIELD_FLOAT(C, "log.peak_tflops", log.peak_tflops, "per-device peak TFLOP/s for MFU (0 = measure)"),
      CST_FIELD_INT(C, "log.profile_step", log.profile_step,
                    "profile this step: time per phase and per operator to <log.dir>/profile_step<k>.md (0 = off)"),
      CST_FIELD_INT(C, "debug.fail_rank", debug.fail_rank, "tests: rank that throws"),
      CST_FIELD_INT(C, "debug.fail_at_step", debug.fail_at_step, "tests: step at which it throws"),
      CST_FIELD_INT(C, "debug.hang_rank", debug.hang_rank, "tests: rank that stalls before a collective"),
      CST_FIELD_INT(C, "debug.hang_at_step", debug.hang_at_step, "tests: step at which it stalls"),
      CST_FIELD_INT(C, "debug.signal_rank", debug.signal_rank, "tests: rank that raises debug.signal on itself"),
      CST_FIELD_INT(C, "debug.signal_at_step", debug.signal_at_step, "tests: after this step"),
      CST_FIELD_INT(C, "debug.signal", debug.signal, "tests: signal number raised (10 = SIGUSR1)"),
      CST_FIELD_INT(C, "debug.save_delay_ms", debug.save_delay_ms, "tests: checkpoint writers sleep mid-save"),
      CST_FIELD_INT(C, "debug.prune_delay_ms", debug.prune_delay_ms, "tests: rank 0 sleeps mid-prune"),
  };
  f.insert(f.end(), rest.begin(), rest.end());
  return f;
}

}  // namespace

const char* to_string(OptimizerKind k) { return enum_name(kOptim, k); }

const std::vector<Field<C>>& TrainConfig::fields() {
  static const std::vector<Field<C>> kFields = make_fields();
  return kFields;
}

void TrainConfig::set(const std::string& key, const std::string& value) {
  find_field(fields(), "unknown option", key, &value).set(*this, value);
}

std::string TrainConfig::get(const std::string& key) const {
  return find_field(fields(), "unknown option", key).get(*this);
}

std::string TrainConfig::to_string() const {
  std::ostringstream os;
  std::string group;
  for (const auto& f : fields()) {
    const std::string g = f.name.substr(0, f.name.find('.'));
    if (g != group) os << (group.empty() ? "" : "\n") << "[" << (group = g) << "]\n";
    os << f.name.substr(f.name.find('.') + 1) << " = " << f.get(*this) << "\n";
  }
  return os.str();
}

void TrainConfig::validate(int world_size) const {
  model.validate();
#define CST_OPT_CHECK(cond, key, why) CST_INPUT_CHECK(cond, key << " = " << get(key) << ": " << why)
  CST_OPT_CHECK(!data.train.empty(), "data.train", "a train split is required");
  dataio::parse_blend(data.train, "data.train");  // InputError naming the key, token and value
  if (!data.valid.empty()) dataio::parse_blend(data.valid, "data.valid");
  CST_OPT_CHECK(data.seq_len >= (model.task == model::Task::kLm ? 2 : 0), "data.seq_len", "must be >= 2 (LM)");
  CST_OPT_CHECK(data.seq_len <= model.max_seq_len, "data.seq_len", "exceeds model.max_seq_len = " << model.max_seq_len);
  CST_OPT_CHECK(init.weights.empty() || model.task != model::Task::kLm, "init.weights",
                "fine-tuning starts a bidirectional model (model.task = cls or mlm), not a causal LM");
  if (!checkpoint.keep_best.empty()) check_keep_best(checkpoint.keep_best, !data.valid.empty());
  // Upper bounds: these size buffers, threads or int arithmetic (steps x global_batch samples).
  CST_OPT_CHECK(data.prefetch >= 1 && data.prefetch <= 64, "data.prefetch", "must be in [1, 64]");
  CST_OPT_CHECK(data.mask_prob > 0 && data.mask_prob < 1, "data.mask_prob", "must be in (0, 1)");
  CST_OPT_CHECK(train.steps >= 1 && train.steps <= kMaxSteps, "train.steps", "must be in [1, " << kMaxSteps << "]");
  CST_OPT_CHECK(train.micro_batch >= 1 && train.micro_batch <= kMaxBatch, "train.micro_batch",
                "must be in [1, " << kMaxBatch << "]");
  CST_OPT_CHECK(train.global_batch >= 1 && train.global_batch <= kMaxBatch, "train.global_batch",
                "must be in [1, " << kMaxBatch << "]");
  const ParallelLayout layout(layout_spec(world_size, 0));  // every rank has the same rules
  // MLM with data.seq_len = 0 takes the shards' length: checked once known (Trainer).
  if (data.seq_len > 0) layout.check_seq_len(data.seq_len, "data.seq_len");
  const int64_t dp = layout.dp_size();
  CST_INPUT_CHECK(train.global_batch % (dp * train.micro_batch) == 0,
                  "train.global_batch = " << train.global_batch << " is not a multiple of "
                                          << (dist.seq_parallel > 1 ? "the data-parallel size " : "world size ") << dp
                                          << " x train.micro_batch " << train.micro_batch << " = "
                                          << dp * train.micro_batch);
  CST_OPT_CHECK(optim.lr > 0, "optim.lr", "must be > 0");
  CST_OPT_CHECK(optim.min_lr >= 0 && optim.min_lr <= optim.lr, "optim.min_lr", "must be in [0, optim.lr]");
  CST_OPT_CHECK(optim.warmup_steps >= 0 && optim.warmup_steps <= kMaxSteps, "optim.warmup_steps",
                "must be in [0, " << kMaxSteps << "]");
  CST_OPT_CHECK(optim.weight_decay >= 0, "optim.weight_decay", "must be >= 0");
  CST_OPT_CHECK(optim.beta1 >= 0 && optim.beta1 < 1, "optim.beta1", "must be in [0, 1)");
  CST_OPT_CHECK(optim.beta2 >= 0 && optim.beta2 < 1, "optim.beta2", "must be in [0, 1)");
  CST_OPT_CHECK(optim.eps > 0, "optim.eps", "must be > 0");
  CST_OPT_CHECK(optim.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0 = off)");
  CST_INPUT_CHECK(
      dist.sdpa != Toggle::kOn || model.arch == model::Arch::kFull,
      "dist.sdpa = on applies to model.arch = full only (CSA's kernels: model.csa_kernel); model.arch is cst");
  CST_OPT_CHECK(dist.threads >= 0 && dist.threads <= 4096, "dist.threads", "must be in [0, 4096]");
  CST_OPT_CHECK(dist.bucket_first_mb > 0 && dist.bucket_first_mb <= 65536, "dist.bucket_first_mb",
                "must be in (0, 65536] MiB");
  CST_OPT_CHECK(dist.bucket_mb > 0 && dist.bucket_mb <= 65536, "dist.bucket_mb", "must be in (0, 65536] MiB");
  CST_OPT_CHECK(dist.comm_timeout_s > 0 && dist.comm_timeout_s <= 1e7, "dist.comm_timeout_s",
                "must be in (0, 1e7] seconds");
  CST_OPT_CHECK(checkpoint.weights_interval >= 0, "checkpoint.weights_interval", "must be >= 0");
  CST_OPT_CHECK(checkpoint.interval >= 0, "checkpoint.interval", "must be >= 0 (0 = only at the end)");
  CST_OPT_CHECK(checkpoint.keep >= 0, "checkpoint.keep", "must be >= 0 (0 = keep all)");
  CST_OPT_CHECK(checkpoint.zero_stage == 0 || checkpoint.zero_stage == 1, "checkpoint.zero_stage", "must be 0 or 1");
  CST_OPT_CHECK(debug.save_delay_ms >= 0 && debug.save_delay_ms <= 3600000, "debug.save_delay_ms",
                "must be in [0, 3600000]");
  CST_OPT_CHECK(debug.prune_delay_ms >= 0 && debug.prune_delay_ms <= 3600000, "debug.prune_delay_ms",
                "must be in [0, 3600000]");
  CST_OPT_CHECK(debug.signal >= 1 && debug.signal <= 64, "debug.signal", "must be a signal number");
  CST_OPT_CHECK(!log.dir.empty(), "log.dir", "must not be empty");
  CST_OPT_CHECK(log.interval >= 1, "log.interval", "must be >= 1");
  CST_OPT_CHECK(log.eval_interval >= 0, "log.eval_interval", "must be >= 0");
  CST_OPT_CHECK(log.eval_batches >= 0, "log.eval_batches", "must be >= 0");
  CST_OPT_CHECK(log.peak_tflops >= 0 && log.peak_tflops <= 1e9, "log.peak_tflops", "must be in [0, 1e9]");
  CST_OPT_CHECK(log.profile_step >= 0 && log.profile_step <= kMaxSteps, "log.profile_step",
                "must be in [0, " << kMaxSteps << "] (0 = off)");
  CST_OPT_CHECK(debug.fail_rank < world_size, "debug.fail_rank", "must be < world size " << world_size);
#undef CST_OPT_CHECK
}

int64_t TrainConfig::micro_steps(const ParallelLayout& layout) const {
  return train.global_batch / (layout.dp_size() * train.micro_batch);
}

LayoutSpec TrainConfig::layout_spec(int world_size, int rank) const {
  LayoutSpec l;
  l.world_size = world_size, l.rank = rank;
  l.seq_parallel = dist.seq_parallel;
  l.slice_len = model.slice_len;
  l.full_attention = model.arch == model::Arch::kFull;
  l.classifier = model.task == model::Task::kCls;
  return l;
}

void check_keep_best(const std::string& metric, bool has_valid) {
  CST_INPUT_CHECK(metric.rfind("valid/", 0) == 0 && metric.size() > 6,
                  "checkpoint.keep_best = " << metric << ": expected valid/<metric> or valid/<corpus>/<metric>");
  CST_INPUT_CHECK(has_valid, "checkpoint.keep_best = " << metric << " needs a validation split (data.valid)");
  higher_is_better(metric.substr(metric.find_last_of('/') + 1));  // InputError naming an unknown metric
}

double learning_rate(const OptimOptions& o, int64_t steps, int64_t step) {
  if (step < o.warmup_steps) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps);
  if (o.schedule == Schedule::kConstant || steps <= o.warmup_steps) return o.lr;
  const double t =
      std::min(1.0, static_cast<double>(step - o.warmup_steps) / static_cast<double>(steps - o.warmup_steps));
  const double f = o.schedule == Schedule::kLinear ? 1.0 - t : 0.5 * (1.0 + std::cos(M_PI * t));
  return o.min_lr + (o.lr - o.min_lr) * f;
}

}  // namespace cst::trainer
