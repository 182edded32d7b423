#include "model/global_range_varlen.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#ifdef CST_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

#include <cmath>
#include <vector>

#include "common/error.h"
#include "model/varlen_kernel.h"

namespace cst::model::csa {
namespace {

using at::Tensor;

// What backward needs besides tensors, carried in the autograd context.
struct RangeCall : torch::CustomClassHolder {
  const VarlenKernel* kernel = nullptr;
  VarlenArgs args;   // one segment per sequence: its queries [q_lo, nq), all m keys
  int64_t q_lo = 0;  // 1 when the first query sees no key (causal, prefix 0), else 0
};

// [B, H, rows, d] -> [B * rows, H, d] (a contiguous copy) and back.
Tensor pack(const Tensor& x) { return x.transpose(1, 2).reshape({-1, x.size(1), x.size(3)}); }
Tensor unpack(const Tensor& rows, int64_t B) {
  return rows.view({B, rows.size(0) / B, rows.size(1), rows.size(2)}).transpose(1, 2);
}

// The range's rows [q_lo, nq) of x [B, H, nq, d], or its output with rows [0, q_lo) zero.
Tensor seeing_rows(const Tensor& x, int64_t q_lo) { return x.narrow(2, q_lo, x.size(2) - q_lo); }
Tensor with_unseeing_rows(const Tensor& rows, int64_t q_lo) {
  if (q_lo == 0) return rows.contiguous();
  const std::vector<int64_t> shape{rows.size(0), rows.size(1), q_lo, rows.size(3)};
  return at::cat({at::zeros(shape, rows.options()), rows}, 2);
}

class RangeVarlen : public torch::autograd::Function<RangeVarlen> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                        c10::intrusive_ptr<RangeCall> call) {
    const int64_t B = q.size(0);
    std::vector<Tensor> fwd = call->kernel->forward(pack(seeing_rows(q, call->q_lo)), pack(k), pack(v), call->args);
    std::vector<Tensor> saved{q, k, v};
    saved.insert(saved.end(), fwd.begin(), fwd.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["call"] = c10::IValue::make_capsule(call);
    return with_unseeing_rows(unpack(fwd[0], B), call->q_lo);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto call = c10::static_intrusive_pointer_cast<RangeCall>(ctx->saved_data["call"].toCapsule());
    const auto s = ctx->get_saved_variables();
    const Tensor &q = s[0], &k = s[1], &v = s[2];
    const std::vector<Tensor> fwd(s.begin() + 3, s.end());
    const int64_t B = q.size(0);
    auto [dq, dk, dv] = call->kernel->backward(pack(seeing_rows(grads[0], call->q_lo)),
                                               pack(seeing_rows(q, call->q_lo)), pack(k), pack(v), fwd, call->args);
    return {with_unseeing_rows(unpack(dq, B), call->q_lo), unpack(dk, B), unpack(dv, B), Tensor()};
  }
};

}  // namespace

bool global_range_varlen(const Tensor& q_rows, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                         double dropout_p) {
  const at::ScalarType t = q_rows.scalar_type();
  const int64_t d = q_rows.size(-1);
  if (!q_rows.is_cuda() || key_mask.defined() || dropout_p != 0.0 || k.size(2) == 0) return false;
  if ((t != at::kBFloat16 && t != at::kHalf) || k.scalar_type() != t || v.scalar_type() != t) return false;
  if (d % 8 != 0 || d > 256) return false;
#ifdef CST_WITH_CUDA
  return at::cuda::getDeviceProperties(q_rows.get_device())->major >= 8;
#else
  return false;
#endif
}

Tensor global_attention_range_varlen(const Tensor& q_rows, const Tensor& k, const Tensor& v, int64_t prefix,
                                     bool diagonal, const VarlenKernel& kernel) {
  const int64_t B = q_rows.size(0), nq = q_rows.size(2), m = k.size(2);
  CST_CHECK(m == prefix + (diagonal ? nq - 1 : 0) && m > 0 && v.size(2) == m,
            "global attention of a range through a variable-length kernel: " << m << " keys for " << nq
                                                                             << " queries, prefix " << prefix);
  auto call = c10::make_intrusive<RangeCall>();
  call->kernel = &kernel;
  call->q_lo = diagonal && prefix == 0 ? 1 : 0;
  const int64_t rows = nq - call->q_lo;
  VarlenArgs& a = call->args;
  const auto offsets = at::arange(B + 1, at::TensorOptions().dtype(at::kInt).device(q_rows.device()));
  a.cu_q = offsets * static_cast<int32_t>(rows);
  a.cu_k = offsets * static_cast<int32_t>(m);
  a.max_q = rows, a.max_k = m;
  // Bottom-right: packed query j (range query q_lo + j) sees keys <= j + m - rows = q_lo + j + prefix - 1.
  a.causal = diagonal;
  a.scale = 1.0 / std::sqrt(static_cast<double>(q_rows.size(3)));
  CST_CHECK(B * m < (int64_t{1} << 31), "global attention of a range: " << B * m << " keys overflow int32 offsets");
  return RangeVarlen::apply(q_rows, k, v, call);
}

}  // namespace cst::model::csa
