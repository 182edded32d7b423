// Activation checkpointing of a block (train.activation_checkpointing = block): forward keeps
// only the block's input; backward recomputes the block and differentiates the recomputation.
//
// Exactness: the recomputation replays the random state the forward started from (the CPU
// generator, and the CUDA generator of x's device), and runs under the forward's autocast
// state, so dropout masks and dtypes are the same; the random state is then put back as it was.
// The parameters and the shared positional tables are inputs of the checkpoint's autograd
// node, so their gradients reach the accumulators through the normal graph, once per backward
// (gradient hooks, e.g. GradReducer's, see complete gradients). On CPU the gradients are
// bitwise those of the uncheckpointed block (tests/model/activation_checkpoint_test.cpp).
//
// Sequence parallelism: the recomputation repeats the block's halo exchange and all-gather
// inside backward; every rank of the group runs its checkpoints' backward in the same order
// (the same graph), so the collectives match.
#pragma once

#include <torch/types.h>

#include <functional>
#include <vector>

#include "model/attention.h"

namespace cst::model {

// A block's forward (x [B, N, D], ctx) -> y [B, N, D] (the mask captured); it reads the block's
// parameters as members and the positional tables from ctx.
using BlockForward = std::function<torch::Tensor(const torch::Tensor& x, const LayerContext& ctx)>;

// y = forward(x, ctx), recomputed in backward; parameters: the block's (model/recompute.h:
// captured inputs). Without grad mode, or when nothing requires grad, it is forward itself. What
// forward captures (the block, ctx.sp's group) must outlive the backward.
torch::Tensor checkpointed_block(const BlockForward& forward, const std::vector<torch::Tensor>& parameters,
                                 const torch::Tensor& x, const LayerContext& ctx);

}  // namespace cst::model
