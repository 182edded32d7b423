#include "model/activation_checkpoint.h"

#include "model/recompute.h"

namespace cst::model {

using torch::Tensor;

Tensor checkpointed_block(const BlockForward& forward, const std::vector<Tensor>& parameters, const Tensor& x,
                          const LayerContext& ctx) {
  // Node inputs: x, the positional tables, then the block's parameters, which forward reads as
  // members (captured).
  std::vector<Tensor> inputs{x, ctx.local, ctx.global};
  inputs.insert(inputs.end(), parameters.begin(), parameters.end());
  RecomputeOptions opt;
  opt.name = "CheckpointedBlockBackward";
  opt.replay_rng = true, opt.device = x.device();
  opt.first_captured = 3;
  auto fn = [forward, ctx](const std::vector<Tensor>& t) {
    LayerContext c = ctx;
    c.local = t[1], c.global = t[2];
    return forward(t[0], c);
  };
  return recompute(fn, inputs, opt);
}

}  // namespace cst::model
