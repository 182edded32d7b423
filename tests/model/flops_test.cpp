// model/flops.h counts the attention pairs a kernel computes and sees: the counts equal the true
// entries of the masks the explicit kernels build (csa::local_visibility with csa::extend's key
// masks, csa::earlier_slices, full_attention_mask) for an all-real sequence of N tokens.
#include "model/flops.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/attention.h"
#include "model/csa.h"
#include "tests/model/test_util.h"

namespace cst::model {
namespace {

using testing::small_config;

// True entries of local attention's masks: real query x key of its extended slice x visibility.
double local_mask_pairs(const ModelConfig& c, int64_t N) {
  const int64_t L = c.slice_len, e = c.extension();
  auto [xp, mp] = csa::pad_to_slices(torch::zeros({1, N, 1}), torch::ones({1, N}, torch::kBool), L);
  torch::Tensor queries = csa::to_slices(mp, L);                              // [1, n, L]
  torch::Tensor keys = csa::extend(mp, L, e, c.causal());                     // [1, n, W]
  torch::Tensor vis = csa::local_visibility(L, e, c.causal(), mp.options());  // [L, W]
  return queries.unsqueeze(-1).logical_and(keys.unsqueeze(2)).logical_and(vis).sum().item<double>();
}

// True entries of global attention's mask: key slices with a real token, and when causal s < t.
double global_mask_pairs(const ModelConfig& c, int64_t N) {
  auto [xp, mp] = csa::pad_to_slices(torch::zeros({1, N, 1}), torch::ones({1, N}, torch::kBool), c.slice_len);
  torch::Tensor slice_mask = csa::to_slices(mp, c.slice_len).any(-1);  // [1, n]
  const int64_t n = slice_mask.size(1);
  torch::Tensor m = slice_mask.view({1, 1, n}).expand({1, n, n});
  if (c.causal()) m = m.logical_and(csa::earlier_slices(0, n, n, mp.options()));
  return m.sum().item<double>();
}

TEST(Flops, CsaPairsEqualTheTrueEntriesOfTheExplicitMasks) {
  for (Task task : {Task::kLm, Task::kMlm})
    for (double alpha : {1.0, 1.5, 2.0, 2.5, 3.0})
      for (int64_t N = 1; N <= 19; ++N) {  // L = 4: N % L takes every value, a padded tail clipped
        const ModelConfig c = small_config(task, alpha, 4, 20);
        SCOPED_TRACE(::testing::Message() << "task " << to_string(task) << " alpha " << alpha << " N " << N);
        const double local = local_mask_pairs(c, N), global = global_mask_pairs(c, N);
        EXPECT_EQ(local_attention_pairs(c, N), local);
        EXPECT_EQ(global_attention_pairs(c, N), global);
        EXPECT_EQ(attention_pairs(c, N), local + global);
      }
}

TEST(Flops, FullAttentionPairsEqualTheTrueEntriesOfItsMask) {
  for (Task task : {Task::kLm, Task::kMlm})
    for (int64_t N = 1; N <= 19; ++N) {
      ModelConfig c = small_config(task, 2.0);
      c.arch = Arch::kFull;
      SCOPED_TRACE(::testing::Message() << "task " << to_string(task) << " N " << N);
      torch::Tensor m = full_attention_mask(torch::ones({1, N}, torch::kBool), c.causal()).expand({1, 1, N, N});
      EXPECT_EQ(attention_pairs(c, N), m.sum().item<double>());
      EXPECT_EQ(local_attention_pairs(c, N) + global_attention_pairs(c, N), 0.0);
    }
}

TEST(Flops, PerTokenCountsEveryTermOnce) {
  // One layer of full bidirectional attention at N = 1 with vocabulary V: 8 D^2 projections,
  // 4 D F FFN, 4 D attention (one pair), and the head (2 D V, MLM's transform 2 D^2) on a
  // fraction of the tokens.
  ModelConfig c = small_config(Task::kMlm, 2.0);
  c.arch = Arch::kFull;
  const double D = 8, F = 16, V = 11;
  EXPECT_EQ(forward_flops_per_token(c, 1, 0.5), 8 * D * D + 4 * D * F + 4 * D + 0.5 * (2 * D * V + 2 * D * D));
  // CSA adds q, k, v of the slice embeddings: 6 D^2 per slice, spread over the slice's tokens.
  ModelConfig s = small_config(Task::kLm, 1.0);  // L = 4, e = 0: 1 + 2 + 3 + 4 local pairs, 0 global
  EXPECT_EQ(forward_flops_per_token(s, 4), 8 * D * D + 6 * D * D / 4 + 4 * D * F + 4 * D * 10.0 / 4 + 2 * D * V);
}

}  // namespace
}  // namespace cst::model
