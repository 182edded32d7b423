// Batches as tensors: the one place a loader batch (dataio::Batch) becomes the model's inputs,
// attention mask and labels, for training and validation of every task, cut to this rank's
// tokens of each sequence (ParallelLayout::token_range).
#pragma once

#include <c10/core/Device.h>
#include <torch/types.h>

#include <cstdint>

#include "common/parallel_layout.h"
#include "dataio/loader.h"
#include "trainer/train_types.h"

namespace cst::trainer {

struct BatchTensors {
  torch::Tensor inputs;  // [rows, T] int64 token ids, T = this rank's tokens of each sequence
  torch::Tensor mask;    // [rows, T] bool, true = real token (mlm, cls); undefined for lm (all real)
  // lm / mlm: [rows, T] int64 target ids, -100 = not predicted (lm: the next tokens, the last one
  // across this rank's border); cls: [rows] int64 class ids with -100 where unlabelled, or
  // (regression) float targets with NaN where unlabelled.
  torch::Tensor labels;

  // Rows [first, first + n) on `device`.
  BatchTensors rows(int64_t first, int64_t n, const c10::Device& device) const;
  // The predicted tokens (cls: labelled examples) of labels.
  int64_t count() const;
};

// b's rows as tensors on the CPU. seq_len: N, the tokens of a sequence the model sees (lm
// batches hold windows of N + 1 tokens); layout: which of them this rank holds (N must satisfy
// its length rules; cls takes whole sequences).
BatchTensors batch_tensors(const dataio::Batch& b, const TaskKind& task, int64_t seq_len, const ParallelLayout& layout);

}  // namespace cst::trainer
