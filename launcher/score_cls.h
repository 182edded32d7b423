// cst-score on classification examples (docs/WEIGHTS.md, "Scoring classification examples"):
// a classifier (task = cls) over a cst-cls-examples shard or split folder writes, per example in
// the input's order, its class probabilities (regression: its value) and example_index; with
// labels present it prints the task's metrics (trainer/cls_metrics.h); optionally the GLUE
// submission TSV ("index\tprediction", label names or STS-B floats, rows by example_index).
#pragma once

#include <string>

#include "model/model.h"

namespace cst::launcher {

// True when `path` is a cst-cls-examples shard, or a folder whose first *.h5 shard is one.
bool is_cls_examples(const std::string& path);

struct ClsScoreOptions {
  std::string input;            // shard file or split folder
  std::string output;           // the HDF5 file to write (its temporary name: staged by the caller)
  std::string glue_submission;  // "" or the TSV to write (already checked by the caller)
  int64_t batch_size = 8;       // examples per forward pass
};

// Scores every example of opt.input with `m` (task = cls; shards checked against its vocab_size
// and num_classes: InputError naming the file). Writes to opt.output: probs [n, C] float32
// (softmax of the logits; regression: prediction [n]), logits [n, C], example_index [n] int64.
// Returns the line printed about the task's metrics ("" without labels).
std::string score_cls_examples(model::CstModelImpl& m, const ClsScoreOptions& opt, const std::string& output_path);

}  // namespace cst::launcher
