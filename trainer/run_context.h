// RunContext: what every part of a training run reads and none owns: the validated
// configuration, this process, the world communicator with the layout's groups
// (comm/parallel_groups.h), the device, and the watchdog that guards collectives. The Trainer
// builds it once; the parts (train_data.h, model_state.h, evaluation.h, run_progress.h) take it by
// reference.
#pragma once

#include <ATen/core/Generator.h>
#include <c10/core/Device.h>

#include <string>

#include "comm/communicator.h"
#include "comm/parallel_groups.h"
#include "trainer/train_config.h"
#include "trainer/train_types.h"
#include "trainer/watchdog.h"

namespace cst::trainer {

struct RunContext {
  // cfg validated for comm.size(); comm and wd (may be null) must outlive the context. Sets task
  // only: device, bf16 and groups are the Trainer's to set.
  RunContext(const TrainConfig& c, comm::Communicator& cm, const ProcessInfo& p, Watchdog* w)
      : cfg(c), comm(cm), proc(p), wd(w), task(TaskKind::of(c.model)) {}

  TrainConfig cfg;
  comm::Communicator& comm;  // the world: gradients, losses and counts over all W ranks
  ProcessInfo proc;
  Watchdog* wd;
  TaskKind task;
  c10::Device device{c10::kCPU};
  bool bf16 = false;  // autocast to bfloat16 (CUDA only)
  // Which rank holds which samples and tokens (groups.layout) and, under sequence parallelism,
  // the group of the S ranks of this rank's sequences (groups.seq).
  comm::ParallelGroups groups;

  const ParallelLayout& layout() const { return groups.layout; }
  bool rank0() const { return proc.rank == 0; }
  // Runs fn, a collective every rank makes, with the watchdog armed; a timeout names `what`.
  template <class F>
  auto collective(const std::string& what, F&& fn) const {
    try {
      if (!wd) return fn();
      Watchdog::Scope scope(*wd, what);
      return fn();
    } catch (const comm::CommTimeout& e) {
      throw comm::CommTimeout(std::string(e.what()) + " [during " + what + "]");
    }
  }
  at::Generator cuda_generator() const;  // the device's default generator; undefined on CPU
};

}  // namespace cst::trainer
