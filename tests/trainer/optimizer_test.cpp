// trainer/optimizer against torch::optim::AdamW and a LAMB step computed by hand; the ZeRO
// partition.
#include "trainer/optimizer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

namespace cst::trainer {
namespace {

TEST(Optimizer, AdamWEqualsTorchAdamWOverFiveSteps) {
  torch::manual_seed(3);
  OptimOptions o;
  o.lr = 1e-2, o.weight_decay = 0.1, o.decay_all = true, o.beta1 = 0.9, o.beta2 = 0.99, o.eps = 1e-8;
  torch::Tensor w = torch::randn({4, 3}), b = torch::randn({3});
  torch::Tensor w2 = w.clone().requires_grad_(), b2 = b.clone().requires_grad_();
  w.requires_grad_(), b.requires_grad_();
  Optimizer ours({{"layers.0.w", w}, {"layers.0.b", b}}, o);
  torch::optim::AdamW ref(
      {w2, b2}, torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay));
  for (int step = 0; step < 5; ++step) {
    torch::Tensor gw = torch::randn({4, 3}), gb = torch::randn({3});
    w.mutable_grad() = gw.clone(), b.mutable_grad() = gb.clone();
    w2.mutable_grad() = gw.clone(), b2.mutable_grad() = gb.clone();
    ours.step(o.lr);
    ref.step();
  }
  EXPECT_LT((w - w2).abs().max().item<double>(), 1e-6);
  EXPECT_LT((b - b2).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(ours.steps_taken(), 5);
}

TEST(Optimizer, LambStepMatchesAHandComputation) {
  OptimOptions o;
  o.name = OptimizerKind::kLamb, o.weight_decay = 0.01, o.beta1 = 0.9, o.beta2 = 0.999, o.eps = 1e-6;
  const double lr = 0.1, p0[4] = {1, 2, 3, 4}, g[4] = {0.1, -0.2, 0.3, 0.4};
  torch::Tensor p = torch::tensor({1.f, 2.f, 3.f, 4.f}).reshape({2, 2}).requires_grad_();
  p.mutable_grad() = torch::tensor({0.1f, -0.2f, 0.3f, 0.4f}).reshape({2, 2});
  Optimizer opt({{"layers.0.w", p}}, o);
  opt.step(lr);
  // Step 1: bias-corrected m = g and v = g^2, so update = g / (|g| + eps) + wd * p.
  double u[4], pn = 0, un = 0;
  for (int i = 0; i < 4; ++i) {
    u[i] = g[i] / (std::abs(g[i]) + o.eps) + o.weight_decay * p0[i];
    pn += p0[i] * p0[i], un += u[i] * u[i];
  }
  const double trust = std::sqrt(pn) / std::sqrt(un);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(p.view({-1})[i].item<double>(), p0[i] - lr * trust * u[i], 1e-6) << i;
}

TEST(Optimizer, PartitionCutsTheFlatSpaceIntoContiguousRanges) {
  const int64_t expect[4][2] = {{0, 3}, {3, 6}, {6, 9}, {9, 10}};
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(partition(10, r, 4).begin, expect[r][0]);
    EXPECT_EQ(partition(10, r, 4).end, expect[r][1]);
  }
  EXPECT_EQ(partition(2, 3, 4).size(), 0);
  EXPECT_EQ(partition(7, 0, 1).size(), 7);
}

}  // namespace
}  // namespace cst::trainer
