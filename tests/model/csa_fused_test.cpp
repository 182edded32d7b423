// CSA through fused kernels (model.csa_kernel = fused) equals CSA with explicit scores, through
// the whole model: outputs and every parameter gradient in float32 within 1e-5 (relative to the
// largest entry when that exceeds 1), over causal and
// bidirectional, alpha 1 to 3, padding and N not a multiple of L, L = 1 and L = N, every
// composition. Also: halos split a sequence exactly, and the causal local mask is the
// bottom-right-aligned causal mask.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/attention.h"
#include "model/csa.h"
#include "model/model.h"
#include "tests/model/test_util.h"

namespace cst::model {
namespace {

using testing::max_abs_diff;
using torch::Tensor;

struct Case {
  bool causal;
  double alpha;
  int64_t slice_len, n_tokens;
  bool padding;
  Composition comp = Composition::kLocalGlobal;
};

std::string name(const Case& c) {
  std::string s = std::string(c.causal ? "causal" : "bidir") + "_alpha" + std::to_string(int(c.alpha * 10)) + "_L" +
                  std::to_string(c.slice_len) + "_N" + std::to_string(c.n_tokens) + (c.padding ? "_pad" : "");
  if (c.comp == Composition::kGlobalLocal) s += "_globallocal";
  if (c.comp == Composition::kParallel) s += "_parallel";
  return s;
}

class FusedEqualsExplicit : public ::testing::TestWithParam<Case> {};

TEST_P(FusedEqualsExplicit, OutputsAndEveryGradient) {
  const Case c = GetParam();
  ModelConfig cfg = testing::small_config(c.causal ? Task::kLm : Task::kMlm, c.alpha, c.slice_len, 32);
  cfg.n_layers = 2, cfg.composition = c.comp, cfg.init_std = 0.3;
  cfg.csa_kernel = CsaKernel::kExplicit;
  ModelConfig fused_cfg = cfg;
  fused_cfg.csa_kernel = CsaKernel::kFused;
  torch::manual_seed(11);
  CstModel a(cfg), b(fused_cfg);
  {
    torch::NoGradGuard ng;
    auto src = a->named_parameters();
    for (auto& p : b->named_parameters()) p.value().copy_(src[p.key()]);
  }
  const int64_t B = 3, N = c.n_tokens;
  Tensor ids = torch::randint(cfg.vocab_size, {B, N}, torch::kLong);
  Tensor mask;
  if (c.padding) {
    mask = torch::ones({B, N}, torch::kBool);
    mask[1].narrow(0, N - std::min<int64_t>(N - 1, 9), std::min<int64_t>(N - 1, 9)).fill_(false);  // end padding
    mask[2][N / 2] = false;                                                                        // a hole
  }
  Tensor ya = a->forward_hidden(ids, mask), yb = b->forward_hidden(ids, mask);
  Tensor w = c.padding ? mask.unsqueeze(-1).to(torch::kFloat) : torch::ones({B, N, 1});  // padded outputs unused
  EXPECT_LT(max_abs_diff(ya * w, yb * w), 1e-5);
  Tensor r = torch::randn_like(ya);
  (ya * w * r).sum().backward();
  (yb * w * r).sum().backward();
  auto ga = a->named_parameters();
  int compared = 0;
  for (auto& p : b->named_parameters()) {
    // Undefined = zero: causal L = N has one slice, whose global part is 0 without touching P_g.
    const Tensor zero = torch::zeros_like(p.value());
    const Tensor g = ga[p.key()].grad().defined() ? ga[p.key()].grad() : zero;
    const Tensor gb = p.value().grad().defined() ? p.value().grad() : zero;
    if (g.abs().max().item<double>() == 0 && gb.abs().max().item<double>() == 0) continue;  // heads: unused
    const double scale = std::max(1.0, g.abs().max().item<double>());
    EXPECT_LT(max_abs_diff(g, gb) / scale, 1e-5) << p.key() << " (largest entry " << scale << ")";
    ++compared;
  }
  EXPECT_GE(compared, 10 * cfg.n_layers);
}

std::vector<Case> grid() {
  std::vector<Case> out;
  for (bool causal : {false, true})
    for (double alpha : {1.0, 1.5, 2.0, 3.0})
      for (int64_t n : {16, 13})
        for (bool pad : {false, true}) out.push_back({causal, alpha, 4, n, pad});
  for (bool causal : {false, true}) {
    out.push_back({causal, 1.0, 1, 9, false});    // L = 1: own value plus global attention over tokens
    out.push_back({causal, 3.0, 1, 9, true});     // L = 1, e = 1
    out.push_back({causal, 1.0, 16, 16, false});  // L = N: one slice, full attention
    out.push_back({causal, 2.0, 16, 16, true});
    for (Composition comp : {Composition::kGlobalLocal, Composition::kParallel})
      out.push_back({causal, 2.0, 4, 14, true, comp});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Grid, FusedEqualsExplicit, ::testing::ValuesIn(grid()),
                         [](const ::testing::TestParamInfo<Case>& i) { return name(i.param); });

// A sequence cut into two chunks, each given the other's projected keys and values as a halo,
// gives the same local attention as the whole (the sequence-parallel seam), for both kernels.
TEST(Halo, TwoChunksWithHalosEqualTheWholeSequence) {
  for (CsaKernel kernel : {CsaKernel::kExplicit, CsaKernel::kFused}) {
    for (bool causal : {false, true}) {
      ModelConfig cfg = testing::small_config(causal ? Task::kLm : Task::kMlm, 3.0, 4, 32);
      cfg.csa_kernel = kernel;
      torch::manual_seed(12);
      CompositeSliceAttention att(cfg);
      const int64_t e = cfg.extension(), half = 8;
      LayerContext pos{torch::randn({cfg.window(), 8}), torch::randn({cfg.max_slices(), 8}), /*all_real=*/true,
                       /*sp=*/nullptr};
      Tensor x = torch::randn({2, 2 * half, 8});
      Tensor mask = torch::ones({2, 2 * half}, torch::kBool);
      Tensor whole = att.local(x, mask, pos);  // [B, n, L, D]
      Tensor x0 = x.narrow(1, 0, half), x1 = x.narrow(1, half, half);
      KvHalo from0{att.k_proj(x0.narrow(1, half - e, e)), att.v_proj(x0.narrow(1, half - e, e)), {}};
      KvHalo from1{att.k_proj(x1.narrow(1, 0, e)), att.v_proj(x1.narrow(1, 0, e)), {}};
      Tensor m = mask.narrow(1, 0, half);
      Tensor y0 = att.local(x0, m, pos, {}, causal ? KvHalo{} : from1);
      Tensor y1 = att.local(x1, m, pos, from0, {});
      // Chunk 1's slices use P_l by window position, as in the whole sequence.
      EXPECT_LT(max_abs_diff(torch::cat({y0, y1}, 1), whole), 1e-5) << to_string(kernel) << " causal " << causal;
    }
  }
}

// CST's causal local mask (query i of a slice sees the e borrowed keys, then its slice up to
// itself) is causal attention of L queries over L + e keys aligned bottom-right: key m visible to
// query i iff m <= i + (L + e) - L, which is what FlashAttention-2's causal flag computes when
// the key segment is longer than the query segment.
TEST(CausalAlignment, LocalMaskIsBottomRightAlignedCausal) {
  for (int64_t L : {1, 4, 7})
    for (int64_t e : {0, 1, 3, 7}) {
      Tensor vis = csa::local_visibility(L, e, /*causal=*/true, torch::TensorOptions());
      Tensor bottom_right = torch::ones({L, L + e}, torch::kBool).tril(/*diagonal=*/e);
      EXPECT_TRUE(torch::equal(vis, bottom_right)) << "L " << L << " e " << e;
    }
}

// Causal global attention through SDPA (queries 0..n-2 over keys 0..n-2 causally, outputs moved
// to slices 1..n-1) equals the explicit shifted-query form, with and without empty slices.
TEST(GlobalSdpa, EqualsShiftedQueryForm) {
  torch::manual_seed(13);
  const int64_t B = 2, H = 2, n = 6, d = 4;
  Tensor q = torch::randn({B, H, n, d}, torch::kDouble), k = torch::randn_like(q), v = torch::randn_like(q);
  for (bool causal : {false, true})
    for (bool empty : {false, true}) {
      Tensor sm = torch::ones({B, n}, torch::kBool);
      if (empty) sm[1][0] = false, sm[1][3] = false, sm[0][n - 1] = false;
      Tensor want = csa::global_attention(q, k, v, sm, causal, 0.0, false);
      Tensor got = csa::global_attention_sdpa(q, k, v, empty ? sm : Tensor(), causal, 0.0, false);
      EXPECT_LT(max_abs_diff(want, got), 1e-12) << "causal " << causal << " empty " << empty;
    }
}

}  // namespace
}  // namespace cst::model
