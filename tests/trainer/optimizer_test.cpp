// trainer/optimizer against torch::optim::AdamW and a LAMB step computed by hand; the fused
// AdamW kernel against the per-parameter loop, alone and under ZeRO-1 (two ranks in threads);
// the ZeRO partition.
#include "trainer/optimizer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "comm/communicator.h"

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

// Matrices (decayed), a bias and an embedding (not decayed), and a parameter without gradient.
struct Model {
  std::vector<torch::Tensor> tensors;
  NamedTensors named() {
    const char* names[] = {"layers.0.w", "layers.0.b", "tok_emb.weight", "layers.1.w", "layers.1.unused"};
    NamedTensors out;
    for (size_t i = 0; i < tensors.size(); ++i) out.emplace_back(names[i], tensors[i]);
    return out;
  }
};

Model make_model() {
  torch::manual_seed(4);
  return {{torch::randn({4, 3}), torch::randn({3}), torch::randn({5, 2}), torch::randn({3, 7}), torch::randn({2})}};
}

Model copy(const Model& m) {
  Model c;
  for (const auto& t : m.tensors) c.tensors.push_back(t.clone().requires_grad_());
  return c;
}

// Gradients of step `step`, the same for every copy; the last parameter gets none.
void set_grads(Model& m, int step) {
  torch::manual_seed(100 + step);
  for (size_t i = 0; i + 1 < m.tensors.size(); ++i) m.tensors[i].mutable_grad() = torch::randn_like(m.tensors[i]);
}

OptimOptions adamw_options() {
  OptimOptions o;
  o.lr = 1e-2, o.weight_decay = 0.1, o.beta1 = 0.9, o.beta2 = 0.99, o.eps = 1e-8;
  return o;
}

TEST(Optimizer, FusedAdamWEqualsTheLoop) {
  const Model init = make_model();
  Model a = copy(init), b = copy(init);
  Optimizer loop(a.named(), adamw_options(), nullptr, 0, /*fused=*/false);
  Optimizer fused(b.named(), adamw_options(), nullptr, 0, /*fused=*/true);
  for (int step = 0; step < 5; ++step) {
    set_grads(a, step), set_grads(b, step);
    loop.step(1e-2 * (step + 1));
    fused.step(1e-2 * (step + 1));
  }
  for (size_t i = 0; i < a.tensors.size(); ++i)
    EXPECT_LT((a.tensors[i] - b.tensors[i]).abs().max().item<double>(), 1e-6) << i;
  EXPECT_LT((loop.exp_avg() - fused.exp_avg()).abs().max().item<double>(), 1e-7);
  EXPECT_LT((loop.exp_avg_sq() - fused.exp_avg_sq()).abs().max().item<double>(), 1e-7);
  EXPECT_TRUE(torch::equal(a.tensors.back(), init.tensors.back()));  // no gradient: untouched
  EXPECT_FALSE(torch::equal(b.tensors[0], init.tensors[0]));
}

// Two ranks in one process: all_gather meets in the middle; nothing else is used.
class PairComm : public comm::Communicator {
 public:
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    torch::Tensor slot[2];
    int arrived = 0, left = 0;
    int64_t generation = 0;
  };
  PairComm(int rank, Shared* s) : rank_(rank), s_(s) {}
  int rank() const override { return rank_; }
  int size() const override { return 2; }
  const char* backend() const override { return "pair"; }
  void all_gather(const at::Tensor& in, at::Tensor& out) override {
    std::unique_lock<std::mutex> lock(s_->mu);
    const int64_t gen = s_->generation;
    s_->slot[rank_] = in.clone();
    if (++s_->arrived == 2) s_->cv.notify_all();
    s_->cv.wait(lock, [&] { return s_->arrived == 2 || s_->generation != gen; });
    for (int r = 0; r < 2; ++r) out[r].copy_(s_->slot[r]);
    if (++s_->left == 2) s_->arrived = 0, s_->left = 0, ++s_->generation, s_->cv.notify_all();
    s_->cv.wait(lock, [&] { return s_->generation != gen; });
  }
  void all_reduce(at::Tensor&, comm::ReduceOp) override { CST_THROW("PairComm: all_reduce not used"); }
  std::unique_ptr<comm::Work> all_reduce_async(at::Tensor, comm::ReduceOp) override { CST_THROW("not used"); }
  void broadcast(at::Tensor&, int) override { CST_THROW("PairComm: broadcast not used"); }
  void send_recv(const at::Tensor&, int, at::Tensor&, int) override { CST_THROW("PairComm: send_recv not used"); }
  void reduce_scatter(const at::Tensor&, at::Tensor&, comm::ReduceOp) override { CST_THROW("not used"); }
  std::unique_ptr<comm::Communicator> split(int, int) override { CST_THROW("PairComm: split not used"); }
  void barrier() override {}

 private:
  int rank_;
  Shared* s_;
};

TEST(Optimizer, FusedAdamWUnderZeroOneEqualsTheLoopWithoutIt) {
  const Model init = make_model();
  Model ref = copy(init), r0 = copy(init), r1 = copy(init);
  Optimizer loop(ref.named(), adamw_options(), nullptr, 0, /*fused=*/false);
  PairComm::Shared shared;
  PairComm c0(0, &shared), c1(1, &shared);
  Optimizer z0(r0.named(), adamw_options(), &c0, 1), z1(r1.named(), adamw_options(), &c1, 1);
  EXPECT_LT(z0.held().size(), z0.flat_numel());  // each rank holds part of the state
  for (int step = 0; step < 5; ++step) {
    set_grads(ref, step), set_grads(r0, step), set_grads(r1, step);
    loop.step(1e-2);
    std::thread other([&] { z1.step(1e-2); });
    z0.step(1e-2);
    other.join();
  }
  for (size_t i = 0; i < ref.tensors.size(); ++i) {
    EXPECT_LT((ref.tensors[i] - r0.tensors[i]).abs().max().item<double>(), 1e-6) << i;
    EXPECT_TRUE(torch::equal(r0.tensors[i], r1.tensors[i])) << i;  // all-gathered: every rank equal
  }
  // The held state is the loop's state over the held range.
  EXPECT_LT((loop.exp_avg().narrow(0, z1.held().begin, z1.held().size()) - z1.exp_avg()).abs().max().item<double>(),
            1e-7);
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
    EXPECT_EQ(checkpoint::partition(10, r, 4).begin, expect[r][0]);
    EXPECT_EQ(checkpoint::partition(10, r, 4).end, expect[r][1]);
  }
  EXPECT_EQ(checkpoint::partition(2, 3, 4).size(), 0);
  EXPECT_EQ(checkpoint::partition(7, 0, 1).size(), 7);
}

}  // namespace
}  // namespace cst::trainer
