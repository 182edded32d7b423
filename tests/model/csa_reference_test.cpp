// The vectorised CSA, with explicit scores and with the fused kernels (model.csa_kernel), against
// a slow, obviously-correct reference: every output token computed from its explicit list of
// keys, following docs/CST.md step by step.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "model/attention.h"
#include "tests/model/test_util.h"

namespace cst::model {
namespace {

using torch::Tensor;

// softmax(q . k_j / sqrt(d)) weighted sum of v_j, per head; zero when there are no keys.
Tensor attend(const Tensor& q, const std::vector<Tensor>& keys, const std::vector<Tensor>& values, int64_t heads) {
  const int64_t D = q.size(0), d = D / heads;
  Tensor out = torch::zeros({D}, q.options());
  if (keys.empty()) return out;
  for (int64_t h = 0; h < heads; ++h) {
    std::vector<double> s;
    for (const auto& k : keys)
      s.push_back((q.narrow(0, h * d, d) * k.narrow(0, h * d, d)).sum().item<double>() / std::sqrt(double(d)));
    double mx = *std::max_element(s.begin(), s.end()), z = 0;
    for (double& v : s) z += (v = std::exp(v - mx));
    for (size_t j = 0; j < keys.size(); ++j) out.narrow(0, h * d, d).add_(values[j].narrow(0, h * d, d) * (s[j] / z));
  }
  return out;
}

// Reference CSA (local-global composition) for one batch row. x [N, D], mask [N] bool.
Tensor reference_csa(CompositeSliceAttention& att, const ModelConfig& cfg, const Tensor& x, const Tensor& mask,
                     const LayerContext& pos) {
  const int64_t N = x.size(0), D = x.size(1), L = cfg.slice_len, e = cfg.extension();
  const int64_t W = cfg.window(), n = (N + L - 1) / L, H = cfg.n_heads;
  const bool causal = cfg.causal();
  auto lin = [](torch::nn::Linear& l, const Tensor& v) { return torch::mv(l->weight, v) + l->bias; };
  auto real = [&](int64_t p) { return p >= 0 && p < N && mask[p].item<bool>(); };

  // Local attention: query p at slice s, position i sees window positions w of slice s.
  std::vector<Tensor> y_local(N);
  for (int64_t p = 0; p < N; ++p) {
    const int64_t s = p / L, i = p % L;
    Tensor q = lin(att.q_proj, x[p] + pos.local[e + i]);
    std::vector<Tensor> ks, vs;
    for (int64_t w = 0; w < W; ++w) {
      const int64_t kp = s * L - e + w;
      if (!real(kp)) continue;
      if (causal && w >= e && w - e > i) continue;  // inside the slice: keys up to the query
      ks.push_back(lin(att.k_proj, x[kp] + pos.local[w]));
      vs.push_back(lin(att.v_proj, x[kp]));
    }
    y_local[p] = attend(q, ks, vs, H);
  }
  // Slice embeddings: mean of the local outputs of each slice's real tokens.
  std::vector<Tensor> s_bar(n);
  std::vector<bool> has(n, false);
  for (int64_t s = 0; s < n; ++s) {
    s_bar[s] = torch::zeros({D}, x.options());
    int64_t c = 0;
    for (int64_t p = s * L; p < std::min(N, (s + 1) * L); ++p)
      if (real(p)) s_bar[s] += y_local[p], ++c;
    if (c > 0) s_bar[s] /= double(c), has[s] = true;
  }
  // Global attention: slice t (causal: with the query of slice t-1, over slices < t).
  std::vector<Tensor> y_global(n);
  for (int64_t t = 0; t < n; ++t) {
    const int64_t qrow = causal ? t - 1 : t;
    if (qrow < 0) {
      y_global[t] = torch::zeros({D}, x.options());
      continue;
    }
    Tensor q = lin(att.q_proj, s_bar[qrow] + pos.global[qrow]);
    std::vector<Tensor> ks, vs;
    for (int64_t s = 0; s < n; ++s) {
      if (!has[s] || (causal && s >= t)) continue;
      ks.push_back(lin(att.k_proj, s_bar[s] + pos.global[s]));
      vs.push_back(lin(att.v_proj, s_bar[s]));
    }
    y_global[t] = attend(q, ks, vs, H);
  }
  Tensor out = torch::zeros({N, D}, x.options());
  for (int64_t p = 0; p < N; ++p) out[p] = lin(att.o_proj, y_local[p] + y_global[p / L]);
  return out;
}

struct Case {
  CsaKernel kernel;
  bool causal;
  double alpha;
  bool padding;
  int64_t n_tokens;
};

class CsaReference : public ::testing::TestWithParam<Case> {};

TEST_P(CsaReference, VectorisedEqualsPerTokenLoop) {
  const Case c = GetParam();
  ModelConfig cfg = testing::small_config(c.causal ? Task::kLm : Task::kMlm, c.alpha);
  cfg.csa_kernel = c.kernel;
  torch::manual_seed(7);
  CompositeSliceAttention att(cfg);
  att.to(torch::kDouble);
  Tensor p_local = torch::randn({cfg.window(), cfg.d_model}, torch::kDouble);
  Tensor p_global = torch::randn({cfg.max_slices(), cfg.d_model}, torch::kDouble);
  LayerContext pos{p_local, p_global};
  const int64_t B = 3, N = c.n_tokens;
  Tensor x = torch::randn({B, N, cfg.d_model}, torch::kDouble);
  Tensor mask = torch::ones({B, N}, torch::kBool);
  if (c.padding) {
    mask[1].narrow(0, N - 5, 5).fill_(false);  // end padding: whole slices empty
    mask[2][N / 2] = false;                    // a hole inside the sequence
  }
  Tensor got = att.forward(x, mask, pos);
  ASSERT_EQ(got.sizes(), x.sizes());
  for (int64_t b = 0; b < B; ++b) {
    Tensor want = reference_csa(att, cfg, x[b], mask[b], pos);
    for (int64_t p = 0; p < N; ++p) {
      if (!mask[b][p].item<bool>()) continue;  // outputs at padding are discarded
      ASSERT_LT(testing::max_abs_diff(got[b][p], want[p]), 1e-9) << "batch " << b << " token " << p;
    }
  }
}

std::vector<Case> all_cases() {
  std::vector<Case> out;
  for (CsaKernel kernel : {CsaKernel::kExplicit, CsaKernel::kFused})
    for (bool causal : {false, true})
      for (double alpha : {1.0, 2.0, 3.0})
        for (bool padding : {false, true})
          for (int64_t n : {12, 13}) out.push_back({kernel, causal, alpha, padding, n});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Grid, CsaReference, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           const Case& c = i.param;
                           return std::string(to_string(c.kernel)) + (c.causal ? "_causal" : "_bidir") + "_alpha" +
                                  std::to_string(int(c.alpha)) + (c.padding ? "_pad" : "_nopad") + "_N" +
                                  std::to_string(c.n_tokens);
                         });

}  // namespace
}  // namespace cst::model
