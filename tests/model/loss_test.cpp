// The chunked cross entropy (no [R, V] logits) equals cross entropy on the full logits: the loss,
// the argmax hits and the gradients of h, the head's weight and bias, for chunk sizes that do and
// do not divide the rows, with ignored rows; and CstModel::loss equals token_loss(forward(...))
// with every parameter gradient, for each task.
#include "model/loss.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "model/model.h"
#include "tests/model/test_util.h"

namespace cst::model {
namespace {

using testing::max_abs_diff;
using torch::Tensor;

TEST(ChunkedCrossEntropy, EqualsFullLogitsForEveryChunkSize) {
  torch::manual_seed(31);
  const int64_t R = 23, D = 6, V = 17;
  auto opt = torch::TensorOptions().dtype(torch::kDouble);
  const Tensor h0 = torch::randn({R, D}, opt), w0 = torch::randn({V, D}, opt), b0 = torch::randn({V}, opt);
  Tensor labels = torch::randint(V, {R}, torch::kLong);
  labels.index_put_({torch::tensor({0, 5, 6, 22})}, -100);  // rows that predict nothing
  for (bool bias : {false, true}) {
    Tensor h = h0.clone().requires_grad_(), w = w0.clone().requires_grad_(), b = b0.clone().requires_grad_();
    Tensor logits = torch::nn::functional::linear(h, w, bias ? b : Tensor());
    LossSum want = token_loss(logits, labels);
    Tensor want_hits = logits.argmax(-1).eq(labels).sum();
    want.sum.backward();
    for (int64_t chunk :
         {int64_t{1}, int64_t{4}, int64_t{7}, R, int64_t{100}, int64_t{0}}) {  // 7 does not divide 23; 0 = automatic
      Tensor h2 = h0.clone().requires_grad_(), w2 = w0.clone().requires_grad_(), b2 = b0.clone().requires_grad_();
      Tensor hits;
      LossSum got = chunked_cross_entropy(h2, w2, bias ? b2 : Tensor(), labels, chunk, &hits);
      (got.sum * 2.5).backward();  // the incoming gradient scales the stored ones
      EXPECT_EQ(got.count, want.count);
      EXPECT_EQ(hits.item<int64_t>(), want_hits.item<int64_t>());
      EXPECT_NEAR(got.sum.item<double>(), want.sum.item<double>(), 1e-12) << "chunk " << chunk;
      EXPECT_LT(max_abs_diff(h2.grad(), 2.5 * h.grad()), 1e-12) << "chunk " << chunk;
      EXPECT_LT(max_abs_diff(w2.grad(), 2.5 * w.grad()), 1e-12) << "chunk " << chunk;
      if (bias) {
        EXPECT_LT(max_abs_diff(b2.grad(), 2.5 * b.grad()), 1e-12) << "chunk " << chunk;
      } else {
        EXPECT_FALSE(b2.grad().defined());
      }
    }
  }
}

TEST(ChunkedCrossEntropy, NoGradientWorkWithoutGradMode) {
  Tensor h = torch::randn({5, 4}).requires_grad_(), w = torch::randn({9, 4}).requires_grad_();
  Tensor labels = torch::randint(9, {5}, torch::kLong);
  torch::NoGradGuard ng;
  LossSum l = chunked_cross_entropy(h, w, {}, labels, 2);
  EXPECT_FALSE(l.sum.requires_grad());
  EXPECT_NEAR(l.sum.item<double>(), token_loss(torch::nn::functional::linear(h, w), labels).sum.item<double>(), 1e-5);
}

class ModelLoss : public ::testing::TestWithParam<Task> {};

TEST_P(ModelLoss, EqualsLossOfTheLogits) {
  const Task task = GetParam();
  ModelConfig cfg = testing::small_config(task, 2.0, 4, 16);
  cfg.n_layers = 2, cfg.vocab_size = 13;
  torch::manual_seed(32);
  CstModel a(cfg), b(cfg);
  a->to(torch::kDouble), b->to(torch::kDouble);
  {
    torch::NoGradGuard ng;
    auto src = a->named_parameters();
    for (auto& p : b->named_parameters()) p.value().copy_(src[p.key()]);
  }
  const int64_t B = 3, N = 11;
  Tensor ids = torch::randint(cfg.vocab_size, {B, N}, torch::kLong);
  Tensor mask = torch::ones({B, N}, torch::kBool);
  mask[2].narrow(0, 8, 3).fill_(false);
  Tensor labels = task == Task::kCls ? torch::randint(cfg.num_classes, {B}, torch::kLong)
                                     : torch::randint(cfg.vocab_size, {B, N}, torch::kLong);
  if (task != Task::kCls) labels.masked_fill_(torch::rand({B, N}) < 0.4, -100);
  Tensor logits = a->forward(ids, mask);
  LossSum want = task == Task::kCls ? cls_loss(logits, labels) : token_loss(logits, labels);
  const int64_t want_hits = logits.argmax(-1).eq(labels).logical_and(labels.ne(-100)).sum().item<int64_t>();
  Tensor hits;
  LossSum got = b->loss(ids, mask, labels, &hits, /*chunk_rows=*/5);
  EXPECT_EQ(got.count, want.count);
  EXPECT_EQ(hits.item<int64_t>(), want_hits);
  EXPECT_NEAR(got.sum.item<double>(), want.sum.item<double>(), 1e-10);
  want.sum.backward();
  got.sum.backward();
  auto ga = a->named_parameters();
  int compared = 0;
  for (auto& p : b->named_parameters()) {
    ASSERT_EQ(ga[p.key()].grad().defined(), p.value().grad().defined()) << p.key();
    if (!p.value().grad().defined()) continue;
    EXPECT_LT(max_abs_diff(ga[p.key()].grad(), p.value().grad()), 1e-10) << p.key();
    ++compared;
  }
  EXPECT_GE(compared, 20);
}

// num_classes = 1: one output per example, squared error over the labelled (non-NaN) targets.
TEST(RegressionLoss, SquaredErrorOfTheLabelledExamples) {
  ModelConfig cfg = testing::small_config(Task::kCls, 2.0, 4, 16);
  cfg.num_classes = 1;
  torch::manual_seed(4);
  CstModel m(cfg);
  m->to(torch::kDouble);
  Tensor ids = torch::randint(cfg.vocab_size, {4, 9}, torch::kLong);
  Tensor y = torch::tensor({0.5, std::nan(""), -1.0, 2.0}, torch::kDouble);
  Tensor pred = m->forward(ids, {});
  ASSERT_EQ(pred.sizes(), (std::vector<int64_t>{4, 1}));
  double want = 0;
  for (int64_t i : {0, 2, 3}) want += std::pow(pred[i][0].item<double>() - y[i].item<double>(), 2);
  LossSum got = m->loss(ids, {}, y);
  EXPECT_EQ(got.count, 3);
  EXPECT_NEAR(got.sum.item<double>(), want, 1e-12);
  got.sum.backward();
  EXPECT_TRUE(torch::isfinite(m->cls_head->fc2->weight.grad()).all().item<bool>()) << "no NaN from the unlabelled row";
}

INSTANTIATE_TEST_SUITE_P(Tasks, ModelLoss, ::testing::Values(Task::kLm, Task::kMlm, Task::kCls),
                         [](const ::testing::TestParamInfo<Task>& i) { return to_string(i.param); });

}  // namespace
}  // namespace cst::model
