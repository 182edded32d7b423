// Activation checkpointing (ModelConfig::activation_checkpointing): on CPU the logits, the
// gradients and the random state after backward are bitwise those without checkpointing,
// dropout included, for LM and MLM, alpha 1-3, every composition, both positional schemes and
// both CSA kernels (explicit scores, fused);
// gradient hooks (GradReducer's) see each parameter's complete gradient once; peak memory of a
// training step falls; without grad mode the block runs plainly.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "comm/communicator.h"
#include "comm/reducer.h"
#include "model/loss.h"
#include "model/memory.h"
#include "model/model.h"
#include "tests/model/test_util.h"

namespace cst::model {
namespace {

using torch::Tensor;

struct Step {
  Tensor logits, rng_after;
  std::vector<Tensor> grads;
};

// One training forward + backward with dropout; optionally through a GradReducer on one rank.
Step train_step(ModelConfig cfg, bool checkpoint, bool reducer, uint64_t dropout_seed = 13) {
  const int64_t N = 24;
  cfg.activation_checkpointing = checkpoint;
  torch::manual_seed(11);
  CstModel m(cfg);
  comm::LocalCommunicator local;
  std::unique_ptr<comm::GradReducer> r;
  if (reducer) {
    comm::ReducerOptions o;
    o.first_bucket_bytes = 256, o.bucket_bytes = 1024;  // many buckets, launched from hooks
    r = std::make_unique<comm::GradReducer>(local, *m, o);
    r->prepare_for_backward(true);
  }
  torch::manual_seed(12);
  Tensor ids = torch::randint(cfg.vocab_size, {2, N + 1}, torch::kLong);
  Tensor mask = torch::ones({2, N}, torch::kBool);
  mask[1].narrow(0, N - 5, 5).fill_(false);
  torch::manual_seed(dropout_seed);
  Step s;
  s.logits = m->forward(ids.narrow(1, 0, N), mask);
  Tensor labels = ids.narrow(1, 1, N).masked_fill(mask.logical_not(), -100);
  token_loss(s.logits, labels).sum.backward();
  if (r) r->finalize(0);
  s.rng_after = at::globalContext().defaultGenerator(at::kCPU).get_state();
  for (const auto& p : m->parameters()) s.grads.push_back(p.grad().defined() ? p.grad().clone() : Tensor());
  return s;
}

void expect_bitwise(const Step& a, const Step& b) {
  EXPECT_TRUE(torch::equal(a.logits, b.logits));
  EXPECT_TRUE(torch::equal(a.rng_after, b.rng_after)) << "the random state after backward differs";
  ASSERT_EQ(a.grads.size(), b.grads.size());
  for (size_t i = 0; i < a.grads.size(); ++i) {
    ASSERT_EQ(a.grads[i].defined(), b.grads[i].defined()) << "parameter " << i;
    if (a.grads[i].defined()) {
      EXPECT_TRUE(torch::equal(a.grads[i], b.grads[i])) << "parameter " << i;
    }
  }
}

struct Case {
  Task task;
  double alpha;
  Composition comp;
  PosEmb pos;
};

class ActivationCheckpoint : public ::testing::TestWithParam<Case> {};

TEST_P(ActivationCheckpoint, BitwiseEqualWithDropout) {
  const Case c = GetParam();
  for (CsaKernel kernel : {CsaKernel::kExplicit, CsaKernel::kFused}) {
    ModelConfig cfg = testing::small_config(c.task, c.alpha, 4, 32);
    cfg.n_layers = 3, cfg.dropout = 0.25, cfg.composition = c.comp, cfg.pos_emb = c.pos, cfg.csa_kernel = kernel;
    const Step plain = train_step(cfg, false, false), ckpt = train_step(cfg, true, false);
    SCOPED_TRACE(to_string(kernel));
    expect_bitwise(plain, ckpt);
    // Dropout is live: other masks give other outputs (so equality above needs the replay).
    EXPECT_FALSE(torch::equal(plain.logits, train_step(cfg, false, false, 14).logits));
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, ActivationCheckpoint,
                         ::testing::Values(Case{Task::kLm, 1.0, Composition::kLocalGlobal, PosEmb::kAuto},
                                           Case{Task::kLm, 2.0, Composition::kLocalGlobal, PosEmb::kAuto},
                                           Case{Task::kLm, 3.0, Composition::kGlobalLocal, PosEmb::kAuto},
                                           Case{Task::kMlm, 3.0, Composition::kLocalGlobal, PosEmb::kAuto},
                                           Case{Task::kMlm, 2.0, Composition::kParallel, PosEmb::kAbsolute}));

// The gradient reducer's hooks fire on accumulated gradients; with checkpointing the shared
// positional tables still get theirs once, complete (a partial copy would differ).
TEST(ActivationCheckpointHooks, ReducerSeesCompleteGradients) {
  ModelConfig cfg = testing::small_config(Task::kLm, 3.0, 4, 32);
  cfg.n_layers = 3, cfg.dropout = 0.1;
  expect_bitwise(train_step(cfg, false, true), train_step(cfg, true, true));
}

TEST(ActivationCheckpointMemory, PeakOfATrainingStepFalls) {
  ModelConfig cfg = testing::small_config(Task::kLm, 2.0, 16, 1024);
  cfg.n_layers = 4, cfg.d_model = 64, cfg.d_ff = 256, cfg.n_heads = 4;
  auto peak = [&](bool checkpoint) {
    ModelConfig c = cfg;
    c.activation_checkpointing = checkpoint;
    torch::manual_seed(1);
    CstModel m(c);
    Tensor ids = torch::randint(c.vocab_size, {1, 1024}, torch::kLong);
    MemoryTracker t;
    m->forward(ids).square().sum().backward();
    return t.peak_bytes();
  };
  const int64_t plain = peak(false), ckpt = peak(true);
  EXPECT_LT(static_cast<double>(ckpt), 0.5 * static_cast<double>(plain)) << plain << " vs " << ckpt << " bytes";
}

TEST(ActivationCheckpoint, WithoutGradModeRunsPlainly) {
  ModelConfig cfg = testing::small_config(Task::kMlm, 2.0, 4, 32);
  torch::manual_seed(3);
  CstModel a(cfg);
  cfg.activation_checkpointing = true;
  torch::manual_seed(3);
  CstModel b(cfg);
  Tensor ids = torch::randint(cfg.vocab_size, {2, 16}, torch::kLong);
  torch::NoGradGuard no_grad;
  Tensor ya = a->forward(ids), yb = b->forward(ids);
  EXPECT_TRUE(torch::equal(ya, yb));
  EXPECT_FALSE(yb.requires_grad());
}

}  // namespace
}  // namespace cst::model
