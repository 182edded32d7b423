// CST models: pre-norm blocks over Composite Slice Attention (or full attention for the
// baseline), a tied token embedding, and one head per task (docs/CST.md "Blocks, heads and the baseline").
//
// State-dict names (the HDF5 weight layout, docs/WEIGHTS.md):
//   tok_emb.weight [V, D]           pos_local [W, D], pos_global [max_slices, D]  (MS-VIPE)
//   abs_pos [max_seq_len, D]        (full attention, or pos_emb = absolute)
//   layers.<i>.ln1.{weight,bias}    layers.<i>.attn.{q,k,v,o}_proj.{weight,bias}
//   layers.<i>.attn.agg_weight [L]  (aggregation = linear)
//   layers.<i>.ln2.{weight,bias}    layers.<i>.ffn.fc1.{weight,bias}, layers.<i>.ffn.fc2.{...}
//   ln_f.{weight,bias}
//   mlm_head.dense.{weight,bias}, mlm_head.ln.{weight,bias}, mlm_head.bias [V]   (task = mlm)
//   cls_head.fc1.{weight,bias}, cls_head.fc2.{weight,bias}                         (task = cls)
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "common/parallel_layout.h"
#include "model/attention.h"
#include "model/config.h"
#include "model/loss.h"

namespace cst::comm {
class Communicator;
}

namespace cst::model {

class BlockImpl : public torch::nn::Module {
 public:
  explicit BlockImpl(const ModelConfig& cfg);
  // x [B, N, D], mask [B, N] bool. x + Drop(Attn(LN(x))), then x + Drop(FFN(LN(x))).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask, const LayerContext& pos);

  torch::nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  std::shared_ptr<AttentionBase> attn;
  torch::nn::Sequential ffn{nullptr};

 private:
  double dropout_;
};
TORCH_MODULE(Block);

// BERT-style MLM head: Linear, GELU, LayerNorm, then the tied token embedding plus a bias.
class MlmHeadImpl : public torch::nn::Module {
 public:
  explicit MlmHeadImpl(const ModelConfig& cfg);
  // h [B, N, D], tok_emb [V, D] -> logits [B, N, V]
  torch::Tensor forward(const torch::Tensor& h, const torch::Tensor& tok_emb);
  // The part before the decoder: LayerNorm(GELU(dense(h))), [..., D] -> [..., D].
  torch::Tensor transform(const torch::Tensor& h);
  torch::nn::Linear dense{nullptr};
  torch::nn::LayerNorm ln{nullptr};
  torch::Tensor bias;  // [V]
};
TORCH_MODULE(MlmHead);

// Classifier head: mean over real tokens, Linear, ReLU, Linear (paper A.6.1); num_classes = 1:
// one output, a regression value.
class ClsHeadImpl : public torch::nn::Module {
 public:
  explicit ClsHeadImpl(const ModelConfig& cfg);
  // h [B, N, D], mask [B, N] bool -> logits [B, num_classes]
  torch::Tensor forward(const torch::Tensor& h, const torch::Tensor& mask);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(ClsHead);

class CstModelImpl : public torch::nn::Module {
 public:
  // Validates cfg, builds and initialises (normal(0, init_std) weights, zero biases, unit LN).
  // Initialisation draws from torch's default generator: seed it first for reproducibility.
  explicit CstModelImpl(const ModelConfig& cfg);

  // input_ids [B, N] int64 in [0, V); attention_mask [B, N] bool (true = real), or undefined.
  // Returns hidden states after the final LayerNorm [B, N, D].
  torch::Tensor forward_hidden(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {});
  // The blocks and final LayerNorm on given input embeddings x [B, N, D] (no token lookup, no
  // absolute positions). For tests of attention-level properties through the whole stack.
  torch::Tensor forward_embeddings(const torch::Tensor& x, const torch::Tensor& attention_mask = {});
  // Logits: lm / mlm [B, N, V]; cls [B, num_classes] (mean over real tokens).
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {});
  // The training loss, never holding [B, N, V] logits. lm / mlm: labels [B, N] int64, -100 where
  // nothing is predicted (lm: the next tokens), cross entropy of the tied head in chunks
  // (chunked_cross_entropy; mlm: the head runs on the predicted rows only, one device sync);
  // cls: labels [B] int64 (-100 = none), or, num_classes = 1, float targets [B] (NaN = none;
  // squared error, correct not set). correct, if given, receives the number of predicted tokens (cls: examples)
  // whose argmax is the label, a scalar int64 tensor. Equal to token_loss(forward(...), labels).
  LossSum loss(const torch::Tensor& input_ids, const torch::Tensor& attention_mask, const torch::Tensor& labels,
               torch::Tensor* correct = nullptr, int64_t chunk_rows = 0);

  const ModelConfig& config() const { return cfg_; }
  LayerContext layer_context(bool all_real) const { return {pos_local, pos_global, all_real, nullptr}; }

  // Sequence parallelism (model/seq_parallel.h, docs/SEQUENCE_PARALLEL.md): from now on every
  // forward takes this rank's part of each sequence, the tokens layout.token_range(N) of N
  // (N/S a multiple of L; a forward of T tokens means N = S*T), and returns that part's outputs;
  // each forward and its backward are collectives of `group`, the layout's S sequence-parallel
  // ranks ranked by sp_rank (comm::ParallelGroups::seq). S = 1 (group may be null): whole
  // sequences. The layout's rules are checked against this model (ParallelLayout: CST with task
  // lm or mlm only, InputError otherwise). `group` must outlive every forward and backward.
  void set_sequence_parallel(const ParallelLayout& layout, comm::Communicator* group);
  // The same for a group alone: its S ranks hold one sequence, rank r of the group its r-th part.
  void set_sequence_parallel(comm::Communicator* group);
  comm::Communicator* sequence_parallel() const { return sp_group_; }
  int64_t num_parameters() const;

  torch::nn::Embedding tok_emb{nullptr};
  torch::Tensor abs_pos, pos_local, pos_global;
  torch::nn::ModuleList layers{nullptr};
  torch::nn::LayerNorm ln_f{nullptr};
  MlmHead mlm_head{nullptr};  // task = mlm
  ClsHead cls_head{nullptr};  // task = cls

 private:
  torch::Tensor full_mask(const torch::Tensor& ids_or_x, const torch::Tensor& mask) const;
  void init_weights();
  ModelConfig cfg_;
  comm::Communicator* sp_group_ = nullptr;
  ParallelLayout sp_layout_;  // the sequence-parallel ranks only (one replica); S = 1 without sp_group_
};
TORCH_MODULE(CstModel);

}  // namespace cst::model
