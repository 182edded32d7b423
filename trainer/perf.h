// Throughput accounting for MFU: a measured GEMM peak; the model FLOPs per token come from model/flops.h.
#pragma once

#include <cstdint>
#include <string>

#include "model/flops.h"

namespace cst::trainer {

struct GemmPeak {
  double flops_per_s = 0;  // best of `repeats` timed runs of an n^3 matmul: 2 n^3 / seconds
  int64_t n = 0;
  std::string device;    // "cpu (2 threads)" or the CUDA device name
  std::string dtype;     // "float32" or "bfloat16"
  std::string measured;  // measure_mfu_peak: GFLOP per second of each size timed, "2048^3: 512.3, 8192^3: 780.1"
};

// This process's CPU time over all threads, in seconds (std::clock).
double process_cpu_seconds();

// Times an n x n x n matmul (after one warm-up) on CPU in float32, or on CUDA device 0 in
// bfloat16 when cuda is true (throws when no CUDA device is present). Wall time, or with
// process_cpu_time (CPU only) this process's CPU time over all threads, which other processes
// on a shared machine do not steal.
GemmPeak measure_gemm_peak(int64_t n = 2048, int repeats = 5, bool cuda = false, bool process_cpu_time = false);

// The peak MFU is reported against: on CPU the 2048^3 float32 GEMM; on CUDA the better of a
// 2048^3 and an 8192^3 bfloat16 GEMM (2048^3 alone does not fill a large GPU). `measured` lists
// every size timed.
GemmPeak measure_mfu_peak(bool cuda, int repeats = 5, bool process_cpu_time = false);

// A card's dense bfloat16 tensor-core peak as its datasheet states it (without sparsity), found
// by its CUDA device name (e.g. "NVIDIA H100 80GB HBM3" is the H100 SXM5). flops_per_s = 0 and
// card = "" for a device the table does not know (CPUs included).
struct DatasheetPeak {
  double flops_per_s = 0;
  std::string card;  // the datasheet's name of the card, e.g. "H100 SXM5"
};
DatasheetPeak datasheet_bf16_peak(const std::string& device_name);

// The model FLOPs per token that MFU is measured against: the model states them
// (model/flops.h, visible attention scores only).
using model::forward_flops_per_token;

}  // namespace cst::trainer
