// Trainer construction: device, data, model, optimizer, checkpoint writer, resuming, metrics.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/error.h"
#include "trainer/checkpoint_config.h"
#include "trainer/evaluation.h"
#include "trainer/init_weights.h"
#include "trainer/model_state.h"
#include "trainer/perf.h"
#include "trainer/run_context.h"
#include "trainer/run_progress.h"
#include "trainer/train_data.h"
#include "trainer/trainer.h"
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

Execution setup_execution(const TrainConfig& cfg, const ProcessInfo& proc) {
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(cfg.dist.threads > 0 ? static_cast<int>(cfg.dist.threads)
                                           : std::max(1, hw / std::max(1, proc.local_size)));
  const int cuda = torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  const Execution ex = resolve_execution(cfg, proc, cuda);
  if (!ex.device.is_cuda()) return ex;
#ifdef CST_WITH_CUDA
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(ex.device.index));
  return ex;
#else
  CST_THROW_INPUT("dist.device: this build has no CUDA support");
#endif
}

Trainer::Trainer(const TrainConfig& cfg, comm::Communicator& comm, const ProcessInfo& proc, Watchdog* wd)
    : Trainer(cfg, comm, proc, setup_execution(cfg, proc), wd) {}

Trainer::Trainer(const TrainConfig& cfg, comm::Communicator& comm, const ProcessInfo& proc, const Execution& ex,
                 Watchdog* wd)
    : ctx_(std::make_unique<RunContext>(cfg, comm, proc, wd)),
      ckpt_(std::make_unique<RunCheckpoints>()),
      log_(std::make_unique<RunLog>()) {
  RunContext& c = *ctx_;
  c.device =
      torch::Device(ex.device.is_cuda() ? torch::kCUDA : torch::kCPU, static_cast<c10::DeviceIndex>(ex.device.index));
  c.bf16 = ex.bf16;
  const model::ModelConfig mc = ex.apply(cfg.model);  // + how to compute, which is not part of the model
  const ParallelLayout layout(cfg.layout_spec(proc.world_size, proc.rank));
  // Consecutive ranks hold one sequence (on one node, when S <= ranks per node).
  c.groups = c.collective("split (sequence-parallel groups)", [&] { return comm::ParallelGroups::make(layout, comm); });

  data_ = std::make_unique<TrainData>(c.cfg, c.task, c.layout());
  state_ = std::make_unique<ModelState>(c, mc);
  if (data_->valid_src)
    eval_ = std::make_unique<Evaluator>(c, data_->valid_src, data_->seq_len, data_->loader_options(false));

  checkpoint::CheckpointWriter::Options co;
  co.dir = cfg.checkpoint.resolved_dir(cfg.log.dir);
  co.rank = proc.rank, co.world = proc.world_size;
  co.keep = cfg.checkpoint.keep, co.async = cfg.checkpoint.async;
  co.timeout_s = cfg.dist.comm_timeout_s;
  co.delay_ms = cfg.debug.save_delay_ms, co.prune_delay_ms = cfg.debug.prune_delay_ms;
  ckpt_->writer = std::make_unique<checkpoint::CheckpointWriter>(co);
  if (!cfg.checkpoint.keep_best.empty())
    ckpt_->best = std::make_unique<BestCheckpoint>(cfg.checkpoint.keep_best, co.dir);
  resume();
  if (c.rank0()) {  // only once resuming has succeeded: a rejected checkpoint leaves the folder as it was
    std::filesystem::create_directories(co.dir);
    ckpt_->writer->remove_leftovers();
  }
  c.collective("barrier (checkpoint folder ready)", [&] { comm.barrier(); });

  data_->start_loader(ckpt_->resumed_from);
  log_->train_flops_per_token = 3.0 * forward_flops_per_token(cfg.model, data_->seq_len,
                                                              c.task.mlm   ? cfg.data.mask_prob
                                                              : c.task.cls ? 0.0
                                                                           : 1.0);
  if (c.rank0()) describe_setup(ex);
}

Trainer::~Trainer() = default;

void Trainer::resume() {
  const RunContext& c = *ctx_;
  const TrainConfig& cfg = c.cfg;
  RunCheckpoints& k = *ckpt_;
  const auto point = c.collective("resume: choosing the checkpoint", [&] {
    return checkpoint::agree_on_resume_point(resume_options(cfg), c.comm, [](const std::string& w) {
      std::fprintf(stderr, "[rank 0] warning: %s\n", w.c_str());
      std::fflush(stderr);
    });
  });
  if (!point) {
    if (cfg.init.weights.empty()) return;
    const InitReport rep = load_init_weights(*state_->model, cfg.init.weights);
    if (c.rank0()) std::printf("init.weights %s:\n%s\n", cfg.init.weights.c_str(), rep.text().c_str());
    return;
  }
  const checkpoint::Manifest& m = point->manifest;
  checkpoint::restore(*point, *state_->model, *state_->opt, c.proc.rank, c.proc.world_size, cfg.train.seed,
                      c.cuda_generator());
  k.start_step = k.last_step = m.step;
  // Every rank compares the same manifest with the same data: all refuse alike.
  const std::string changed = dataio::blend_difference(m.loader, dataio::initial_state(*data_->train_src));
  CST_INPUT_CHECK(changed.empty() || cfg.data.reset_position,
                  "resume: checkpoint '" << point->dir << "' cannot continue data.train = '" << cfg.data.train
                                         << "': " << changed << "; --data.reset_position true starts every corpus "
                                         << "from position 0 (model, optimizer and step restored)");
  data_->loader_state = cfg.data.reset_position ? dataio::LoaderState{} : m.loader;
  k.resumed_from = point->dir;
  if (k.best) {
    k.best->restore(m.step);
    k.writer->protect(k.best->step());
  }
  if (c.rank0())
    std::printf("resumed from %s: step %ld, epoch %ld, consumed samples %ld, saved by %ld rank(s)%s%s\n",
                point->dir.c_str(), static_cast<long>(m.step), static_cast<long>(m.loader.epoch),
                static_cast<long>(m.loader.consumed_samples), static_cast<long>(m.world_size),
                m.world_size == c.proc.world_size ? "" : " (RNG reseeded)",
                cfg.data.reset_position ? "; data position reset to 0 (data.reset_position)" : "");
}

void Trainer::describe_setup(const Execution& ex) {
  const RunContext& c = *ctx_;
  const TrainConfig& cfg = c.cfg;
  RunLog& l = *log_;
  const dataio::BlendSource& train = *data_->train_src;
  std::filesystem::create_directories(cfg.log.dir);
  std::ofstream(cfg.log.dir + "/config.cfg") << cfg.to_string();
  l.sink = std::make_unique<MetricsSink>(cfg.log.dir, cfg.log.tensorboard);
  if (cfg.log.peak_tflops > 0) {
    l.peak_flops = cfg.log.peak_tflops * 1e12;
  } else {
    GemmPeak p = measure_mfu_peak(c.device.is_cuda());
    l.peak_flops = p.flops_per_s;
    l.sink->text("GEMM peak: " + std::to_string(p.flops_per_s / 1e9) + " GFLOP/s (" + p.dtype + " on " + p.device +
                 ", rank 0; " + p.measured + " GFLOP/s); MFU is against it");
  }
  const int64_t seq_len = data_->seq_len;
  l.sink->text("model: " + std::to_string(state_->model->num_parameters()) + " parameters, " +
               std::to_string(l.train_flops_per_token / 1e6) + " MFLOP per trained token; " +
               c.layout().describe(seq_len) + ", backend " + c.comm.backend() + ", " + ex.str() + "; train samples " +
               std::to_string(train.num_samples()) + " of " + std::to_string(seq_len) + " tokens");
  if (train.num_corpora() > 1) {
    std::string samples;
    for (int j = 0; j < train.num_corpora(); ++j)
      samples += (j ? ", " : "") + std::to_string(train.corpus(j).num_samples());
    l.sink->text("train blend: " + train.spec().str() + " (samples " + samples + ")");
  }
}

}  // namespace cst::trainer
