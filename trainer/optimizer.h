// AdamW and LAMB, with their state in plain flat tensors (checkpoints, ZeRO partitions); AdamW
// runs PyTorch's fused multi-tensor kernel on views of that state. PyTorch's AdamW semantics (decoupled decay, bias
// correction); LAMB as in You et al. 2019 (the large-batch BERT recipe): the Adam update plus decay, scaled per
// parameter by the trust ratio ||p|| / ||update|| (1 when either norm is 0).
//
// Weight decay applies to matrices only: parameters with one dimension (biases, LayerNorm) and
// the embeddings (tok_emb, pos_local, pos_global, abs_pos) are not decayed unless decay_all.
//
// Flat space and ZeRO-1. The trainable parameters, in registration order, are concatenated into
// one flat vector of N elements. checkpoint::partition(N, r, W) cuts it into W contiguous ranges
// of P = ceil(N / W) elements (the last ones shorter or empty). zero_stage 0: every rank holds and
// updates the whole state ([0, N)). zero_stage 1: rank r holds exp_avg / exp_avg_sq only for
// its range, updates only those parameter elements, and step() then all-gathers the updated
// parameters (a flat [W, P] buffer, padded) so that every rank again holds all of them. LAMB's
// per-parameter norms are summed from per-rank partial squared norms (one all_reduce).
// Checkpoint shards (docs/CHECKPOINT.md) always follow partition(N, r, W) of the saving job; the
// checkpoint writer and restore see the state through checkpoint::OptimizerState.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

#include "checkpoint/optimizer_state.h"
#include "trainer/train_config.h"

namespace cst::comm {
class Communicator;
}

namespace cst::trainer {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

class Optimizer : public checkpoint::OptimizerState {
 public:
  // params: (name, parameter) pairs, contiguous, all of one floating dtype; the optimizer keeps
  // references and updates them in place. zero_stage 1 needs comm (which must outlive the
  // optimizer) and makes step() collective; zero_stage 0 ignores comm (may be null).
  // fused: AdamW through at::_fused_adamw_ (two multi-tensor kernels per step, decayed and not,
  // CPU and CUDA) on the same flat state; false: one loop of tensor ops per parameter. LAMB
  // always loops.
  Optimizer(NamedTensors params, const OptimOptions& opt, comm::Communicator* comm = nullptr, int zero_stage = 0,
            bool fused = true);

  // One update with learning rate lr from each parameter's .grad() (undefined grad: skipped).
  // zero_stage 1: collective (every rank, same order), grads must be equal on every rank.
  void step(double lr);
  void zero_grad();
  int64_t steps_taken() const override { return t_; }
  void set_steps_taken(int64_t t) override { t_ = t; }  // resume: bias correction continues from t
  bool decays(const std::string& name, const at::Tensor& param) const;

  // ---- state, for checkpoints ----
  int64_t flat_numel() const override { return numel_; }         // N
  checkpoint::FlatRange held() const override { return held_; }  // the range of the flat state this rank holds
  // This rank's state: [held().size()] each, same dtype and device as the parameters. The
  // returned tensors alias the optimizer's buffers (copy before handing to another thread).
  const at::Tensor& exp_avg() const override { return exp_avg_; }
  const at::Tensor& exp_avg_sq() const override { return exp_avg_sq_; }
  // Replaces the held state (shapes [held().size()], any dtype / device; copied).
  void load_state(const at::Tensor& exp_avg, const at::Tensor& exp_avg_sq) override;

 private:
  struct Slot {
    std::string name;
    at::Tensor param;                // the parameter (full)
    int64_t offset = 0;              // of the parameter in the flat space
    int64_t lo = 0, hi = 0;          // the held piece, as element indices within the parameter
    at::Tensor exp_avg, exp_avg_sq;  // views of the flat buffers for [lo, hi)
    bool decay = false;
    at::Tensor held_param() const { return param.view({-1}).narrow(0, lo, hi - lo); }           // [hi - lo]
    at::Tensor held_grad() const { return param.grad().reshape({-1}).narrow(0, lo, hi - lo); }  // [hi - lo]
  };
  void all_gather_params();
  void adamw_fused(double lr);
  std::vector<Slot> slots_;
  bool fused_ = true;
  at::Tensor step_count_;  // [] float32 on the parameters' device: t, read by the fused kernel
  OptimOptions opt_;
  comm::Communicator* comm_ = nullptr;
  bool sharded_ = false;  // zero_stage 1 with more than one rank
  int64_t numel_ = 0;
  checkpoint::FlatRange held_;
  at::Tensor exp_avg_, exp_avg_sq_;
  int64_t t_ = 0;
};

// Scales all gradients so that their global L2 norm is at most max_norm (if max_norm > 0).
// Returns the norm before clipping. Every rank holds the same averaged gradients, so every
// rank computes the same norm.
double clip_grad_norm(const NamedTensors& params, double max_norm);

}  // namespace cst::trainer
