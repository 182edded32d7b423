// Sharded checkpoints (docs/CHECKPOINT.md), the interface the trainer uses:
//   manifest.h           layout names, manifest.json (parse, write), describe_run, check_compatible
//   checkpoint_writer.h  CheckpointWriter: snapshot, write, commit, prune
//   resume.h             verify_checkpoint, find / agree_on_resume_point, restore
//   optim_shard.h        the optimizer shard files (used by the two above)
//
// Layout: <dir>/step_<N>/{manifest.json, model.h5, optim_rank<r>_of<W>.h5 for r < W}, and
// <dir>/latest (text: the newest committed folder name). model.h5 is exactly docs/WEIGHTS.md.
// Shard r holds partition(N, r, W) (trainer/optimizer.h) of the flat exp_avg / exp_avg_sq,
// whatever the zero stage, plus rank r's RNG states.
#pragma once

#include "trainer/checkpoint_writer.h"
#include "trainer/manifest.h"
#include "trainer/optim_shard.h"
#include "trainer/resume.h"
