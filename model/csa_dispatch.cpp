#include "model/csa_dispatch.h"

#include "common/error.h"

namespace cst::model::csa {

using at::Tensor;

const char* to_string(LocalKernel k) {
  switch (k) {
    case LocalKernel::kFlashCpu: return "flash-cpu";
    case LocalKernel::kSdpaBlocks: return "sdpa-blocks";
    case LocalKernel::kFlashVarlen: return "flash-varlen";
  }
  return "?";
}

Tensor local_attention_fused(const Tensor& q, const Tensor& kx, const Tensor& vx, const KvHalo& left,
                             const KvHalo& right, const Tensor& p_local, const Tensor& w_k, const Tensor& key_mask,
                             const LocalGeometry& g, LocalKernel kernel, double dropout_p, bool training,
                             const VarlenKernel* varlen, VarlenPlanCache* plans) {
  CST_CHECK(left.k.defined() == g.left_halo && right.k.defined() == g.right_halo && !(g.causal && g.right_halo),
            "local attention: halos given (left " << left.k.defined() << ", right " << right.k.defined()
                                                  << ") do not match the geometry");
  const double p = training ? dropout_p : 0.0;
  switch (kernel) {
    case LocalKernel::kFlashCpu:
      CST_CHECK(p == 0.0, "local attention: the CPU flash kernel has no dropout (p = " << p << ")");
      return local_attention_flash_cpu(q, kx, vx, left, right, p_local, w_k, key_mask, g);
    case LocalKernel::kSdpaBlocks:
      return local_attention_sdpa_blocks(q, kx, vx, left, right, p_local, w_k, key_mask, g, p);
    case LocalKernel::kFlashVarlen:
      CST_CHECK(!key_mask.defined(), "local attention: the variable-length kernel takes no per-token key mask");
      return local_attention_varlen(q, kx, vx, left, right, p_local, w_k, g, p,
                                    varlen ? *varlen : flash_attention_varlen(), plans);
  }
  CST_THROW("local_attention_fused: unknown kernel " << static_cast<int>(kernel));
}

}  // namespace cst::model::csa
