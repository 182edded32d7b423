// FlashAttention-2's packed-segment interface as a small kernel interface, so that code packing
// segments for it (the local branch, model/varlen_attention.h; a sequence-parallel rank's global
// range, model/global_range_varlen.h) is tested on CPU with a reference kernel
// (tests/model/varlen_reference.h) and runs FlashAttention-2 on CUDA.
//
// Segment i: its queries are rows [cu_q[i], cu_q[i+1]) of the packed queries, its keys rows
// [cu_k[i], cu_k[i+1]) of the packed keys. Causal segments are aligned bottom-right: query j of
// Lq sees keys m <= j + Lk - Lq.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <vector>

namespace cst::model::csa {

struct VarlenArgs {
  at::Tensor cu_q, cu_k;         // [segments + 1] int32, on the device of q
  int64_t max_q = 0, max_k = 0;  // longest query / key segment
  bool causal = false;
  double scale = 1.0;      // on q . k
  double dropout_p = 0.0;  // on the attention probabilities
};

// A variable-length attention kernel. q [total_q, H, d], k / v [total_k, H, d], contiguous.
class VarlenKernel {
 public:
  virtual ~VarlenKernel() = default;
  // Returns {out [total_q, H, d], then whatever backward needs}.
  virtual std::vector<at::Tensor> forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                          const VarlenArgs& a) const = 0;
  // grad_out [total_q, H, d]; fwd = what forward returned. Returns {dq, dk, dv}.
  virtual std::array<at::Tensor, 3> backward(const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k,
                                             const at::Tensor& v, const std::vector<at::Tensor>& fwd,
                                             const VarlenArgs& a) const = 0;
};

// FlashAttention-2 inside the torch wheel (at::_flash_attention_forward / _backward): CUDA,
// bf16 / fp16, head width a multiple of 8 up to 256. Stateless; lives for the program.
const VarlenKernel& flash_attention_varlen();

}  // namespace cst::model::csa
