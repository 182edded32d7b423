// Where the time of a piece of work goes, per operator: the LibTorch (Kineto) profiler around a
// callable, summarised as tables. CPU operators are charged their self time (nested operators'
// time subtracted, per thread), so the rows add up to the wall time spent in operators; CUDA
// kernels are charged their device time. And per phase: PhaseTimer, wall time between marks.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace cst::trainer {

struct OpTime {
  std::string name;  // operator (aten::mm, autograd::engine::evaluate_function: ...) or kernel
  double ms = 0;     // self time (CPU) or device time (CUDA), summed over calls
  int64_t calls = 0;
};

struct OpProfile {
  std::vector<OpTime> cpu;         // by self time, largest first
  std::vector<OpTime> cuda;        // by device time, largest first (empty without CUDA)
  double cpu_ms = 0, cuda_ms = 0;  // totals
  // Markdown table of the `top` largest rows of each list, with shares of the total.
  std::string table(size_t top) const;
};

// Runs fn once under the profiler (CUDA activity too when cuda; the caller synchronises inside
// fn if it wants the kernels of fn only). Not reentrant: one profile at a time per process.
OpProfile profile_ops(const std::function<void()>& fn, bool cuda);

// Wall time of the phases of one piece of work. mark(phase) charges the time since the previous
// mark (or construction) to phase, after sync() (a device synchronisation, so that queued kernels
// are charged to the phase that launched them); a phase marked again adds up. Disabled: mark does
// nothing and costs nothing.
class PhaseTimer {
 public:
  PhaseTimer() = default;  // disabled
  explicit PhaseTimer(std::function<void()> sync);
  bool enabled() const { return enabled_; }
  void mark(const char* phase);  // a literal: nothing is built when disabled
  // Markdown table: phase, ms, share of the total, in order of first mark.
  std::string table() const;
  // One line: "phase ms (share%), ...".
  std::string line() const;

 private:
  bool enabled_ = false;
  std::function<void()> sync_;
  double total_ms() const;
  double last_ = 0;  // seconds, steady clock
  std::vector<OpTime> phases_;
};

}  // namespace cst::trainer
