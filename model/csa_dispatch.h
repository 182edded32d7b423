// Which kernel computes CSA's local attention, and the call that runs it: above the kernels
// (model/local_attention.h: SDPA on slice blocks; model/varlen_attention.h: FlashAttention-2
// variable-length), neither of which includes this header. Shapes and the key sequence are
// described in model/local_attention.h.
#pragma once

#include <ATen/core/Tensor.h>

#include "model/local_attention.h"
#include "model/varlen_attention.h"

namespace cst::model::csa {

// The fused local kernels. The explicit reference (csa::local_attention on extended slices,
// scores [B, H, n, L, W]) is not among them: CompositeSliceAttention calls it directly.
enum class LocalKernel {
  kFlashCpu,     // local_attention_flash_cpu: SDPA's CPU flash kernel on blocks. No dropout.
  kSdpaBlocks,   // local_attention_sdpa_blocks: SDPA on the blocks with a boolean mask, dropout
  kFlashVarlen,  // local_attention_varlen: FlashAttention-2 over variable-length segments (CUDA,
                 // bf16/fp16, d % 8 == 0, d <= 256). Needs no per-token key mask.
};
const char* to_string(LocalKernel k);

// Local attention of one chunk through `kernel`, with the arguments of local_attention_flash_cpu
// (model/local_attention.h); dropout_p applies when training. kFlashVarlen: key_mask must be
// undefined; varlen is the kernel (null: FlashAttention-2) and plans caches its index tensors
// (may be null). Throws when the halos do not match g, or kFlashCpu is asked for dropout.
at::Tensor local_attention_fused(const at::Tensor& q, const at::Tensor& kx, const at::Tensor& vx, const KvHalo& left,
                                 const KvHalo& right, const at::Tensor& p_local, const at::Tensor& w_k,
                                 const at::Tensor& key_mask, const LocalGeometry& g, LocalKernel kernel,
                                 double dropout_p, bool training, const VarlenKernel* varlen = nullptr,
                                 VarlenPlanCache* plans = nullptr);

}  // namespace cst::model::csa
