// Plain types the trainer takes and returns (trainer.h), apart from it so that the parts of a
// run (run_context.h, train_data.h, ...) can hold them without including the class they make up.
#pragma once

#include <cstdint>
#include <string>

#include "model/config.h"

namespace cst::trainer {

// Where this process runs: rank, local rank (picks the CUDA device) and host, from MPI / the
// launcher's environment (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID).
struct ProcessInfo {
  int rank = 0, world_size = 1, local_rank = 0, local_size = 1;
  std::string host = "localhost";
  static ProcessInfo from_environment(int rank, int world_size, const std::string& host);
};

// What the model is trained to do (model.task), as the parts of a run ask it.
struct TaskKind {
  bool mlm = false;         // model.task = mlm
  bool cls = false;         // model.task = cls
  bool regression = false;  // cls with model.num_classes = 1
  static TaskKind of(const model::ModelConfig& m) {
    TaskKind t;
    t.mlm = m.task == model::Task::kMlm, t.cls = m.task == model::Task::kCls;
    t.regression = t.cls && m.num_classes == 1;
    return t;
  }
};

struct TrainResult {
  int64_t steps = 0;
  double final_train_loss = 0;  // mean over the last log interval
  double final_eval_loss = -1;  // -1 when there is no validation split
  int preempted_signal = 0;     // > 0: stopped by this signal after a checkpoint; exit 128 + it
};

}  // namespace cst::trainer
