// What checkpoints need of the run's configuration, as plain types that checkpoint/ owns: the
// description of the run a manifest records, how the optimizer options of a manifest read back,
// and where and whether to resume. trainer/checkpoint_config.h fills them from TrainConfig.
//
// No torch here (cst_checkpoint_manifest).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "model/config.h"

namespace cst::checkpoint {

// Options as (name, value) text pairs, in the order a manifest writes them: the names and the
// value texts of the configuration's option table ("optim.lr", "0.001").
using OptionTexts = std::vector<std::pair<std::string, std::string>>;

// The value text of option `name` in options; "" when options lacks it.
std::string option_text(const OptionTexts& options, const std::string& name);

// The optimizer options a manifest's "optimizer" object records, as the configuration's option
// table defines them.
struct OptionSchema {
  OptionTexts defaults;  // every option: its name and default value text, in the order written
  std::string kind;      // the option naming the optimizer, which a resumed run may not change
  // The text `name` prints once set from text; throws InputError when the option cannot take
  // text. Called for each option a manifest holds.
  std::function<std::string(const std::string& name, const std::string& text)> canonical;
};

// The run a checkpoint belongs to. check_compatible (checkpoint/manifest.h) demands that model,
// the optimizer kind, seed, global_batch and tokenizer_sha256 match the configuration that
// resumes it; the other optimizer options and code_version are recorded only (a resumed run may
// change its learning rate).
struct RunDescription {
  model::ModelConfig model;      // every ModelConfig field ("model" object, values as text)
  OptionTexts optim;             // every optimizer option ("optimizer" object): OptionSchema::defaults' names
  int64_t seed = 0;              // train.seed
  int64_t global_batch = 0;      // train.global_batch
  std::string tokenizer_sha256;  // data.tokenizer_sha256 ("" = unknown)
  std::string code_version;
  // Fields of the "model" / "optimizer" objects that the manifest lacks ("model.<name>",
  // "optimizer.<option name>"): written by a build with other fields; their values above are
  // the defaults.
  std::vector<std::string> missing;
};

// What finding, checking and continuing a checkpoint needs of the configuration that resumes.
struct ResumeOptions {
  std::string resume;      // checkpoint.resume: "" = fresh start; "auto" = newest complete checkpoint; a path
  std::string dir;         // the checkpoint folder (checkpoint.dir, or <log.dir>/checkpoints)
  bool dir_given = false;  // checkpoint.dir was set (a refused fresh start then names --checkpoint.dir)
  std::string log_dir;     // log.dir: a fresh start refuses one that holds an earlier run's files
  RunDescription run;      // the resuming run, as a checkpoint of it would record it
  OptionSchema optim;      // how the optimizer options of a manifest read
  int64_t steps = 0;       // train.steps: a checkpoint beyond it cannot continue the run
};

}  // namespace cst::checkpoint
