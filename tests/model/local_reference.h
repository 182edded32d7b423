// The explicit local attention on the inputs of the fused kernels (model/local_attention.h):
// csa::local_attention on the unfolded windows, for tests of the kernels.
#pragma once

#include <torch/torch.h>

#include "model/csa.h"
#include "model/local_attention.h"

namespace cst::model::testing {

// q [B, n*L, D], keys / values [B, T, D], pk [W, D], valid [B, T] bool -> [B, n*L, D].
inline torch::Tensor explicit_local(const torch::Tensor& q, const torch::Tensor& keys, const torch::Tensor& values,
                                    const torch::Tensor& pk, const torch::Tensor& valid, const csa::LocalGeometry& g) {
  const int64_t B = q.size(0), D = q.size(2), H = g.heads, L = g.slice_len, W = g.window(), n = g.slices();
  auto heads5 = [&](const torch::Tensor& t, int64_t len) {
    return t.reshape({B, n, len, H, D / H}).permute({0, 3, 1, 2, 4});
  };
  torch::Tensor k = keys.unfold(1, W, L).transpose(2, 3) + pk, v = values.unfold(1, W, L).transpose(2, 3);
  torch::Tensor y =
      csa::local_attention(heads5(q, L), heads5(k, W), heads5(v, W), valid.unfold(1, W, L), g.ext, g.causal, 0, false);
  return y.permute({0, 2, 3, 1, 4}).reshape({B, n * L, D});
}

}  // namespace cst::model::testing
