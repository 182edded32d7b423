#include "model/csa.h"

#include <ATen/ATen.h>

#include <cmath>

#include "common/error.h"
#include "model/global_range.h"

namespace cst::model::csa {

std::pair<Tensor, Tensor> pad_to_slices(const Tensor& x, const Tensor& mask, int64_t slice_len) {
  const int64_t n_tok = x.size(1);
  const int64_t pad = (slice_len - n_tok % slice_len) % slice_len;
  if (pad == 0) return {x, mask};
  std::vector<int64_t> pad_shape = x.sizes().vec();
  pad_shape[1] = pad;
  Tensor xp = at::cat({x, at::zeros(pad_shape, x.options())}, 1);
  Tensor mp = at::cat({mask, at::zeros({mask.size(0), pad}, mask.options())}, 1);
  return {xp, mp};
}

Tensor to_slices(const Tensor& seq, int64_t slice_len) {
  std::vector<int64_t> shape = seq.sizes().vec();
  CST_CHECK(shape[1] % slice_len == 0, "slice: length " << shape[1] << " is not a multiple of L = " << slice_len);
  shape[1] /= slice_len;
  shape.insert(shape.begin() + 2, slice_len);
  return seq.view(shape);
}

Tensor extend(const Tensor& seq, int64_t slice_len, int64_t ext, bool causal, const Tensor& left_halo,
              const Tensor& right_halo) {
  if (ext == 0) return to_slices(seq, slice_len);
  std::vector<int64_t> halo_shape = seq.sizes().vec();
  halo_shape[1] = ext;
  Tensor left = left_halo.defined() ? left_halo : at::zeros(halo_shape, seq.options());
  std::vector<Tensor> parts{left, seq};
  if (!causal) parts.push_back(right_halo.defined() ? right_halo : at::zeros(halo_shape, seq.options()));
  Tensor padded = at::cat(parts, 1);  // [B, e + nL (+ e), ...]
  const int64_t window = causal ? slice_len + ext : slice_len + 2 * ext;
  // unfold puts the window dim last: [B, n, ..., W] -> move it to dim 2.
  return padded.unfold(1, window, slice_len).movedim(-1, 2);
}

Tensor masked_softmax(const Tensor& scores, const Tensor& mask) {
  // Work in float32 at least: the fill value is the dtype's lowest finite, so a fully masked
  // row is uniform (finite gradients) and is zeroed afterwards.
  Tensor s = scores.scalar_type() == at::kDouble ? scores : scores.to(at::kFloat);
  const double lowest =
      s.scalar_type() == at::kDouble ? std::numeric_limits<double>::lowest() : std::numeric_limits<float>::lowest();
  Tensor p = at::softmax(s.masked_fill(mask.logical_not(), lowest), -1);
  Tensor any = mask.any(-1, /*keepdim=*/true);
  return p.masked_fill(any.logical_not(), 0.0).to(scores.scalar_type());
}

Tensor local_visibility(int64_t slice_len, int64_t ext, bool causal, const at::TensorOptions& opt) {
  const int64_t window = causal ? slice_len + ext : slice_len + 2 * ext;
  if (!causal) return at::ones({slice_len, window}, opt.dtype(at::kBool));
  Tensor i = at::arange(slice_len, opt.dtype(at::kLong)).unsqueeze(1);
  Tensor w = at::arange(window, opt.dtype(at::kLong)).unsqueeze(0);
  return (w < ext).logical_or(w - ext <= i);
}

namespace {
Tensor dropout_if(const Tensor& p, double dropout_p, bool training) {
  return (training && dropout_p > 0) ? at::dropout(p, dropout_p, true) : p;
}
}  // namespace

Tensor local_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask, int64_t ext,
                       bool causal, double dropout_p, bool training) {
  const int64_t slice_len = q.size(3);
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  Tensor scores = at::matmul(q, k.transpose(-1, -2)) * scale;          // [B, H, n, L, W]
  Tensor vis = local_visibility(slice_len, ext, causal, q.options());  // [L, W]
  Tensor mask = key_mask.unsqueeze(1).unsqueeze(3).logical_and(vis);   // [B, 1, n, L, W]
  Tensor p = dropout_if(masked_softmax(scores, mask), dropout_p, training);
  return at::matmul(p, v);  // [B, H, n, L, d]
}

Tensor pool_slices(const Tensor& y, const Tensor& mask, Aggregation agg, const Tensor& linear_w) {
  Tensor m = mask.unsqueeze(-1);            // [B, n, L, 1]
  Tensor any = mask.any(-1).unsqueeze(-1);  // [B, n, 1]
  switch (agg) {
    case Aggregation::kMean: {
      Tensor mf = m.to(y.scalar_type());
      Tensor count = mf.sum(2).clamp_min(1.0);  // empty slices: 0 / 1 = 0
      return (y * mf).sum(2) / count;
    }
    case Aggregation::kMax: {
      Tensor filled = y.masked_fill(m.logical_not(), -std::numeric_limits<float>::infinity());
      return std::get<0>(filled.max(2)).masked_fill(any.logical_not(), 0.0);
    }
    case Aggregation::kLinear: {
      CST_CHECK(linear_w.defined() && linear_w.size(0) == y.size(2),
                "pool_slices: linear aggregation needs weights of length L = " << y.size(2));
      Tensor w = linear_w.view({1, 1, -1, 1}) * m.to(y.scalar_type());
      return (y * w).sum(2);
    }
  }
  CST_THROW("pool_slices: unknown aggregation");
}

Tensor earlier_slices(int64_t f, int64_t nq, int64_t n, const at::TensorOptions& opt) {
  Tensor t = at::arange(f, f + nq, opt.dtype(at::kLong)).unsqueeze(1);
  Tensor s = at::arange(n, opt.dtype(at::kLong)).unsqueeze(0);
  return s < t;
}

namespace {
// The query rows for slices [f, f + nq): causal, slice t uses the row of slice t-1 (slice 0: a
// zero row, masked out).
Tensor query_rows(const Tensor& q, bool causal, int64_t f, int64_t nq) {
  if (!causal) return q.narrow(2, f, nq);
  return f > 0 ? q.narrow(2, f - 1, nq) : at::cat({at::zeros_like(q.narrow(2, 0, 1)), q.narrow(2, 0, nq - 1)}, 2);
}

void check_query_range(int64_t f, int64_t nq, int64_t n) {
  CST_CHECK(f >= 0 && nq >= 1 && f + nq <= n,
            "global attention: queries [" << f << ", " << f + nq << ") outside the " << n << " slices");
}

// Queries [f, f + nq) through global_attention_range: bidirectional, a rectangle over all n
// keys; causal, the keys [0, f) every query sees and the diagonal square of the range.
Tensor range_fused(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& slice_mask, bool causal, int64_t f,
                   int64_t nq, double p, int64_t* pairs) {
  if (!causal) return global_attention_range(q.narrow(2, f, nq), k, v, slice_mask, k.size(2), false, p, pairs);
  const int64_t m = f + nq - 1;  // keys before the range's last slice
  return global_attention_range(query_rows(q, true, f, nq), k.narrow(2, 0, m), v.narrow(2, 0, m),
                                slice_mask.defined() ? slice_mask.narrow(1, 0, m) : Tensor(), f, true, p, pairs);
}
}  // namespace

Tensor global_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& slice_mask, bool causal,
                        double dropout_p, bool training, int64_t first_query, int64_t n_q, int64_t* pairs) {
  const int64_t n = k.size(2), f = first_query, nq = n_q < 0 ? n - first_query : n_q;
  check_query_range(f, nq, n);
  if (f > 0 || nq < n) return range_fused(q, k, v, slice_mask, causal, f, nq, training ? dropout_p : 0.0, pairs);
  if (pairs) *pairs += nq * n;  // every (query, key) pair is scored
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  Tensor mask = slice_mask.unsqueeze(1).unsqueeze(2);                                     // [B, 1, 1, n] keys
  if (causal) mask = mask.logical_and(earlier_slices(f, nq, n, q.options()));             // [B, 1, n_q, n]
  Tensor scores = at::matmul(query_rows(q, causal, f, nq), k.transpose(-1, -2)) * scale;  // [B, H, n_q, n]
  Tensor p = dropout_if(masked_softmax(scores, mask), dropout_p, training);
  return at::matmul(p, v);
}

Tensor sdpa_masked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double dropout_p) {
  Tensor any = mask.any(-1, /*keepdim=*/true);
  Tensor out = at::scaled_dot_product_attention(q, k, v, mask.logical_or(any.logical_not()), dropout_p);
  return out * any.to(out.scalar_type());
}

Tensor global_attention_sdpa(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& slice_mask, bool causal,
                             double dropout_p, bool training, int64_t first_query, int64_t n_q, int64_t* pairs) {
  const int64_t b = q.size(0), n = k.size(2), f = first_query, nq = n_q < 0 ? n - first_query : n_q;
  check_query_range(f, nq, n);
  const double p = training ? dropout_p : 0.0;
  if (f > 0 || nq < n || (causal && slice_mask.defined() && global_range_fused(q, p)))
    return range_fused(q, k, v, slice_mask, causal, f, nq, p, pairs);
  // Below, a mask hands every pair to the kernel; only the causal whole sequence without padding
  // goes through is_causal.
  if (pairs) *pairs += causal && nq == n && !slice_mask.defined() ? n * (n - 1) / 2 : nq * n;
  if (!causal) {
    if (!slice_mask.defined()) return at::scaled_dot_product_attention(q, k, v, {}, p);
    return sdpa_masked(q, k, v, slice_mask.view({b, 1, 1, n}), p);
  }
  if (n == 1) return at::zeros_like(v);
  // Slice t uses the query of slice t-1 and sees slices < t: query row t' = t-1 sees keys <= t'.
  Tensor qs = q.narrow(2, 0, n - 1), ks = k.narrow(2, 0, n - 1), vs = v.narrow(2, 0, n - 1);
  Tensor y;
  if (!slice_mask.defined()) {
    y = at::scaled_dot_product_attention(qs, ks, vs, {}, p, /*is_causal=*/true);
  } else {
    Tensor tri = at::ones({n - 1, n - 1}, slice_mask.options().dtype(at::kBool)).tril();
    y = sdpa_masked(qs, ks, vs, slice_mask.narrow(1, 0, n - 1).view({b, 1, 1, n - 1}).logical_and(tri), p);
  }
  return at::cat({at::zeros_like(y.narrow(2, 0, 1)), y}, 2);
}

Tensor split_heads(const Tensor& x, int64_t n_heads) {
  const int64_t b = x.size(0), t = x.size(1), dm = x.size(2);
  return x.view({b, t, n_heads, dm / n_heads}).transpose(1, 2);
}

Tensor merge_heads(const Tensor& x) {
  const int64_t b = x.size(0), h = x.size(1), t = x.size(2), d = x.size(3);
  return x.transpose(1, 2).reshape({b, t, h * d});
}

}  // namespace cst::model::csa
