// Helpers shared by the model tests.
#pragma once

#include <torch/torch.h>

#include "model/config.h"

namespace cst::model::testing {

// A small CST config: D = 8, H = 2, L = 4, 1 layer, no dropout.
inline ModelConfig small_config(Task task, double alpha, int64_t slice_len = 4, int64_t max_len = 16) {
  ModelConfig c;
  c.task = task;
  c.vocab_size = 11;
  c.d_model = 8;
  c.n_heads = 2;
  c.n_layers = 1;
  c.d_ff = 16;
  c.max_seq_len = max_len;
  c.slice_len = slice_len;
  c.alpha = alpha;
  c.dropout = 0.0;
  c.init_std = 0.5;  // large weights: attention far from uniform, so errors show
  return c;
}

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

}  // namespace cst::model::testing
