// Each fused local-attention kernel against the explicit scores, in float64, outputs and the
// gradients of q, keys, values, the halos, P_l and W_k: the CPU flash kernel, SDPA on blocks, and the
// variable-length packing (run here by the reference kernel of tests/model/varlen_reference.h;
// tests/model/cuda_test.cpp runs FlashAttention-2 itself). Also the packing's segments for one
// small geometry, written out by hand.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/csa.h"
#include "model/csa_dispatch.h"
#include "model/local_attention.h"
#include "model/varlen_attention.h"
#include "tests/model/local_reference.h"
#include "tests/model/test_util.h"
#include "tests/model/varlen_reference.h"

namespace cst::model::csa {
namespace {

using testing::max_abs_diff;
using torch::Tensor;

struct Geo {
  bool causal;
  int64_t L, e, N;
  bool left, right, token_mask;
};

class Kernels : public ::testing::TestWithParam<Geo> {};

void run_geometry(const Geo& c, const LocalGeometry& g, int64_t B);

TEST_P(Kernels, EachEqualsExplicitScores) {
  const Geo c = GetParam();
  LocalGeometry g;
  g.slice_len = c.L, g.ext = c.e, g.causal = c.causal, g.heads = 2, g.tokens = c.N;
  g.left_halo = c.left, g.right_halo = c.right;
  for (int64_t B : {1, 2}) {
    SCOPED_TRACE("B = " + std::to_string(B));
    run_geometry(c, g, B);
  }
}

void run_geometry(const Geo& c, const LocalGeometry& g, int64_t B) {
  const int64_t D = 8, NL = g.slices() * c.L, T = g.key_rows(), W = g.window(), e = c.e;
  torch::manual_seed(21);
  auto opt = torch::TensorOptions().dtype(torch::kDouble);
  // Inputs: q, the chunk's keys and values, P_l, W_k, the halos present.
  std::vector<Tensor> inputs{torch::randn({B, NL, D}, opt), torch::randn({B, NL, D}, opt),
                             torch::randn({B, NL, D}, opt), torch::randn({W, D}, opt), torch::randn({D, D}, opt)};
  for (bool present : {c.left, c.right})
    for (int kv = 0; kv < 2; ++kv) inputs.push_back(present ? torch::randn({B, e, D}, opt) : Tensor());
  Tensor key_mask;
  if (c.token_mask) {
    key_mask = torch::rand({B, T}) > 0.3;
    key_mask[B - 1].narrow(0, 0, std::min<int64_t>(T, c.L + 2 * c.e)).fill_(false);  // a slice with no visible key
  }
  Tensor valid = key_validity(g, B, key_mask, opt);
  if (!valid.defined()) valid = torch::ones({B, T}, torch::kBool);
  Tensor row_w = torch::randn({B, NL, D}, opt) * (torch::arange(NL) < c.N).to(torch::kDouble).view({1, NL, 1});

  // fn(q, kx, vx, p_local, w_k, left, right) -> output; returns the output on real rows and every
  // gradient.
  auto run = [&](auto&& fn) {
    std::vector<Tensor> in;
    for (const auto& t : inputs) in.push_back(t.defined() ? t.clone().requires_grad_() : Tensor());
    Tensor y = fn(in[0], in[1], in[2], in[3], in[4], KvHalo{in[5], in[6], {}}, KvHalo{in[7], in[8], {}});
    (y * row_w).sum().backward();
    std::vector<Tensor> out{(y * (row_w != 0)).detach()};
    for (auto& t : in)
      if (t.defined()) out.push_back(t.grad());
    return out;
  };
  const auto want = run([&](auto& q, auto& kx, auto& vx, auto& pl, auto& wk, const KvHalo& l, const KvHalo& r) {
    return testing::explicit_local(q, key_sequence(kx, l.k, r.k, g), key_sequence(vx, l.v, r.v, g),
                                   torch::matmul(pl, wk.t()), valid, g);
  });
  testing::ReferenceVarlen reference;
  // The CPU flash kernel with all blocks in one call, one block per call, and 5 blocks per call
  // (whole rows when a row has fewer slices, else part of a row).
  const std::pair<LocalKernel, int64_t> runs[] = {{LocalKernel::kFlashCpu, 0},
                                                  {LocalKernel::kFlashCpu, 1},
                                                  {LocalKernel::kFlashCpu, 5},
                                                  {LocalKernel::kSdpaBlocks, 0},
                                                  {LocalKernel::kFlashVarlen, 0}};
  for (const auto& [kernel, per_call] : runs) {
    if (kernel == LocalKernel::kFlashVarlen && c.token_mask) continue;
    LocalGeometry gk = g;
    gk.call_elements = per_call * W * D;
    VarlenPlanCache plans;
    const auto got = run([&](auto& q, auto& kx, auto& vx, auto& pl, auto& wk, const KvHalo& l, const KvHalo& r) {
      return local_attention_fused(q, kx, vx, l, r, pl, wk, key_mask, gk, kernel, 0.0, false, &reference, &plans);
    });
    const char* what[] = {"output",   "grad q",    "grad kx",   "grad vx",   "grad P_l",
                          "grad W_k", "grad halo", "grad halo", "grad halo", "grad halo"};
    ASSERT_EQ(want.size(), got.size());
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_LT(max_abs_diff(want[i], got[i]), 1e-10)
          << to_string(kernel) << " " << what[i] << " calls of " << gk.call_elements / (W * D) << " blocks";
  }
}

std::vector<Geo> geometries() {
  std::vector<Geo> out;
  for (bool mask : {false, true}) {
    for (int64_t e : {0, 2, 4}) {
      out.push_back({true, 4, e, 12, false, false, mask});
      out.push_back({true, 4, e, 10, false, false, mask});  // N not a multiple of L
      out.push_back({false, 4, e, 12, false, false, mask});
      out.push_back({false, 4, e, 9, false, false, mask});
      if (e == 0) continue;
      out.push_back({true, 4, e, 12, true, false, mask});  // a left halo (sequence parallelism)
      out.push_back({false, 4, e, 12, true, true, mask});
      out.push_back({false, 4, e, 12, false, true, mask});  // the first chunk: a right halo only
    }
    out.push_back({true, 1, 1, 5, false, false, mask});
    out.push_back({false, 6, 0, 6, false, false, mask});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Geometries, Kernels, ::testing::ValuesIn(geometries()),
                         [](const ::testing::TestParamInfo<Geo>& i) {
                           const Geo& c = i.param;
                           return std::string(c.causal ? "causal" : "bidir") + "_L" + std::to_string(c.L) + "_e" +
                                  std::to_string(c.e) + "_N" + std::to_string(c.N) + (c.left ? "_lefthalo" : "") +
                                  (c.right ? "_righthalo" : "") + (c.token_mask ? "_mask" : "");
                         });

// L = 4, e = 2, N = 10 (the last slice has 2 queries), one batch row, no halos.
TEST(VarlenPlan, SegmentsOfASmallGeometry) {
  LocalGeometry g;
  g.slice_len = 4, g.ext = 2, g.heads = 1, g.tokens = 10;
  auto ints = [](const Tensor& t) {
    Tensor l = t.to(torch::kLong).contiguous();
    return std::vector<int64_t>(l.data_ptr<int64_t>(), l.data_ptr<int64_t>() + l.numel());
  };
  g.causal = true;  // windows of L + e = 6 rows; slice 0 borrows nothing; the last ends at its last query
  auto p = make_varlen_plan(1, g, torch::kCPU);
  EXPECT_EQ(ints(p->args.cu_q), (std::vector<int64_t>{0, 4, 8, 10}));
  EXPECT_EQ(ints(p->args.cu_k), (std::vector<int64_t>{0, 4, 10, 14}));
  // Stored key rows (the chunk: key sequence rows from e = 2 on).
  EXPECT_EQ(ints(p->k_index), (std::vector<int64_t>{0, 1, 2, 3, 2, 3, 4, 5, 6, 7, 6, 7, 8, 9}));
  EXPECT_EQ(ints(p->w_index), (std::vector<int64_t>{2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3}));
  EXPECT_EQ(ints(p->q_index), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(p->args.max_q, 4);
  EXPECT_EQ(p->args.max_k, 6);
  g.causal = false;  // windows of L + 2e = 8 rows, clipped to the sequence
  p = make_varlen_plan(1, g, torch::kCPU);
  EXPECT_EQ(ints(p->args.cu_k), (std::vector<int64_t>{0, 6, 14, 18}));
  EXPECT_EQ(ints(p->k_index).front(), 0);
  EXPECT_EQ(ints(p->k_index).back(), 9);
  EXPECT_EQ(p->args.max_k, 8);
}

}  // namespace
}  // namespace cst::model::csa
