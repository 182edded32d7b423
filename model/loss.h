// Training losses. Each returns the SUM of per-token (or per-example) losses and the count, so
// that gradient accumulation and data parallelism can average over the global batch exactly.
#pragma once

#include <ATen/core/Tensor.h>

namespace cst::model {

struct LossSum {
  at::Tensor sum;           // scalar, differentiable
  int64_t count = 0;        // number of predicted tokens / examples in sum
  at::Tensor mean() const;  // sum / max(count, 1)
};

// Causal LM: logits [B, N, V] at position i predict input_ids[:, i+1]; positions where either
// token is padding (mask false) are skipped. mask [B, N] bool or undefined.
LossSum lm_loss(const at::Tensor& logits, const at::Tensor& input_ids, const at::Tensor& mask = {});
// Per-token cross entropy against explicit labels [B, N] int64, -100 where nothing is
// predicted: MLM labels, or LM targets (the loader's window[:, 1:] for inputs window[:, :N]).
LossSum token_loss(const at::Tensor& logits, const at::Tensor& labels);
// Classification: logits [B, C], labels [B] int64 (-100 = no label).
LossSum cls_loss(const at::Tensor& logits, const at::Tensor& labels);
// Regression (num_classes = 1): squared error summed over the labelled examples, in float32 at
// least. pred [B], targets [B] floating (NaN = no label, contributes nothing, not counted).
LossSum regression_loss(const at::Tensor& pred, const at::Tensor& targets);

// Cross entropy of a linear head, chunk by chunk, so that the [R, V] logits never exist at once.
// h [R, D] hidden rows, weight [V, D], bias [V] or undefined, labels [R] int64 (-100: row not
// predicted). Each chunk of chunk_rows rows (0: about R x D logits, as many values as h, within
// 2^20 to 2^24) gets its logits h W^T + b in the autocast dtype when autocast is on for h's
// device (else h's dtype), then a float32 (float64 for float64 inputs) log-softmax. When an input requires grad, the
// forward also computes the gradients of the sum (kept: [R, D] and [V, D]), so no logits are recomputed. Returns the
// summed loss (differentiable in h, weight and bias) and the count of predicted rows; correct, if given, receives the
// number of predicted rows whose argmax is the label (a scalar int64 tensor, no device sync).
LossSum chunked_cross_entropy(const at::Tensor& h, const at::Tensor& weight, const at::Tensor& bias,
                              const at::Tensor& labels, int64_t chunk_rows = 0, at::Tensor* correct = nullptr);

}  // namespace cst::model
