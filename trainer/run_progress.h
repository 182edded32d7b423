// Where a run stands, in two parts apart from the model and the data: its checkpoints (the
// writer, checkpoint.keep_best, the step resumed from and the newest step saved) and its log (the
// metrics sink, MFU accounting, the sums since the last log record, the last validation).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "checkpoint/checkpoint.h"
#include "trainer/best_checkpoint.h"
#include "trainer/metrics.h"

namespace cst::trainer {

struct RunCheckpoints {
  std::unique_ptr<checkpoint::CheckpointWriter> writer;
  std::unique_ptr<BestCheckpoint> best;  // checkpoint.keep_best set
  std::string resumed_from;              // the checkpoint folder resumed from ("" = fresh start)
  int64_t start_step = 0;                // steps done before this run (resume)
  int64_t last_step = -1;                // the step of the newest checkpoint this run wrote or resumed from
};

struct RunLog {
  std::unique_ptr<MetricsSink> sink;  // rank 0
  double peak_flops = 0;              // of one rank, the MFU denominator (log.peak_tflops or measured)
  double train_flops_per_token = 0;   // forward + backward
  struct Interval {                   // sums over the steps since the last log record
    double loss_sum = 0, data_wait = 0, comm_wait = 0, step_time = 0;
    int64_t tokens = 0, steps = 0;
  } interval;
  double lr = 0, grad_norm = 0;         // of the last step
  std::optional<EvalRecord> last_eval;  // the last validation (every rank holds the same)
};

}  // namespace cst::trainer
