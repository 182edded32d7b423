#include "trainer/trainer.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "comm/communicator.h"
#include "comm/reducer.h"
#include "common/error.h"
#include "common/h5.h"
#include "dataio/loader.h"
#include "dataio/source.h"
#include "model/loss.h"
#include "model/model.h"
#include "model/weights_io.h"
#include "trainer/autocast.h"
#include "trainer/checkpoint.h"
#include "trainer/metrics.h"
#include "trainer/optimizer.h"
#include "trainer/perf.h"
#include "trainer/preemption.h"
#include "trainer/watchdog.h"
#ifdef CST_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace cst::trainer {

using Clock = std::chrono::steady_clock;
using torch::Tensor;

namespace {
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

// A [rows, cols] tensor copied from a loader vector.
template <class T>
Tensor to_tensor(const std::vector<T>& v, int64_t rows, int64_t cols, at::ScalarType as) {
  auto dtype = std::is_same_v<T, int32_t> ? torch::kInt : torch::kByte;
  return torch::from_blob(const_cast<T*>(v.data()), {rows, cols}, dtype).to(as);
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
  at::set_num_threads(dist.threads > 0 ? static_cast<int>(dist.threads) : std::max(1, hw / std::max(1, proc.local_size)));
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

struct Trainer::State {
  State(const TrainConfig& c, comm::Communicator& cm, const ProcessInfo& p, Watchdog* w)
      : cfg(c), comm(cm), proc(p), wd(w) {}
  TrainConfig cfg;
  comm::Communicator& comm;
  ProcessInfo proc;
  Watchdog* wd;
  torch::Device device{torch::kCPU};
  bool bf16 = false, mlm = false;
  int64_t seq_len = 0;  // tokens per sample fed to the model
  model::CstModel model{nullptr};
  NamedTensors params;
  std::unique_ptr<comm::GradReducer> reducer;
  std::unique_ptr<Optimizer> opt;
  std::shared_ptr<dataio::SampleSource> train_src, valid_src;
  std::unique_ptr<dataio::Loader> loader;
  std::unique_ptr<MetricsSink> sink;  // rank 0
  double peak_flops = 0, train_flops_per_token = 0;
  std::unique_ptr<Checkpointer> ckpt;
  int64_t start_step = 0;                 // steps done before this run (resume)
  int64_t last_checkpoint_step = -1;      // the step of the newest checkpoint this run wrote or resumed from
  dataio::LoaderState loader_state;       // data position after the last step done

  bool rank0() const { return proc.rank == 0; }
  // Runs fn, a collective every rank makes, with the watchdog armed; a timeout names `what`.
  template <class F>
  auto collective(const std::string& what, F&& fn) {
    try {
      if (!wd) return fn();
      Watchdog::Scope scope(*wd, what);
      return fn();
    } catch (const comm::CommTimeout& e) {
      throw comm::CommTimeout(std::string(e.what()) + " [during " + what + "]");
    }
  }
  std::shared_ptr<dataio::SampleSource> open_split(const std::string& path) const;
  void save(const std::string& path);
  void evaluate(int64_t step, TrainResult& res);
  void resume();
  void save_checkpoint(int64_t step, bool sync);
  at::Generator cuda_generator() const;  // undefined on CPU
};

std::shared_ptr<dataio::SampleSource> Trainer::State::open_split(const std::string& path) const {
  dataio::SourceOptions so;
  so.kind = mlm ? dataio::SampleKind::kMlm : dataio::SampleKind::kLm;
  so.seq_len = cfg.data.seq_len;
  so.vocab_size = cfg.model.vocab_size;
  so.tokenizer_sha256 = cfg.data.tokenizer_sha256;
  return std::make_shared<dataio::Hdf5Source>(dataio::list_shards(path), so);
}

Trainer::Trainer(const TrainConfig& cfg, comm::Communicator& comm, const ProcessInfo& proc, Watchdog* wd)
    : s_(std::make_unique<State>(cfg, comm, proc, wd)) {
  State& s = *s_;
  s.mlm = cfg.model.task == model::Task::kMlm;
  s.device = torch::Device(select_device(cfg.dist, proc));
  s.bf16 = s.device.is_cuda() && cfg.dist.bf16 != "off";
  CST_INPUT_CHECK(cfg.dist.bf16 != "on" || s.device.is_cuda(), "dist.bf16 = on needs a CUDA device");
  model::ModelConfig mc = cfg.model;  // + how to compute, which is not part of the model
  mc.full_sdpa = cfg.model.arch == model::Arch::kFull &&
                 (cfg.dist.sdpa == "on" || (cfg.dist.sdpa == "auto" && s.device.is_cuda()));

  s.train_src = s.open_split(cfg.data.train);
  if (!cfg.data.valid.empty()) s.valid_src = s.open_split(cfg.data.valid);
  s.seq_len = s.mlm ? s.train_src->sample_len() : cfg.data.seq_len;
  CST_INPUT_CHECK(s.seq_len <= cfg.model.max_seq_len, "data: samples of " << s.seq_len << " tokens in '" << cfg.data.train
                                                                        << "' exceed model.max_seq_len = "
                                                                        << cfg.model.max_seq_len);

  torch::manual_seed(static_cast<uint64_t>(cfg.train.seed));  // identical init on every rank
  s.model = model::CstModel(mc);
  s.model->to(s.device);
  for (auto& item : s.model->named_parameters()) s.params.emplace_back(item.key(), item.value());
  comm::ReducerOptions ro;
  ro.first_bucket_bytes = static_cast<int64_t>(cfg.dist.bucket_first_mb * 1048576.0);
  ro.bucket_bytes = static_cast<int64_t>(cfg.dist.bucket_mb * 1048576.0);
  ro.timeout_s = cfg.dist.comm_timeout_s;
  s.reducer = std::make_unique<comm::GradReducer>(comm, *s.model, ro);
  s.collective("broadcast_parameters", [&] { s.reducer->broadcast_parameters(cfg.model.hash()); });
  torch::manual_seed(static_cast<uint64_t>(cfg.train.seed) * 1000003ull + static_cast<uint64_t>(proc.rank));  // dropout
  s.opt = std::make_unique<Optimizer>(s.params, cfg.optim, &comm, static_cast<int>(cfg.checkpoint.zero_stage));

  Checkpointer::Options co;
  co.dir = cfg.checkpoint.resolved_dir(cfg.log.dir);
  co.rank = proc.rank, co.world = proc.world_size;
  co.keep = cfg.checkpoint.keep, co.async = cfg.checkpoint.async;
  co.timeout_s = cfg.dist.comm_timeout_s, co.delay_ms = cfg.debug.save_delay_ms;
  s.ckpt = std::make_unique<Checkpointer>(co);
  s.resume();
  if (s.rank0()) {  // only once resuming has succeeded: a rejected checkpoint leaves the folder as it was
    std::filesystem::create_directories(co.dir);
    s.ckpt->remove_stale_tmp();
  }
  s.collective("barrier (checkpoint folder ready)", [&] { comm.barrier(); });

  dataio::LoaderOptions lo;
  lo.global_batch = cfg.train.global_batch;
  lo.rank = proc.rank, lo.world_size = proc.world_size;
  lo.seed = static_cast<uint64_t>(cfg.train.seed);
  lo.prefetch = static_cast<int>(cfg.data.prefetch);
  lo.masking.prob = cfg.data.mask_prob;
  s.loader = std::make_unique<dataio::Loader>(s.train_src, lo, s.loader_state);

  s.train_flops_per_token = 3.0 * forward_flops_per_token(cfg.model, s.seq_len, s.mlm ? cfg.data.mask_prob : 1.0);
  if (s.rank0()) {
    std::filesystem::create_directories(cfg.log.dir);
    std::ofstream(cfg.log.dir + "/config.cfg") << cfg.to_string();
    s.sink = std::make_unique<MetricsSink>(cfg.log.dir, cfg.log.tensorboard);
    if (cfg.log.peak_tflops > 0) {
      s.peak_flops = cfg.log.peak_tflops * 1e12;
    } else {
      GemmPeak p = measure_mfu_peak(s.device.is_cuda());
      s.peak_flops = p.flops_per_s;
      s.sink->text("GEMM peak: " + std::to_string(p.flops_per_s / 1e9) + " GFLOP/s (" + p.dtype + " on " + p.device +
                   ", rank 0; " + p.measured + " GFLOP/s); MFU is against it");
    }
    s.sink->text("model: " + std::to_string(s.model->num_parameters()) + " parameters, " +
                 std::to_string(s.train_flops_per_token / 1e6) + " MFLOP per trained token; " +
                 std::to_string(proc.world_size) + " rank(s), backend " + comm.backend() + ", device " +
                 s.device.str() + (s.bf16 ? " (bf16 autocast)" : "") +
                 (mc.full_sdpa ? "; full attention through SDPA" : "") + "; train samples " +
                 std::to_string(s.train_src->num_samples()) + " of " + std::to_string(s.seq_len) + " tokens");
  }
}

Trainer::~Trainer() = default;

at::Generator Trainer::State::cuda_generator() const {
  return device.is_cuda() ? at::globalContext().defaultGenerator(device) : at::Generator();
}

// Rank 0 resolves and verifies the checkpoint and tells the others which (or that it failed:
// then every rank throws InputError, so that the job exits 2); every rank then reads it.
void Trainer::State::resume() {
  if (cfg.checkpoint.resume.empty()) return;
  std::string dir;
  std::exception_ptr error;
  int64_t found[2] = {0, -1};  // status (1 found, 0 none, -1 error), step
  if (rank0()) {
    try {
      dir = resolve_resume(cfg, [](const std::string& w) {
        std::fprintf(stderr, "[rank 0] warning: %s\n", w.c_str());
        std::fflush(stderr);
      });
      found[0] = dir.empty() ? 0 : 1;
      if (!dir.empty()) found[1] = verify_checkpoint(dir).step;
    } catch (...) {
      error = std::current_exception();
      found[0] = -1;
    }
  }
  Tensor t = torch::tensor({found[0], found[1]}, torch::kLong).to(comm.collective_device());
  collective("broadcast(resume decision)", [&] { comm.broadcast(t, 0); });
  t = t.cpu();
  if (error) std::rethrow_exception(error);
  CST_INPUT_CHECK(t[0].item<int64_t>() >= 0, "resume: rank 0 rejected the checkpoint (its error names file and field)");
  if (t[0].item<int64_t>() == 0) return;
  if (!rank0())
    dir = cfg.checkpoint.resume == "auto"
              ? cfg.checkpoint.resolved_dir(cfg.log.dir) + "/" + step_dir_name(t[1].item<int64_t>())
              : cfg.checkpoint.resume;
  const Manifest m = Manifest::parse(
      [&] {
        std::ifstream f(dir + "/manifest.json");
        std::stringstream ss;
        ss << f.rdbuf();
        return ss.str();
      }(),
      dir + "/manifest.json");
  {
    auto lock = h5::lock_library();
    model::load_weights(*model, dir + "/model.h5");
  }
  load_optimizer_state(dir, m, *opt);
  CST_INPUT_CHECK(m.step <= cfg.train.steps, "checkpoint '" << dir << "' is at step " << m.step
                                                             << ", beyond train.steps = " << cfg.train.steps);
  start_step = last_checkpoint_step = m.step;
  loader_state = m.loader;
  if (m.world_size == proc.world_size) {  // same ranks: each continues its own random stream
    auto [cpu, cuda] = load_rng_state(dir, m, proc.rank);
    at::Generator cpu_gen = at::globalContext().defaultGenerator(at::kCPU), cuda_gen = cuda_generator();
    if (cpu.defined()) cpu_gen.set_state(cpu);
    if (cuda.defined() && cuda_gen.defined()) cuda_gen.set_state(cuda);
  } else {  // another world size: reseeded from (seed, step, rank), documented in docs/CHECKPOINT.md
    torch::manual_seed(static_cast<uint64_t>(cfg.train.seed) * 1000003ull + static_cast<uint64_t>(proc.rank) +
                       static_cast<uint64_t>(m.step) * 0x9E3779B97F4A7C15ull);
  }
  if (rank0())
    std::printf("resumed from %s: step %ld, epoch %ld, consumed samples %ld, saved by %ld rank(s)%s\n", dir.c_str(),
                static_cast<long>(m.step), static_cast<long>(m.loader.epoch), static_cast<long>(m.loader.consumed_samples),
                static_cast<long>(m.world_size), m.world_size == proc.world_size ? "" : " (RNG reseeded)");
}

void Trainer::State::save_checkpoint(int64_t step, bool sync) {
  Manifest m;
  m.step = step;
  m.optimizer_steps = opt->steps_taken();
  m.loader = loader_state;
  m.world_size = proc.world_size;
  m.zero_stage = cfg.checkpoint.zero_stage;
  m.flat_numel = opt->flat_numel();
  m.seed = cfg.train.seed;
  m.global_batch = cfg.train.global_batch;
  m.tokenizer_sha256 = cfg.data.tokenizer_sha256;
  m.code_version = code_version();
  for (const auto& f : model::ModelConfig::fields()) m.model.emplace_back(f.name, f.get(cfg.model));
  for (const auto& f : TrainConfig::fields())
    if (f.name.rfind("optim.", 0) == 0) m.optimizer.emplace_back(f.name, f.get(cfg));
  const at::Generator cuda = cuda_generator();
  collective("checkpoint save at step " + std::to_string(step), [&] {
    ckpt->save(*model, *opt, at::globalContext().defaultGenerator(at::kCPU).get_state(),
               cuda.defined() ? cuda.get_state() : Tensor(), std::move(m));
    if (sync) {
      ckpt->wait();
      comm.barrier();  // every rank knows that step_<N> is committed
    }
  });
  last_checkpoint_step = step;
}

void Trainer::State::save(const std::string& path) {
  if (!rank0()) return;
  auto lock = h5::lock_library();  // the loader's prefetch thread also uses libhdf5
  model::save_weights(*model, path);
  sink->text("saved weights to " + path);
}

void Trainer::State::evaluate(int64_t step, TrainResult& res) {
  if (!valid_src) return;
  torch::NoGradGuard no_grad;
  model->eval();
  dataio::LoaderOptions lo;
  lo.global_batch = cfg.train.global_batch;
  lo.rank = proc.rank, lo.world_size = proc.world_size;
  lo.seed = static_cast<uint64_t>(cfg.train.seed);
  lo.train = false;
  lo.prefetch = static_cast<int>(cfg.data.prefetch);
  lo.masking.prob = cfg.data.mask_prob;
  dataio::Loader vl(valid_src, lo);
  double sums[3] = {0, 0, 0};  // loss sum, predicted tokens, correct predictions
  int64_t batches = 0;
  while (auto b = vl.next()) {
    if (cfg.log.eval_batches > 0 && batches >= cfg.log.eval_batches) break;
    ++batches;
    for (int64_t r0 = 0; r0 < b->rows; r0 += cfg.train.micro_batch) {
      const int64_t n = std::min(cfg.train.micro_batch, b->rows - r0);
      Tensor ids = to_tensor(b->input_ids, b->rows, b->cols, torch::kLong).narrow(0, r0, n).to(device);
      Tensor inputs = mlm ? ids : ids.narrow(1, 0, seq_len);
      Tensor labels = mlm ? to_tensor(b->labels, b->rows, b->cols, torch::kLong).narrow(0, r0, n).to(device)
                          : ids.narrow(1, 1, seq_len);
      Tensor mask = mlm ? to_tensor(b->attention_mask, b->rows, b->cols, torch::kBool).narrow(0, r0, n).to(device)
                        : Tensor();
      Bf16Autocast ac(bf16);
      Tensor correct;
      model::LossSum ls = model->loss(inputs, mask, labels, &correct);
      sums[0] += ls.sum.item<double>();
      sums[1] += static_cast<double>(ls.count);
      sums[2] += correct.item<double>();
    }
  }
  const std::vector<double> t = collective("all_reduce(validation sums) at step " + std::to_string(step),
                                           [&] { return comm.all_reduce_doubles({sums[0], sums[1], sums[2]}); });
  model->train();
  const double count = t[1];
  res.final_eval_loss = count > 0 ? t[0] / count : 0.0;
  if (sink)
    sink->eval({step, res.final_eval_loss, mlm ? t[2] / std::max(1.0, count) : -1.0,
                static_cast<int64_t>(count)});
}

TrainResult Trainer::run() {
  State& s = *s_;
  const TrainConfig& cfg = s.cfg;
  const int W = s.proc.world_size;
  const int64_t micro = cfg.micro_steps(W), mb = cfg.train.micro_batch, steps = cfg.train.steps;
  TrainResult res;
  double loss_sum = 0, data_wait = 0, comm_wait = 0, step_time = 0, grad_norm = 0;
  int64_t tokens = 0, interval_steps = 0;
  s.model->train();
  for (int64_t step = s.start_step + 1; step <= steps; ++step) {  // 1-based, as in every message and log line
    if (cfg.debug.fail_rank == s.proc.rank && cfg.debug.fail_at_step == step)
      CST_THROW("debug: injected failure at step " << step << " on rank " << s.proc.rank);
    const auto t0 = Clock::now();
    std::optional<dataio::Batch> batch = s.loader->next();
    CST_CHECK(batch.has_value(), "train loader ended");
    s.loader_state = batch->state_after;
    data_wait += seconds_since(t0);
    Tensor ids = to_tensor(batch->input_ids, batch->rows, batch->cols, torch::kLong);
    Tensor labels = s.mlm ? to_tensor(batch->labels, batch->rows, batch->cols, torch::kLong) : ids.narrow(1, 1, s.seq_len);
    Tensor inputs = s.mlm ? ids : ids.narrow(1, 0, s.seq_len);
    Tensor mask = s.mlm ? to_tensor(batch->attention_mask, batch->rows, batch->cols, torch::kBool) : Tensor();
    // Predicted tokens in the global batch: the loss is normalised by it on every rank.
    int64_t local_count = labels.ne(-100).sum().item<int64_t>();
    int64_t global_count = cfg.train.global_batch * s.seq_len;
    if (s.mlm) {
      const auto tc = Clock::now();
      global_count = s.collective("all_reduce(token count) at step " + std::to_string(step),
                                  [&] { return s.comm.all_reduce_int(local_count, comm::ReduceOp::kSum); });
      comm_wait += seconds_since(tc);
    }
    const double scale = static_cast<double>(W) / static_cast<double>(std::max<int64_t>(1, global_count));
    for (int64_t m = 0; m < micro; ++m) {
      auto rows = [&](const Tensor& t) { return t.defined() ? t.narrow(0, m * mb, mb).to(s.device) : t; };
      model::LossSum ls;
      {
        Bf16Autocast ac(s.bf16);
        ls = s.model->loss(rows(inputs), rows(mask), rows(labels));
      }
      s.reducer->prepare_for_backward(m == micro - 1);
      (ls.sum * scale).backward();
      loss_sum += ls.sum.item<double>();
    }
    tokens += local_count;
    if (cfg.debug.hang_rank == s.proc.rank && cfg.debug.hang_at_step == step)
      std::this_thread::sleep_for(std::chrono::seconds(3600));
    s.collective("gradient all-reduce (finalize) at step " + std::to_string(step), [&] { s.reducer->finalize(step); });
    comm_wait += s.reducer->last_stats().wait_seconds;
    grad_norm = clip_grad_norm(s.params, cfg.optim.grad_clip);
    const double lr = learning_rate(cfg.optim, steps, step - 1);
    s.opt->step(lr);
    s.opt->zero_grad();
    step_time += seconds_since(t0);
    ++interval_steps;

    if (step % cfg.log.interval == 0 || step == steps) {
      const std::vector<double> t = s.collective("all_reduce(train loss) at step " + std::to_string(step), [&] {
        return s.comm.all_reduce_doubles({loss_sum, static_cast<double>(tokens)});
      });
      res.final_train_loss = t[0] / std::max(1.0, t[1]);
      if (s.sink) {
        TrainRecord r;
        r.step = step, r.loss = res.final_train_loss, r.lr = lr, r.grad_norm = grad_norm;
        r.step_time_s = step_time / static_cast<double>(interval_steps);
        r.tokens_per_s = static_cast<double>(cfg.train.global_batch * s.seq_len) / r.step_time_s;
        r.mfu = r.tokens_per_s * s.train_flops_per_token / (static_cast<double>(W) * s.peak_flops);
        r.data_wait = data_wait / step_time, r.comm_wait = comm_wait / step_time;
        r.eta_s = r.step_time_s * static_cast<double>(steps - step);
        s.sink->train(r);
      }
      loss_sum = data_wait = comm_wait = step_time = 0;
      tokens = interval_steps = 0;
    }
    if ((cfg.log.eval_interval > 0 && step % cfg.log.eval_interval == 0) || step == steps) s.evaluate(step, res);
    if (cfg.checkpoint.weights_interval > 0 && step % cfg.checkpoint.weights_interval == 0 && step != steps)
      s.save(cfg.log.dir + "/model_step" + std::to_string(step) + ".h5");
    if (cfg.checkpoint.interval > 0 && step % cfg.checkpoint.interval == 0 && step != steps)
      s.save_checkpoint(step, !cfg.checkpoint.async);
    // Preemption: every rank learns the largest signal any rank received, at the same step.
    if (cfg.debug.signal_rank == s.proc.rank && cfg.debug.signal_at_step == step)
      std::raise(static_cast<int>(cfg.debug.signal));
    const int64_t sig = s.collective("all_reduce(preemption flag) at step " + std::to_string(step), [&] {
      return s.comm.all_reduce_int(pending_signal(), comm::ReduceOp::kMax);
    });
    if (sig > 0) {
      if (s.rank0()) std::printf("signal %ld received: saving a checkpoint at step %ld and stopping\n", (long)sig, (long)step);
      s.collective("checkpoint wait", [&] { s.ckpt->wait(); });
      if (s.last_checkpoint_step != step) s.save_checkpoint(step, true);
      s.collective("barrier (preemption)", [&] { s.comm.barrier(); });
      res.steps = step;
      res.preempted_signal = static_cast<int>(sig);
      return res;
    }
  }
  s.ckpt->wait();
  if (s.last_checkpoint_step != steps) s.save_checkpoint(steps, true);
  if (cfg.checkpoint.save_final) s.save(cfg.log.dir + "/model.h5");
  res.steps = steps;
  return res;
}

}  // namespace cst::trainer
