// Trainer construction: device, data, model, optimizer, checkpoint writer, resuming, metrics.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/error.h"
#include "trainer/checkpoint_config.h"
#include "trainer/init_weights.h"
#include "trainer/perf.h"
#include "trainer/trainer.h"
#include "trainer/trainer_state.h"
#ifdef CST_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace cst::trainer {

namespace {
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}
}  // namespace

ProcessInfo ProcessInfo::from_environment(int rank, int world_size, const std::string& host) {
  ProcessInfo p;
  p.rank = rank, p.world_size = world_size, p.host = host;
  p.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", env_int("SLURM_LOCALID", env_int("MPI_LOCALRANKID", 0)));
  p.local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", env_int("SLURM_NTASKS_PER_NODE", env_int("MPI_LOCALNRANKS", 1)));
  return p;
}

std::string select_device(const DistOptions& dist, const ProcessInfo& proc) {
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(dist.threads > 0 ? static_cast<int>(dist.threads)
                                       : std::max(1, hw / std::max(1, proc.local_size)));
  const bool cuda = torch::cuda::is_available();
  CST_INPUT_CHECK(dist.device != "cuda" || cuda, "dist.device = cuda but no CUDA device is available on "
                                                     << proc.host << " (rank " << proc.rank << ")");
  if (dist.device == "cpu" || !cuda) return "cpu";
#ifdef CST_WITH_CUDA
  const int dev = proc.local_rank % static_cast<int>(torch::cuda::device_count());
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(dev));
  return "cuda:" + std::to_string(dev);
#else
  CST_THROW_INPUT("dist.device: this build has no CUDA support");
#endif
}

Trainer::Trainer(const TrainConfig& cfg, comm::Communicator& comm, const ProcessInfo& proc, Watchdog* wd)
    : s_(std::make_unique<TrainerState>(cfg, comm, proc, wd)) {
  TrainerState& s = *s_;
  s.mlm = cfg.model.task == model::Task::kMlm;
  s.cls = cfg.model.task == model::Task::kCls;
  s.regression = s.cls && cfg.model.num_classes == 1;
  s.device = torch::Device(select_device(cfg.dist, proc));
  s.bf16 = s.device.is_cuda() && cfg.dist.bf16 != "off";
  CST_INPUT_CHECK(cfg.dist.bf16 != "on" || s.device.is_cuda(), "dist.bf16 = on needs a CUDA device");
  model::ModelConfig mc = cfg.model;  // + how to compute, which is not part of the model
  mc.full_sdpa = cfg.model.arch == model::Arch::kFull &&
                 (cfg.dist.sdpa == "on" || (cfg.dist.sdpa == "auto" && s.device.is_cuda()));
  mc.activation_checkpointing = cfg.train.activation_checkpointing == "block";
  s.sp_size = static_cast<int>(cfg.dist.seq_parallel);
  s.sp_rank = proc.rank % s.sp_size;
  s.dp_rank = proc.rank / s.sp_size;
  s.dp_size = proc.world_size / s.sp_size;
  if (s.sp_size > 1)  // consecutive ranks hold one sequence (on one node, when S <= ranks per node)
    s.sp_group = s.collective("split (sequence-parallel groups)", [&] { return comm.split(s.dp_rank, s.sp_rank); });

  s.train_src = s.open_split("data.train", cfg.data.train);
  if (!cfg.data.valid.empty()) s.valid_src = s.open_split("data.valid", cfg.data.valid);
  s.seq_len = s.mlm || s.cls ? s.train_src->sample_len() : cfg.data.seq_len;
  CST_INPUT_CHECK(s.seq_len <= cfg.model.max_seq_len, "data: samples of "
                                                          << s.seq_len << " tokens in '" << cfg.data.train
                                                          << "' exceed model.max_seq_len = " << cfg.model.max_seq_len);
  if (s.mlm && cfg.data.seq_len == 0) cfg.check_seq_parallel_len(s.seq_len, "the samples of '" + cfg.data.train + "'");

  torch::manual_seed(static_cast<uint64_t>(cfg.train.seed));  // identical init on every rank
  s.model = model::CstModel(mc);
  s.model->to(s.device);
  s.model->set_sequence_parallel(s.sp_group.get());
  for (auto& item : s.model->named_parameters()) s.params.emplace_back(item.key(), item.value());
  comm::ReducerOptions ro;
  ro.first_bucket_bytes = static_cast<int64_t>(cfg.dist.bucket_first_mb * 1048576.0);
  ro.bucket_bytes = static_cast<int64_t>(cfg.dist.bucket_mb * 1048576.0);
  ro.timeout_s = cfg.dist.comm_timeout_s;
  s.reducer = std::make_unique<comm::GradReducer>(comm, *s.model, ro);
  s.collective("broadcast_parameters", [&] { s.reducer->broadcast_parameters(cfg.model.hash()); });
  torch::manual_seed(static_cast<uint64_t>(cfg.train.seed) * 1000003ull + static_cast<uint64_t>(proc.rank));  // dropout
  s.opt = std::make_unique<Optimizer>(s.params, cfg.optim, &comm, static_cast<int>(cfg.checkpoint.zero_stage));

  checkpoint::CheckpointWriter::Options co;
  co.dir = cfg.checkpoint.resolved_dir(cfg.log.dir);
  co.rank = proc.rank, co.world = proc.world_size;
  co.keep = cfg.checkpoint.keep, co.async = cfg.checkpoint.async;
  co.timeout_s = cfg.dist.comm_timeout_s;
  co.delay_ms = cfg.debug.save_delay_ms, co.prune_delay_ms = cfg.debug.prune_delay_ms;
  s.ckpt = std::make_unique<checkpoint::CheckpointWriter>(co);
  if (!cfg.checkpoint.keep_best.empty()) s.best = std::make_unique<BestCheckpoint>(cfg.checkpoint.keep_best, co.dir);
  s.resume();
  if (s.rank0()) {  // only once resuming has succeeded: a rejected checkpoint leaves the folder as it was
    std::filesystem::create_directories(co.dir);
    s.ckpt->remove_leftovers();
  }
  s.collective("barrier (checkpoint folder ready)", [&] { comm.barrier(); });

  try {
    s.loader = std::make_unique<dataio::Loader>(s.train_src, s.loader_options(true), s.loader_state);
  } catch (const InputError& e) {  // a resumed data position that does not fit this split
    if (s.resumed_from.empty()) throw;
    throw InputError("checkpoint manifest '" + s.resumed_from + "/manifest.json', field loader: " + e.what());
  }
  s.train_flops_per_token = 3.0 * forward_flops_per_token(cfg.model, s.seq_len,
                                                          s.mlm   ? cfg.data.mask_prob
                                                          : s.cls ? 0.0
                                                                  : 1.0);
  if (s.rank0()) s.describe_setup(mc);
}

Trainer::~Trainer() = default;

std::shared_ptr<dataio::BlendSource> TrainerState::open_split(const std::string& key, const std::string& text) const {
  dataio::SourceOptions so;
  so.kind = cls ? dataio::SampleKind::kCls : mlm ? dataio::SampleKind::kMlm : dataio::SampleKind::kLm;
  so.num_classes = cls ? cfg.model.num_classes : 0;
  so.seq_len = cfg.data.seq_len;
  so.vocab_size = cfg.model.vocab_size;
  so.tokenizer_sha256 = cfg.data.tokenizer_sha256;
  return dataio::open_blend(dataio::parse_blend(text, key), so);
}

dataio::LoaderOptions TrainerState::loader_options(bool train) const {
  dataio::LoaderOptions lo;
  lo.global_batch = cfg.train.global_batch;
  lo.rank = dp_rank, lo.world_size = dp_size;  // the S ranks of a sequence read the same samples
  lo.seed = static_cast<uint64_t>(cfg.train.seed);
  lo.train = train;
  lo.prefetch = static_cast<int>(cfg.data.prefetch);
  lo.masking.prob = cfg.data.mask_prob;
  lo.eval_batches = cfg.log.eval_batches;  // per corpus
  return lo;
}

at::Generator TrainerState::cuda_generator() const {
  return device.is_cuda() ? at::globalContext().defaultGenerator(device) : at::Generator();
}

void TrainerState::resume() {
  const auto point = collective("resume: choosing the checkpoint", [&] {
    return checkpoint::agree_on_resume_point(resume_options(cfg), comm, [](const std::string& w) {
      std::fprintf(stderr, "[rank 0] warning: %s\n", w.c_str());
      std::fflush(stderr);
    });
  });
  if (!point) {
    if (cfg.init.weights.empty()) return;
    const InitReport rep = load_init_weights(*model, cfg.init.weights);
    if (rank0()) std::printf("init.weights %s:\n%s\n", cfg.init.weights.c_str(), rep.text().c_str());
    return;
  }
  const checkpoint::Manifest& m = point->manifest;
  checkpoint::restore(*point, *model, *opt, proc.rank, proc.world_size, cfg.train.seed, cuda_generator());
  start_step = last_checkpoint_step = m.step;
  // Every rank compares the same manifest with the same data: all refuse alike.
  const std::string changed = dataio::blend_difference(m.loader, dataio::initial_state(*train_src));
  CST_INPUT_CHECK(changed.empty() || cfg.data.reset_position,
                  "resume: checkpoint '" << point->dir << "' cannot continue data.train = '" << cfg.data.train
                                         << "': " << changed << "; --data.reset_position true starts every corpus "
                                         << "from position 0 (model, optimizer and step restored)");
  loader_state = cfg.data.reset_position ? dataio::LoaderState{} : m.loader;
  resumed_from = point->dir;
  if (best) {
    best->restore(m.step);
    ckpt->protect(best->step());
  }
  if (rank0())
    std::printf("resumed from %s: step %ld, epoch %ld, consumed samples %ld, saved by %ld rank(s)%s%s\n",
                point->dir.c_str(), static_cast<long>(m.step), static_cast<long>(m.loader.epoch),
                static_cast<long>(m.loader.consumed_samples), static_cast<long>(m.world_size),
                m.world_size == proc.world_size ? "" : " (RNG reseeded)",
                cfg.data.reset_position ? "; data position reset to 0 (data.reset_position)" : "");
}

void TrainerState::describe_setup(const model::ModelConfig& mc) {
  std::filesystem::create_directories(cfg.log.dir);
  std::ofstream(cfg.log.dir + "/config.cfg") << cfg.to_string();
  sink = std::make_unique<MetricsSink>(cfg.log.dir, cfg.log.tensorboard);
  if (cfg.log.peak_tflops > 0) {
    peak_flops = cfg.log.peak_tflops * 1e12;
  } else {
    GemmPeak p = measure_mfu_peak(device.is_cuda());
    peak_flops = p.flops_per_s;
    sink->text("GEMM peak: " + std::to_string(p.flops_per_s / 1e9) + " GFLOP/s (" + p.dtype + " on " + p.device +
               ", rank 0; " + p.measured + " GFLOP/s); MFU is against it");
  }
  sink->text("model: " + std::to_string(model->num_parameters()) + " parameters, " +
             std::to_string(train_flops_per_token / 1e6) + " MFLOP per trained token; " +
             std::to_string(proc.world_size) + " rank(s)" +
             (sp_size > 1 ? " (" + std::to_string(dp_size) + " data-parallel x " + std::to_string(sp_size) +
                                " sequence-parallel: " + std::to_string(seq_len / sp_size) + " tokens per rank)"
                          : "") +
             ", backend " + comm.backend() + ", device " + device.str() + (bf16 ? " (bf16 autocast)" : "") +
             (mc.full_sdpa ? "; full attention through SDPA" : "") +
             (mc.activation_checkpointing ? "; activation checkpointing" : "") + "; train samples " +
             std::to_string(train_src->num_samples()) + " of " + std::to_string(seq_len) + " tokens");
  if (train_src->num_corpora() > 1) {
    std::string samples;
    for (int j = 0; j < train_src->num_corpora(); ++j)
      samples += (j ? ", " : "") + std::to_string(train_src->corpus(j).num_samples());
    sink->text("train blend: " + train_src->spec().str() + " (samples " + samples + ")");
  }
}

}  // namespace cst::trainer
