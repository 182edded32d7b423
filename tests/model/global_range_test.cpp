// Global attention of a sequence-parallel rank's query range (model/global_range.h): the ranges of
// S ranks put together equal the whole sequence's explicit global attention, outputs and the
// gradients of q, k and v, causal and bidirectional, with empty slices (also the first slice,
// and a row without any real slice), through both entry points (global_attention and
// global_attention_sdpa); and the (query, key) slice pairs handed to the kernels, summed over the
// ranks, are the visible pairs of model/flops.h, not the S x (n/S) x n of a masked rectangle. Also
// the range as FlashAttention-2's variable-length segments, through a reference kernel.
#include "model/global_range.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <numeric>

#include "common/parallel_layout.h"
#include "model/csa.h"
#include "model/flops.h"
#include "model/global_range_varlen.h"
#include "tests/model/test_util.h"
#include "tests/model/varlen_reference.h"

namespace cst::model::csa {
namespace {

using testing::max_abs_diff;
using torch::Tensor;

struct Qkv {
  Tensor q, k, v, slice_mask, grad_out;
};

// B = 3 sequences of n slices, H = 2 heads of width 4; row 1 has empty slices (its first, one
// in the middle, the tail), row 2 has none real.
Qkv make(int64_t n, bool padded) {
  torch::manual_seed(3);
  Qkv x;
  auto opt = torch::TensorOptions().dtype(torch::kFloat32);
  x.q = torch::randn({3, 2, n, 4}, opt) * 2, x.k = torch::randn({3, 2, n, 4}, opt) * 2;
  x.v = torch::randn({3, 2, n, 4}, opt);
  x.grad_out = torch::randn({3, 2, n, 4}, opt);
  if (padded) {
    x.slice_mask = torch::ones({3, n}, torch::kBool);
    x.slice_mask[1][0] = false, x.slice_mask[1][n / 2] = false;
    x.slice_mask[1].narrow(0, n - n / 3, n / 3).fill_(false);
    x.slice_mask[2].fill_(false);
  }
  return x;
}

using GlobalFn = Tensor (*)(const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, double, bool, int64_t,
                            int64_t, int64_t*);

struct Grads {
  Tensor out, gq, gk, gv;
};

// The outputs of ranges [r n/S, (r+1) n/S) of S ranks, concatenated, and the gradients of
// sum(out * grad_out) summed over the ranks. S = 1: the whole sequence through the explicit kernel.
Grads run(const Qkv& x, bool causal, int64_t S, GlobalFn fn, int64_t* pairs) {
  const int64_t n = x.q.size(2), nq = n / S;
  Tensor q = x.q.clone().requires_grad_(), k = x.k.clone().requires_grad_(), v = x.v.clone().requires_grad_();
  std::vector<Tensor> outs;
  for (int64_t r = 0; r < S; ++r)
    outs.push_back(S == 1 ? global_attention(q, k, v,
                                             x.slice_mask.defined() ? x.slice_mask : torch::ones({3, n}, torch::kBool),
                                             causal, 0.0, false)
                          : fn(q, k, v, x.slice_mask, causal, 0.0, false, r * nq, nq, pairs));
  Grads g;
  g.out = torch::cat(outs, 2);
  (g.out * x.grad_out).sum().backward();
  g.gq = q.grad(), g.gk = k.grad(), g.gv = v.grad();
  return g;
}

GlobalFn explicit_fn() {
  return [](const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& m, bool c, double p, bool t, int64_t f,
            int64_t nq, int64_t* pairs) {
    return global_attention(q, k, v, m.defined() ? m : torch::ones({q.size(0), k.size(2)}, torch::kBool), c, p, t, f,
                            nq, pairs);
  };
}

GlobalFn sdpa_fn() {
  return [](const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& m, bool c, double p, bool t, int64_t f,
            int64_t nq, int64_t* pairs) { return global_attention_sdpa(q, k, v, m, c, p, t, f, nq, pairs); };
}

TEST(GlobalRange, RanksTogetherEqualTheWholeSequence) {
  const int64_t L = 4, n = 24;
  for (bool causal : {true, false}) {
    for (bool padded : {false, true}) {
      const Qkv x = make(n, padded);
      const Grads ref = run(x, causal, 1, nullptr, nullptr);
      for (int64_t S : {2, 3, 4, 24}) {
        for (GlobalFn fn : {explicit_fn(), sdpa_fn()}) {
          int64_t pairs = 0;
          const Grads got = run(x, causal, S, fn, &pairs);
          SCOPED_TRACE(::testing::Message() << "causal " << causal << " padded " << padded << " S " << S);
          EXPECT_LT(max_abs_diff(got.out, ref.out), 1e-5);
          EXPECT_LT(max_abs_diff(got.gq, ref.gq), 1e-5);
          EXPECT_LT(max_abs_diff(got.gk, ref.gk), 1e-5);
          EXPECT_LT(max_abs_diff(got.gv, ref.gv), 1e-5);
          // Only visible pairs reach a kernel: n(n-1)/2 causal, whatever S (a masked rectangle
          // per rank would hand n^2 in all).
          ModelConfig cfg = testing::small_config(causal ? Task::kLm : Task::kMlm, 1.0, L, n * L);
          EXPECT_EQ(static_cast<double>(pairs), global_attention_pairs(cfg, n * L));
        }
      }
    }
  }
}

// A range without visible keys (the first slice of a causal sequence, alone on its rank) still
// reaches k and v in backward: under sequence parallelism the all-gather's reduce-scatter runs
// there, and every rank of the group must join it.
TEST(GlobalRange, RangeWithoutKeysStillReachesTheKeys) {
  const Qkv x = make(6, false);
  for (GlobalFn fn : {explicit_fn(), sdpa_fn()}) {
    Tensor q = x.q.clone().requires_grad_(), k = x.k.clone().requires_grad_(), v = x.v.clone().requires_grad_();
    Tensor out = fn(q, k, v, x.slice_mask, /*causal=*/true, 0.0, false, 0, 1, nullptr);
    EXPECT_EQ(out.abs().max().item<double>(), 0.0);
    out.sum().backward();
    ASSERT_TRUE(k.grad().defined() && v.grad().defined());
    EXPECT_EQ(k.grad().abs().max().item<double>(), 0.0);
  }
}

// The merge by log-sum-exp holds where one block dominates the other by far (scores ~ 100).
TEST(GlobalRange, MergeIsStableWithLargeScores) {
  Qkv x = make(12, true);
  x.q = x.q * 10, x.k = x.k * 10;
  const Grads ref = run(x, true, 1, nullptr, nullptr);
  const Grads got = run(x, true, 3, sdpa_fn(), nullptr);
  EXPECT_FALSE(got.out.isnan().any().item<bool>());
  EXPECT_LT(max_abs_diff(got.out, ref.out), 1e-4);
  EXPECT_LT(max_abs_diff(got.gv, ref.gv), 1e-4);
}

// The causal rows split by work (balanced_causal_rows with the kernels' kRangeRowCost) instead of
// each rank's own chunk: the ranges together still equal the whole sequence, the kernels still get
// only the visible pairs, and every rank gets the same work (pairs + kRangeRowCost x rows) within
// 10%, where own chunks leave the last rank with ~2x the mean pairs.
TEST(GlobalRange, BalancedCausalRowsEqualTheWholeSequenceWithEvenWork) {
  for (int64_t n : {128, 2048}) {
    const Qkv x = make(n, true);
    const bool exact = n == 128;  // the gradients at 2048 slices: float32 sums of 2048 terms
    const Grads ref = exact ? run(x, true, 1, nullptr, nullptr) : Grads{};
    for (int64_t S : {2, 4}) {
      Tensor q = x.q.clone().requires_grad_(), k = x.k.clone().requires_grad_(), v = x.v.clone().requires_grad_();
      std::vector<Tensor> outs;
      std::vector<double> work, own;
      for (int64_t r = 0; r < S; ++r) {
        const TokenRange rows = balanced_causal_rows(n, S, r, kRangeRowCost);
        int64_t pairs = 0, own_pairs = 0;
        outs.push_back(global_attention_sdpa(q, k, v, x.slice_mask, true, 0.0, false, rows.begin, rows.size(), &pairs));
        global_attention_sdpa(x.q, x.k, x.v, x.slice_mask, true, 0.0, false, r * (n / S), n / S, &own_pairs);
        work.push_back(static_cast<double>(pairs + kRangeRowCost * rows.size()));
        own.push_back(static_cast<double>(own_pairs));
      }
      SCOPED_TRACE(::testing::Message() << "n " << n << " S " << S);
      const Tensor out = torch::cat(outs, 2);
      if (exact) {
        (out * x.grad_out).sum().backward();
        EXPECT_LT(max_abs_diff(out, ref.out), 1e-5);
        EXPECT_LT(max_abs_diff(q.grad(), ref.gq), 1e-5);
        EXPECT_LT(max_abs_diff(k.grad(), ref.gk), 1e-5);
        EXPECT_LT(max_abs_diff(v.grad(), ref.gv), 1e-5);
      }
      auto max_over_mean = [&](const std::vector<double>& p) {
        const double sum = std::accumulate(p.begin(), p.end(), 0.0);
        return *std::max_element(p.begin(), p.end()) / (sum / S);
      };
      EXPECT_EQ(std::accumulate(own.begin(), own.end(), 0.0), static_cast<double>(n * (n - 1) / 2));
      EXPECT_EQ(std::accumulate(work.begin(), work.end(), 0.0),
                static_cast<double>(n * (n - 1) / 2 + kRangeRowCost * n))
          << "only visible pairs";
      EXPECT_LE(max_over_mean(work), 1.10);
      EXPECT_GT(max_over_mean(own), 1.4) << "own chunks: the last rank carries (S - 1/2) / (S / 2) of the mean";
    }
  }
}

// The range as FlashAttention-2 segments (model/global_range_varlen.h, run here by the reference
// kernel with its bottom-right causal alignment) equals the CPU flash kernels in float64: the
// causal offset as the alignment, the first slice of a causal sequence left out, bidirectional
// rectangles; outputs and the gradients of q_rows, k and v. On CPU the model never takes it.
TEST(GlobalRange, VarlenSegmentsEqualTheFlashKernels) {
  struct Case {
    int64_t nq, prefix;
    bool diagonal;
  };
  const testing::ReferenceVarlen reference;
  for (const Case c : {Case{5, 0, true}, Case{5, 6, true}, Case{1, 3, true}, Case{5, 6, false}, Case{2, 0, true}}) {
    SCOPED_TRACE(::testing::Message() << "nq " << c.nq << " prefix " << c.prefix << " diagonal " << c.diagonal);
    const int64_t m = c.prefix + (c.diagonal ? c.nq - 1 : 0);
    torch::manual_seed(7);
    auto opt = torch::TensorOptions().dtype(torch::kFloat64);
    const Tensor q = torch::randn({2, 3, c.nq, 4}, opt) * 2, k = torch::randn({2, 3, m, 4}, opt) * 2;
    const Tensor v = torch::randn({2, 3, m, 4}, opt), g = torch::randn({2, 3, c.nq, 4}, opt);
    EXPECT_FALSE(global_range_varlen(q, k, v, Tensor(), 0.0)) << "a CPU tensor";
    std::vector<Tensor> got, want;
    for (bool varlen : {true, false}) {
      Tensor a = q.clone().requires_grad_(), b = k.clone().requires_grad_(), d = v.clone().requires_grad_();
      Tensor out = varlen ? global_attention_range_varlen(a, b, d, c.prefix, c.diagonal, reference)
                          : global_attention_range(a, b, d, Tensor(), c.prefix, c.diagonal);
      (out * g).sum().backward();
      (varlen ? got : want) = {out, a.grad(), b.grad(), d.grad()};
    }
    for (size_t i = 0; i < got.size(); ++i) EXPECT_LT(max_abs_diff(got[i], want[i]), 1e-10) << "tensor " << i;
    if (c.diagonal && c.prefix == 0) {
      EXPECT_EQ(got[0].select(2, 0).abs().max().item<double>(), 0.0);
    }
  }
}

}  // namespace
}  // namespace cst::model::csa
