// Writing checkpoints (docs/CHECKPOINT.md): snapshot at the step boundary, write (optionally in
// a background thread), and, on rank 0, commit and prune.
//
// Commit protocol (one checkpoint): every rank writes its files into step_<N>.tmp/, fsyncs
// them, hashes them once (XXH3-128, from the page cache), and publishes done_rank<r> (its
// files' sizes and checksums, written to a temporary name and renamed). Rank 0 waits for all W
// markers (file-system polling, no MPI: safe in a background thread next to the training
// collectives), writes manifest.json last, removes the markers, fsyncs, renames step_<N>.tmp to
// step_<N>, fsyncs <dir>, then replaces `latest` (temporary + rename) and prunes to the newest
// `keep` complete checkpoints.
//
// Pruning (and replacing an older step_<N> of the same step): the folder is first renamed to
// step_<N>.pruning and <dir> fsynced, then its manifest and files are removed. A crash at any
// point leaves either no step_<N> or a complete one; readers ignore step_<N>.tmp and
// step_<N>.pruning, and remove_leftovers() deletes them at the next start.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <thread>

#include "checkpoint/manifest.h"
#include "checkpoint/optimizer_state.h"

namespace cst::model {
class CstModelImpl;
}

namespace cst::checkpoint {

// Writes checkpoints for one rank. Not thread-safe: one (training) thread calls save / wait.
class CheckpointWriter {
 public:
  struct Options {
    std::string dir;  // checkpoint root
    int rank = 0, world = 1;
    int64_t keep = 3;  // 0 = keep all
    bool async = false;
    double timeout_s = 600;                           // rank 0 waits this long for the other ranks' markers
    ChecksumKind checksum = ChecksumKind::kXxh3_128;  // of every file, in the manifest
    int64_t delay_ms = 0;                             // tests: sleep mid-save (before hashing)
    int64_t prune_delay_ms = 0;                       // tests: sleep mid-prune (after the first file removed)
  };
  explicit CheckpointWriter(Options o);
  ~CheckpointWriter();  // waits for an in-flight save (its error is printed, not thrown)
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Writes and (rank 0) commits checkpoint meta.step of the parameters (rank 0), this rank's
  // shard of the optimizer state and the RNG states. Async: copies them to host memory now, then
  // writes in a background thread (first waiting for the previous save: at most one in flight).
  // Else writes from `model` and `opt` before returning. meta carries everything but `files`
  // (the commit fills them). Not collective; the caller barriers after a synchronous save when
  // every rank must know that the commit is done. `model` and `opt` are only read during the call.
  void save(model::CstModelImpl& model, const OptimizerState& opt, const at::Tensor& rng_cpu,
            const at::Tensor& rng_cuda, Manifest meta);
  // Waits for the in-flight save, if any; rethrows its error.
  void wait();
  // Pruning never removes step_<step> from now on (checkpoint.keep_best's checkpoint; -1 = none;
  // a later call replaces it). It does not count towards `keep`.
  void protect(int64_t step) { protected_step_ = step; }
  // Rank 0, before training: removes the step_<N>.tmp and step_<N>.pruning leftovers of killed
  // runs.
  void remove_leftovers() const;

 private:
  struct Snapshot;
  void write(const Snapshot& s) const;
  void commit(Manifest meta) const;                 // rank 0
  void prune(int64_t committed) const;              // rank 0
  void discard(const std::string& step_dir) const;  // rank 0: the pruning protocol above
  Options o_;
  std::shared_ptr<model::CstModelImpl> shadow_;  // rank 0, async: host copy of the parameters (made on first save)
  std::thread thread_;
  std::exception_ptr error_;
  std::atomic<int64_t> protected_step_{-1};  // read by the background writer when it prunes
};

}  // namespace cst::checkpoint
