// The row-block kernel of a query range's global attention (model/global_range_rows.h), the one
// CUDA tensors and attention dropout take: equal to the CPU flash kernels (outputs and the
// gradients of q, k and v; causal and bidirectional, with empty key slices, several blocks);
// the pairs it scores are the visible ones plus half of each block's diagonal band; its dropout
// is inverted Bernoulli dropout of the probabilities, drawn again in backward (the gradients
// equal finite differences of the same masks); no tensor larger than a block.
#include "model/global_range_rows.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <limits>

#include "model/global_range.h"
#include "model/memory.h"
#include "tests/model/test_util.h"

namespace cst::model::csa {
namespace {

using testing::max_abs_diff;
using torch::Tensor;

struct Case {
  Tensor q, k, v, key_mask, grad_out;
  int64_t prefix;
  bool diagonal;
};

// B = 3, H = 2; key row 1 has empty slices (its first, one in the middle, the tail), row 2 none
// real (when padded).
Case make(int64_t nq, int64_t prefix, bool diagonal, bool padded, int64_t d = 4,
          torch::ScalarType dtype = torch::kFloat32) {
  torch::manual_seed(5);
  const int64_t m = prefix + (diagonal ? nq - 1 : 0);
  auto opt = torch::TensorOptions().dtype(dtype);
  Case c{torch::randn({3, 2, nq, d}, opt) * 2,
         torch::randn({3, 2, m, d}, opt) * 2,
         torch::randn({3, 2, m, d}, opt),
         Tensor(),
         torch::randn({3, 2, nq, d}, opt),
         prefix,
         diagonal};
  if (padded && m > 2) {
    c.key_mask = torch::ones({3, m}, torch::kBool);
    c.key_mask[1][0] = false, c.key_mask[1][m / 2] = false;
    c.key_mask[1].narrow(0, m - m / 3, m / 3).fill_(false);
    c.key_mask[2].fill_(false);
  }
  return c;
}

Tensor additive(const Case& c, const torch::TensorOptions& opt) {
  if (!c.key_mask.defined()) return {};
  const int64_t m = c.key_mask.size(1);
  return torch::zeros({3, 1, 1, m}, opt)
      .masked_fill_(c.key_mask.logical_not().view({3, 1, 1, m}), -std::numeric_limits<double>::infinity());
}

struct Grads {
  Tensor out, gq, gk, gv;
};

// rows: the row-block kernel with dropout p; else global_attention_range without dropout (the
// CPU flash kernels). Float64 in the comparisons: the two sum in different orders.
Grads run(const Case& c, bool rows, double p = 0.0) {
  Tensor q = c.q.clone().requires_grad_(), k = c.k.clone().requires_grad_(), v = c.v.clone().requires_grad_();
  Grads g;
  g.out = rows ? row_block_attention(q, k, v, additive(c, q.options()), c.prefix, c.diagonal, p)
               : global_attention_range(q, k, v, c.key_mask, c.prefix, c.diagonal);
  (g.out * c.grad_out).sum().backward();
  g.gq = q.grad(), g.gk = k.grad(), g.gv = v.grad();
  return g;
}

TEST(RowBlocks, EqualTheFlashKernels) {
  // nq = 128 over ~250 keys at d = 4: blocks of 32 rows (four blocks); nq = 1: one row, no key
  // (the first slice of a causal sequence) or all keys.
  struct Geometry {
    int64_t nq, prefix;
    bool diagonal;
  };
  for (Geometry geo : {Geometry{128, 0, true}, Geometry{128, 120, true}, Geometry{128, 250, false},
                       Geometry{1, 0, true}, Geometry{1, 9, false}, Geometry{40, 3, true}})
    for (bool padded : {false, true}) {
      const Case c = make(geo.nq, geo.prefix, geo.diagonal, padded, 4, torch::kFloat64);
      SCOPED_TRACE(::testing::Message() << "nq " << geo.nq << " prefix " << geo.prefix << " diagonal " << geo.diagonal
                                        << " padded " << padded);
      const Grads ref = run(c, false), got = run(c, true);
      EXPECT_LT(max_abs_diff(got.out, ref.out), 1e-10);
      EXPECT_LT(max_abs_diff(got.gq, ref.gq), 1e-10);
      if (c.k.numel() > 0) {
        EXPECT_LT(max_abs_diff(got.gk, ref.gk), 1e-10);
        EXPECT_LT(max_abs_diff(got.gv, ref.gv), 1e-10);
      }
      // Scored pairs: the visible ones plus R (R - 1) / 2 per diagonal block of R rows.
      const int64_t m = geo.prefix + (geo.diagonal ? geo.nq - 1 : 0), R = row_block_rows(geo.nq, 4, m);
      int64_t expect = geo.nq * geo.prefix;
      if (geo.diagonal) {
        expect += geo.nq * (geo.nq - 1) / 2;
        for (int64_t r0 = 0; r0 < geo.nq; r0 += R) {
          const int64_t rows = std::min(R, geo.nq - r0);
          if (geo.prefix + r0 + rows - 1 > 0) expect += rows * (rows - 1) / 2;
        }
      }
      EXPECT_EQ(row_block_pairs(geo.nq, 4, geo.prefix, geo.diagonal), expect);
      int64_t counted = 0;
      global_attention_range(c.q, c.k, c.v, c.key_mask, c.prefix, c.diagonal, 0.5, &counted);
      EXPECT_EQ(counted, expect) << "global_attention_range with dropout counts the row blocks' pairs";
    }
  EXPECT_EQ(row_block_rows(128, 4, 250), 32) << "several blocks above";
}

// With v the identity (d = m keys), the output is the dropped probabilities themselves: each is
// 0 or the undropped one / (1 - p), a fraction p of them 0. The same seed draws the same masks.
TEST(RowBlocks, DropoutIsInvertedBernoulliOfTheProbabilities) {
  const int64_t nq = 64, m = 16;
  const double p = 0.5;
  torch::manual_seed(9);
  Tensor q = torch::randn({2, 2, nq, m}), k = torch::randn({2, 2, m, m});
  Tensor v = torch::eye(m).expand({2, 2, m, m}).contiguous();
  const Tensor probs = row_block_attention(q, k, v, Tensor(), m, false, 0.0);
  torch::manual_seed(1);
  const Tensor a = row_block_attention(q, k, v, Tensor(), m, false, p);
  const Tensor b = row_block_attention(q, k, v, Tensor(), m, false, p);
  torch::manual_seed(1);
  const Tensor a2 = row_block_attention(q, k, v, Tensor(), m, false, p);
  EXPECT_TRUE(torch::equal(a, a2)) << "same seed, same masks";
  EXPECT_FALSE(torch::equal(a, b)) << "the next call draws new masks";
  const Tensor dropped = a.eq(0), kept = dropped.logical_not();
  EXPECT_LT(max_abs_diff(a.masked_select(kept), probs.masked_select(kept) / (1 - p)), 1e-6);
  const double zero = dropped.to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(zero, p, 0.03) << "of " << a.numel() << " probabilities";
}

// Double precision, dropout 0.3, causal offset with padding and three blocks: the gradients of
// sum(out * w) equal central differences of the forward under the same seed (the masks are drawn
// again in backward, not stored).
TEST(RowBlocks, DropoutGradientsMatchFiniteDifferences) {
  const Case c = make(80, 10, true, true, 4, torch::kFloat64);
  ASSERT_EQ(row_block_rows(80, 4, 89), 32);
  const double p = 0.3;
  auto f = [&](const Tensor& q, const Tensor& k, const Tensor& v) {
    torch::manual_seed(7);
    return (row_block_attention(q, k, v, additive(c, q.options()), c.prefix, c.diagonal, p) * c.grad_out).sum();
  };
  Tensor q = c.q.clone().requires_grad_(), k = c.k.clone().requires_grad_(), v = c.v.clone().requires_grad_();
  f(q, k, v).backward();
  const Tensor grads[3] = {q.grad(), k.grad(), v.grad()};
  torch::NoGradGuard ng;
  const double eps = 1e-6;
  for (int which = 0; which < 3; ++which) {
    Tensor x[3] = {c.q.clone(), c.k.clone(), c.v.clone()};
    for (int64_t i = 0; i < x[which].numel(); i += x[which].numel() / 23 + 1) {
      Tensor flat = x[which].view(-1);
      const double x0 = flat[i].item<double>();
      flat[i] = x0 + eps;
      const double up = f(x[0], x[1], x[2]).item<double>();
      flat[i] = x0 - eps;
      const double down = f(x[0], x[1], x[2]).item<double>();
      flat[i] = x0;
      EXPECT_NEAR(grads[which].view(-1)[i].item<double>(), (up - down) / (2 * eps), 1e-6)
          << "input " << which << " element " << i;
    }
  }
}

// One thread: the largest allocation of forward and backward is a block's scores (at most
// kRowBlockElements x q's elements, or kMinBlockRows rows) or a copy of the keys, not the [nq, m]
// rectangle, with dropout.
TEST(RowBlocks, LargestAllocationIsABlock) {
  const Case c = make(1024, 3072, true, true, 16);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  int64_t largest = 0;
  {
    MemoryTracker mem;
    run(c, true, 0.1);
    largest = mem.largest_alloc_bytes();
  }
  at::set_num_threads(threads);
  const int64_t m = 3072 + 1023, q_bytes = c.q.numel() * 4, k_bytes = c.k.numel() * 4, rectangle = 3 * 2 * 1024 * m * 4;
  const int64_t block = std::max(kRowBlockElements * q_bytes, kMinBlockRows * 3 * 2 * m * 4);
  EXPECT_LE(largest, std::max(block, k_bytes)) << "one [B, H, nq, m] float32 tensor: " << rectangle;
  EXPECT_LT(largest * 8, rectangle);
}

}  // namespace
}  // namespace cst::model::csa
