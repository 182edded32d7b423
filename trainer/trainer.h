// The training loop for both jobs (mlm, lm): data-parallel over a Communicator, gradient
// accumulation over micro-batches, clipping, AdamW/LAMB with warmup + decay, periodic
// validation, metrics, and weights export.
//
// Loss normalisation: each optimizer step minimises (sum of token losses over the GLOBAL batch)
// / (number of predicted tokens in the global batch), whatever the world size and micro-batch
// split, so W ranks x k micro-steps compute the same update as 1 rank x 1 big batch.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "trainer/execution.h"
#include "trainer/train_config.h"
#include "trainer/train_types.h"

namespace cst::comm {
class Communicator;
}
namespace cst::model {
class CstModelImpl;
}

namespace cst::trainer {

class Watchdog;
class PhaseTimer;
class Evaluator;
struct RunContext;
struct TrainData;
struct ModelState;
struct RunCheckpoints;
struct RunLog;

// Resolves cfg's execution choices for the CUDA devices torch sees (resolve_execution,
// trainer/execution.h) and makes the device current; also sets the intra-op thread count
// (dist.threads, default cores / ranks on this host). Throws InputError as resolve_execution,
// and for a CUDA device in a build without CUDA. Call before make_communicator (NCCL binds the
// current device).
Execution setup_execution(const TrainConfig& cfg, const ProcessInfo& proc);

class Trainer {
 public:
  // cfg must be validated for comm.size(). Builds the model (seeded identically on every rank,
  // then rank 0's parameters broadcast), optimizer, reducer and loaders, and, with
  // checkpoint.resume, restores model, optimizer (re-partitioned for this world size), step,
  // data position and RNG from a checkpoint (docs/CHECKPOINT.md; InputError when it does not
  // fit). Collective.
  // ex is this rank's execution from setup_execution (its one resolution, made before the
  // communicator); rank 0 logs it once. watchdog may be null (no collective timeout beyond the
  // reducer's own).
  Trainer(const TrainConfig& cfg, comm::Communicator& comm, const ProcessInfo& proc, const Execution& ex,
          Watchdog* watchdog);
  // The same with ex = setup_execution(cfg, proc).
  Trainer(const TrainConfig& cfg, comm::Communicator& comm, const ProcessInfo& proc, Watchdog* watchdog);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains up to step cfg.train.steps, writing checkpoints (checkpoint.interval, the end), or
  // until a preemption signal (install_preemption_handlers): then every rank saves and returns
  // with preempted_signal set. Collective: every rank must call it.
  TrainResult run();

  // The model being trained (this rank's replica), e.g. to inspect it after setup.
  model::CstModelImpl& model();

 private:
  // The parts of a run, each with one job, built in this order by the constructor.
  std::unique_ptr<RunContext> ctx_;       // configuration, process, communicators, device (run_context.h)
  std::unique_ptr<TrainData> data_;       // splits, sequence length, train loader (train_data.h)
  std::unique_ptr<ModelState> state_;     // model, parameters, reducer, optimizer (model_state.h)
  std::unique_ptr<Evaluator> eval_;       // validation; null without data.valid (evaluation.h)
  std::unique_ptr<RunCheckpoints> ckpt_;  // writer, keep_best, resume point (run_progress.h)
  std::unique_ptr<RunLog> log_;           // metrics sink, MFU, log-interval sums (run_progress.h)

  // setup (trainer_setup.cpp)
  void resume();  // collective: restores checkpoint.resume, or checks that a fresh start overwrites nothing
                  // (and then loads init.weights)
  void describe_setup(const Execution& ex);  // rank 0: config.cfg, metrics sink, MFU peak, ex logged once

  // the loop (trainer.cpp); collective unless said otherwise
  // data, forward + backward, gradient all-reduce, clip, optimizer; phases: marked after each
  void train_step(int64_t step, PhaseTimer& phases);
  // train_step under the operator profiler, with phases timed; rank 0 writes
  // <log.dir>/profile_step<step>.md and prints the phases.
  void profiled_train_step(int64_t step);
  void log(int64_t step, TrainResult& res);
  void evaluate(int64_t step, TrainResult& res);
  // checkpoint.keep_best (best_checkpoint.h): after evaluate, saves and keeps this step's
  // checkpoint when the last validation improves the metric.
  void keep_best(int64_t step);
  void export_weights(const std::string& path);  // rank 0 only
  void save_checkpoint(int64_t step, bool sync);
  int preemption_signal(int64_t step);  // > 0: every rank stops after this step
  void stop_preempted(int64_t step, int signal, TrainResult& res);
};

}  // namespace cst::trainer
