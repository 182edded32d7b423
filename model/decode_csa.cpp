// The Composite Slice Attention layer cache (model/decode_cache.h). Names: L slice length, e
// borrowed tokens, W = L + e window, s a row's current slice, i its tokens so far in slice s.
// Window row w < e holds borrowed token s*L - e + w, row e + j token s*L + j.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/error.h"
#include "model/csa.h"
#include "model/decode_cache.h"

namespace cst::model {

using at::Tensor;

Tensor index_tensor(const std::vector<int64_t>& v, const at::Device& device) {
  return at::tensor(v, at::TensorOptions().dtype(at::kLong)).to(device);
}

Tensor attend_one(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& visible, int64_t heads) {
  const int64_t r = q.size(0), kn = k.size(1), dm = q.size(1), d = dm / heads;
  Tensor qh = q.view({r, heads, 1, d});
  Tensor kh = k.reshape({r, kn, heads, d}).transpose(1, 2);  // [R, H, K, d]
  Tensor vh = v.reshape({r, kn, heads, d}).transpose(1, 2);
  Tensor scores = at::matmul(qh, kh.transpose(-1, -2)) * (1.0 / std::sqrt(static_cast<double>(d)));
  Tensor p = csa::masked_softmax(scores, visible.view({r, 1, 1, kn}));
  return at::matmul(p, vh).reshape({r, dm});
}

namespace {

class CsaCache final : public LayerCache {
 public:
  CsaCache(CompositeSliceAttention& attn, const ModelConfig& cfg, const LayerContext& ctx, int64_t batch,
           int64_t capacity)
      : a_(attn), cfg_(cfg), ctx_(ctx), L_(cfg.slice_len), e_(cfg.extension()), W_(cfg.window()) {
    const Tensor& w = a_.q_proj->weight;
    const auto opt = w.options();
    if (ctx_.local.defined()) {  // P_l rows through W_q (query rows e..e+L) and W_k (all W rows)
      pq_ = at::matmul(ctx_.local.narrow(0, e_, L_), a_.q_proj->weight.t());  // [L, D]
      pk_ = at::matmul(ctx_.local, a_.k_proj->weight.t());                    // [W, D]
    }
    const int64_t D = cfg.d_model, n_cap = (capacity + L_ - 1) / L_;
    kx_ = at::zeros({batch, W_, D}, opt);
    vx_ = at::zeros({batch, W_, D}, opt);
    valid_ = at::zeros({batch, W_}, opt.dtype(at::kBool));
    acc_ = at::empty({batch, D}, opt);
    gk_ = at::zeros({batch, n_cap, D}, opt);
    gv_ = at::zeros({batch, n_cap, D}, opt);
    gy_ = at::zeros({batch, D}, opt);
    gout_ = at::zeros({batch, D}, opt);
    count_.assign(static_cast<size_t>(batch), 0);
  }

  Tensor prefill(const Tensor& h, const Tensor& mask, const std::vector<int64_t>& len,
                 const LayerContext& ctx) override {
    const int64_t T = h.size(1), B = h.size(0);
    auto [xp, mp] = csa::pad_to_slices(h, mask, L_);
    Tensor ms = csa::to_slices(mp, L_);  // [B, n, L]
    Tensor slice_mask = ms.any(-1);
    Tensor local_in = xp, pool_src, y_l, y_g;
    switch (cfg_.composition) {
      case Composition::kLocalGlobal:
        y_l = a_.local(xp, mp, ctx, {}, {}, T);
        pool_src = y_l;
        y_g = a_.global(csa::pool_slices(y_l, ms, cfg_.aggregation, a_.agg_weight), slice_mask, ctx);
        break;
      case Composition::kGlobalLocal:
        pool_src = csa::to_slices(xp, L_);
        y_g = a_.global(csa::pool_slices(pool_src, ms, cfg_.aggregation, a_.agg_weight), slice_mask, ctx);
        local_in = xp + y_g.unsqueeze(2).expand_as(pool_src).reshape_as(xp);
        y_l = a_.local(local_in, mp, ctx, {}, {}, T);
        break;
      case Composition::kParallel:
        pool_src = csa::to_slices(xp, L_);
        y_l = a_.local(xp, mp, ctx, {}, {}, T);
        y_g = a_.global(csa::pool_slices(pool_src, ms, cfg_.aggregation, a_.agg_weight), slice_mask, ctx);
        break;
    }
    Tensor out = a_.output(y_l, y_g).narrow(1, 0, T);

    // The window of each row: tokens s*L - e .. s*L + i - 1 of the local input, projected.
    const int64_t NL = xp.size(1), n = NL / L_;
    std::vector<int64_t> idx, cur;
    std::vector<uint8_t> ok, ok_cur;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t p = len[static_cast<size_t>(b)], s = p / L_, i = p % L_;
      for (int64_t w = 0; w < W_; ++w) {
        const int64_t t = s * L_ - e_ + w;
        const bool in = t >= 0 && t < p;
        idx.push_back(b * NL + (in ? t : 0));
        ok.push_back(in);
      }
      for (int64_t j = 0; j < L_; ++j) {  // the current slice's tokens, for its running aggregation
        const bool in = j < i;
        cur.push_back(b * NL + (in ? s * L_ + j : 0));
        ok_cur.push_back(in);
      }
    }
    const auto dev = h.device();
    Tensor win = local_in.reshape({B * NL, -1}).index_select(0, index_tensor(idx, dev)).view({B, W_, -1});
    kx_.copy_(a_.k_proj(win));
    vx_.copy_(a_.v_proj(win));
    valid_.copy_(at::tensor(std::vector<int64_t>(ok.begin(), ok.end())).to(dev).to(at::kBool).view({B, W_}));
    Tensor src = pool_src.reshape({B * NL, -1}).index_select(0, index_tensor(cur, dev)).view({B, L_, -1});
    Tensor m_cur = at::tensor(std::vector<int64_t>(ok_cur.begin(), ok_cur.end())).to(dev).to(at::kBool).view({B, L_});
    acc_.fill_(cfg_.aggregation == Aggregation::kMax ? -std::numeric_limits<double>::infinity() : 0.0);
    for (int64_t j = 0; j < L_; ++j)
      accumulate(src.select(1, j), m_cur.select(1, j).unsqueeze(1), at::full({B}, j, index_opts(dev)));

    // Global keys and values of every prompt slice (a partial last slice's entry is rewritten
    // when it completes), then each row's current global output from its last completed slice.
    Tensor s_bar = csa::pool_slices(pool_src, ms, cfg_.aggregation, a_.agg_weight);  // [B, n, D]
    gk_.narrow(1, 0, n).copy_(global_key(s_bar, at::arange(n, index_opts(dev))));
    gv_.narrow(1, 0, n).copy_(a_.v_proj(s_bar));
    std::vector<int64_t> rows, last;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t s = len[static_cast<size_t>(b)] / L_;
      count_[static_cast<size_t>(b)] = s;
      if (s >= 1) rows.push_back(b), last.push_back(s - 1);
    }
    gy_.zero_();
    gout_.zero_();
    if (!rows.empty()) {
      Tensor r = index_tensor(rows, dev), sl = index_tensor(last, dev);
      complete(r, rows, s_bar.index({r, sl}), last);
    }
    return out;
  }

  Tensor step(const Tensor& h, const std::vector<int64_t>& pos) override {
    const int64_t B = h.size(0);
    const auto dev = h.device();
    std::vector<int64_t> slot, ipos, rows, slices;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t p = pos[static_cast<size_t>(b)], i = p % L_;
      slot.push_back(e_ + i);
      ipos.push_back(i);
      if (i == L_ - 1) rows.push_back(b), slices.push_back(p / L_);
    }
    const Tensor all = at::arange(B, index_opts(dev)), sl = index_tensor(slot, dev), it = index_tensor(ipos, dev);
    const Tensor u = cfg_.composition == Composition::kGlobalLocal ? h + gy_ : h;  // the local input
    Tensor q = a_.q_proj(u);
    if (pq_.defined()) q = q + pq_.index_select(0, it);
    kx_.index_put_({all, sl}, a_.k_proj(u));
    vx_.index_put_({all, sl}, a_.v_proj(u));
    valid_.index_put_({all, sl}, at::ones({B}, valid_.options()));
    Tensor y = attend_one(q, pk_.defined() ? kx_ + pk_ : kx_, vx_, valid_, cfg_.n_heads);  // Y_l [B, D]
    const Tensor& src = cfg_.composition == Composition::kLocalGlobal ? y : h;
    accumulate(src, at::ones({B, 1}, valid_.options()), it);
    Tensor out = a_.o_proj(y) + gout_;
    if (!rows.empty()) {  // rows whose slice completes with this token
      Tensor r = index_tensor(rows, dev);
      Tensor s_bar = acc_.index_select(0, r);
      if (cfg_.aggregation == Aggregation::kMean) s_bar = s_bar / static_cast<double>(L_);
      gk_.index_put_({r, index_tensor(slices, dev)}, global_key(s_bar, index_tensor(slices, dev)));
      gv_.index_put_({r, index_tensor(slices, dev)}, a_.v_proj(s_bar));
      complete(r, rows, s_bar, slices);
      shift(r);
    }
    return out;
  }

  int64_t bytes() const override {
    int64_t n = 0;
    for (const Tensor* t : {&kx_, &vx_, &valid_, &acc_, &gk_, &gv_, &gy_, &gout_, &pq_, &pk_})
      if (t->defined()) n += t->numel() * static_cast<int64_t>(t->element_size());
    return n;
  }

 private:
  static at::TensorOptions index_opts(const at::Device& d) { return at::TensorOptions().dtype(at::kLong).device(d); }

  // The running aggregation += token src [B, D] at slice positions j [B] where m [B, 1] (bool).
  void accumulate(const Tensor& src, const Tensor& m, const Tensor& j) {
    const Tensor mf = m.to(src.scalar_type());
    switch (cfg_.aggregation) {
      case Aggregation::kMean: acc_.add_(src * mf); break;
      case Aggregation::kLinear: acc_.add_(src * mf * a_.agg_weight.index_select(0, j).unsqueeze(1)); break;
      case Aggregation::kMax:
        acc_.copy_(at::maximum(acc_, src.masked_fill(m.logical_not(), -std::numeric_limits<float>::infinity())));
        break;
    }
  }

  // Rows r start a new slice: the last e tokens of the finished one become the borrowed ones
  // (window rows L..L+e-1 -> 0..e-1), the slice itself is empty.
  void shift(const Tensor& r) {
    if (e_ > 0) {
      for (Tensor* t : {&kx_, &vx_}) {
        Tensor w = t->index_select(0, r);
        w.narrow(1, 0, e_).copy_(w.narrow(1, L_, e_).clone());
        t->index_copy_(0, r, w);
      }
    }
    Tensor fresh = at::arange(W_, index_opts(r.device())) < e_;  // [W]
    valid_.index_copy_(0, r, fresh.unsqueeze(0).expand({r.size(0), W_}).contiguous());
    acc_.index_fill_(0, r, cfg_.aggregation == Aggregation::kMax ? -std::numeric_limits<double>::infinity() : 0.0);
  }

  // (s_bar + P_g[slice]) W_k + b: slice embeddings [R, D] or [B, n, D] with their slice indices [R] or [n].
  Tensor global_key(const Tensor& s_bar, const Tensor& slice) const {
    return a_.k_proj(ctx_.global.defined() ? s_bar + ctx_.global.index_select(0, slice) : s_bar);
  }

  // Rows r (host: rows) completed slices `slices` with embeddings s_bar [R, D] (whose keys and
  // values are stored): their next slice's global output from the query of the completed slice
  // over the keys of slices 0..slice.
  void complete(const Tensor& r, const std::vector<int64_t>& rows, const Tensor& s_bar,
                const std::vector<int64_t>& slices) {
    int64_t kmax = 0;
    for (size_t k = 0; k < rows.size(); ++k) {
      count_[static_cast<size_t>(rows[k])] = slices[k] + 1;
      kmax = std::max(kmax, slices[k] + 1);
    }
    const auto dev = s_bar.device();
    Tensor sl = index_tensor(slices, dev);
    Tensor qg = a_.q_proj(ctx_.global.defined() ? s_bar + ctx_.global.index_select(0, sl) : s_bar);
    Tensor visible = at::arange(kmax, index_opts(dev)).unsqueeze(0) <= sl.unsqueeze(1);  // [R, kmax]
    Tensor y = attend_one(qg, gk_.index_select(0, r).narrow(1, 0, kmax), gv_.index_select(0, r).narrow(1, 0, kmax),
                          visible, cfg_.n_heads);
    gy_.index_copy_(0, r, y);
    gout_.index_copy_(0, r, at::matmul(y, a_.o_proj->weight.t()));
  }

  CompositeSliceAttention& a_;
  ModelConfig cfg_;
  LayerContext ctx_;
  int64_t L_, e_, W_;
  Tensor pq_, pk_;              // [L, D], [W, D]: P_l W_q^T (query rows), P_l W_k^T; undefined without MS-VIPE
  Tensor kx_, vx_, valid_;      // [B, W, D] x2, [B, W]: the window (projections with bias, no P_l)
  Tensor acc_;                  // [B, D]: the current slice's running aggregation (mean: sum)
  Tensor gk_, gv_;              // [B, n_cap, D]: global keys (P_g included) / values of completed slices
  Tensor gy_, gout_;            // [B, D]: the current slice's Y_g and Y_g W_o^T
  std::vector<int64_t> count_;  // completed slices per row
};

}  // namespace

std::unique_ptr<LayerCache> make_csa_cache(CompositeSliceAttention& attn, const ModelConfig& cfg,
                                           const LayerContext& ctx, int64_t batch, int64_t capacity) {
  return std::make_unique<CsaCache>(attn, cfg, ctx, batch, capacity);
}

}  // namespace cst::model
