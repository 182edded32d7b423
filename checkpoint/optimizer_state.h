// The optimizer state a checkpoint saves and restores, seen from checkpoint/: one flat vector
// of N elements (the trainable parameters in registration order) per moment, exp_avg and
// exp_avg_sq, of which this rank holds a contiguous range, and the bias-correction count.
// trainer::Optimizer implements it.
//
// The flat space is cut into W ranges by partition(N, r, W): the optimizer shards of a
// checkpoint follow it for the saving job's W (docs/CHECKPOINT.md), and ZeRO-1 holds the same
// ranges, so that a ZeRO-1 rank writes its own state.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>

namespace cst::checkpoint {

// [begin, end) of rank r's share of a flat vector of n elements over w ranks.
struct FlatRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

// Rank r's range when n elements are cut into w contiguous ranges of P = ceil(n / w) elements
// (the last ones shorter or empty).
inline FlatRange partition(int64_t n, int rank, int world) {
  const int64_t per = (n + world - 1) / world;
  return {std::min(n, per * rank), std::min(n, per * (rank + 1))};
}

class OptimizerState {
 public:
  virtual ~OptimizerState() = default;
  virtual int64_t flat_numel() const = 0;  // N
  virtual FlatRange held() const = 0;      // the range of the flat state this rank holds
  // This rank's state: [held().size()] each, on any device and of any floating dtype. The
  // returned tensors alias the optimizer's buffers (copy before handing to another thread).
  virtual const at::Tensor& exp_avg() const = 0;
  virtual const at::Tensor& exp_avg_sq() const = 0;
  // Replaces the held state (shapes [held().size()], any dtype / device; copied).
  virtual void load_state(const at::Tensor& exp_avg, const at::Tensor& exp_avg_sq) = 0;
  virtual int64_t steps_taken() const = 0;      // bias-correction count
  virtual void set_steps_taken(int64_t t) = 0;  // resume: bias correction continues from t
};

}  // namespace cst::checkpoint
