#include "model/autograd_op.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include "common/error.h"

namespace cst::model {
namespace {

class FnNode : public torch::autograd::Node {
 public:
  FnNode(const char* name, BackwardFn fn) : name_(name), fn_(std::move(fn)) {}
  std::string name() const override { return name_; }
  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    CST_CHECK(fn_, name_ << ": backward through a graph that was already freed");
    std::vector<at::Tensor> out = fn_(std::move(grads));
    CST_CHECK(out.size() == num_outputs(),
              name_ << ": backward returned " << out.size() << " gradients for " << num_outputs() << " inputs");
    return out;
  }
  void release_variables() override { fn_ = nullptr; }

 private:
  std::string name_;
  BackwardFn fn_;
};

}  // namespace

void attach_backward(const char* name, const std::vector<at::Tensor>& inputs, std::vector<at::Tensor>& outputs,
                     BackwardFn backward) {
  if (!torch::autograd::compute_requires_grad(inputs)) return;
  auto node = std::shared_ptr<FnNode>(new FnNode(name, std::move(backward)), torch::autograd::deleteNode);
  node->set_next_edges(torch::autograd::collect_next_edges(inputs));
  for (at::Tensor& o : outputs) {
    if (o.defined() && o.is_view()) o = o.clone();
    torch::autograd::set_history(o, node);
  }
}

}  // namespace cst::model
