#include "model/model.h"

#include <ATen/ATen.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/dropout.h>

#include "comm/communicator.h"
#include "common/error.h"
#include "model/activation_checkpoint.h"
#include "model/global_range.h"
#include "model/seq_parallel.h"

namespace cst::model {

using torch::Tensor;
namespace nn = torch::nn;

namespace {
nn::LayerNorm make_ln(const ModelConfig& cfg) {
  return nn::LayerNorm(nn::LayerNormOptions({cfg.d_model}).eps(cfg.layer_norm_eps));
}
}  // namespace

BlockImpl::BlockImpl(const ModelConfig& cfg) : dropout_(cfg.dropout) {
  ln1 = register_module("ln1", make_ln(cfg));
  if (cfg.arch == Arch::kCst)
    attn = register_module("attn", std::make_shared<CompositeSliceAttention>(cfg));
  else
    attn = register_module("attn", std::make_shared<FullAttention>(cfg));
  ln2 = register_module("ln2", make_ln(cfg));
  nn::Sequential seq;
  seq->push_back("fc1", nn::Linear(cfg.d_model, cfg.d_ff));
  seq->push_back("act", nn::GELU());
  seq->push_back("drop", nn::Dropout(cfg.dropout));
  seq->push_back("fc2", nn::Linear(cfg.d_ff, cfg.d_model));
  ffn = register_module("ffn", seq);
}

Tensor BlockImpl::forward(const Tensor& x, const Tensor& mask, const LayerContext& pos) {
  Tensor h = attn->forward(ln1(x), mask, pos);
  Tensor y = x + (is_training() && dropout_ > 0 ? at::dropout(h, dropout_, true) : h);
  Tensor f = ffn->forward(ln2(y));
  return y + (is_training() && dropout_ > 0 ? at::dropout(f, dropout_, true) : f);
}

MlmHeadImpl::MlmHeadImpl(const ModelConfig& cfg) {
  dense = register_module("dense", nn::Linear(cfg.d_model, cfg.d_model));
  ln = register_module("ln", make_ln(cfg));
  bias = register_parameter("bias", torch::zeros({cfg.vocab_size}));
}

Tensor MlmHeadImpl::transform(const Tensor& h) { return ln(torch::gelu(dense(h))); }

Tensor MlmHeadImpl::forward(const Tensor& h, const Tensor& tok_emb) { return at::linear(transform(h), tok_emb, bias); }

ClsHeadImpl::ClsHeadImpl(const ModelConfig& cfg) {
  fc1 = register_module("fc1", nn::Linear(cfg.d_model, cfg.d_model));
  fc2 = register_module("fc2", nn::Linear(cfg.d_model, cfg.num_classes));
}

Tensor ClsHeadImpl::forward(const Tensor& h, const Tensor& mask) {
  Tensor m = mask.unsqueeze(-1).to(h.scalar_type());
  Tensor pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0);
  return fc2(torch::relu(fc1(pooled)));
}

CstModelImpl::CstModelImpl(const ModelConfig& cfg) : cfg_(cfg) {
  cfg_.validate();
  tok_emb = register_module("tok_emb", nn::Embedding(cfg.vocab_size, cfg.d_model));
  if (cfg.effective_pos_emb() == PosEmb::kAbsolute) {
    abs_pos = register_parameter("abs_pos", torch::zeros({cfg.max_seq_len, cfg.d_model}));
  } else {
    pos_local = register_parameter("pos_local", torch::zeros({cfg.window(), cfg.d_model}));
    pos_global = register_parameter("pos_global", torch::zeros({cfg.max_slices(), cfg.d_model}));
  }
  layers = register_module("layers", nn::ModuleList());
  for (int64_t i = 0; i < cfg.n_layers; ++i) layers->push_back(Block(cfg));
  ln_f = register_module("ln_f", make_ln(cfg));
  if (cfg.task == Task::kMlm) mlm_head = register_module("mlm_head", MlmHead(cfg));
  if (cfg.task == Task::kCls) cls_head = register_module("cls_head", ClsHead(cfg));
  init_weights();
}

void CstModelImpl::init_weights() {
  torch::NoGradGuard no_grad;
  for (const auto& m : modules(/*include_self=*/false)) {
    if (auto* ln = m->as<nn::LayerNormImpl>()) {
      ln->weight.fill_(1.0);
      ln->bias.zero_();
    } else if (auto* lin = m->as<nn::LinearImpl>()) {
      lin->weight.normal_(0.0, cfg_.init_std);
      lin->bias.zero_();
    } else if (auto* emb = m->as<nn::EmbeddingImpl>()) {
      emb->weight.normal_(0.0, cfg_.init_std);
    } else if (auto* att = m->as<CompositeSliceAttention>(); att && att->agg_weight.defined()) {
      att->agg_weight.fill_(1.0 / static_cast<double>(cfg_.slice_len));
    }
  }
  for (Tensor* t : {&abs_pos, &pos_local, &pos_global})
    if (t->defined()) t->normal_(0.0, cfg_.init_std);
  if (mlm_head) mlm_head->bias.zero_();
}

int64_t CstModelImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

Tensor CstModelImpl::full_mask(const Tensor& ids_or_x, const Tensor& mask) const {
  if (mask.defined()) {
    CST_CHECK(mask.dim() == 2 && mask.size(0) == ids_or_x.size(0) && mask.size(1) == ids_or_x.size(1),
              "attention_mask shape " << mask.sizes() << " does not match input " << ids_or_x.sizes());
    return mask.to(at::kBool);
  }
  return at::ones({ids_or_x.size(0), ids_or_x.size(1)}, ids_or_x.options().dtype(at::kBool));
}

void CstModelImpl::set_sequence_parallel(const ParallelLayout& layout, comm::Communicator* group) {
  CST_CHECK(!layout.seq_parallel() || (group != nullptr && group->size() == layout.sp_size() &&
                                       group->rank() == layout.sp_rank() && layout.slice_len() == cfg_.slice_len),
            "sequence parallelism: the group does not hold the layout's " << layout.sp_size()
                                                                          << " ranks of L = " << layout.slice_len());
  LayoutSpec spec;  // this model under the layout's sequence-parallel part, checked by ParallelLayout
  spec.world_size = layout.sp_size(), spec.rank = layout.sp_rank(), spec.seq_parallel = layout.sp_size();
  spec.slice_len = cfg_.slice_len;
  spec.full_attention = cfg_.arch == Arch::kFull;
  spec.classifier = cfg_.task == Task::kCls;
  sp_layout_ = ParallelLayout(spec);
  sp_group_ = sp_layout_.seq_parallel() ? group : nullptr;
}

void CstModelImpl::set_sequence_parallel(comm::Communicator* group) {
  LayoutSpec spec;
  if (group != nullptr) spec.world_size = group->size(), spec.rank = group->rank(), spec.seq_parallel = group->size();
  spec.slice_len = cfg_.slice_len;
  set_sequence_parallel(ParallelLayout(spec), group);
}

Tensor CstModelImpl::forward_embeddings(const Tensor& x, const Tensor& attention_mask) {
  Tensor mask = full_mask(x, attention_mask);
  // Only fused kernels ask (full attention's SDPA path; CSA's variable-length kernel on CUDA);
  // knowing it costs a device sync, once per forward.
  const bool ask =
      cfg_.full_sdpa || (cfg_.arch == Arch::kCst && cfg_.csa_kernel != CsaKernel::kExplicit && x.is_cuda());
  const bool all_real = !attention_mask.defined() || (ask && mask.all().item<bool>());
  LayerContext pos = layer_context(all_real);
  if (sp_group_)
    pos.sp = std::make_shared<SeqChunk>(SeqChunk::make(
        *sp_group_, mask, attention_mask.defined(), sp_layout_.chunk_offset(x.size(1)), cfg_.slice_len,
        cfg_.extension(), cfg_.causal(), csa::range_row_cost(x.device(), is_training() ? cfg_.dropout : 0.0)));
  const bool checkpoint = cfg_.activation_checkpointing && is_training();
  Tensor h = x;
  for (const auto& layer : *layers) {
    // Each layer sees its own alias of the shared tables, so their gradients are summed per
    // layer first: the same order of additions with and without checkpointing.
    LayerContext lp = pos;
    if (lp.local.defined()) lp.local = lp.local.alias();
    if (lp.global.defined()) lp.global = lp.global.alias();
    BlockImpl& block = *layer->as<BlockImpl>();
    auto forward = [&block, mask](const Tensor& x, const LayerContext& c) { return block.forward(x, mask, c); };
    h = checkpoint ? checkpointed_block(forward, block.parameters(), h, lp) : forward(h, lp);
  }
  return ln_f(h);
}

Tensor CstModelImpl::forward_hidden(const Tensor& input_ids, const Tensor& attention_mask) {
  CST_CHECK(input_ids.dim() == 2, "input_ids must be [batch, seq], got " << input_ids.sizes());
  const int64_t N = input_ids.size(1), offset = sp_layout_.chunk_offset(N);
  CST_CHECK(N >= 1 && offset + N <= cfg_.max_seq_len,
            "sequence length " << offset + N << " is outside [1, max_seq_len = " << cfg_.max_seq_len << "]");
  Tensor x = tok_emb(input_ids);
  if (abs_pos.defined()) x = x + abs_pos.narrow(0, offset, N);
  if (is_training() && cfg_.dropout > 0) x = at::dropout(x, cfg_.dropout, true);
  return forward_embeddings(x, attention_mask);
}

Tensor CstModelImpl::forward(const Tensor& input_ids, const Tensor& attention_mask) {
  Tensor h = forward_hidden(input_ids, attention_mask);
  switch (cfg_.task) {
    case Task::kLm: return at::linear(h, tok_emb->weight);  // tied LM head
    case Task::kMlm: return mlm_head->forward(h, tok_emb->weight);
    case Task::kCls: return cls_head->forward(h, full_mask(input_ids, attention_mask));
  }
  CST_THROW("unknown task");
}

LossSum CstModelImpl::loss(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& labels, Tensor* correct,
                           int64_t chunk_rows) {
  if (cfg_.task == Task::kCls) {
    Tensor logits = forward(input_ids, attention_mask);
    if (cfg_.num_classes == 1) return regression_loss(logits.squeeze(-1), labels);
    if (correct) *correct = logits.argmax(-1).eq(labels).sum();
    return cls_loss(logits, labels);
  }
  CST_CHECK(labels.sizes() == input_ids.sizes(),
            "loss: labels " << labels.sizes() << " do not match input_ids " << input_ids.sizes());
  Tensor h = forward_hidden(input_ids, attention_mask);
  Tensor rows = h.reshape({-1, h.size(-1)}), y = labels.reshape({-1});
  if (cfg_.task == Task::kLm) return chunked_cross_entropy(rows, tok_emb->weight, {}, y, chunk_rows, correct);
  Tensor picked = y.ne(-100).nonzero().squeeze(1);  // MLM: the head on predicted rows only
  return chunked_cross_entropy(mlm_head->transform(rows.index_select(0, picked)), tok_emb->weight, mlm_head->bias,
                               y.index_select(0, picked), chunk_rows, correct);
}

}  // namespace cst::model
