// Writing checkpoints (docs/CHECKPOINT.md): snapshot at the step boundary, write (optionally in
// a background thread), and, on rank 0, commit and prune.
//
// Commit protocol (one checkpoint): every rank writes its files into step_<N>.tmp/, fsyncs
// them, and publishes done_rank<r> (its files' sizes and checksums, written to a temporary name
// and renamed). Rank 0 waits for all W markers (file-system polling, no MPI: safe in a
// background thread next to the training collectives), writes manifest.json last, removes the
// markers, fsyncs, renames step_<N>.tmp to step_<N>, fsyncs <dir>, then replaces `latest`
// (temporary + rename) and prunes to the newest `keep` complete checkpoints. A crash at any
// point leaves either no step_<N> or a complete one; readers ignore *.tmp.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <thread>

#include "trainer/manifest.h"
#include "trainer/optimizer.h"

namespace cst::model {
class CstModelImpl;
}

namespace cst::trainer {

// Writes checkpoints for one rank. Not thread-safe: one (training) thread calls save / wait.
class CheckpointWriter {
 public:
  struct Options {
    std::string dir;  // checkpoint root
    int rank = 0, world = 1;
    int64_t keep = 3;  // 0 = keep all
    bool async = false;
    double timeout_s = 600;  // rank 0 waits this long for the other ranks' markers
    int64_t delay_ms = 0;    // tests: sleep mid-save
  };
  explicit CheckpointWriter(Options o);
  ~CheckpointWriter();  // waits for an in-flight save (its error is printed, not thrown)
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Copies the parameters (rank 0), this rank's shard of the optimizer state and the RNG states
  // to host memory now, then writes and (rank 0) commits checkpoint meta.step: in a background
  // thread when async (first waiting for the previous save: at most one in flight), else before
  // returning. meta carries everything but `files` (the commit fills them). Not collective; the
  // caller barriers after a synchronous save when every rank must know that the commit is done.
  // `model` and `opt` are only read during the call.
  void save(model::CstModelImpl& model, const Optimizer& opt, const at::Tensor& rng_cpu, const at::Tensor& rng_cuda,
            Manifest meta);
  // Waits for the in-flight save, if any; rethrows its error.
  void wait();
  // Rank 0, before training: removes step_*.tmp leftovers of killed runs.
  void remove_stale_tmp() const;

 private:
  struct Snapshot;
  void write(const Snapshot& s) const;
  void commit(Manifest meta) const;  // rank 0
  void prune(int64_t committed) const;  // rank 0
  Options o_;
  std::shared_ptr<model::CstModelImpl> shadow_;  // rank 0: host copy of the parameters (made on first save)
  std::thread thread_;
  std::exception_ptr error_;
};

}  // namespace cst::trainer
