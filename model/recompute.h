// Recomputation in backward: a step keeps only its inputs; backward runs it again, with grad
// mode on and the forward's autocast state (and, when asked, its random state), and
// differentiates the recomputation. Selective recomputation (CSA's global branch,
// model/attention.cpp) and activation checkpointing of a block (model/activation_checkpoint.h)
// both run through recompute().
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstddef>
#include <functional>
#include <limits>
#include <vector>

namespace cst::model {

using RecomputeFn = std::function<at::Tensor(const std::vector<at::Tensor>& inputs)>;

struct RecomputeOptions {
  const char* name = "RecomputeBackward";  // the autograd node's name
  // Replay the random state the forward started from (the CPU generator, and the CUDA generator
  // of `device` when it is a CUDA device), so that dropout draws the same masks; the random state
  // is put back as it was after the recomputation.
  bool replay_rng = false;
  at::Device device{at::kCPU};  // replay_rng: the device whose generator is replayed
  // inputs[i] with i >= first_captured are read by fn through capture (a module's parameters),
  // not from its argument: backward differentiates with respect to those tensors themselves
  // (grad() returns their gradients without accumulating into .grad()).
  size_t first_captured = std::numeric_limits<size_t>::max();
};

// fn(inputs) [any shape, floating point], differentiable in every input that requires grad.
// fn must compute only from its inputs (a tensor it captures gets no gradient unless it is an
// input at or past first_captured) and the same way twice (dropout only with replay_rng).
// inputs may be undefined (passed as such) or non-floating (masks: passed through). Without grad
// mode, or when no input requires grad, it is fn(inputs) itself. What fn captures must outlive
// the backward.
at::Tensor recompute(const RecomputeFn& fn, const std::vector<at::Tensor>& inputs, const RecomputeOptions& opt = {});

}  // namespace cst::model
