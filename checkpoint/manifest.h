// What a checkpoint is (docs/CHECKPOINT.md): the names of its folder and files, and its
// manifest.json: the training position, the layout of the saved state, the run that wrote it,
// and the size and checksum of every file. Also whether a configuration may continue it.
//
// No torch here: the manifest parser is linked cheaply by tools and fuzz targets
// (cst_checkpoint_manifest).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint/run_config.h"
#include "common/checksum.h"
#include "common/error.h"
#include "dataio/loader.h"

namespace cst::checkpoint {

inline constexpr const char* kCheckpointFormat = "cst-train.checkpoint";
// The version written. Readers accept 1 and 2: version 1 has a "sha256" per file; version 2 one
// checksum per file, "xxh3_128" (written by default) or "sha256".
inline constexpr int64_t kCheckpointVersion = 2;
inline constexpr int64_t kMaxManifestBytes = 16 << 20;  // a larger manifest.json is damaged
inline constexpr int64_t kMaxWorldSize = 1 << 20;       // world_size above this is damaged

// `git describe --always --dirty` of the source tree at configure time, or "unknown".
const char* code_version();

// A checkpoint that is incomplete or damaged (missing file, wrong size or checksum, a manifest
// that does not parse or holds out-of-range values): --resume auto skips it with a warning; an
// explicit path is an error (exit 2).
class CorruptCheckpoint : public InputError {
 public:
  explicit CorruptCheckpoint(const std::string& what) : InputError(what) {}
};

// ---- layout ----

std::string step_dir_name(int64_t step);      // "step_<N>"
std::string shard_name(int rank, int world);  // "optim_rank<r>_of<W>.h5"
// N of a folder named exactly "step_<N>", N decimal digits; nullopt for any other name (also
// "step_<N>.tmp", and an N that does not fit int64).
std::optional<int64_t> parse_step_dir_name(const std::string& name);
// The step_<N> folders of root (committed or not; never step_<N>.tmp), sorted by N. A folder
// named step_<digits> whose number does not fit int64 is passed to warn and left out. A missing
// root is empty.
std::vector<std::pair<int64_t, std::string>> list_step_dirs(const std::string& root,
                                                            const std::function<void(const std::string&)>& warn);

// ---- manifest ----

struct FileEntry {
  std::string name;  // a plain file name inside the step folder
  int64_t bytes = 0;
  ChecksumKind checksum = ChecksumKind::kXxh3_128;
  std::string digest;  // lower-case hex (common/checksum.h)
};

struct Manifest {
  std::string format = kCheckpointFormat;
  int64_t format_version = kCheckpointVersion;
  int64_t step = 0;             // optimizer steps done; training resumes at step + 1
  int64_t optimizer_steps = 0;  // AdamW/LAMB bias-correction count
  dataio::LoaderState loader;   // data position after `step`
  int64_t world_size = 1;       // W of the saving job: W optimizer shards, in [1, kMaxWorldSize]
  int64_t zero_stage = 0;       // 0 or 1
  int64_t flat_numel = 0;       // N: elements of the flat optimizer state
  RunDescription run;
  std::vector<FileEntry> files;  // every file of the folder but the manifest

  std::string to_json() const;
};

// Parses manifest.json text; path names it in errors. The "optimizer" object is read through
// optim: each option it lacks is recorded in run.missing and keeps its default, other members
// are ignored. Throws InputError for another format or
// an unknown format_version (a checkpoint of another program or a newer build: not skipped), and
// CorruptCheckpoint, naming path and the field, for anything else that is not a manifest:
// invalid JSON (any nesting depth is safe), a missing field or one of the wrong type, a value out
// of range (world_size, step, sizes, ...), an option value optim.canonical refuses, a file name
// that is not a plain name. Never crashes, on any bytes.
Manifest parse_manifest(const std::string& text, const std::string& path, const OptionSchema& optim);

// Throws InputError naming path and the field when the checkpoint cannot continue the run `now`
// describes: the model config, tokenizer hash, optimizer kind (now.optim.kind), seed or global
// batch differ, or its step is beyond now.steps.
void check_compatible(const Manifest& m, const ResumeOptions& now, const std::string& path);

}  // namespace cst::checkpoint
