// TrainerState: what a Trainer holds, shared by its implementation files (trainer.cpp: the
// loop; trainer_setup.cpp: construction and resuming; trainer_eval.cpp: validation). Not a
// public header: only the trainer includes it.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "comm/communicator.h"
#include "comm/reducer.h"
#include "dataio/blend.h"
#include "dataio/loader.h"
#include "dataio/source.h"
#include "model/model.h"
#include "trainer/best_checkpoint.h"
#include "trainer/metrics.h"
#include "trainer/op_profile.h"
#include "trainer/optimizer.h"
#include "trainer/train_types.h"
#include "trainer/watchdog.h"

namespace cst::trainer {

// A [rows, cols] tensor copied from a loader vector.
template <class T>
torch::Tensor to_tensor(const std::vector<T>& v, int64_t rows, int64_t cols, at::ScalarType as) {
  auto dtype = std::is_same_v<T, int32_t> ? torch::kInt : torch::kByte;
  return torch::from_blob(const_cast<T*>(v.data()), {rows, cols}, dtype).to(as);
}

// Classification batches (cls_train.cpp): the labels of b's rows [rows], int64 class ids with
// -100 where unlabelled, or (regression) float targets with NaN where unlabelled; and the number
// of labelled entries of such a tensor.
torch::Tensor cls_labels(const dataio::Batch& b, bool regression);
int64_t labelled_count(const torch::Tensor& labels);

struct TrainerState {
  TrainerState(const TrainConfig& c, comm::Communicator& cm, const ProcessInfo& p, Watchdog* w)
      : cfg(c), comm(cm), proc(p), wd(w) {}

  // ---- set up once (trainer_setup.cpp) ----
  TrainConfig cfg;
  comm::Communicator& comm;
  ProcessInfo proc;
  Watchdog* wd;
  torch::Device device{torch::kCPU};
  bool bf16 = false, mlm = false;
  bool cls = false, regression = false;  // model.task = cls; num_classes = 1
  int64_t seq_len = 0;                   // tokens per sample fed to the model (the whole sequence, all chunks)
  // Sequence parallelism (dist.seq_parallel = S > 1): this rank is sp_rank of the S ranks of
  // sp_group holding each sequence, and dp_rank of the W / S data-parallel replicas. The world
  // communicator (comm) still reduces gradients, losses and counts over all W ranks.
  std::unique_ptr<comm::Communicator> sp_group;
  int sp_rank = 0, sp_size = 1, dp_rank = 0, dp_size = 1;
  model::CstModel model{nullptr};
  NamedTensors params;
  std::unique_ptr<comm::GradReducer> reducer;
  std::unique_ptr<Optimizer> opt;
  std::shared_ptr<dataio::BlendSource> train_src, valid_src;  // one corpus or a blend (valid: may be null)
  std::unique_ptr<dataio::Loader> loader;
  std::unique_ptr<MetricsSink> sink;  // rank 0
  double peak_flops = 0, train_flops_per_token = 0;
  std::unique_ptr<checkpoint::CheckpointWriter> ckpt;
  std::unique_ptr<BestCheckpoint> best;  // checkpoint.keep_best set

  // ---- progress ----
  std::string resumed_from;           // the checkpoint folder resumed from ("" = fresh start)
  int64_t start_step = 0;             // steps done before this run (resume)
  int64_t last_checkpoint_step = -1;  // the step of the newest checkpoint this run wrote or resumed from
  dataio::LoaderState loader_state;   // data position after the last step done
  struct Interval {                   // sums over the steps since the last log record
    double loss_sum = 0, data_wait = 0, comm_wait = 0, step_time = 0;
    int64_t tokens = 0, steps = 0;
  } interval;
  double lr = 0, grad_norm = 0;         // of the last step
  std::optional<EvalRecord> last_eval;  // the last validation (every rank holds the same)

  bool rank0() const { return proc.rank == 0; }
  // This rank's tokens of t [rows, seq_len]: the chunk [sp_rank * N / S, (sp_rank + 1) * N / S)
  // (all of t without sequence parallelism). Undefined stays undefined.
  torch::Tensor chunk(const torch::Tensor& t) const {
    if (!t.defined() || sp_size == 1) return t;
    const int64_t c = t.size(1) / sp_size;
    return t.narrow(1, sp_rank * c, c);
  }
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
  at::Generator cuda_generator() const;  // undefined on CPU

  // setup (trainer_setup.cpp)
  // data.train / data.valid (`key`): one corpus or a blend, checked against the model config.
  std::shared_ptr<dataio::BlendSource> open_split(const std::string& key, const std::string& text) const;
  void resume();  // collective: restores checkpoint.resume, or checks that a fresh start overwrites nothing
                  // (and then loads init.weights)
  void describe_setup(const model::ModelConfig& mc);  // rank 0: config.cfg, metrics sink, MFU peak
  dataio::LoaderOptions loader_options(bool train) const;

  // the loop (trainer.cpp); collective unless said otherwise
  // data, forward + backward, gradient all-reduce, clip, optimizer; phases: marked after each
  void train_step(int64_t step, PhaseTimer& phases);
  // train_step under the operator profiler, with phases timed; rank 0 writes
  // <log.dir>/profile_step<step>.md and prints the phases.
  void profiled_train_step(int64_t step);
  void log(int64_t step, TrainResult& res);
  void evaluate(int64_t step, TrainResult& res);  // trainer_eval.cpp
  // task = cls (cls_eval.cpp): loss and the task's metrics (cls_metrics.h) per corpus, over the
  // predictions of all ranks.
  EvalRecord evaluate_cls(int64_t step);
  // checkpoint.keep_best (trainer_eval.cpp, best_checkpoint.h): after evaluate, saves and keeps this step's
  // checkpoint when last_eval improves the metric.
  void keep_best(int64_t step);
  void export_weights(const std::string& path);  // rank 0 only
  // The tokenizer of the training shards (their tokenizer_sha256), else data.tokenizer_sha256;
  // "" = unknown. Recorded in weight files and checkpoint manifests.
  std::string tokenizer_sha256() const;
  void save_checkpoint(int64_t step, bool sync);
  int preemption_signal(int64_t step);  // > 0: every rank stops after this step
  void stop_preempted(int64_t step, int signal, TrainResult& res);
};

}  // namespace cst::trainer
