// Incremental decoding of a causal language model (task = lm): a second implementation of
// CstModelImpl::forward that keeps per-layer state (model/decode_cache.h) so that each new token
// costs O(L + e + n) per layer for CST (O(tokens seen) for the full-attention baseline) instead
// of a forward over the whole sequence. At every position its logits equal the full forward's
// (tests/model/decode_test.cpp: within 1e-5 in float32).
//
//   Decoder dec(*model, batch, capacity);
//   logits = dec.prefill(ids, lengths);   // [B, V]: the next-token logits after each prompt
//   logits = dec.step(next_ids);          // [B, V], one token per row
//
// Rows are left-aligned: row b's prompt is ids[b, :lengths[b]], at positions 0.. of its own, and
// each row computes what that prompt alone would. The model must outlive the decoder, be in eval
// mode and stay unchanged while it decodes. Everything runs under torch::NoGradGuard, on the
// model's device and dtype.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "model/decode_cache.h"
#include "model/model.h"

namespace cst::model {

class Decoder {
 public:
  // batch rows, each reaching at most `capacity` tokens (prompt + generated). Throws InputError
  // for a model that is not a causal LM (task mlm / cls), a model in training mode or under
  // sequence parallelism, or capacity outside [1, max_seq_len].
  Decoder(CstModelImpl& model, int64_t batch, int64_t capacity);
  ~Decoder();

  // The prompts in one forward pass: ids [B, T] int64, lengths[b] in [1, T] (row b's tokens
  // ids[b, :lengths[b]], the rest ignored), max lengths <= capacity. Returns each row's logits at
  // its last prompt token [B, V]; all_logits: [B, T, V] at every position instead (rows past
  // their length meaningless). Resets any earlier state.
  at::Tensor prefill(const at::Tensor& ids, const std::vector<int64_t>& lengths, bool all_logits = false);

  // One token per row: ids [B] int64 at each row's next position. Rows with active[b] false (empty
  // = all active) do not advance: their logits and state are no longer meaningful (a finished
  // row). Throws InputError when an active row is at capacity. Returns logits [B, V].
  at::Tensor step(const at::Tensor& ids, const std::vector<bool>& active = {});

  // Tokens seen by each row (its next position).
  const std::vector<int64_t>& positions() const { return pos_; }
  int64_t capacity() const { return capacity_; }
  // Bytes of the cache tensors of all layers (allocated for `capacity`).
  int64_t cache_bytes() const;
  // Seconds spent in the layers' attention (the caches' prefill and step) since the last reset.
  double attention_seconds() const { return attn_seconds_; }
  void reset_attention_seconds() { attn_seconds_ = 0; }

 private:
  // The blocks over input embeddings x with the attention given by `attn`; returns ln_f(x).
  template <typename Attn>
  at::Tensor blocks(at::Tensor x, const Attn& attn);

  CstModelImpl& model_;
  int64_t batch_, capacity_;
  LayerContext ctx_;
  std::vector<std::unique_ptr<LayerCache>> caches_;
  std::vector<int64_t> pos_;
  double attn_seconds_ = 0;
};

}  // namespace cst::model
