// The model on CUDA equals the model on CPU. Built whenever the LibTorch found has CUDA;
// skipped, with a visible message, when no GPU is present.
#include <gtest/gtest.h>
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

}  // namespace
}  // namespace cst::model
