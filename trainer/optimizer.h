// AdamW and LAMB, written out so that their state is plain named tensors (checkpoints, ZeRO
// partitions). PyTorch's AdamW semantics (decoupled decay, bias correction); LAMB as in You et
// al. 2019 (the large-batch BERT recipe): the Adam update plus decay, scaled per parameter by
// the trust ratio ||p|| / ||update|| (1 when either norm is 0).
//
// Weight decay applies to matrices only: parameters with one dimension (biases, LayerNorm) and
// the embeddings (tok_emb, pos_local, pos_global, abs_pos) are not decayed unless decay_all.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

#include "trainer/train_config.h"

namespace cst::trainer {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

class Optimizer {
 public:
  // params: (name, parameter) pairs; the optimizer keeps references and updates them in place.
  Optimizer(NamedTensors params, const OptimOptions& opt);

  // One update with learning rate lr from each parameter's .grad() (undefined grad: skipped).
  void step(double lr);
  void zero_grad();
  int64_t steps_taken() const { return t_; }
  bool decays(const std::string& name, const at::Tensor& param) const;

  // State for checkpoints: "exp_avg.<param>", "exp_avg_sq.<param>" (same shapes as params).
  NamedTensors state() const;

 private:
  struct Slot {
    std::string name;
    at::Tensor param, exp_avg, exp_avg_sq;
    bool decay = false;
  };
  std::vector<Slot> slots_;
  OptimOptions opt_;
  int64_t t_ = 0;
};

// Scales all gradients so that their global L2 norm is at most max_norm (if max_norm > 0).
// Returns the norm before clipping. Every rank holds the same averaged gradients, so every
// rank computes the same norm.
double clip_grad_norm(const NamedTensors& params, double max_norm);

}  // namespace cst::trainer
