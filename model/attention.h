// Attention modules: Composite Slice Attention (CST) and the full-attention baseline.
// Both own q_proj, k_proj, v_proj, o_proj (Linear D -> D with bias): the same state-dict names.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include <memory>

#include "model/config.h"

namespace cst::model {

struct SeqChunk;  // model/seq_parallel.h

// What every layer of one forward pass shares, made by the model and passed by reference: the
// positional tables (undefined when not used: full attention, or pos_emb = absolute), and what
// is known about the mask.
struct LayerContext {
  torch::Tensor local;    // P_l [W, D]
  torch::Tensor global;   // P_g [max_slices, D]
  bool all_real = false;  // true: the mask is known to be all true (full attention's SDPA
                          // path then passes no mask); false: unknown or padded
  std::shared_ptr<const SeqChunk> sp;  // sequence parallelism: x is this rank's chunk of the
                                       // sequence (CSA only); null: x is the whole sequence
};

class AttentionBase : public torch::nn::Module {
 public:
  // x [B, N, D]; mask [B, N] bool (true = real token), defined. Returns [B, N, D].
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask, const LayerContext& pos) = 0;
};

class CompositeSliceAttention : public AttentionBase {
 public:
  explicit CompositeSliceAttention(const ModelConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask, const LayerContext& pos) override;

  // The two halves, on a padded sequence xp [B, n*L, D] with mask mp [B, n*L]:
  // local part Y_l [B, n, L, D], and global part Y_g [B, n_q, D] of slices [first_query,
  // first_query + n_q) (n_q < 0: all n) from the slice embeddings [B, n, D] of all slices.
  // Under sequence parallelism (pos.sp), xp is this rank's chunk and local() exchanges the
  // halos of the projected keys and values with the neighbouring ranks (a collective).
  torch::Tensor local(const torch::Tensor& xp, const torch::Tensor& mp, const LayerContext& pos);
  torch::Tensor global(const torch::Tensor& s_bar, const torch::Tensor& slice_mask, const LayerContext& pos,
                       int64_t first_query = 0, int64_t n_q = -1);

  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  torch::Tensor agg_weight;  // [L], aggregation = linear only

 private:
  ModelConfig cfg_;
};

class FullAttention : public AttentionBase {
 public:
  explicit FullAttention(const ModelConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask, const LayerContext& pos) override;

  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  ModelConfig cfg_;
};

}  // namespace cst::model
