#include "model/attention.h"

#include <ATen/ATen.h>

#include <cmath>
#include <optional>
#include <utility>

#include "comm/communicator.h"
#include "common/error.h"
#include "model/csa.h"
#include "model/recompute.h"
#include "model/seq_parallel.h"
#ifdef CST_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

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

void make_projections(torch::nn::Module& m, const ModelConfig& cfg, torch::nn::Linear& q, torch::nn::Linear& k,
                      torch::nn::Linear& v, torch::nn::Linear& o) {
  q = m.register_module("q_proj", torch::nn::Linear(cfg.d_model, cfg.d_model));
  k = m.register_module("k_proj", torch::nn::Linear(cfg.d_model, cfg.d_model));
  v = m.register_module("v_proj", torch::nn::Linear(cfg.d_model, cfg.d_model));
  o = m.register_module("o_proj", torch::nn::Linear(cfg.d_model, cfg.d_model));
}

// The key mask [B, e] of a halo: a neighbour's tokens are real unless its mask says not;
// undefined without a neighbour.
Tensor halo_key_mask(const KvHalo& h, int64_t batch, int64_t e, const at::TensorOptions& opt) {
  return h.k.defined() && !h.mask.defined() ? at::ones({batch, e}, opt) : h.mask;
}

// The weights of the global branch: the module's, or their copies when it is recomputed.
struct GlobalWeights {
  Tensor p_g, wq, bq, wk, bk, wv, bv;  // p_g: P_g, or undefined (no MS-VIPE)
};

// Slice embeddings s_bar [B, n, D] -> Y_g [B, n_q, D] of slices [first_query, first_query + n_q)
// (n_q < 0: all). slice_mask [B, n] or, with fused kernels, undefined (every slice real).
Tensor global_branch(const Tensor& s_bar, const Tensor& slice_mask, const GlobalWeights& w, int64_t H, bool causal,
                     bool fused, double dropout, bool training, int64_t first_query, int64_t n_q) {
  const int64_t n = s_bar.size(1);
  Tensor qk_in = w.p_g.defined() ? s_bar + w.p_g.narrow(0, 0, n) : s_bar;
  Tensor q = csa::split_heads(at::linear(qk_in, w.wq, w.bq), H);  // [B, H, n, d]
  Tensor k = csa::split_heads(at::linear(qk_in, w.wk, w.bk), H);
  Tensor v = csa::split_heads(at::linear(s_bar, w.wv, w.bv), H);
  Tensor y = fused ? csa::global_attention_sdpa(q, k, v, slice_mask, causal, dropout, training, first_query, n_q)
                   : csa::global_attention(q, k, v, slice_mask, causal, dropout, training, first_query, n_q);
  return csa::merge_heads(y);  // [B, n_q, D]
}

}  // namespace

CompositeSliceAttention::CompositeSliceAttention(const ModelConfig& cfg) : cfg_(cfg) {
  make_projections(*this, cfg, q_proj, k_proj, v_proj, o_proj);
  if (cfg.aggregation == Aggregation::kLinear)
    agg_weight = register_parameter("agg_weight", torch::full({cfg.slice_len}, 1.0 / cfg.slice_len));
}

bool CompositeSliceAttention::fused() const {
  if (cfg_.csa_kernel == CsaKernel::kExplicit) return false;
  // auto: on CPU, attention dropout leaves SDPA only its unfused math path; explicit is as fast.
  return cfg_.csa_kernel == CsaKernel::kFused || !(is_training() && cfg_.dropout > 0 && !q_proj->weight.is_cuda());
}

csa::LocalKernel CompositeSliceAttention::local_kernel(const Tensor& q, bool per_token_mask) const {
  if (q.is_cuda()) {
    const int64_t d = cfg_.head_dim();
    const bool half = q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf;
    bool sm80 = false;
#ifdef CST_WITH_CUDA
    sm80 = at::cuda::getDeviceProperties(q.get_device())->major >= 8;
#endif
    if (half && d % 8 == 0 && d <= 256 && sm80 && !per_token_mask) return csa::LocalKernel::kFlashVarlen;
    return csa::LocalKernel::kSdpaBlocks;
  }
  return (is_training() && cfg_.dropout > 0) ? csa::LocalKernel::kSdpaBlocks : csa::LocalKernel::kFlashCpu;
}

Tensor CompositeSliceAttention::local_explicit(const Tensor& xp, const Tensor& mp, const LayerContext& pos,
                                               const HaloSource& halos) {
  const int64_t L = cfg_.slice_len, e = cfg_.extension(), H = cfg_.n_heads;
  const bool causal = cfg_.causal();
  Tensor s = csa::to_slices(xp, L);  // [B, n, L, D]
  // Q_l = (S + P_l[e : e+L]) W_q
  Tensor q_in = pos.local.defined() ? s + pos.local.narrow(0, e, L) : s;
  Tensor q = split_heads5(q_proj(q_in), H);  // [B, H, n, L, d]
  Tensor k = k_proj(xp), v = v_proj(xp);
  const auto [left, right] = halos();  // the chunk's projections are done
  // K_l = (S_ext + P_l) W_k = ext(X W_k) + P_l W_k^T (linearity: project N tokens, not alpha*N)
  Tensor k_ext = csa::extend(k, L, e, causal, left.k, right.k);  // [B, n, W, D]
  if (pos.local.defined()) k_ext = k_ext + at::matmul(pos.local, k_proj->weight.t());
  Tensor v_ext = csa::extend(v, L, e, causal, left.v, right.v);  // V_l = S_ext W_v
  const int64_t B = xp.size(0);
  Tensor key_mask = csa::extend(mp, L, e, causal, halo_key_mask(left, B, e, mp.options()),
                                halo_key_mask(right, B, e, mp.options()));  // [B, n, W]
  Tensor y = csa::local_attention(q, split_heads5(k_ext, H), split_heads5(v_ext, H), key_mask, e, causal, cfg_.dropout,
                                  is_training());
  return merge_heads5(y);  // [B, n, L, D]
}

Tensor CompositeSliceAttention::local(const Tensor& xp, const Tensor& mp, const LayerContext& pos, const KvHalo& left,
                                      const KvHalo& right, int64_t tokens) {
  return local_with(
      xp, mp, pos, [&] { return std::make_pair(left, right); }, tokens);
}

Tensor CompositeSliceAttention::local_with(const Tensor& xp, const Tensor& mp, const LayerContext& pos,
                                           const HaloSource& halos, int64_t tokens) {
  const int64_t L = cfg_.slice_len, e = cfg_.extension(), B = xp.size(0), NL = xp.size(1);
  const bool causal = cfg_.causal();
  if (!fused()) return local_explicit(xp, mp, pos, halos);
  // Q_l = S W_q + b + (P_l[e : e+L] W_q^T)[i]: linearity again, so that q, k and v all project xp.
  Tensor q = q_proj(xp);
  if (pos.local.defined())
    q = (csa::to_slices(q, L) + at::matmul(pos.local.narrow(0, e, L), q_proj->weight.t())).view_as(q);
  Tensor k = k_proj(xp), v = v_proj(xp);
  const auto [left, right] = halos();  // the chunk's projections are done
  CST_CHECK(!(causal && right.k.defined()), "CSA: a causal chunk takes no right halo");
  const bool per_token_mask =
      !pos.all_real || (left.k.defined() && left.mask.defined()) || (right.k.defined() && right.mask.defined());
  const csa::LocalKernel kernel = local_kernel(q, per_token_mask);
  csa::LocalGeometry g;
  g.slice_len = L, g.ext = e, g.causal = causal, g.heads = cfg_.n_heads;
  g.tokens = tokens < 0 ? NL : tokens;
  g.left_halo = left.k.defined(), g.right_halo = right.k.defined();
  Tensor key_mask;
  if (per_token_mask) {  // over the key sequence: halos (real unless their mask says not), the chunk
    key_mask =
        csa::key_sequence(mp, halo_key_mask(left, B, e, mp.options()), halo_key_mask(right, B, e, mp.options()), g);
  }
  Tensor y = csa::local_attention_fused(q, k, v, left, right, pos.local, k_proj->weight, key_mask, g, kernel,
                                        cfg_.dropout, is_training(), nullptr, &plans_);
  return csa::to_slices(y, L);  // [B, n, L, D]
}

namespace {
// The inputs of the recomputed global branch of the local-global composition, by name:
// first = Y_l [B, n, L, D] (or, under sequence parallelism, the gathered slice embeddings
// [B, n, D]), ms its token mask [B, n, L], the projection weights, and (undefined where absent)
// the slice mask, P_g and the linear aggregation weights.
struct GlobalOfLocalInputs {
  Tensor first, ms, wq, bq, wk, bk, wv, bv, wo, mask, p_g, agg;

  std::vector<Tensor> list() const { return {first, ms, wq, bq, wk, bk, wv, bv, wo, mask, p_g, agg}; }
  static GlobalOfLocalInputs from(const std::vector<Tensor>& t) {
    return {t.at(0), t.at(1), t.at(2), t.at(3), t.at(4),  t.at(5),
            t.at(6), t.at(7), t.at(8), t.at(9), t.at(10), t.at(11)};
  }
};

// Whether every slice of the whole sequence is known real: under sequence parallelism pos.all_real
// speaks of this rank's chunk only, and the gathered slices are known real only when the
// sequence came without a mask.
bool all_slices_real(const LayerContext& pos) { return pos.sp ? !pos.sp->masked : pos.all_real; }

// The query slices [first, first + n) whose global attention this rank computes (n < 0: all),
// and whether rows_to_chunks must return them to their owners: under sequence parallelism a
// balanced share (SeqChunk::balance_global, the same on every rank; the range kernels score only
// visible pairs), else the rank's own `own` slices.
struct QueryRange {
  int64_t first = 0, n = -1;
  bool moved = false;
};
QueryRange query_range(const SeqChunk* sp, int64_t own) {
  if (!sp) return {};
  if (sp->balance_global) return {sp->global_first, sp->global_rows, true};
  return {sp->first_slice, own, false};
}
}  // namespace

Tensor CompositeSliceAttention::global(const Tensor& s_bar, const Tensor& slice_mask, const LayerContext& pos,
                                       int64_t first_query, int64_t n_q) {
  const GlobalWeights w{pos.global,   q_proj->weight, q_proj->bias, k_proj->weight,
                        k_proj->bias, v_proj->weight, v_proj->bias};
  const bool f = fused();
  return global_branch(s_bar, f && all_slices_real(pos) ? Tensor() : slice_mask, w, cfg_.n_heads, cfg_.causal(), f,
                       cfg_.dropout, is_training(), first_query, n_q);
}

Tensor CompositeSliceAttention::global_part(const Tensor& s, const Tensor& slice_mask, const LayerContext& pos,
                                            const std::function<void()>& independent) {
  const SeqChunk* sp = pos.sp.get();
  if (!sp) {
    if (independent) independent();
    return global(s, slice_mask, pos);
  }
  const Tensor all = all_gather_seq(*sp->group, s, independent);
  const QueryRange q = query_range(sp, s.size(1));
  const Tensor y_g = global(all, sp->slice_mask_all, pos, q.first, q.n);
  return q.moved ? rows_to_chunks(*sp->group->comm, y_g, q.first, s.size(1)) : y_g;
}

Tensor CompositeSliceAttention::local_part(const Tensor& x_in, const Tensor& mp, const LayerContext& pos,
                                           int64_t tokens) {
  const SeqChunk* sp = pos.sp.get();
  const int64_t e = cfg_.extension();
  if (!sp || e == 0) return local(x_in, mp, pos, {}, {}, tokens);
  // One message per side of D values per token (the local input), not 2D (keys and values),
  // started before the chunk's projections and waited for after them (SeqGroup::overlap).
  SeqGroup& group = *sp->group;
  PendingHalo pending = start_halo_exchange(*group.comm, x_in, e, !cfg_.causal(), group.times, group.overlap);
  std::optional<Halo> h;
  if (!group.overlap) h = pending.wait();
  auto halos = [&] {
    if (!h) h = pending.wait();
    auto kv = [&](const Tensor& t, const Tensor& m) { return KvHalo{k_proj(t), v_proj(t), sp->masked ? m : Tensor()}; };
    const KvHalo left = sp->has_left() ? kv(h->left, sp->mask_left) : KvHalo{};  // none at the sequence start
    const KvHalo right = h->right.defined() && sp->has_right() ? kv(h->right, sp->mask_right) : KvHalo{};
    return std::make_pair(left, right);
  };
  return local_with(pending.x(), mp, pos, halos, tokens);
}

Tensor CompositeSliceAttention::global_of_local(const Tensor& y_l, const Tensor& ms, const Tensor& slice_mask,
                                                const LayerContext& pos, const std::function<void()>& independent) {
  if (!fused() || (is_training() && cfg_.dropout > 0)) {
    Tensor y_g = global_part(csa::pool_slices(y_l, ms, cfg_.aggregation, agg_weight), slice_mask, pos, independent);
    return at::matmul(y_g, o_proj->weight.t());
  }
  // Recomputed in backward: it keeps only Y_l (kept by the local kernel anyway), not its [B, n, D]
  // intermediates, for a few small matmuls more. Under sequence parallelism the pooling and the
  // all-gather stay outside: it keeps the gathered slice embeddings and no collective is repeated.
  const SeqChunk* sp = pos.sp.get();
  if (!sp && independent) independent();
  const Tensor first =
      sp ? all_gather_seq(*sp->group, csa::pool_slices(y_l, ms, cfg_.aggregation, agg_weight), independent) : y_l;
  const Tensor mask_in = sp ? sp->slice_mask_all : slice_mask;
  const bool agg_here = !sp && agg_weight.defined();
  const GlobalOfLocalInputs in{first,          ms,
                               q_proj->weight, q_proj->bias,
                               k_proj->weight, k_proj->bias,
                               v_proj->weight, v_proj->bias,
                               o_proj->weight, all_slices_real(pos) ? Tensor() : mask_in,
                               pos.global,     agg_here ? agg_weight : Tensor()};
  const QueryRange q = query_range(sp, ms.size(1));
  const int64_t H = cfg_.n_heads, first_query = q.first, n_q = q.n;
  const bool causal = cfg_.causal(), pooled = sp != nullptr;
  const Aggregation agg = cfg_.aggregation;
  auto fn = [=](const std::vector<Tensor>& list) {
    const GlobalOfLocalInputs t = GlobalOfLocalInputs::from(list);
    const GlobalWeights w{t.p_g, t.wq, t.bq, t.wk, t.bk, t.wv, t.bv};
    const Tensor s_bar = pooled ? t.first : csa::pool_slices(t.first, t.ms, agg, t.agg);
    Tensor y_g = global_branch(s_bar, t.mask, w, H, causal, true, 0.0, false, first_query, n_q);
    return at::matmul(y_g, t.wo.t());
  };
  const Tensor y = recompute(fn, in.list());  // rows are independent: moved after W_o, outside the recomputation
  return q.moved ? rows_to_chunks(*sp->group->comm, y, q.first, ms.size(1)) : y;
}

Tensor CompositeSliceAttention::forward(const Tensor& x, const Tensor& mask, const LayerContext& pos) {
  const int64_t N = x.size(1), L = cfg_.slice_len;
  const SeqChunk* sp = pos.sp.get();
  const int64_t n_total = sp ? sp->total_slices * L : N;
  CST_CHECK(n_total <= cfg_.max_seq_len,
            "CSA: sequence length " << n_total << " exceeds max_seq_len = " << cfg_.max_seq_len);
  auto [xp, mp] = csa::pad_to_slices(x, mask, L);
  Tensor ms = csa::to_slices(mp, L);  // [B, n, L]
  Tensor slice_mask = ms.any(-1);     // [B, n]
  Tensor y_l, y_g;                    // [B, n, L, D], [B, n, D]
  switch (cfg_.composition) {
    case Composition::kLocalGlobal: {  // global attention reads the local output
      y_l = local_part(xp, mp, pos, N);
      if (!sp) return project(y_l, global_of_local(y_l, ms, slice_mask, pos)).narrow(1, 0, N);
      // o_proj(Y_l) needs nothing gathered: it runs while the slice embeddings are gathered.
      Tensor out_local;
      Tensor global_out = global_of_local(y_l, ms, slice_mask, pos, [&] { out_local = o_proj(y_l); });
      return compose(out_local, global_out).narrow(1, 0, N);
    }
    case Composition::kGlobalLocal: {  // local attention reads input + global output
      Tensor s_in = csa::pool_slices(csa::to_slices(xp, L), ms, cfg_.aggregation, agg_weight);
      y_g = global_part(s_in, slice_mask, pos);
      Tensor g_tok = y_g.unsqueeze(2).expand_as(csa::to_slices(xp, L)).reshape_as(xp);
      y_l = local_part(xp + g_tok, mp, pos, N);
      break;
    }
    case Composition::kParallel: {  // both read the input (H-Transformer style)
      Tensor s_in = csa::pool_slices(csa::to_slices(xp, L), ms, cfg_.aggregation, agg_weight);
      // The local branch needs nothing gathered: it runs while the slice embeddings are gathered
      // (its halo exchange queues behind the gather).
      y_g = global_part(s_in, slice_mask, pos, [&] { y_l = local_part(xp, mp, pos, N); });
      break;
    }
  }
  return output(y_l, y_g).narrow(1, 0, N);
}

Tensor CompositeSliceAttention::output(const Tensor& y_local, const Tensor& y_global) {
  return project(y_local, at::matmul(y_global, o_proj->weight.t()));
}

Tensor CompositeSliceAttention::project(const Tensor& y_local, const Tensor& global_out) {
  // (Y_l + broadcast(Y_g)) W_o^T + b = o_proj(Y_l) + broadcast(Y_g W_o^T): o_proj reads Y_l,
  // which the local kernel keeps anyway, instead of a sum of the two of the same size.
  return compose(o_proj(y_local), global_out);
}

Tensor CompositeSliceAttention::compose(Tensor out_local, const Tensor& global_out) {
  out_local.add_(global_out.unsqueeze(2));
  return out_local.flatten(1, 2);
}

Tensor full_attention_mask(const Tensor& mask, bool causal) {
  const int64_t N = mask.size(1);
  Tensor m = mask.unsqueeze(1).unsqueeze(2);
  return causal ? m.logical_and(at::ones({N, N}, mask.options()).tril()) : m;
}

FullAttention::FullAttention(const ModelConfig& cfg) : cfg_(cfg) {
  make_projections(*this, cfg, q_proj, k_proj, v_proj, o_proj);
}

Tensor FullAttention::forward(const Tensor& x, const Tensor& mask, const LayerContext& ctx) {
  const int64_t H = cfg_.n_heads;
  Tensor q = csa::split_heads(q_proj(x), H), k = csa::split_heads(k_proj(x), H);
  Tensor v = csa::split_heads(v_proj(x), H);
  auto attend = [&] { return full_attention_mask(mask, cfg_.causal()); };
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
