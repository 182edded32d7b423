// The row-block kernel of global_attention_range (model/global_range.h): attention of a range of
// query slices over its visible keys in ATen tensor operations, on any device and with attention
// dropout, for where SDPA's CPU flash entry points cannot run (a CUDA tensor, dropout > 0).
//
// The queries are taken in blocks of R rows; block [r0, r0 + R) scores its rows against the keys
// [0, prefix + r0 + R - 1) (diagonal) or [0, prefix), masks the band of the diagonal square with
// an [R, R - 1] triangle and key padding with an additive [B, 1, 1, keys] row, and keeps its
// output and log-sum-exp, nothing else. Backward recomputes each block's probabilities from the
// saved log-sum-exp (the FlashAttention recurrence, block by block). R is chosen so that one
// block's scores hold at most kRowBlockElements x q's elements (and at least kMinBlockRows
// rows): the largest tensor is O(n_q x D), never (queries x keys).
//
// Attention dropout draws, per block, a keep mask from a private generator of the device's kind
// seeded by one draw of the CPU default generator: backward draws the same masks again from the
// same seed (nothing of size queries x keys is kept), and a recomputation that replays the CPU
// generator (model/recompute.h) draws the same seed.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace cst::model::csa {

// One block's scores hold at most this many times q's elements...
constexpr int64_t kRowBlockElements = 4;
// ...but a block has at least this many rows (or all of them).
constexpr int64_t kMinBlockRows = 32;

// The rows per block for nq queries of width d over m keys.
int64_t row_block_rows(int64_t nq, int64_t d, int64_t m);

// The (query, key) pairs the row blocks score, per sequence and head: the visible ones plus the
// hidden half of each block's diagonal band.
int64_t row_block_pairs(int64_t nq, int64_t d, int64_t prefix, bool diagonal);

// q_rows [B, H, nq, d], k, v [B, H, m, d] with m = prefix (+ nq - 1 when diagonal), additive
// [B, 1, 1, m] (0 for a real key, -inf for an empty one) or undefined. Query i sees keys
// [0, prefix) and, when diagonal, [prefix, prefix + i); a query without a visible key gets 0.
// dropout_p in [0, 1): inverted dropout of the probabilities. Floating-point tensors of one
// device; half and bfloat16 are computed in float32. Differentiable in q_rows, k and v.
at::Tensor row_block_attention(const at::Tensor& q_rows, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& additive, int64_t prefix, bool diagonal, double dropout_p);

}  // namespace cst::model::csa
