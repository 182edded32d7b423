#include "model/recompute.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <mutex>

#include "model/autocast_scope.h"
#include "model/autograd_op.h"

namespace cst::model {
namespace {

using at::Tensor;

// The generators dropout draws from: the CPU one and, for a CUDA device, its own.
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

Tensor recompute(const RecomputeFn& fn, const std::vector<Tensor>& inputs, const RecomputeOptions& opt) {
  if (!at::GradMode::is_enabled() || !torch::autograd::compute_requires_grad(inputs)) return fn(inputs);
  RngState rng;
  if (opt.replay_rng) rng = RngState::capture(opt.device);
  const AutocastState autocast = AutocastState::current();
  std::vector<Tensor> out(1);
  {
    at::NoGradGuard no_grad;
    out[0] = fn(inputs);
  }
  std::vector<Tensor> saved;  // the inputs as fn reads them: detached, or (captured) themselves
  std::vector<bool> needs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    saved.push_back(t.defined() && i < opt.first_captured ? t.detach() : t);
    needs.push_back(t.defined() && t.requires_grad());
  }
  attach_backward(
      opt.name, inputs, out,
      [fn, opt, rng, autocast, saved = std::move(saved), needs = std::move(needs)](std::vector<Tensor> grads) {
        std::vector<Tensor> leaves = saved, wrt;
        std::vector<size_t> wrt_index;
        for (size_t i = 0; i < leaves.size(); ++i) {
          if (!leaves[i].defined()) continue;
          if (i < opt.first_captured) leaves[i] = leaves[i].detach().requires_grad_(needs[i]);
          if (needs[i]) wrt.push_back(leaves[i]), wrt_index.push_back(i);
        }
        std::vector<Tensor> result(leaves.size());
        if (wrt.empty()) return result;
        Tensor y;
        {
          RngState now;
          if (opt.replay_rng) now = RngState::capture(rng.device), rng.restore();
          at::AutoGradMode grad_on(true);
          AutocastScope ac(autocast);
          y = fn(leaves);
          if (opt.replay_rng) now.restore();
        }
        Tensor gy = grads[0].defined() ? grads[0] : at::zeros_like(y);
        std::vector<Tensor> g = torch::autograd::grad({y}, wrt, {gy}, /*retain_graph=*/false,
                                                      /*create_graph=*/false, /*allow_unused=*/true);
        for (size_t j = 0; j < wrt.size(); ++j) result[wrt_index[j]] = g[j];
        return result;
      });
  return out[0];
}

}  // namespace cst::model
