// Throughput accounting: a measured GEMM peak and the model FLOPs per token, for MFU.
#pragma once

#include <cstdint>
#include <string>

#include "model/config.h"

namespace cst::trainer {

struct GemmPeak {
  double flops_per_s = 0;  // best of `repeats` timed runs of an n^3 matmul: 2 n^3 / seconds
  int64_t n = 0;
  std::string device;    // "cpu (2 threads)" or the CUDA device name
  std::string dtype;     // "float32" or "bfloat16"
  std::string measured;  // measure_mfu_peak: GFLOP per second of each size timed, "2048^3: 512.3, 8192^3: 780.1"
};

// Times an n x n x n matmul (after one warm-up) on CPU in float32, or on CUDA device 0 in
// bfloat16 when cuda is true (throws when no CUDA device is present). Wall time, or with
// process_cpu_time (CPU only) this process's CPU time over all threads, which other processes
// on a shared machine do not steal.
// This process's CPU time over all threads, in seconds (std::clock).
double process_cpu_seconds();

GemmPeak measure_gemm_peak(int64_t n = 2048, int repeats = 5, bool cuda = false, bool process_cpu_time = false);

// The peak MFU is reported against: on CPU the 2048^3 float32 GEMM; on CUDA the better of a
// 2048^3 and an 8192^3 bfloat16 GEMM (2048^3 alone does not fill a large GPU). `measured` lists
// every size timed.
GemmPeak measure_mfu_peak(bool cuda, int repeats = 5, bool process_cpu_time = false);

// Attention scores computed and visible per head in one layer for one sequence of seq_len
// tokens: the (query, key) pairs that a kernel skipping hidden pairs computes. Full attention:
// N(N+1)/2 causal, N^2 bidirectional. CSA: local, per real query its in-sequence window keys
// (causal: the e borrowed ones and its slice up to itself; slice 0 borrows nothing), plus global,
// n(n-1)/2 slice pairs causal (slice t over slices < t), n^2 bidirectional. Padding is ignored.
double attention_pairs(const model::ModelConfig& cfg, int64_t seq_len);

// Model FLOPs per token of one forward pass at sequence length seq_len (matmuls only, a
// multiply-add = 2 FLOPs): q/k/v/o projections (CSA: also of the slice embeddings), FFN, the
// visible attention scores of attention_pairs (q.k and p.v: 4 D per pair), and the output head
// on a fraction head_fraction of the tokens (MLM computes it on the predicted tokens only).
// Terms paid once per batch (P_l W_k^T) are not counted. A training step costs 3x.
double forward_flops_per_token(const model::ModelConfig& cfg, int64_t seq_len, double head_fraction = 1.0);

}  // namespace cst::trainer
