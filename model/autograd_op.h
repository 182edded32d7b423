// Differentiable operations whose forward is plain code: communication (the halo exchange and
// all-gather of sequence parallelism, model/seq_parallel.h) and recomputation (activation
// checkpointing, model/activation_checkpoint.h). The caller computes the outputs without recording a graph
// and attaches the backward as a function.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

namespace cst::model {

// Gradients of the outputs (undefined where none arrived) -> one gradient per input
// (undefined = none; ignored for inputs that do not require grad).
using BackwardFn = std::function<std::vector<at::Tensor>(std::vector<at::Tensor>)>;

// Makes `outputs` differentiable functions of `inputs` through `backward`, as one autograd node
// named `name` (outputs that are views are first replaced by copies: a node's outputs must own
// their storage). No-op (backward dropped) when grad mode is off or no input requires grad.
// Outputs must be floating point. The node frees `backward`, and what it captures, once it has
// run (unless the graph is retained).
void attach_backward(const char* name, const std::vector<at::Tensor>& inputs, std::vector<at::Tensor>& outputs,
                     BackwardFn backward);

}  // namespace cst::model
