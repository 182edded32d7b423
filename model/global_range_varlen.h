// Global attention of a query range (model/global_range.h) through a variable-length kernel
// (model/varlen_kernel.h): on CUDA, FlashAttention-2 inside the torch wheel, one fused kernel
// call forward and one backward, with nothing of size (queries x keys).
//
// FlashAttention-2 aligns its causal mask bottom-right (query j of Lq sees keys <= j + Lk - Lq),
// which is the causal range's shifted-query offset itself: with Lq = nq queries over
// Lk = prefix + nq - 1 keys, query i sees keys [0, prefix + i). So each sequence of the batch is
// one segment and the range needs neither a mask nor a merge of blocks. The first slice of a
// causal sequence (prefix 0) sees no key: it is left out of its segment and gets 0.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace cst::model::csa {

class VarlenKernel;

// The cost per row beyond its pairs, in pairs, of FlashAttention-2 on a causal range: the hidden
// half of the diagonal tiles it computes whole (128 key columns). Derived from the tile size,
// not yet fitted to GPU times; sequence parallelism splits the causal rows by pairs plus this.
constexpr int64_t kVarlenRowCost = 64;

// Whether global_attention_range runs this range through FlashAttention-2: CUDA, q, k and v of
// one dtype, bfloat16 or float16, head width a multiple of 8 up to 256, a device of compute
// capability 8 or more, no key padding (key_mask undefined), no attention dropout (the row blocks
// draw it), and at least one key. Always false in a build without CUDA.
bool global_range_varlen(const at::Tensor& q_rows, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_mask,
                         double dropout_p);

// The arguments of global_attention_range without key mask and dropout, through `kernel`
// (FlashAttention-2 on CUDA; a reference kernel in CPU tests). Needs at least one key
// (prefix + (nq - 1 when diagonal) > 0). Differentiable in q_rows, k and v.
at::Tensor global_attention_range_varlen(const at::Tensor& q_rows, const at::Tensor& k, const at::Tensor& v,
                                         int64_t prefix, bool diagonal, const VarlenKernel& kernel);

}  // namespace cst::model::csa
