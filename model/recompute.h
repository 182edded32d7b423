// Selective activation recomputation: a step whose intermediates are large for its cost keeps
// only its inputs; backward runs it again, with grad mode and the forward's autocast state, and
// differentiates it.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

namespace cst::model {

using RecomputeFn = std::function<at::Tensor(const std::vector<at::Tensor>& inputs)>;

// fn(inputs), differentiable in every input that requires grad. fn must compute only from its
// inputs (a tensor it captures gets no gradient) and the same way twice (no dropout). inputs:
// defined tensors; non-floating ones (masks) are passed through.
at::Tensor recompute(const RecomputeFn& fn, const std::vector<at::Tensor>& inputs);

}  // namespace cst::model
