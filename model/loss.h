// Training losses. Each returns the SUM of per-token (or per-example) losses and the count, so
// that gradient accumulation and data parallelism can average over the global batch exactly.
#pragma once

#include <ATen/core/Tensor.h>

namespace cst::model {

struct LossSum {
  at::Tensor sum;     // scalar, differentiable
  int64_t count = 0;  // number of predicted tokens / examples in sum
  at::Tensor mean() const;  // sum / max(count, 1)
};

// Causal LM: logits [B, N, V] at position i predict input_ids[:, i+1]; positions where either
// token is padding (mask false) are skipped. mask [B, N] bool or undefined.
LossSum lm_loss(const at::Tensor& logits, const at::Tensor& input_ids, const at::Tensor& mask = {});
// Per-token cross entropy against explicit labels [B, N] int64, -100 where nothing is
// predicted: MLM labels, or LM targets (the loader's window[:, 1:] for inputs window[:, :N]).
LossSum token_loss(const at::Tensor& logits, const at::Tensor& labels);
// Classification: logits [B, C], labels [B] int64.
LossSum cls_loss(const at::Tensor& logits, const at::Tensor& labels);

}  // namespace cst::model
