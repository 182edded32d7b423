// What one forward pass of a model computes, counted from its ModelConfig: the attention scores
// that are computed and visible, and the matmul FLOPs per token. No torch here: the trainer's
// MFU, cst-smoke and the benchmarks read these counts (trainer/perf.h), and
// tests/model/flops_test.cpp checks them against the masks the explicit kernels build.
#pragma once

#include <cstdint>

#include "model/config.h"

namespace cst::model {

// Local attention of CSA: the (query, key) pairs per head in one layer for one sequence of
// seq_len real tokens. Per real query, the keys of its extended slice that lie inside the
// sequence (causal: the e borrowed ones and its slice up to itself; slice 0 borrows nothing;
// the padded tail of the last slice is neither query nor key). 0 for arch = full.
double local_attention_pairs(const ModelConfig& cfg, int64_t seq_len);

// Global attention of CSA over the n = ceil(seq_len / L) slices: n(n-1)/2 pairs causal (slice t
// sees slices < t), n^2 bidirectional. 0 for arch = full.
double global_attention_pairs(const ModelConfig& cfg, int64_t seq_len);

// Attention scores computed and visible per head in one layer for one sequence: full attention
// N(N+1)/2 causal, N^2 bidirectional; CSA local + global pairs. Padding is ignored.
double attention_pairs(const ModelConfig& cfg, int64_t seq_len);

// Model FLOPs per token of one forward pass at sequence length seq_len (matmuls only, a
// multiply-add = 2 FLOPs): q/k/v/o projections (CSA: also q/k/v of the slice embeddings), FFN,
// the visible attention scores of attention_pairs (q.k and p.v: 4 D per pair), and the output
// head on a fraction head_fraction of the tokens (MLM computes it on the predicted tokens only;
// its transform adds 2 D^2). Terms paid once per batch (P_l W_k^T) are not counted. A training
// step costs 3x.
double forward_flops_per_token(const ModelConfig& cfg, int64_t seq_len, double head_fraction = 1.0);

}  // namespace cst::model
