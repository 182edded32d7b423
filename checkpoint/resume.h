// Resuming from a checkpoint (docs/CHECKPOINT.md): find the checkpoint to continue (rank 0),
// verify it once, share it with every rank, and restore each rank's state from it.
#pragma once

#include <ATen/core/Generator.h>

#include <functional>
#include <optional>
#include <string>

#include "checkpoint/manifest.h"
#include "checkpoint/optimizer_state.h"

namespace cst::comm {
class Communicator;
}
namespace cst::model {
class CstModelImpl;
}

namespace cst::checkpoint {

// A verified checkpoint to continue from.
struct ResumePoint {
  std::string dir;    // the step folder
  Manifest manifest;  // its manifest; every file it lists was verified against it
};

// Checks the integrity of the checkpoint in step_dir, reading and parsing its manifest once and
// reading each file once: the manifest parses and has our format and a known version (else
// InputError), lists model.h5 and every optimizer shard, and each listed file exists with its
// size and checksum (else CorruptCheckpoint naming the file and the field). optim reads the
// manifest's optimizer options (parse_manifest).
Manifest verify_checkpoint(const std::string& step_dir, const OptionSchema& optim);

// Throws InputError when a fresh start (no --resume) would mix with an earlier run: o.log_dir
// holds cst-train's files (config.cfg, metrics.jsonl, TensorBoard events, model.h5,
// model_step<k>.h5) or o.dir holds `latest` or step_<N> folders. The message names them and the
// ways out (--resume auto; a fresh --log.dir). Reads files only.
void check_fresh_start(const ResumeOptions& o);

// o.resume resolved and verified: "" -> check_fresh_start, nullopt; "auto" -> the newest
// <o.dir>/step_<N> that verifies (damaged ones are skipped, each named through warn), nullopt when
// none does; a path -> that folder (damage is an InputError: exit 2). Then check_compatible.
// Reads files only.
std::optional<ResumePoint> find_resume_point(const ResumeOptions& o,
                                             const std::function<void(const std::string&)>& warn);

// Collective (every rank, same order): rank 0 runs find_resume_point and sends the others its
// result (folder and manifest; they read no manifest). When rank 0 fails, it rethrows its error
// and the others throw InputError, so that the job exits 2.
std::optional<ResumePoint> agree_on_resume_point(const ResumeOptions& o, comm::Communicator& comm,
                                                 const std::function<void(const std::string&)>& warn);

// Restores this rank from p: the parameters (model.h5), its range of the optimizer state
// (re-partitioned from the saving world size) and bias-correction count, and its generators: at
// the saving world size each rank's saved CPU (and CUDA, when cuda is defined) states; at another
// world size reseeded from (seed, step, rank) (docs/CHECKPOINT.md). Not collective.
void restore(const ResumePoint& p, model::CstModelImpl& model, OptimizerState& opt, int rank, int world, int64_t seed,
             at::Generator cuda);

}  // namespace cst::checkpoint
