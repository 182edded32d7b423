// What checkpoint/ takes from the run's configuration (checkpoint/run_config.h), made from a
// TrainConfig. No torch (cst_checkpoint_config).
#pragma once

#include "checkpoint/run_config.h"
#include "trainer/train_config.h"

namespace cst::trainer {

// The run description of cfg, as a checkpoint of it records: the model, every optim.* option (as
// the field table names and prints it), train.seed, train.global_batch, data.tokenizer_sha256
// and the code version of this build.
checkpoint::RunDescription describe_run(const TrainConfig& cfg);

// The optim.* fields of the TrainConfig field table, in table order, with their defaults; the
// kind is optim.name.
checkpoint::OptionSchema optim_schema();

// checkpoint.resume, the resolved checkpoint.dir, log.dir, describe_run(cfg), optim_schema() and
// train.steps.
checkpoint::ResumeOptions resume_options(const TrainConfig& cfg);

}  // namespace cst::trainer
