// Properties of CSA and the models: causality, padding invariance, the degenerate cases of
// docs/CST.md, a finite-difference gradient check, and memory at N = 16384; each with CSA's explicit
// scores and with its fused kernels (model.csa_kernel).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "model/attention.h"
#include "model/memory.h"
#include "model/model.h"
#include "tests/model/test_util.h"

namespace cst::model {
namespace {

using testing::max_abs_diff;
using testing::small_config;
using torch::Tensor;

// ---- causality ---------------------------------------------------------------------------
constexpr CsaKernel kKernels[] = {CsaKernel::kExplicit, CsaKernel::kFused};

struct CausalCase {
  Arch arch;
  Composition comp;
  Aggregation agg;
  PosEmb pos;
  CsaKernel kernel = CsaKernel::kExplicit;
};

class Causality : public ::testing::TestWithParam<CausalCase> {};

// d out[i] / d in[j] must be exactly zero for every j > i, through a 2-layer stack.
TEST_P(Causality, NoOutputDependsOnLaterInputs) {
  const CausalCase c = GetParam();
  ModelConfig cfg = small_config(Task::kLm, 3.0, 4, 24);
  cfg.arch = c.arch, cfg.composition = c.comp, cfg.aggregation = c.agg, cfg.pos_emb = c.pos;
  cfg.csa_kernel = c.kernel;
  cfg.n_layers = 2;
  torch::manual_seed(3);
  CstModel m(cfg);
  m->to(torch::kDouble);
  const int64_t N = 19;
  Tensor x = torch::randn({1, N, cfg.d_model}, torch::kDouble).requires_grad_(true);
  Tensor y = m->forward_embeddings(x);
  Tensor r = torch::randn({cfg.d_model}, torch::kDouble);  // not sum(): LayerNorm outputs sum to 0
  for (int64_t i = 0; i < N; ++i) {
    Tensor g = torch::autograd::grad({(y[0][i] * r).sum()}, {x}, {}, /*retain_graph=*/true)[0];
    if (i + 1 < N) {
      ASSERT_EQ(g[0].narrow(0, i + 1, N - i - 1).abs().max().item<double>(), 0.0) << "output " << i;
    }
    ASSERT_GT(g[0][i].abs().max().item<double>(), 0.0) << "output " << i << " ignores its own input";
  }
}

std::vector<CausalCase> causal_cases() {
  std::vector<CausalCase> out;
  for (CsaKernel k : kKernels) {
    out.push_back({Arch::kCst, Composition::kLocalGlobal, Aggregation::kMean, PosEmb::kAuto, k});
    out.push_back({Arch::kCst, Composition::kGlobalLocal, Aggregation::kMean, PosEmb::kAuto, k});
    out.push_back({Arch::kCst, Composition::kParallel, Aggregation::kMean, PosEmb::kAuto, k});
    out.push_back({Arch::kCst, Composition::kLocalGlobal, Aggregation::kMax, PosEmb::kAuto, k});
    out.push_back({Arch::kCst, Composition::kLocalGlobal, Aggregation::kLinear, PosEmb::kAuto, k});
    out.push_back({Arch::kCst, Composition::kLocalGlobal, Aggregation::kMean, PosEmb::kAbsolute, k});
  }
  out.push_back({Arch::kFull, Composition::kLocalGlobal, Aggregation::kMean, PosEmb::kAuto});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Variants, Causality, ::testing::ValuesIn(causal_cases()));

// The global part really contributes: tokens of the last slice depend on the first slice.
TEST(Causality, LaterSlicesSeeEarlierSlicesThroughGlobalAttention) {
  for (CsaKernel kernel : kKernels) {
    ModelConfig cfg = small_config(Task::kLm, 1.0, 4, 16);  // alpha = 1: no local overlap
    cfg.csa_kernel = kernel;
    torch::manual_seed(4);
    CompositeSliceAttention att(cfg);
    att.to(torch::kDouble);
    LayerContext pos{torch::randn({cfg.window(), 8}, torch::kDouble), torch::randn({4, 8}, torch::kDouble)};
    Tensor x = torch::randn({1, 16, 8}, torch::kDouble).requires_grad_(true);
    Tensor mask = torch::ones({1, 16}, torch::kBool);
    Tensor g = torch::autograd::grad({att.forward(x, mask, pos)[0][15].sum()}, {x})[0];
    EXPECT_GT(g[0][0].abs().max().item<double>(), 0.0) << to_string(kernel);
  }
}

// ---- padding -------------------------------------------------------------------------------
TEST(Padding, AppendingPaddingChangesNoRealOutput) {
  for (CsaKernel kernel : kKernels) {
    for (double alpha : {1.0, 2.0, 3.0}) {
      ModelConfig cfg = small_config(Task::kMlm, alpha, 4, 32);
      cfg.n_layers = 2, cfg.csa_kernel = kernel;
      torch::manual_seed(5);
      CstModel m(cfg);
      m->to(torch::kDouble);
      m->eval();
      const int64_t B = 2, N = 10;
      Tensor ids = torch::randint(cfg.vocab_size, {B, N}, torch::kLong);
      Tensor h = m->forward_hidden(ids);
      for (int64_t extra : {1, 3, 9}) {
        Tensor ids2 = torch::cat({ids, torch::randint(cfg.vocab_size, {B, extra}, torch::kLong)}, 1);
        Tensor mask2 = torch::cat({torch::ones({B, N}, torch::kBool), torch::zeros({B, extra}, torch::kBool)}, 1);
        Tensor h2 = m->forward_hidden(ids2, mask2).narrow(1, 0, N);
        EXPECT_LT(max_abs_diff(h, h2), 1e-12) << to_string(kernel) << " alpha " << alpha << " extra " << extra;
      }
    }
  }
}

// ---- degenerate cases (docs/CST.md "Cost") -------------------------------------------------------
Tensor lin(torch::nn::Linear& l, const Tensor& x) { return torch::nn::functional::linear(x, l->weight, l->bias); }

// softmax(q k^T / sqrt(d)) v per head; q, k, v [T, D].
Tensor full_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads) {
  const int64_t T = q.size(0), D = q.size(1), d = D / heads;
  auto split = [&](const Tensor& t) { return t.view({T, heads, d}).transpose(0, 1); };
  Tensor p = torch::softmax(torch::matmul(split(q), split(k).transpose(1, 2)) / std::sqrt(double(d)), -1);
  return torch::matmul(p, split(v)).transpose(0, 1).reshape({T, D});
}

class Degenerate : public ::testing::TestWithParam<CsaKernel> {};

TEST_P(Degenerate, OneSliceIsFullAttentionPlusItsOwnGlobalValue) {
  const int64_t N = 8;
  ModelConfig cfg = small_config(Task::kMlm, 1.0, N, N);  // L = N, alpha = 1
  cfg.csa_kernel = GetParam();
  torch::manual_seed(6);
  CompositeSliceAttention att(cfg);
  att.to(torch::kDouble);
  LayerContext pos{torch::randn({N, 8}, torch::kDouble), torch::randn({1, 8}, torch::kDouble)};
  Tensor x = torch::randn({1, N, 8}, torch::kDouble);
  Tensor got = att.forward(x, torch::ones({1, N}, torch::kBool), pos)[0];
  Tensor xl = x[0] + pos.local;  // P_l acts as a learned absolute embedding on q and k
  Tensor y_l = full_attention(lin(att.q_proj, xl), lin(att.k_proj, xl), lin(att.v_proj, x[0]), 2);
  Tensor y_g = lin(att.v_proj, y_l.mean(0));  // one key: the slice's own value
  EXPECT_LT(max_abs_diff(got, lin(att.o_proj, y_l + y_g)), 1e-12);
}

TEST_P(Degenerate, UnitSlicesAreOwnValuePlusFullGlobalAttention) {
  const int64_t N = 8;
  ModelConfig cfg = small_config(Task::kMlm, 1.0, 1, N);  // L = 1, alpha = 1
  cfg.csa_kernel = GetParam();
  torch::manual_seed(8);
  CompositeSliceAttention att(cfg);
  att.to(torch::kDouble);
  LayerContext pos{torch::randn({1, 8}, torch::kDouble), torch::randn({N, 8}, torch::kDouble)};
  Tensor x = torch::randn({1, N, 8}, torch::kDouble);
  Tensor got = att.forward(x, torch::ones({1, N}, torch::kBool), pos)[0];
  Tensor y_l = lin(att.v_proj, x[0]);  // each token attends to itself only
  Tensor sg = y_l + pos.global;
  Tensor y_g = full_attention(lin(att.q_proj, sg), lin(att.k_proj, sg), lin(att.v_proj, y_l), 2);
  EXPECT_LT(max_abs_diff(got, lin(att.o_proj, y_l + y_g)), 1e-12);
}

INSTANTIATE_TEST_SUITE_P(Kernels, Degenerate, ::testing::ValuesIn(kKernels),
                         [](const ::testing::TestParamInfo<CsaKernel>& i) { return to_string(i.param); });

// ---- finite differences --------------------------------------------------------------------
class GradCheck : public ::testing::TestWithParam<std::tuple<Task, CsaKernel>> {};

TEST_P(GradCheck, AnalyticGradientsMatchCentralDifferences) {
  ModelConfig cfg = small_config(std::get<0>(GetParam()), 2.0, 4, 16);
  cfg.init_std = 0.3, cfg.csa_kernel = std::get<1>(GetParam());
  torch::manual_seed(9);
  CstModel m(cfg);
  m->to(torch::kDouble);
  const int64_t N = 10;
  Tensor ids = torch::randint(cfg.vocab_size, {2, N}, torch::kLong);
  Tensor mask = torch::ones({2, N}, torch::kBool);
  mask[1].narrow(0, 7, 3).fill_(false);
  Tensor r = torch::randn_like(m->forward(ids, mask));  // a random projection of every output
  auto loss = [&] { return (m->forward(ids, mask) * r).sum(); };
  m->zero_grad();
  loss().backward();
  int checked = 0;
  for (auto& item : m->named_parameters()) {
    Tensor p = item.value();
    Tensor flat = p.detach().view({-1}), grad = p.grad().view({-1});
    for (int64_t k = 0; k < std::min<int64_t>(flat.numel(), 6); ++k) {
      const int64_t idx = (k * 7919) % flat.numel();
      const double eps = 1e-6, orig = flat[idx].item<double>();
      torch::NoGradGuard ng;
      flat[idx] = orig + eps;
      double up = loss().item<double>();
      flat[idx] = orig - eps;
      double down = loss().item<double>();
      flat[idx] = orig;
      const double num = (up - down) / (2 * eps), ana = grad[idx].item<double>();
      ASSERT_NEAR(num, ana, 1e-6 + 1e-5 * std::fabs(ana)) << item.key() << "[" << idx << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 40);
}

INSTANTIATE_TEST_SUITE_P(Tasks, GradCheck,
                         ::testing::Combine(::testing::Values(Task::kLm, Task::kMlm, Task::kCls),
                                            ::testing::ValuesIn(kKernels)));

// ---- memory --------------------------------------------------------------------------------
// N = 16384, L = 64: forward and backward without any N x N tensor. One head's N x N float32
// score matrix alone is 1 GiB; assert the largest allocation is far below and the peak below it.
class Memory : public ::testing::TestWithParam<CsaKernel> {};

TEST_P(Memory, LongSequenceNeverAllocatesNxN) {
  ModelConfig cfg;
  cfg.task = Task::kLm, cfg.vocab_size = 100, cfg.d_model = 64, cfg.n_heads = 2, cfg.n_layers = 1;
  cfg.d_ff = 128, cfg.max_seq_len = 16384, cfg.slice_len = 64, cfg.alpha = 2.0, cfg.dropout = 0.0;
  cfg.csa_kernel = GetParam();
  const int64_t N = 16384;
  torch::manual_seed(10);
  CstModel m(cfg);
  Tensor ids = torch::randint(cfg.vocab_size, {1, N}, torch::kLong);
  MemoryTracker mem;
  Tensor h = m->forward_hidden(ids);
  (h * h).sum().backward();
  const int64_t nxn = N * N * 4;
  EXPECT_GT(mem.num_allocs(), 10);                   // the tracker sees allocations
  EXPECT_GE(mem.peak_bytes(), N * cfg.d_model * 4);  // at least one activation
  EXPECT_LT(mem.largest_alloc_bytes(), nxn / 32) << "largest " << mem.largest_alloc_bytes();
  EXPECT_LT(mem.peak_bytes(), nxn / 2) << "peak " << mem.peak_bytes();
  std::printf("%s, N=%ld L=64: peak %.1f MiB, largest allocation %.1f MiB (one N x N float32 = %.0f MiB)\n",
              to_string(cfg.csa_kernel), (long)N, mem.peak_bytes() / 1048576.0, mem.largest_alloc_bytes() / 1048576.0,
              nxn / 1048576.0);
}

INSTANTIATE_TEST_SUITE_P(Kernels, Memory, ::testing::ValuesIn(kKernels),
                         [](const ::testing::TestParamInfo<CsaKernel>& i) { return to_string(i.param); });

// The same measurement does catch an N x N tensor: full attention at N = 1024.
TEST(MemoryTracker, SeesFullAttentionScores) {
  ModelConfig cfg;
  cfg.arch = Arch::kFull, cfg.task = Task::kLm, cfg.vocab_size = 100, cfg.d_model = 64, cfg.n_heads = 2;
  cfg.n_layers = 1, cfg.d_ff = 128, cfg.max_seq_len = 1024, cfg.dropout = 0.0;
  CstModel m(cfg);
  Tensor ids = torch::randint(cfg.vocab_size, {1, 1024}, torch::kLong);
  MemoryTracker mem;
  m->forward_hidden(ids).sum().backward();
  EXPECT_GE(mem.largest_alloc_bytes(), 1024 * 1024 * 4);
}

// ---- full attention through at::scaled_dot_product_attention ------------------------------
// full_sdpa computes the same function as the explicit scores: outputs and every parameter
// gradient agree in float64, causal and bidirectional, with and without padding.
TEST(FullSdpa, EqualsExplicitScores) {
  for (Task task : {Task::kLm, Task::kMlm}) {
    for (bool pad : {false, true}) {
      ModelConfig cfg = small_config(task, 1.0, 4, 32);
      cfg.arch = Arch::kFull, cfg.n_layers = 2;
      ModelConfig fused = cfg;
      fused.full_sdpa = true;
      torch::manual_seed(5);
      CstModel a(cfg), b(fused);
      a->to(torch::kDouble), b->to(torch::kDouble);
      {
        torch::NoGradGuard ng;
        auto src = a->named_parameters();
        for (auto& p : b->named_parameters()) p.value().copy_(src[p.key()]);
      }
      const int64_t N = 23;
      Tensor ids = torch::randint(cfg.vocab_size, {3, N}, torch::kLong);
      Tensor mask = torch::ones({3, N}, torch::kBool);
      if (pad) mask.index_put_({1, torch::indexing::Slice(N - 7, N)}, false);
      Tensor ya = a->forward_hidden(ids, mask), yb = b->forward_hidden(ids, mask);
      Tensor w = mask.unsqueeze(-1).to(torch::kDouble);  // padded positions' outputs are not used
      EXPECT_LT(max_abs_diff(ya * w, yb * w), 1e-10) << to_string(task) << " pad " << pad;
      (ya * w).pow(2).sum().backward();
      (yb * w).pow(2).sum().backward();
      auto ga = a->named_parameters();
      int compared = 0;
      for (auto& p : b->named_parameters()) {
        const Tensor g = ga[p.key()].grad();
        ASSERT_EQ(g.defined(), p.value().grad().defined()) << p.key();  // heads unused by forward_hidden
        if (!g.defined()) continue;
        EXPECT_LT(max_abs_diff(g, p.value().grad()), 1e-9) << p.key() << " pad " << pad;
        ++compared;
      }
      EXPECT_GE(compared, 8 * cfg.n_layers) << "too few gradients compared";
    }
  }
}

}  // namespace
}  // namespace cst::model
