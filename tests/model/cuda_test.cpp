// The model on CUDA equals the model on CPU. Built whenever the LibTorch found has CUDA;
// skipped, with a visible message, when no GPU is present.
#include <gtest/gtest.h>
#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include "model/loss.h"
#include "model/model.h"
#include "tests/model/test_util.h"

namespace cst::model {
namespace {

TEST(Cuda, ForwardAndBackwardMatchCpu) {
  if (!torch::cuda::is_available())
    GTEST_SKIP() << "SKIPPED: no CUDA device on this machine (the CUDA build is tested by scripts/gpu-check.sh)";
  for (Task task : {Task::kLm, Task::kMlm}) {
    ModelConfig cfg = testing::small_config(task, 2.0, 8, 64);
    cfg.d_model = 64, cfg.n_heads = 4, cfg.n_layers = 2, cfg.init_std = 0.02;
    torch::manual_seed(1);
    CstModel cpu(cfg), gpu(cfg);
    {
      torch::NoGradGuard ng;
      auto src = cpu->named_parameters();
      for (auto& p : gpu->named_parameters()) p.value().copy_(src[p.key()]);
    }
    gpu->to(torch::kCUDA);
    torch::Tensor ids = torch::randint(cfg.vocab_size, {3, 61}, torch::kLong);
    torch::Tensor a = cpu->forward(ids), b = gpu->forward(ids.cuda());
    EXPECT_LT(testing::max_abs_diff(a, b.cpu()), 1e-4);
    lm_loss(a, ids).mean().backward();
    lm_loss(b, ids.cuda()).mean().backward();
    auto gc = cpu->named_parameters();
    for (auto& p : gpu->named_parameters())
      EXPECT_LT(testing::max_abs_diff(gc[p.key()].grad(), p.value().grad().cpu()), 1e-4) << p.key();
  }
}

// Activation checkpointing on CUDA, dropout on, with and without bf16 autocast: the recomputation
// replays the CUDA generator (and the autocast state), so results equal the uncheckpointed run,
// while another dropout seed gives other results.
TEST(Cuda, ActivationCheckpointingReplaysDropout) {
  if (!torch::cuda::is_available())
    GTEST_SKIP() << "SKIPPED: no CUDA device on this machine (the CUDA build is tested by scripts/gpu-check.sh)";
  for (bool bf16 : {false, true}) {
    auto run = [&](bool checkpoint, uint64_t dropout_seed) {
      ModelConfig cfg = testing::small_config(Task::kLm, 3.0, 8, 64);
      cfg.d_model = 64, cfg.n_heads = 4, cfg.n_layers = 3, cfg.init_std = 0.02, cfg.dropout = 0.2;
      cfg.activation_checkpointing = checkpoint;
      torch::manual_seed(1);
      CstModel m(cfg);
      m->to(torch::kCUDA);
      torch::Tensor ids = torch::randint(cfg.vocab_size, {2, 64}, torch::kLong).cuda();
      torch::manual_seed(dropout_seed);
      at::autocast::set_autocast_enabled(at::kCUDA, bf16);
      at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
      torch::Tensor loss = lm_loss(m->forward(ids), ids).mean();
      at::autocast::set_autocast_enabled(at::kCUDA, false);
      at::autocast::clear_cache();
      loss.backward();
      std::vector<torch::Tensor> g;
      for (auto& p : m->parameters()) g.push_back(p.grad().to(torch::kFloat).cpu());
      return g;
    };
    const auto plain = run(false, 5), ckpt = run(true, 5), other = run(false, 6);
    double same = 0, differ = 0;
    for (size_t i = 0; i < plain.size(); ++i) {
      same = std::max(same, testing::max_abs_diff(plain[i], ckpt[i]));
      differ = std::max(differ, testing::max_abs_diff(plain[i], other[i]));
    }
    EXPECT_LT(same, 1e-5) << "bf16 " << bf16;
    EXPECT_GT(differ, 100 * std::max(same, 1e-7)) << "bf16 " << bf16 << ": dropout did not change the gradients";
  }
}

}  // namespace
}  // namespace cst::model
