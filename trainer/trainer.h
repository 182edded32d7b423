// The training loop for both jobs (mlm, lm): data-parallel over a Communicator, gradient
// accumulation over micro-batches, clipping, AdamW/LAMB with warmup + decay, periodic
// validation, metrics, and weights export.
//
// Loss normalisation: each optimizer step minimises (sum of token losses over the GLOBAL batch)
// / (number of predicted tokens in the global batch), whatever the world size and micro-batch
// split, so W ranks x k micro-steps compute the same update as 1 rank x 1 big batch.
#pragma once

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
struct TrainerState;

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
  std::unique_ptr<TrainerState> s_;  // trainer_state.h
};

}  // namespace cst::trainer
