// Variable-length attention for CSA's local part: the index plan that packs every slice's
// in-sequence keys into one segment of FlashAttention-2's packed-segment interface
// (model/varlen_kernel.h), tested on CPU with a reference kernel (tests/model/csa_kernels_test.cpp)
// and run by FlashAttention-2 on CUDA.
//
// Segment i = one slice of one batch row. Causal segments are aligned bottom-right (query j of
// Lq sees keys m <= j + Lk - Lq), which is CST's causal local mask: the e borrowed keys, then the
// slice's own keys up to the query. Sequence ends need no mask: their segments are shorter.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <memory>

#include "model/local_attention.h"
#include "model/varlen_kernel.h"

namespace cst::model::csa {

// The index tensors that pack one geometry's segments, built on the CPU once and kept on the
// device. Immutable.
struct VarlenPlan {
  int64_t batch = 0;
  LocalGeometry geometry;
  at::Tensor q_index;  // [total_q] int64: rows of the queries [B*n*L] that are real (undefined: all)
  at::Tensor k_index;  // [total_k] int64: rows of the stored keys [B*S] packed, segment by segment
                       // (S = rows of the key sequence from key_begin on: halos present and chunk)
  at::Tensor w_index;  // [total_k] int64: the window position w of each packed key (row of pk)
  at::Tensor slot;     // [total_k] int64: (b*n + s)*W + w, its place in the window layout [B*n*W]
  VarlenArgs args;     // cu_q, cu_k, max_q, max_k, causal (scale and dropout_p left at defaults)
};
std::shared_ptr<const VarlenPlan> make_varlen_plan(int64_t batch, const LocalGeometry& g, c10::Device device);

// The plan of the last geometry asked for (CSA layers see the same one on every step).
class VarlenPlanCache {
 public:
  std::shared_ptr<const VarlenPlan> get(int64_t batch, const LocalGeometry& g, c10::Device device);

 private:
  std::shared_ptr<const VarlenPlan> last_;
};

// Local attention of one chunk (the arguments of local_attention_flash_cpu, model/local_attention.h,
// without a key mask) through FlashAttention-2 variable-length segments; dropout_p as given.
at::Tensor local_attention_varlen(const at::Tensor& q, const at::Tensor& kx, const at::Tensor& vx, const KvHalo& left,
                                  const KvHalo& right, const at::Tensor& p_local, const at::Tensor& w_k,
                                  const LocalGeometry& g, double dropout_p, const VarlenKernel& kernel,
                                  VarlenPlanCache* plans);

}  // namespace cst::model::csa
