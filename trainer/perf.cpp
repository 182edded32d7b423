#include "trainer/perf.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <vector>

#include "common/error.h"
#ifdef CST_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

namespace cst::trainer {

double process_cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

GemmPeak measure_gemm_peak(int64_t n, int repeats, bool cuda, bool process_cpu_time) {
  CST_CHECK(!(cuda && process_cpu_time), "measure_gemm_peak: process CPU time does not time a GPU");
  GemmPeak out;
  out.n = n;
  at::TensorOptions opt = at::TensorOptions().dtype(at::kFloat);
  out.device = "cpu (" + std::to_string(at::get_num_threads()) + " threads)";
  out.dtype = "float32";
  if (cuda) {
#ifdef CST_WITH_CUDA
    CST_CHECK(at::cuda::is_available(), "measure_gemm_peak: no CUDA device");
    opt = opt.device(at::kCUDA).dtype(at::kBFloat16);
    out.device = at::cuda::getCurrentDeviceProperties()->name;
    out.dtype = "bfloat16";
#else
    CST_THROW("measure_gemm_peak: built without CUDA");
#endif
  }
  at::Tensor a = at::randn({n, n}, opt), b = at::randn({n, n}, opt);
  auto sync = [&] {
#ifdef CST_WITH_CUDA
    if (cuda) at::cuda::getCurrentCUDAStream().synchronize();
#endif
  };
  at::matmul(a, b);  // warm-up
  sync();
  auto now = [&] {
    if (process_cpu_time) return process_cpu_seconds();
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  };
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const double t0 = now();
    at::Tensor c = at::matmul(a, b);
    sync();
    best = std::min(best, now() - t0);
  }
  out.flops_per_s = 2.0 * static_cast<double>(n) * n * n / best;
  return out;
}

GemmPeak measure_mfu_peak(bool cuda, int repeats, bool process_cpu_time) {
  GemmPeak best;
  for (int64_t n : cuda ? std::vector<int64_t>{2048, 8192} : std::vector<int64_t>{2048}) {
    GemmPeak p = measure_gemm_peak(n, repeats, cuda, process_cpu_time);
    char item[64];
    std::snprintf(item, sizeof(item), "%s%ld^3: %.1f", best.measured.empty() ? "" : ", ", (long)n, p.flops_per_s / 1e9);
    best.measured += item;
    if (p.flops_per_s > best.flops_per_s) best = GemmPeak{p.flops_per_s, p.n, p.device, p.dtype, best.measured};
  }
  return best;
}

DatasheetPeak datasheet_bf16_peak(const std::string& device_name) {
  // NVIDIA's datasheets give BF16 tensor-core TFLOPS "with sparsity": the dense peak is half.
  // More specific names first ("H100 NVL" and "GH200" contain "H100" and "H200").
  struct Card {
    const char* name_part;
    const char* card;
    double dense_tflops;
  };
  static constexpr Card kCards[] = {
      {"GH200", "GH200", 989.4},       {"H200 NVL", "H200 NVL", 835.5},   {"H200", "H200 SXM", 989.4},
      {"H100 NVL", "H100 NVL", 835.5}, {"H100 PCIe", "H100 PCIe", 756.5}, {"H100", "H100 SXM5", 989.4},
      {"A100", "A100", 312.0},         {"L40S", "L40S", 362.05},
  };
  for (const Card& c : kCards)
    if (device_name.find(c.name_part) != std::string::npos) return {c.dense_tflops * 1e12, c.card};
  return {};
}

}  // namespace cst::trainer
