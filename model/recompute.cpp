#include "model/recompute.h"

#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include "model/autocast_scope.h"

namespace cst::model {
namespace {

struct Holder : torch::CustomClassHolder {
  RecomputeFn fn;
  AutocastState autocast;  // the forward's
};

class Recompute : public torch::autograd::Function<Recompute> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::TensorList inputs,
                            c10::intrusive_ptr<Holder> h) {
    ctx->save_for_backward(inputs.vec());
    ctx->saved_data["fn"] = c10::IValue::make_capsule(h);
    return h->fn(inputs.vec());  // grad mode is off here: nothing is kept
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto h = c10::static_intrusive_pointer_cast<Holder>(ctx->saved_data["fn"].toCapsule());
    const std::vector<at::Tensor> saved = ctx->get_saved_variables();
    std::vector<at::Tensor> in, wrt;
    std::vector<size_t> where;
    for (size_t i = 0; i < saved.size(); ++i) {
      at::Tensor t = saved[i].detach();
      if (ctx->needs_input_grad(i)) t.requires_grad_(true), wrt.push_back(t), where.push_back(i);
      in.push_back(t);
    }
    torch::autograd::variable_list out(saved.size() + 1);
    if (wrt.empty()) return out;
    at::Tensor y;
    {
      at::AutoGradMode on(true);
      AutocastScope ac(h->autocast);
      y = h->fn(in);
    }
    auto g = torch::autograd::grad({y}, wrt, {grads[0]}, /*retain_graph=*/false, /*create_graph=*/false,
                                   /*allow_unused=*/true);
    for (size_t j = 0; j < where.size(); ++j) out[where[j]] = g[j];
    return out;
  }
};

}  // namespace

at::Tensor recompute(const RecomputeFn& fn, const std::vector<at::Tensor>& inputs) {
  auto h = c10::make_intrusive<Holder>();
  h->fn = fn;
  h->autocast = AutocastState::current();
  return Recompute::apply(at::TensorList(inputs), h);
}

}  // namespace cst::model
