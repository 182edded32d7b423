#include "model/decode.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <algorithm>
#include <chrono>

#include "common/error.h"

namespace cst::model {

using at::Tensor;

Decoder::Decoder(CstModelImpl& model, int64_t batch, int64_t capacity)
    : model_(model), batch_(batch), capacity_(capacity) {
  const ModelConfig& cfg = model.config();
  CST_INPUT_CHECK(cfg.task == Task::kLm,
                  "decoding needs a causal language model (model.task = lm), got task = " << to_string(cfg.task));
  CST_INPUT_CHECK(!model.is_training(), "decoding: the model is in training mode (dropout); call eval() first");
  CST_INPUT_CHECK(model.sequence_parallel() == nullptr, "decoding: the model is set up for sequence parallelism");
  CST_INPUT_CHECK(batch >= 1, "decoding: batch = " << batch << " must be >= 1");
  CST_INPUT_CHECK(
      capacity >= 1 && capacity <= cfg.max_seq_len,
      "decoding: capacity = " << capacity << " tokens must be in [1, max_seq_len = " << cfg.max_seq_len << "]");
  torch::NoGradGuard no_grad;
  ctx_ = model.layer_context(false);
  for (const auto& layer : *model.layers) {
    BlockImpl& block = *layer->as<BlockImpl>();
    if (auto* csa = dynamic_cast<CompositeSliceAttention*>(block.attn.get()))
      caches_.push_back(make_csa_cache(*csa, cfg, ctx_, batch, capacity));
    else
      caches_.push_back(make_full_cache(dynamic_cast<FullAttention&>(*block.attn), cfg, batch, capacity));
  }
  pos_.assign(static_cast<size_t>(batch), 0);
}

Decoder::~Decoder() = default;

int64_t Decoder::cache_bytes() const {
  int64_t n = 0;
  for (const auto& c : caches_) n += c->bytes();
  return n;
}

template <typename Attn>
Tensor Decoder::blocks(Tensor x, const Attn& attn) {
  for (size_t l = 0; l < caches_.size(); ++l) {
    BlockImpl& block = *model_.layers[l]->as<BlockImpl>();
    const auto t0 = std::chrono::steady_clock::now();
    Tensor a = attn(*caches_[l], block.ln1(x));
    attn_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    x = x + a;
    x = x + block.ffn->forward(block.ln2(x));
  }
  return model_.ln_f(x);
}

Tensor Decoder::prefill(const Tensor& ids, const std::vector<int64_t>& lengths, bool all_logits) {
  torch::NoGradGuard no_grad;
  CST_CHECK(ids.dim() == 2 && ids.size(0) == batch_ && static_cast<int64_t>(lengths.size()) == batch_,
            "prefill: ids " << ids.sizes() << " and " << lengths.size() << " lengths for a batch of " << batch_);
  const int64_t T = ids.size(1);
  for (size_t b = 0; b < lengths.size(); ++b)
    CST_INPUT_CHECK(lengths[b] >= 1 && lengths[b] <= T && lengths[b] <= capacity_,
                    "prefill: prompt " << b << " has " << lengths[b] << " tokens; need 1 to min(" << T
                                       << ", capacity = " << capacity_ << ")");
  const auto dev = model_.tok_emb->weight.device();
  Tensor len = index_tensor(lengths, dev);
  Tensor mask = at::arange(T, len.options()).unsqueeze(0) < len.unsqueeze(1);  // [B, T]
  Tensor x = model_.tok_emb(ids.to(dev));
  if (model_.abs_pos.defined()) x = x + model_.abs_pos.narrow(0, 0, T);
  LayerContext ctx = ctx_;
  ctx.all_real = mask.all().item<bool>();
  Tensor h = blocks(x, [&](LayerCache& c, const Tensor& in) { return c.prefill(in, mask, lengths, ctx); });
  pos_ = lengths;
  if (all_logits) return at::linear(h, model_.tok_emb->weight);
  Tensor last = h.index({at::arange(batch_, len.options()), len - 1});  // [B, D]
  return at::linear(last, model_.tok_emb->weight);
}

Tensor Decoder::step(const Tensor& ids, const std::vector<bool>& active) {
  torch::NoGradGuard no_grad;
  CST_CHECK(ids.dim() == 1 && ids.size(0) == batch_, "step: ids " << ids.sizes() << " for a batch of " << batch_);
  CST_CHECK(active.empty() || static_cast<int64_t>(active.size()) == batch_, "step: active has " << active.size());
  for (size_t b = 0; b < pos_.size(); ++b)
    CST_INPUT_CHECK(!(active.empty() || active[b]) || pos_[b] < capacity_,
                    "decoding: row " << b << " holds " << pos_[b] << " tokens, the capacity (at most max_seq_len = "
                                     << model_.config().max_seq_len << ")");
  const auto dev = model_.tok_emb->weight.device();
  // A finished row at capacity is stepped at its last position (its state is no longer used).
  std::vector<int64_t> at_pos(pos_);
  for (int64_t& p : at_pos) p = std::min(p, capacity_ - 1);
  Tensor x = model_.tok_emb(ids.to(dev));
  if (model_.abs_pos.defined()) x = x + model_.abs_pos.index_select(0, index_tensor(at_pos, dev));
  Tensor h = blocks(x, [&](LayerCache& c, const Tensor& in) { return c.step(in, at_pos); });
  for (size_t b = 0; b < pos_.size(); ++b)
    if (active.empty() || active[b]) ++pos_[b];
  return at::linear(h, model_.tok_emb->weight);
}

}  // namespace cst::model
