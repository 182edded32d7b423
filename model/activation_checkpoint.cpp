#include "model/activation_checkpoint.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <mutex>

#include "model/autocast_scope.h"
#include "model/autograd_op.h"
#include "model/model.h"

namespace cst::model {
namespace {

using torch::Tensor;

// The generators dropout draws from: the CPU one and, for a CUDA block, its device's.
struct RngState {
  Tensor cpu, cuda;
  at::Device device{at::kCPU};

  static at::Generator generator(const at::Device& d) { return at::globalContext().defaultGenerator(d); }
  static Tensor get(const at::Device& d) {
    at::Generator g = generator(d);
    std::lock_guard<std::mutex> lock(g.mutex());
    return g.get_state();
  }
  static void set(const at::Device& d, const Tensor& state) {
    at::Generator g = generator(d);
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_state(state);
  }
  static RngState capture(const at::Device& d) {
    RngState s;
    s.device = d;
    s.cpu = get(at::kCPU);
    if (d.is_cuda()) s.cuda = get(d);
    return s;
  }
  void restore() const {
    set(at::kCPU, cpu);
    if (cuda.defined()) set(device, cuda);
  }
};

}  // namespace

Tensor checkpointed_block(BlockImpl& block, const Tensor& x, const Tensor& mask, const LayerContext& ctx) {
  // Node inputs: x, the positional tables, the block's parameters (those requiring grad).
  std::vector<Tensor> inputs{x, ctx.local, ctx.global};
  for (const Tensor& p : block.parameters()) inputs.push_back(p);
  bool any_grad = false;
  for (const Tensor& t : inputs) any_grad |= t.defined() && t.requires_grad();
  if (!torch::GradMode::is_enabled() || !any_grad) return block.forward(x, mask, ctx);

  const RngState rng = RngState::capture(x.device());
  const AutocastState autocast = AutocastState::current();
  std::vector<Tensor> out(1);
  {
    torch::NoGradGuard no_grad;
    out[0] = block.forward(x, mask, ctx);
  }
  std::vector<Tensor> detached;
  std::vector<bool> needs;
  for (const Tensor& t : inputs) {
    detached.push_back(t.defined() ? t.detach() : t);
    needs.push_back(t.defined() && t.requires_grad());
  }
  attach_backward("CheckpointedBlockBackward", inputs, out,
                  [&block, mask, ctx, rng, autocast, saved = std::move(detached), needs = std::move(needs),
                   params = block.parameters()](std::vector<Tensor> grads) {
                    // Leaves for the recomputation: x and the tables as fresh leaves, the
                    // parameters as themselves (grad() captures their gradients without
                    // accumulating into .grad()).
                    std::vector<Tensor> leaves = saved;
                    std::vector<Tensor> wrt;
                    std::vector<size_t> wrt_index;
                    for (size_t i = 0; i < leaves.size(); ++i) {
                      Tensor& t = leaves[i];
                      if (!t.defined()) continue;
                      if (i < 3)
                        t = t.detach().requires_grad_(needs[i]);
                      else
                        t = params[i - 3];
                      if (needs[i]) wrt.push_back(t), wrt_index.push_back(i);
                    }
                    Tensor y;
                    {
                      const RngState now = RngState::capture(rng.device);
                      rng.restore();
                      torch::AutoGradMode grad_on(true);
                      AutocastScope ac(autocast);
                      LayerContext c = ctx;
                      c.local = leaves[1], c.global = leaves[2];
                      y = block.forward(leaves[0], mask, c);
                      now.restore();
                    }
                    Tensor gy = grads[0].defined() ? grads[0] : at::zeros_like(y);
                    std::vector<Tensor> g = torch::autograd::grad({y}, wrt, {gy}, /*retain_graph=*/false,
                                                                  /*create_graph=*/false, /*allow_unused=*/true);
                    std::vector<Tensor> result(leaves.size());
                    for (size_t j = 0; j < wrt.size(); ++j) result[wrt_index[j]] = g[j];
                    return result;
                  });
  return out[0];
}

}  // namespace cst::model
