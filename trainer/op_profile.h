// Where the time of a piece of work goes, per operator: the LibTorch (Kineto) profiler around a
// callable, summarised as tables. CPU operators are charged their self time (nested operators'
// time subtracted, per thread), so the rows add up to the wall time spent in operators; CUDA
// kernels are charged their device time.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace cst::trainer {

struct OpTime {
  std::string name;   // operator (aten::mm, autograd::engine::evaluate_function: ...) or kernel
  double ms = 0;      // self time (CPU) or device time (CUDA), summed over calls
  int64_t calls = 0;
};

struct OpProfile {
  std::vector<OpTime> cpu;   // by self time, largest first
  std::vector<OpTime> cuda;  // by device time, largest first (empty without CUDA)
  double cpu_ms = 0, cuda_ms = 0;  // totals
  // Markdown table of the `top` largest rows of each list, with shares of the total.
  std::string table(size_t top) const;
};

// Runs fn once under the profiler (CUDA activity too when cuda; the caller synchronises inside
// fn if it wants the kernels of fn only). Not reentrant: one profile at a time per process.
OpProfile profile_ops(const std::function<void()>& fn, bool cuda);

}  // namespace cst::trainer
