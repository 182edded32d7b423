// Global attention of a range of query slices (a sequence-parallel rank's own) over the slice
// embeddings of the whole sequence, through fused kernels, without any tensor of size
// (queries x keys): docs/SEQUENCE_PARALLEL.md "Global attention of a chunk".
//
// A rank holding query slices [f, f + nq) of n: bidirectional, every query sees every key (one
// rectangle, no visibility mask). Causal (docs/CST.md: slice t uses the query row of slice t-1
// and sees slices < t), query i of the range sees keys [0, f) (a rectangle: all visible to all
// of them) and keys [f, f + i) (a square of nq - 1 queries over nq - 1 keys, top-left causal:
// the kernels' own is_causal). The two blocks run as separate kernel calls and are merged by
// their log-sum-exp; backward hands each block the merged output and log-sum-exp, which gives
// the gradient of the union exactly. Key padding is an additive [B, 1, 1, keys] row, O(n).
// On CUDA in bfloat16 or float16 the range is one FlashAttention-2 call whose bottom-right causal
// alignment is the offset itself (model/global_range_varlen.h). Where neither fused kernel runs
// (attention dropout, CUDA float32, CUDA key padding) the same ranges run through row blocks in
// tensor operations (model/global_range_rows.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace cst::model::csa {

// The work of one query row beyond its (query, key) pairs, in pairs, forward and backward: the
// causal square's diagonal key blocks computed whole (the CPU flash kernel takes keys in blocks of
// 512), the log-sum-exp merge. A fit to the times of bench_seq_parallel --mode balance gives
// about 460 at n = 8192 (docs/SEQUENCE_PARALLEL.md "Balance"). Sequence parallelism splits the
// causal rows by pairs plus this per row.
constexpr int64_t kRangeRowCost = 512;

// The same for the row blocks (model/global_range_rows.h): the hidden half of a block's diagonal
// band, (R - 1) / 2 pairs per row at R = 32 rows. With it the rows split by work take, per rank,
// within 1.07x of the mean CPU time under dropout (docs/SEQUENCE_PARALLEL.md "Balance").
constexpr int64_t kRowBlockRowCost = 16;

// The cost per row of the kernels global_attention_range runs on `device` with this dropout:
// kRangeRowCost (the CPU flash kernels), kVarlenRowCost (CUDA without dropout: FlashAttention-2,
// model/global_range_varlen.h) or kRowBlockRowCost.
int64_t range_row_cost(const at::Device& device, double dropout_p);

// Whether global_attention_range runs for queries like q with this attention dropout through SDPA's
// CPU flash entry points (CPU, p == 0, float32, float64, bfloat16 or float16); otherwise through
// FlashAttention-2 (global_range_varlen) or the row blocks of model/global_range_rows.h (any
// device, with dropout), also without a (queries x keys) tensor.
bool global_range_fused(const at::Tensor& q, double dropout_p);

// q_rows [B, H, nq, d]: the query row of each query slice of the range (causal: of the slice
// before it; the caller's query_rows). k, v [B, H, m, d]: the keys the range may see, m = prefix
// (+ nq - 1 when diagonal). key_mask [B, m] bool (true = the slice has a real token) or
// undefined (all real). Query i sees keys [0, prefix) and, when diagonal, [prefix, prefix + i).
// dropout_p: attention dropout of the probabilities (0 outside training). Returns [B, H, nq, d];
// a query with no visible key gets 0 and zero gradients. Differentiable in q_rows, k and v.
// pairs (may be null): incremented by the (query, key) slice pairs handed to the kernels, per
// sequence and head: nq * prefix (+ nq (nq - 1) / 2 when diagonal) through the fused kernels,
// plus the hidden half of each row block's diagonal band through the row blocks.
at::Tensor global_attention_range(const at::Tensor& q_rows, const at::Tensor& k, const at::Tensor& v,
                                  const at::Tensor& key_mask, int64_t prefix, bool diagonal, double dropout_p = 0.0,
                                  int64_t* pairs = nullptr);

}  // namespace cst::model::csa
