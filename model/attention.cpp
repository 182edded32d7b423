#include "model/attention.h"

#include <ATen/ATen.h>

#include <cmath>

#include "common/error.h"
#include "model/csa.h"
#include "model/seq_parallel.h"

namespace cst::model {
namespace {

using torch::Tensor;

// [B, n, T, D] -> [B, H, n, T, d]
Tensor split_heads5(const Tensor& x, int64_t n_heads) {
  const int64_t b = x.size(0), n = x.size(1), t = x.size(2), dm = x.size(3);
  return x.reshape({b, n, t, n_heads, dm / n_heads}).permute({0, 3, 1, 2, 4});
}

// [B, H, n, T, d] -> [B, n, T, D]
Tensor merge_heads5(const Tensor& x) {
  const int64_t b = x.size(0), h = x.size(1), n = x.size(2), t = x.size(3), d = x.size(4);
  return x.permute({0, 2, 3, 1, 4}).reshape({b, n, t, h * d});
}

void make_projections(torch::nn::Module& m, const ModelConfig& cfg, torch::nn::Linear& q,
                      torch::nn::Linear& k, torch::nn::Linear& v, torch::nn::Linear& o) {
  q = m.register_module("q_proj", torch::nn::Linear(cfg.d_model, cfg.d_model));
  k = m.register_module("k_proj", torch::nn::Linear(cfg.d_model, cfg.d_model));
  v = m.register_module("v_proj", torch::nn::Linear(cfg.d_model, cfg.d_model));
  o = m.register_module("o_proj", torch::nn::Linear(cfg.d_model, cfg.d_model));
}

}  // namespace

CompositeSliceAttention::CompositeSliceAttention(const ModelConfig& cfg) : cfg_(cfg) {
  make_projections(*this, cfg, q_proj, k_proj, v_proj, o_proj);
  if (cfg.aggregation == Aggregation::kLinear)
    agg_weight = register_parameter("agg_weight", torch::full({cfg.slice_len}, 1.0 / cfg.slice_len));
}

Tensor CompositeSliceAttention::local(const Tensor& xp, const Tensor& mp, const LayerContext& pos) {
  const int64_t L = cfg_.slice_len, e = cfg_.extension(), H = cfg_.n_heads;
  const bool causal = cfg_.causal();
  Tensor s = csa::to_slices(xp, L);                                   // [B, n, L, D]
  // Q_l = (S + P_l[e : e+L]) W_q
  Tensor q_in = pos.local.defined() ? s + pos.local.narrow(0, e, L) : s;
  Tensor q = split_heads5(q_proj(q_in), H);                       // [B, H, n, L, d]
  // K_l = (S_ext + P_l) W_k = ext(X W_k) + P_l W_k^T (linearity: project N tokens, not alpha*N)
  Tensor k = k_proj(xp), v = v_proj(xp);
  Tensor halo[4], mask_halo[2];  // K, V left (right) halos; key-mask halos
  if (pos.sp && e > 0) {         // the neighbouring ranks' boundary tokens, one message per side
    std::vector<Tensor> h = halo_exchange(*pos.sp->group, {k, v}, e, !causal);
    for (size_t i = 0; i < h.size(); ++i) halo[i] = h[i];
    mask_halo[0] = pos.sp->mask_left, mask_halo[1] = pos.sp->mask_right;
  }
  Tensor k_ext = csa::extend(k, L, e, causal, halo[0], halo[2]);  // [B, n, W, D]
  if (pos.local.defined()) k_ext = k_ext + at::matmul(pos.local, k_proj->weight.t());
  Tensor v_ext = csa::extend(v, L, e, causal, halo[1], halo[3]);                // V_l = S_ext W_v
  Tensor key_mask = csa::extend(mp, L, e, causal, mask_halo[0], mask_halo[1]);  // [B, n, W]
  Tensor y = csa::local_attention(q, split_heads5(k_ext, H), split_heads5(v_ext, H), key_mask, e,
                                  causal, cfg_.dropout, is_training());
  return merge_heads5(y);                                          // [B, n, L, D]
}

Tensor CompositeSliceAttention::global(const Tensor& s_bar, const Tensor& slice_mask, const LayerContext& pos,
                                       int64_t first_query, int64_t n_q) {
  const int64_t n = s_bar.size(1), H = cfg_.n_heads;
  Tensor qk_in = pos.global.defined() ? s_bar + pos.global.narrow(0, 0, n) : s_bar;
  Tensor q = csa::split_heads(q_proj(qk_in), H);                  // [B, H, n, d]
  Tensor k = csa::split_heads(k_proj(qk_in), H);
  Tensor v = csa::split_heads(v_proj(s_bar), H);
  Tensor y = csa::global_attention(q, k, v, slice_mask, cfg_.causal(), cfg_.dropout, is_training(), first_query, n_q);
  return csa::merge_heads(y);  // [B, n_q, D]
}

Tensor CompositeSliceAttention::forward(const Tensor& x, const Tensor& mask, const LayerContext& pos) {
  const int64_t N = x.size(1), L = cfg_.slice_len;
  const SeqChunk* sp = pos.sp.get();
  const int64_t n_total = sp ? sp->total_slices * L : N;
  CST_CHECK(n_total <= cfg_.max_seq_len,
            "CSA: sequence length " << n_total << " exceeds max_seq_len = " << cfg_.max_seq_len);
  CST_CHECK(!sp || N % L == 0, "CSA: a sequence-parallel chunk of " << N << " tokens is not a multiple of L = " << L);
  auto [xp, mp] = csa::pad_to_slices(x, mask, L);
  Tensor ms = csa::to_slices(mp, L);                                  // [B, n, L]
  Tensor slice_mask = ms.any(-1);                                 // [B, n]
  // Global attention for this chunk's slices: over the slice embeddings of every rank under
  // sequence parallelism (an all-gather; its backward is a reduce-scatter).
  auto global_part = [&](const Tensor& s) {
    return sp ? global(all_gather_seq(*sp->group, s), sp->slice_mask_all, pos, sp->first_slice, s.size(1))
              : global(s, slice_mask, pos);
  };
  Tensor y;                                                       // [B, n, L, D]
  switch (cfg_.composition) {
    case Composition::kLocalGlobal: {  // global attention reads the local output
      Tensor y_l = local(xp, mp, pos);
      Tensor y_g = global_part(csa::pool_slices(y_l, ms, cfg_.aggregation, agg_weight));
      y = csa::broadcast_add(y_l, y_g);
      break;
    }
    case Composition::kGlobalLocal: {  // local attention reads input + global output
      Tensor s_in = csa::pool_slices(csa::to_slices(xp, L), ms, cfg_.aggregation, agg_weight);
      Tensor y_g = global_part(s_in);
      Tensor g_tok = y_g.unsqueeze(2).expand_as(csa::to_slices(xp, L)).reshape_as(xp);
      y = csa::broadcast_add(local(xp + g_tok, mp, pos), y_g);
      break;
    }
    case Composition::kParallel: {  // both read the input (H-Transformer style)
      Tensor s_in = csa::pool_slices(csa::to_slices(xp, L), ms, cfg_.aggregation, agg_weight);
      y = csa::broadcast_add(local(xp, mp, pos), global_part(s_in));
      break;
    }
  }
  return o_proj(y.flatten(1, 2).narrow(1, 0, N));
}

FullAttention::FullAttention(const ModelConfig& cfg) : cfg_(cfg) {
  make_projections(*this, cfg, q_proj, k_proj, v_proj, o_proj);
}

Tensor FullAttention::forward(const Tensor& x, const Tensor& mask, const LayerContext& ctx) {
  const int64_t N = x.size(1), H = cfg_.n_heads;
  Tensor q = csa::split_heads(q_proj(x), H), k = csa::split_heads(k_proj(x), H);
  Tensor v = csa::split_heads(v_proj(x), H);
  // Who may attend to whom: [B, 1, 1, N] key padding, and [B, 1, N, N] when causal.
  auto attend = [&] {
    Tensor m = mask.unsqueeze(1).unsqueeze(2);
    return cfg_.causal() ? m.logical_and(at::ones({N, N}, mask.options()).tril()) : m;
  };
  if (cfg_.full_sdpa) {
    const double p = is_training() ? cfg_.dropout : 0.0;
    Tensor o = ctx.all_real  // no padding: no mask, so the flash kernels qualify
                   ? at::scaled_dot_product_attention(q, k, v, {}, p, cfg_.causal())
                   : at::scaled_dot_product_attention(q, k, v, attend(), p);
    return o_proj(csa::merge_heads(o));
  }
  Tensor scores = at::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(q.size(-1)));
  Tensor p = csa::masked_softmax(scores, attend());
  if (is_training() && cfg_.dropout > 0) p = at::dropout(p, cfg_.dropout, true);
  return o_proj(csa::merge_heads(at::matmul(p, v)));
}

}  // namespace cst::model
