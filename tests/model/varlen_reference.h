// A reference variable-length kernel (model/varlen_attention.h) for CPU tests of code that packs
// segments for FlashAttention-2: segment by segment, explicit softmax attention, causal aligned
// bottom-right (query j of Lq sees keys m <= j + Lk - Lq), as FlashAttention-2 does. Backward
// through autograd. tests/model/cuda_test.cpp runs FlashAttention-2 itself.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <limits>
#include <vector>

#include "model/varlen_kernel.h"

namespace cst::model::testing {

class ReferenceVarlen : public csa::VarlenKernel {
 public:
  std::vector<torch::Tensor> forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                     const csa::VarlenArgs& a) const override {
    return {run(q, k, v, a)};
  }
  std::array<torch::Tensor, 3> backward(const torch::Tensor& grad_out, const torch::Tensor& q, const torch::Tensor& k,
                                        const torch::Tensor& v, const std::vector<torch::Tensor>&,
                                        const csa::VarlenArgs& a) const override {
    torch::AutoGradMode on(true);
    torch::Tensor qq = q.detach().requires_grad_(), kk = k.detach().requires_grad_();
    torch::Tensor vv = v.detach().requires_grad_();
    auto g = torch::autograd::grad({run(qq, kk, vv, a)}, {qq, kk, vv}, {grad_out});
    return {g[0], g[1], g[2]};
  }

 private:
  static torch::Tensor run(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                           const csa::VarlenArgs& a) {
    std::vector<torch::Tensor> outs;
    for (int64_t i = 0; i + 1 < a.cu_q.size(0); ++i) {
      const int64_t q0 = a.cu_q[i].item<int64_t>(), lq = a.cu_q[i + 1].item<int64_t>() - q0;
      const int64_t k0 = a.cu_k[i].item<int64_t>(), lk = a.cu_k[i + 1].item<int64_t>() - k0;
      EXPECT_LE(lq, a.max_q);
      EXPECT_LE(lk, a.max_k);
      torch::Tensor qs = q.narrow(0, q0, lq).transpose(0, 1), ks = k.narrow(0, k0, lk).transpose(0, 1);
      torch::Tensor s = torch::matmul(qs, ks.transpose(1, 2)) * a.scale;  // [H, lq, lk]
      if (a.causal) {
        torch::Tensor j = torch::arange(lq).unsqueeze(1), m = torch::arange(lk).unsqueeze(0);
        s = s.masked_fill(m > j + (lk - lq), -std::numeric_limits<double>::infinity());
      }
      outs.push_back(torch::matmul(torch::softmax(s, -1), v.narrow(0, k0, lk).transpose(0, 1)).transpose(0, 1));
    }
    return torch::cat(outs, 0);
  }
};

}  // namespace cst::model::testing
