#include "model/varlen_kernel.h"

#include <ATen/ATen.h>

namespace cst::model::csa {
namespace {

using at::Tensor;

class FlashAttention2 : public VarlenKernel {
 public:
  std::vector<Tensor> forward(const Tensor& q, const Tensor& k, const Tensor& v, const VarlenArgs& a) const override {
    auto [out, lse, rng_state, unused, debug] = at::_flash_attention_forward(
        q, k, v, a.cu_q, a.cu_k, a.max_q, a.max_k, a.dropout_p, a.causal, /*return_debug_mask=*/false, a.scale);
    return {out, lse, rng_state, unused};
  }
  std::array<Tensor, 3> backward(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                                 const std::vector<Tensor>& fwd, const VarlenArgs& a) const override {
    auto [dq, dk, dv] = at::_flash_attention_backward(grad_out, q, k, v, fwd[0], fwd[1], a.cu_q, a.cu_k, a.max_q,
                                                      a.max_k, a.dropout_p, a.causal, fwd[2], fwd[3], a.scale);
    return {dq, dk, dv};
  }
};

}  // namespace

const VarlenKernel& flash_attention_varlen() {
  static const FlashAttention2 kKernel;  // stateless
  return kKernel;
}

}  // namespace cst::model::csa
