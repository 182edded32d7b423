// The key/value cache of full attention (model/decode_cache.h).
#include <ATen/ATen.h>

#include <algorithm>

#include "model/csa.h"
#include "model/decode_cache.h"

namespace cst::model {

using at::Tensor;

namespace {

class FullCache final : public LayerCache {
 public:
  FullCache(FullAttention& attn, const ModelConfig& cfg, int64_t batch, int64_t capacity) : a_(attn), cfg_(cfg) {
    const auto opt = a_.q_proj->weight.options();
    k_ = at::zeros({batch, capacity, cfg.d_model}, opt);
    v_ = at::zeros({batch, capacity, cfg.d_model}, opt);
  }

  Tensor prefill(const Tensor& h, const Tensor& mask, const std::vector<int64_t>& /*len*/,
                 const LayerContext& ctx) override {
    const int64_t T = h.size(1);
    k_.narrow(1, 0, T).copy_(a_.k_proj(h));
    v_.narrow(1, 0, T).copy_(a_.v_proj(h));
    return a_.forward(h, mask, ctx);
  }

  Tensor step(const Tensor& h, const std::vector<int64_t>& pos) override {
    const int64_t B = h.size(0);
    const auto dev = h.device();
    int64_t seen = 0;
    for (int64_t p : pos) seen = std::max(seen, p + 1);
    const Tensor p = index_tensor(pos, dev), rows = at::arange(B, p.options());
    k_.index_put_({rows, p}, a_.k_proj(h));
    v_.index_put_({rows, p}, a_.v_proj(h));
    Tensor visible = at::arange(seen, p.options()).unsqueeze(0) <= p.unsqueeze(1);  // [B, seen]
    return a_.o_proj(attend_one(a_.q_proj(h), k_.narrow(1, 0, seen), v_.narrow(1, 0, seen), visible, cfg_.n_heads));
  }

  int64_t bytes() const override { return (k_.numel() + v_.numel()) * static_cast<int64_t>(k_.element_size()); }

 private:
  FullAttention& a_;
  ModelConfig cfg_;
  Tensor k_, v_;  // [B, capacity, D]: k_proj / v_proj of every token seen (with bias)
};

}  // namespace

std::unique_ptr<LayerCache> make_full_cache(FullAttention& attn, const ModelConfig& cfg, int64_t batch,
                                            int64_t capacity) {
  return std::make_unique<FullCache>(attn, cfg, batch, capacity);
}

}  // namespace cst::model
