// The per-layer state of incremental decoding (model/decode.h): what one attention layer of a
// causal LM keeps so that a new token costs O(window + slices) (CSA) or O(tokens) (full
// attention) instead of a forward over the whole sequence.
//
// Rows are left-aligned sequences of their own lengths: row b's next token sits at position
// pos[b]. Inputs are the layer's attention inputs h = ln1(x); outputs the attention module's
// output (before the residual). No gradients (call under torch::NoGradGuard).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "model/attention.h"

namespace cst::model {

class LayerCache {
 public:
  virtual ~LayerCache() = default;
  // The prompt: h [B, T, D], mask [B, T] bool (row b: its first len[b] >= 1 tokens real), ctx the
  // model's layer context. Returns the attention output [B, T, D] (the module's, as in a full
  // forward; padding rows meaningless) and sets the state to "len[b] tokens seen" per row.
  virtual at::Tensor prefill(const at::Tensor& h, const at::Tensor& mask, const std::vector<int64_t>& len,
                             const LayerContext& ctx) = 0;
  // One token per row: h [B, D] at positions pos[b] (pos[b] = tokens seen by row b). Returns the
  // attention output [B, D]. The caller advances its positions afterwards; a row whose position
  // is not advanced (a finished row) may be stepped again at the same position: its state then
  // no longer describes a sequence, but stays in bounds.
  virtual at::Tensor step(const at::Tensor& h, const std::vector<int64_t>& pos) = 0;
  // Bytes held by the cache tensors (the state above; not the model's weights).
  virtual int64_t bytes() const = 0;
};

// The state of one Composite Slice Attention layer (every composition and aggregation, MS-VIPE or
// absolute positions): per row the window buffer of k_proj / v_proj of the e borrowed tokens and
// of the current slice so far (without P_l; P_l W_k^T is added by window position when used), the
// running aggregation of the current slice, the global keys (P_g included) and values of the
// completed slices, and the current slice's global output, computed once when the previous
// slice completes. Memory O((L + e + n) D) per row; a token costs O(L + e) (plus O(n) once per
// slice). `capacity` is the longest sequence a row will reach (<= max_seq_len).
std::unique_ptr<LayerCache> make_csa_cache(CompositeSliceAttention& attn, const ModelConfig& cfg,
                                           const LayerContext& ctx, int64_t batch, int64_t capacity);

// The plain key/value cache of full attention: k_proj / v_proj of every token seen, [B,
// capacity, D] each; a token costs O(tokens seen).
std::unique_ptr<LayerCache> make_full_cache(FullAttention& attn, const ModelConfig& cfg, int64_t batch,
                                            int64_t capacity);

// q [R, D] attending to keys / values [R, K, D] where visible [R, K] (bool): [R, D], H heads,
// scaled dot product, float32 masked softmax (csa::masked_softmax).
at::Tensor attend_one(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& visible,
                      int64_t heads);

// A host vector of indices as an int64 tensor on `device`.
at::Tensor index_tensor(const std::vector<int64_t>& v, const at::Device& device);

}  // namespace cst::model
