// The steps of Composite Slice Attention (docs/CST.md), one function each, so that a sequence-
// parallel CSA can run the same steps with halos and an all-gather in between:
//
//   pad_to_slices -> to_slices / extend -> local_attention -> pool_slices -> global_attention
//   (the composition with the output projection: CompositeSliceAttention::output)
//
// Shapes: B batch, N tokens, n = ceil(N / L) slices, L slice length, e tokens borrowed from each
// neighbour, W key window (L + 2e bidirectional, L + e causal), H heads, d head width, C any
// trailing feature width. Masks are bool, true = a real token. Nothing here allocates N x N.
#pragma once

#include <ATen/core/Tensor.h>

#include "model/config.h"

namespace cst::model::csa {

using at::Tensor;

// Pads x [B, N, C] and mask [B, N] at the end to n*L tokens (padding marked false).
// Returns {x_padded [B, n*L, C], mask_padded [B, n*L]}.
std::pair<Tensor, Tensor> pad_to_slices(const Tensor& x, const Tensor& mask, int64_t slice_len);

// [B, n*L, ...] -> [B, n, L, ...] (a view).
Tensor to_slices(const Tensor& seq, int64_t slice_len);

// Extended slices [B, n, W, ...] from a padded sequence [B, n*L, ...]: for slice s the last e
// tokens of slice s-1, slice s, then (bidirectional only) the first e tokens of slice s+1.
// left_halo / right_halo [B, e, ...] supply the tokens beyond the sequence ends (from the
// neighbouring ranks under sequence parallelism); when undefined, zeros are used (and the caller
// masks them). Works for features and for masks alike.
Tensor extend(const Tensor& seq, int64_t slice_len, int64_t ext, bool causal, const Tensor& left_halo = {},
              const Tensor& right_halo = {});

// Softmax over the last dim with keys where mask is false removed (-inf). Rows with no visible
// key give all-zero weights (no NaN, also in backward). scores [..., K], mask broadcastable.
Tensor masked_softmax(const Tensor& scores, const Tensor& mask);

// [L, W] bool: may query i (slice position) see key w (window position)? All true when
// bidirectional; causal: w < e (borrowed left tokens) or w - e <= i.
Tensor local_visibility(int64_t slice_len, int64_t ext, bool causal, const at::TensorOptions& opt);

// Local attention inside each extended slice.
// q [B, H, n, L, d], k/v [B, H, n, W, d], key_mask [B, n, W] -> [B, H, n, L, d].
// dropout_p applies to the attention probabilities when training.
Tensor local_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask, int64_t ext,
                       bool causal, double dropout_p, bool training);

// Slice embeddings [B, n, D] from y [B, n, L, D] and mask [B, n, L]. kMean: masked mean;
// kMax: masked max; kLinear: sum_j w[j] m[j] y[j] with w [L]. Slices without a real token
// give zeros.
Tensor pool_slices(const Tensor& y, const Tensor& mask, Aggregation agg, const Tensor& linear_w = {});

// [nq, n] bool: causal visibility of key slice s from query slice t = f + i (s < t), the rule of
// causal global attention.
Tensor earlier_slices(int64_t f, int64_t nq, int64_t n, const at::TensorOptions& opt);

// Global attention over slice embeddings. q/k/v [B, H, n, d], slice_mask [B, n] (slice has a
// real token). Causal: slice t uses the query of slice t-1 and sees slices < t; slice 0 gets 0.
// Returns [B, H, n_q, d]: the outputs of slices [first_query, first_query + n_q) (n_q < 0: to
// the end), as a sequence-parallel rank computes those of its own slices. A proper range (not
// the whole sequence) runs through global_attention_range (model/global_range.h): no [n_q, n]
// tensor. pairs (may be null): incremented by the (query, key) slice pairs handed to a kernel,
// per sequence and head.
Tensor global_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& slice_mask, bool causal,
                        double dropout_p, bool training, int64_t first_query = 0, int64_t n_q = -1,
                        int64_t* pairs = nullptr);

// global_attention through at::scaled_dot_product_attention: causal = ordinary causal attention
// of the queries of slices 0..n-2 over the keys of slices 0..n-2, whose outputs go to slices
// 1..n-1 (slice 0 gets 0). slice_mask undefined: every slice has a real token. A range of query
// slices [first_query, first_query + n_q) (a sequence-parallel rank's own) goes through
// global_attention_range (model/global_range.h), and so does a causal sequence with a slice mask
// where its CPU flash kernels run (global_range_fused), else through an explicit mask; returns
// [B, H, n_q, d]. pairs: as for global_attention.
Tensor global_attention_sdpa(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& slice_mask, bool causal,
                             double dropout_p, bool training, int64_t first_query = 0, int64_t n_q = -1,
                             int64_t* pairs = nullptr);

// at::scaled_dot_product_attention with a boolean mask (true = visible) broadcastable to the
// scores, where a query row with no visible key gets 0 and zero gradients (SDPA's kernels differ
// on such rows: the row is given every key, then zeroed).
Tensor sdpa_masked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double dropout_p);

// [B, T, D] -> [B, H, T, d] and back.
Tensor split_heads(const Tensor& x, int64_t n_heads);
Tensor merge_heads(const Tensor& x);

}  // namespace cst::model::csa
