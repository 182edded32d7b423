// Sharded checkpoints (docs/CHECKPOINT.md): format, atomic commit, async writing, and the
// checks and reads of resuming.
//
// Layout: <dir>/step_<N>/{manifest.json, model.h5, optim_rank<r>_of<W>.h5 for r < W}, and
// <dir>/latest (text: the newest committed folder name). model.h5 is exactly docs/WEIGHTS.md.
// Shard r holds partition(N, r, W) (trainer/optimizer.h) of the flat exp_avg / exp_avg_sq,
// whatever the zero stage, plus rank r's RNG states.
//
// Commit protocol (one checkpoint): every rank writes its files into step_<N>.tmp/, fsyncs
// them, and publishes done_rank<r> (its files' sizes and sha256, written to a temporary name and
// renamed). Rank 0 waits for all W markers (file-system polling, no MPI: safe in a background
// thread next to the training collectives), writes manifest.json last, removes the markers,
// fsyncs, renames step_<N>.tmp to step_<N>, fsyncs <dir>, then replaces `latest` (temporary +
// rename) and prunes to the newest `keep` complete checkpoints. A crash at any point leaves either
// no step_<N> or a complete one; readers ignore *.tmp.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/error.h"
#include "dataio/loader.h"
#include "model/config.h"
#include "trainer/optimizer.h"
#include "trainer/train_config.h"

namespace cst::model {
class CstModelImpl;
}

namespace cst::trainer {

inline constexpr const char* kCheckpointFormat = "cst-train.checkpoint";
inline constexpr int64_t kCheckpointVersion = 1;
inline constexpr const char* kShardFormat = "cst-train.optim-shard";
// `git describe --always --dirty` of the source tree at configure time, or "unknown".
const char* code_version();

// A checkpoint that is incomplete or damaged (missing file, wrong size, wrong sha256, unreadable
// manifest): --resume auto skips it with a warning; an explicit path is an error (exit 2).
class CorruptCheckpoint : public InputError {
 public:
  explicit CorruptCheckpoint(const std::string& what) : InputError(what) {}
};

struct FileEntry {
  std::string name;  // relative to the step folder
  int64_t bytes = 0;
  std::string sha256;  // lower-case hex
};

// manifest.json of one checkpoint.
struct Manifest {
  std::string format = kCheckpointFormat;
  int64_t format_version = kCheckpointVersion;
  int64_t step = 0;             // optimizer steps done; training resumes at step + 1
  int64_t optimizer_steps = 0;  // AdamW/LAMB bias-correction count
  dataio::LoaderState loader;   // data position after `step`
  int64_t world_size = 1;       // W of the saving job (number of optimizer shards)
  int64_t zero_stage = 0;
  int64_t flat_numel = 0;        // N: elements of the flat optimizer state
  int64_t seed = 0;              // train.seed
  int64_t global_batch = 0;      // train.global_batch
  std::string tokenizer_sha256;  // data.tokenizer_sha256 ("" = unknown)
  std::string code_version;
  std::vector<std::pair<std::string, std::string>> model;      // every ModelConfig field, as text
  std::vector<std::pair<std::string, std::string>> optimizer;  // every optim.* option, as text
  std::vector<FileEntry> files;                                // every file but the manifest

  std::string to_json() const;
  // Throws CorruptCheckpoint naming `path` and the field when text is not a manifest.
  static Manifest parse(const std::string& text, const std::string& path);
};

std::string shard_name(int rank, int world);  // "optim_rank<r>_of<W>.h5"
std::string step_dir_name(int64_t step);      // "step_<N>"

// Writes checkpoints for one rank. Not thread-safe: one (training) thread calls save / wait.
class Checkpointer {
 public:
  struct Options {
    std::string dir;  // checkpoint root
    int rank = 0, world = 1;
    int64_t keep = 3;  // 0 = keep all
    bool async = false;
    double timeout_s = 600;  // rank 0 waits this long for the other ranks' markers
    int64_t delay_ms = 0;    // tests: sleep mid-save
  };
  explicit Checkpointer(Options o);
  ~Checkpointer();  // waits for an in-flight save (its error is printed, not thrown)
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Copies the parameters (rank 0), this rank's shard of the optimizer state and the RNG states
  // to host memory now, then writes and (rank 0) commits checkpoint meta.step: in a background
  // thread when async (first waiting for the previous save: at most one in flight), else before
  // returning. Not collective; the caller barriers after a synchronous save when every rank must
  // know that the commit is done. `model` and `opt` are only read during the call.
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
  Options o_;
  std::shared_ptr<model::CstModelImpl> shadow_;  // rank 0: host copy of the parameters (made on first save)
  std::thread thread_;
  std::exception_ptr error_;
};

// ---- resuming ----

// Checks the integrity of the checkpoint in `step_dir`: the manifest parses, has our format and
// version (else InputError), lists model.h5 and every optimizer shard, and each listed file
// exists with its size and sha256 (else CorruptCheckpoint naming file and field).
Manifest verify_checkpoint(const std::string& step_dir);
// Throws InputError naming the manifest and the field when the checkpoint cannot continue this
// configuration: model config, tokenizer hash, optimizer kind, seed or global batch differ.
void check_compatible(const Manifest& m, const TrainConfig& cfg, const std::string& step_dir);
// cfg.checkpoint.resume resolved to a step folder: "" -> "" (fresh start); "auto" -> the newest
// <dir>/step_<N> that verifies (damaged ones are skipped, each named through warn), "" if none;
// a path -> that path, verified. Then check_compatible. Reads files only (call on rank 0).
std::string resolve_resume(const TrainConfig& cfg, const std::function<void(const std::string&)>& warn);
// Fills opt's held range of the flat state from the shards of the checkpoint (any saving W).
void load_optimizer_state(const std::string& step_dir, const Manifest& m, Optimizer& opt);
// Generator states of `rank` as saved (rng_cuda undefined when the shard has none).
std::pair<at::Tensor, at::Tensor> load_rng_state(const std::string& step_dir, const Manifest& m, int rank);

}  // namespace cst::trainer
