// CSA's local attention through fused kernels: the function of csa::local_attention (csa.h, the
// explicit reference) without the [B, H, n, L, W] scores. docs/MODEL.md "Kernels" compares them;
// model/csa_dispatch.h picks one of them and the variable-length kernel (model/varlen_attention.h).
//
// Shapes: B batch, N real tokens of the chunk, n = ceil(N / L) slices, L slice length, e keys
// borrowed from each side, W window (L + e causal, L + 2e bidirectional), D width, H heads,
// d = D / H. The *key sequence* of a chunk, T = e + n*L (+ e bidirectional) rows, is the e keys
// before it (the left halo), its own n*L keys, and (bidirectional) the e keys after it (the
// right halo); a missing halo (a sequence end) is outside the sequence. The window of slice s is
// rows [s*L, s*L + W) of it; query i of slice s sits at row e + s*L + i. Keys and values are
// projections (k_proj(x), v_proj(x)); P_l's part of the keys, pk = P_l W_k^T [W, D], is added
// by window position inside (K[s, w] = key row s*L + w, plus pk[w]). The kernels keep what full
// attention keeps (q, keys, values, output), not the windows nor pk.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace cst::model::csa {

// Projected keys and values from beyond one end of a chunk (sequence parallelism: the
// neighbouring rank's e boundary tokens), k = k_proj(x), v = v_proj(x) without P_l, [B, e, D]
// each; mask [B, e] bool (true = real), undefined = all real. An undefined k means no neighbour:
// that end is a sequence end, whose borrowed positions are masked.
struct KvHalo {
  at::Tensor k, v, mask;
};

// Where the chunk sits in its sequence.
struct LocalGeometry {
  int64_t slice_len = 1;  // L
  int64_t ext = 0;        // e
  bool causal = false;
  int64_t heads = 1;          // H
  int64_t tokens = 0;         // N, real tokens of the chunk (queries [0, N) of the n*L rows)
  bool left_halo = false;     // the key sequence's first e rows are real keys (else: outside)
  bool right_halo = false;    // bidirectional: its last e rows are real keys (needs N = n*L)
  int64_t call_elements = 0;  // kFlashCpu: window elements (blocks x W x D) per kernel call, which
                              // bounds the rebuilt windows; 0 = 2^24

  int64_t window() const { return causal ? slice_len + ext : slice_len + 2 * ext; }
  int64_t slices() const { return (tokens + slice_len - 1) / slice_len; }
  int64_t key_rows() const { return slices() * slice_len + window() - slice_len; }  // T
  // Rows of the key sequence inside the sequence: [key_begin, key_end).
  int64_t key_begin() const { return left_halo ? 0 : ext; }
  int64_t key_end() const { return right_halo ? key_rows() : ext + tokens; }
};

// Local attention of one chunk through SDPA on slice blocks [B*n, H, L|W, d] (the kernels
// model/csa_dispatch.h picks from). q [B, n*L, D] (P_l rows included), kx / vx [B, n*L, D] the
// chunk's projected keys and values, left / right halos (right: bidirectional only; their
// presence must match g.left_halo / g.right_halo), p_local P_l [W, D] and w_k k_proj's weight
// [D, D] (pk = P_l W_k^T, in q's dtype; p_local undefined: no MS-VIPE), key_mask [B, T] bool
// over the key sequence (true = real) or undefined (every row in [key_begin, key_end) is real).
// Returns [B, n*L, D]; a query with no visible key gets 0 with zero gradients; rows >= N are
// padding. Differentiable in q, kx, vx, the halos' k and v, p_local and w_k.
// flash_cpu: SDPA's CPU flash kernel with an additive window mask, a group of blocks per call;
// backward rebuilds the blocks, so it keeps what full attention keeps (q, keys, values,
// output). No dropout.
at::Tensor local_attention_flash_cpu(const at::Tensor& q, const at::Tensor& kx, const at::Tensor& vx,
                                     const KvHalo& left, const KvHalo& right, const at::Tensor& p_local,
                                     const at::Tensor& w_k, const at::Tensor& key_mask, const LocalGeometry& g);
// sdpa_blocks: at::scaled_dot_product_attention on all blocks at once with a boolean mask: any
// device and dtype, dropout_p as given (CUDA: the memory-efficient kernel); autograd keeps the
// blocks.
at::Tensor local_attention_sdpa_blocks(const at::Tensor& q, const at::Tensor& kx, const at::Tensor& vx,
                                       const KvHalo& left, const KvHalo& right, const at::Tensor& p_local,
                                       const at::Tensor& w_k, const at::Tensor& key_mask, const LocalGeometry& g,
                                       double dropout_p);

// The key sequence [B, T, ...] of a chunk [B, n*L, ...]: left halo (or zeros), the chunk, and
// (bidirectional) right halo (or zeros). For keys, values and masks alike.
at::Tensor key_sequence(const at::Tensor& chunk, const at::Tensor& left, const at::Tensor& right,
                        const LocalGeometry& g);

// pk = P_l W_k^T [W, D] in dtype (undefined without p_local); and the gradients of p_local and
// w_k from pk's.
at::Tensor position_keys(const at::Tensor& p_local, const at::Tensor& w_k, at::ScalarType dtype);
std::pair<at::Tensor, at::Tensor> position_keys_backward(const at::Tensor& grad_pk, const at::Tensor& p_local,
                                                         const at::Tensor& w_k);

// The key validity [B, T] bool of the key sequence from its geometry and an optional token mask
// [B, T]; undefined when every row is real (both halos, no mask).
at::Tensor key_validity(const LocalGeometry& g, int64_t batch, const at::Tensor& key_mask,
                        const at::TensorOptions& opt);

}  // namespace cst::model::csa
