// Attention modules: Composite Slice Attention (CST) and the full-attention baseline.
// Both own q_proj, k_proj, v_proj, o_proj (Linear D -> D with bias): the same state-dict names.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include <functional>
#include <memory>
#include <utility>

#include "model/config.h"
#include "model/csa_dispatch.h"

namespace cst::model {

struct SeqChunk;  // model/seq_parallel.h

// What every layer of one forward pass shares, made by the model and passed by reference: the
// positional tables (undefined when not used: full attention, or pos_emb = absolute), and what
// is known about the mask.
struct LayerContext {
  torch::Tensor local;    // P_l [W, D]
  torch::Tensor global;   // P_g [max_slices, D]
  bool all_real = false;  // true: the mask is known to be all true (fused kernels then need no
                          // per-token mask); false: unknown or padded
  // Sequence parallelism: x is this rank's chunk of the sequence (CSA only); null: x is the
  // whole sequence.
  std::shared_ptr<const SeqChunk> sp = nullptr;
};

// Projected keys and values from beyond one end of a chunk: model/local_attention.h.
using csa::KvHalo;

class AttentionBase : public torch::nn::Module {
 public:
  // x [B, N, D]; mask [B, N] bool (true = real token), defined. Returns [B, N, D].
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask, const LayerContext& pos) = 0;
};

class CompositeSliceAttention : public AttentionBase {
 public:
  explicit CompositeSliceAttention(const ModelConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask, const LayerContext& pos) override;

  // The two halves, callable on one rank's chunk under sequence parallelism.
  // local: Y_l [B, n, L, D] of a padded chunk xp [B, n*L, D] with mask mp [B, n*L] (true = real),
  // whose first `tokens` rows are the input (-1: all n*L; the rest is pad_to_slices' padding).
  // left / right: the keys and values beyond the chunk's ends (right: bidirectional only; a
  // right halo needs a full last slice).
  torch::Tensor local(const torch::Tensor& xp, const torch::Tensor& mp, const LayerContext& pos,
                      const KvHalo& left = {}, const KvHalo& right = {}, int64_t tokens = -1);
  // global: Y_g [B, n_q, D] of slices [first_query, first_query + n_q) (n_q < 0: all n) from
  // slice embeddings s_bar [B, n, D] of the whole sequence (all ranks' slices, in order) with
  // slice_mask [B, n] (slice has a real token).
  torch::Tensor global(const torch::Tensor& s_bar, const torch::Tensor& slice_mask, const LayerContext& pos,
                       int64_t first_query = 0, int64_t n_q = -1);
  // The composition and output projection: (Y_l + Y_g broadcast over each slice's L tokens) W_o^T
  // + b, [B, n, L, D] and [B, n, D] -> [B, n*L, D].
  torch::Tensor output(const torch::Tensor& y_local, const torch::Tensor& y_global);

  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  torch::Tensor agg_weight;  // [L], aggregation = linear only

 private:
  bool fused() const;  // model.csa_kernel resolved: fused kernels for this training mode?
  // When fused(): the local kernel for queries q (after projection, so the autocast dtype) with
  // or without a per-token key mask, for this device, dtype and training mode.
  csa::LocalKernel local_kernel(const torch::Tensor& q, bool per_token_mask) const;
  // Y_g [B, n, D] of this chunk's slices from their slice embeddings [B, n, D]: under sequence
  // parallelism (pos.sp) through an all-gather of every rank's (a collective). independent
  // (optional): work that needs nothing of Y_g, run exactly once before Y_g is computed (under
  // sequence parallelism while the all-gather is in flight: all_gather_seq).
  torch::Tensor global_part(const torch::Tensor& s, const torch::Tensor& slice_mask, const LayerContext& pos,
                            const std::function<void()>& independent = {});
  // Y_l [B, n, L, D] of this chunk: under sequence parallelism with the e boundary tokens of the
  // neighbouring ranks' local input x_in [B, n*L, D] (a collective), projected here.
  torch::Tensor local_part(const torch::Tensor& x_in, const torch::Tensor& mp, const LayerContext& pos, int64_t tokens);
  // Y_g W_o^T [B, n, D] of the local-global composition from Y_l [B, n, L, D] (pooled inside),
  // recomputed in backward when fused and without dropout (under sequence parallelism from the
  // gathered slice embeddings: the all-gather is not repeated). independent: as for global_part.
  torch::Tensor global_of_local(const torch::Tensor& y_l, const torch::Tensor& ms, const torch::Tensor& slice_mask,
                                const LayerContext& pos, const std::function<void()>& independent = {});
  // o_proj(Y_l) + global_out broadcast over each slice: [B, n*L, D].
  torch::Tensor project(const torch::Tensor& y_local, const torch::Tensor& global_out);
  // out_local [B, n, L, D] (o_proj(Y_l), added to in place) + global_out [B, n, D] broadcast
  // over each slice: [B, n*L, D].
  torch::Tensor compose(torch::Tensor out_local, const torch::Tensor& global_out);
  // The halos (left, right) of local(), asked for once, after the chunk's q, k, v projections:
  // under sequence parallelism it waits for the halo exchange started before them.
  using HaloSource = std::function<std::pair<KvHalo, KvHalo>()>;
  torch::Tensor local_with(const torch::Tensor& xp, const torch::Tensor& mp, const LayerContext& pos,
                           const HaloSource& halos, int64_t tokens);
  torch::Tensor local_explicit(const torch::Tensor& xp, const torch::Tensor& mp, const LayerContext& pos,
                               const HaloSource& halos);
  ModelConfig cfg_;
  csa::VarlenPlanCache plans_;  // index tensors of the variable-length kernel, per geometry
};

// Who may attend to whom in full attention: mask [B, N] (true = real) -> [B, 1, 1, N] key
// padding, and [B, 1, N, N] (also key <= query) when causal.
torch::Tensor full_attention_mask(const torch::Tensor& mask, bool causal);

class FullAttention : public AttentionBase {
 public:
  explicit FullAttention(const ModelConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask, const LayerContext& pos) override;

  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  ModelConfig cfg_;
};

}  // namespace cst::model
