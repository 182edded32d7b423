// CSA's local attention through fused kernels: the function of csa::local_attention (csa.h, the
// explicit reference) without the [B, H, n, L, W] scores. docs/MODEL.md "Kernels" compares them.
//
// Shapes: B batch, N real tokens of the chunk, n = ceil(N / L) slices, L slice length, e keys
// borrowed from each side, W window (L + e causal, L + 2e bidirectional), D width, H heads,
// d = D / H. The *key sequence* [B, T, D], T = e + n*L (+ e bidirectional), holds the e keys
// before the chunk (the left halo: zeros at the sequence start), the chunk's n*L keys, and
// (bidirectional) the e keys after it (the right halo). The window of slice s is rows
// [s*L, s*L + W) of it; query i of slice s sits at key row e + s*L + i. Keys and values are
// projections (k_proj(x), v_proj(x)); P_l's part of the keys, pk = P_l W_k^T [W, D], is added per
// window position inside (K[s, w] = keys[s*L + w] + pk[w]).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace cst::model::csa {

class VarlenKernel;
class VarlenPlanCache;

enum class LocalKernel {
  kExplicit,     // csa::local_attention on extended slices: scores [B, H, n, L, W] (the reference)
  kFlashCpu,     // SDPA's CPU flash kernel on blocks [B*n, H, L|W, d] with an additive window mask;
                 // backward rebuilds the blocks, so it keeps what full attention keeps (q, keys,
                 // values, output). No dropout.
  kSdpaBlocks,   // at::scaled_dot_product_attention on the same blocks with a boolean mask: any
                 // device and dtype, dropout (CUDA: the memory-efficient kernel); autograd keeps
                 // the blocks
  kFlashVarlen,  // FlashAttention-2 over variable-length segments (CUDA, bf16/fp16, d % 8 == 0,
                 // d <= 256): each slice's in-sequence keys packed, no mask; backward rebuilds
                 // the packing. Needs no per-token key mask.
};
const char* to_string(LocalKernel k);

// Where the chunk sits in its sequence.
struct LocalGeometry {
  int64_t slice_len = 1;     // L
  int64_t ext = 0;           // e
  bool causal = false;
  int64_t heads = 1;         // H
  int64_t tokens = 0;        // N, real tokens of the chunk (queries [0, N) of the n*L rows)
  bool left_halo = false;    // the key sequence's first e rows are real keys (else: outside)
  bool right_halo = false;   // bidirectional: its last e rows are real keys (needs N = n*L)

  int64_t window() const { return causal ? slice_len + ext : slice_len + 2 * ext; }
  int64_t slices() const { return (tokens + slice_len - 1) / slice_len; }
  int64_t key_rows() const { return slices() * slice_len + window() - slice_len; }  // T
  // Rows of the key sequence inside the sequence: [key_begin, key_end).
  int64_t key_begin() const { return left_halo ? 0 : ext; }
  int64_t key_end() const { return right_halo ? key_rows() : ext + tokens; }
};

// Local attention of one chunk. q [B, n*L, D] (P_l rows included), keys / values [B, T, D],
// pk [W, D] or undefined (no MS-VIPE), key_mask [B, T] bool (true = real) or undefined (every
// row in [key_begin, key_end) is real). Returns [B, n*L, D]; a query with no visible key gets 0
// with zero gradients; rows >= N are padding (kFlashVarlen: 0). Differentiable in q, keys,
// values and pk.
// kFlashVarlen: key_mask must be undefined; varlen is the kernel (null: FlashAttention-2) and
// plans caches its index tensors (may be null). kExplicit is not served here.
at::Tensor local_attention_fused(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                                 const at::Tensor& pk, const at::Tensor& key_mask, const LocalGeometry& g,
                                 LocalKernel kernel, double dropout_p, bool training,
                                 const VarlenKernel* varlen = nullptr, VarlenPlanCache* plans = nullptr);

// The key validity [B, T] bool of the key sequence from its geometry and an optional token mask
// [B, T]; undefined when every row is real (both halos, no mask).
at::Tensor key_validity(const LocalGeometry& g, int64_t batch, const at::Tensor& key_mask, const at::TensorOptions& opt);

}  // namespace cst::model::csa
