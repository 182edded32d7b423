// Sharded checkpoints (docs/CHECKPOINT.md), the interface the trainer uses:
//   run_config.h         what it needs of the run's configuration: RunDescription (what a
//                        manifest records), OptionSchema (how its optimizer options read back),
//                        ResumeOptions (where and whether to resume)
//   optimizer_state.h    what it needs of the optimizer: OptimizerState (the flat exp_avg /
//                        exp_avg_sq, the held range, the bias-correction count), partition()
//   manifest.h           layout names, manifest.json (parse, write), check_compatible
//   checkpoint_writer.h  CheckpointWriter: snapshot, write, commit, prune
//   resume.h             verify_checkpoint, find / agree_on_resume_point, restore
//   optim_shard.h        the optimizer shard files (used by the two above)
// The parameters come from model::CstModelImpl (model/), the resume point is shared over a
// comm::Communicator (comm/); nothing here includes trainer/, which fills the types above
// (trainer/checkpoint_config.h) and implements OptimizerState (trainer::Optimizer).
//
// Layout: <dir>/step_<N>/{manifest.json, model.h5, optim_rank<r>_of<W>.h5 for r < W}, and
// <dir>/latest (text: the newest committed folder name). model.h5 is exactly docs/WEIGHTS.md.
// Shard r holds partition(N, r, W) of the flat exp_avg / exp_avg_sq, whatever the zero stage,
// plus rank r's RNG states.
//
// Commit protocol (checkpoint_writer.h): every rank writes and fsyncs its files in
// step_<N>.tmp/ and publishes a marker with their sizes and checksums; rank 0 then writes
// manifest.json last, renames the folder to step_<N>, replaces `latest` and prunes. A crash at
// any point leaves either no step_<N> or a complete one.
#pragma once

#include "checkpoint/checkpoint_writer.h"
#include "checkpoint/manifest.h"
#include "checkpoint/optim_shard.h"
#include "checkpoint/optimizer_state.h"
#include "checkpoint/resume.h"
#include "checkpoint/run_config.h"
