// Incremental decoding (model/decode.h) against the full forward (CstModel::forward, what
// cst-score computes): a batch of left-aligned prompts of different lengths is prefilled, then
// decoded token by token across slice boundaries; at every position each row's logits equal the
// full forward of that row alone within 1e-5 in float32. Every composition, aggregation and
// positional scheme, alpha 1, 2, 3, L = 1, and the full-attention baseline's key/value cache.
#include "model/decode.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "common/error.h"
#include "model/decode_sampling.h"
#include "tests/model/test_util.h"

namespace cst::model {
namespace {

using testing::max_abs_diff;
using testing::small_config;

constexpr double kTol = 1e-5;

ModelConfig lm_config(double alpha, int64_t slice_len) {
  ModelConfig c = small_config(Task::kLm, alpha, slice_len, 32);
  c.n_layers = 2;
  return c;
}

// Prefills prompts ids[b, :lengths[b]] and decodes `steps` more tokens of ids per row; every
// logit row is compared with the full forward of the row's prefix alone. Returns the largest
// difference seen.
double decode_vs_forward(const ModelConfig& cfg, const std::vector<int64_t>& lengths, int64_t steps) {
  torch::manual_seed(11);
  CstModel m(cfg);
  m->eval();
  torch::NoGradGuard ng;
  for (const auto& layer : *m->layers) {  // linear aggregation: weights away from 1/L, so a mix-up shows
    auto* csa = dynamic_cast<CompositeSliceAttention*>(layer->as<BlockImpl>()->attn.get());
    if (csa && csa->agg_weight.defined()) csa->agg_weight.uniform_(0.0, 1.0);
  }
  const int64_t B = static_cast<int64_t>(lengths.size());
  const int64_t T = *std::max_element(lengths.begin(), lengths.end());
  torch::Tensor ids = torch::randint(cfg.vocab_size, {B, T + steps}, torch::kLong);
  auto alone = [&](int64_t b, int64_t n) { return m->forward(ids[b].narrow(0, 0, n).unsqueeze(0))[0]; };  // [n, V]

  Decoder dec(*m, B, T + steps);
  torch::Tensor all = dec.prefill(ids.narrow(1, 0, T), lengths, /*all_logits=*/true);  // [B, T, V]
  double worst = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = lengths[static_cast<size_t>(b)];
    worst = std::max(worst, max_abs_diff(all[b].narrow(0, 0, n), alone(b, n)));
  }
  Decoder last_only(*m, B, T);
  torch::Tensor last = last_only.prefill(ids.narrow(1, 0, T), lengths);  // [B, V]
  for (int64_t b = 0; b < B; ++b)
    EXPECT_TRUE(torch::equal(last[b], all[b][lengths[static_cast<size_t>(b)] - 1])) << "row " << b;

  for (int64_t k = 0; k < steps; ++k) {
    torch::Tensor next = torch::empty({B}, torch::kLong);
    for (int64_t b = 0; b < B; ++b) next[b] = ids[b][lengths[static_cast<size_t>(b)] + k];
    torch::Tensor logits = dec.step(next);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t n = lengths[static_cast<size_t>(b)] + k + 1;
      EXPECT_EQ(dec.positions()[static_cast<size_t>(b)], n);
      const double d = max_abs_diff(logits[b], alone(b, n)[n - 1]);
      EXPECT_LT(d, kTol) << "row " << b << " position " << n - 1;
      worst = std::max(worst, d);
    }
  }
  return worst;
}

// Prompts of 1, 5, 8 (= 2 slices exactly) and 11 tokens with L = 4, then 10 tokens each: prompts
// shorter and longer than a slice, decoding across several slice boundaries.
const std::vector<int64_t> kLengths{1, 5, 8, 11};

TEST(Decode, CstEqualsFullForwardForAlpha123) {
  for (double alpha : {1.0, 2.0, 3.0}) {
    SCOPED_TRACE("alpha " + std::to_string(alpha));
    EXPECT_LT(decode_vs_forward(lm_config(alpha, 4), kLengths, 10), kTol);
  }
}

TEST(Decode, SliceLengthOne) {
  for (double alpha : {1.0, 3.0}) {  // e = 0 and e = 1
    SCOPED_TRACE("alpha " + std::to_string(alpha));
    EXPECT_LT(decode_vs_forward(lm_config(alpha, 1), {1, 3, 6}, 5), kTol);
  }
}

TEST(Decode, EveryCompositionAndAggregation) {
  for (Composition c : {Composition::kLocalGlobal, Composition::kGlobalLocal, Composition::kParallel}) {
    for (Aggregation a : {Aggregation::kMean, Aggregation::kMax, Aggregation::kLinear}) {
      ModelConfig cfg = lm_config(2.0, 4);
      cfg.composition = c, cfg.aggregation = a;
      SCOPED_TRACE(std::string(to_string(c)) + " " + to_string(a));
      torch::manual_seed(5);
      EXPECT_LT(decode_vs_forward(cfg, {3, 9}, 9), kTol);
    }
  }
}

TEST(Decode, CstWithAbsolutePositions) {
  ModelConfig cfg = lm_config(2.0, 4);
  cfg.pos_emb = PosEmb::kAbsolute;
  EXPECT_LT(decode_vs_forward(cfg, kLengths, 10), kTol);
}

TEST(Decode, FullAttentionKeyValueCache) {
  ModelConfig cfg = lm_config(2.0, 4);
  cfg.arch = Arch::kFull;
  EXPECT_LT(decode_vs_forward(cfg, kLengths, 10), kTol);
}

TEST(Decode, FinishedRowsDoNotDisturbTheOthers) {
  ModelConfig cfg = lm_config(2.0, 4);
  torch::manual_seed(3);
  CstModel m(cfg);
  m->eval();
  torch::NoGradGuard ng;
  torch::Tensor ids = torch::randint(cfg.vocab_size, {2, 20}, torch::kLong);
  Decoder dec(*m, 2, 16);  // row 0 reaches capacity and is stepped on, frozen
  dec.prefill(ids.narrow(1, 0, 10), {10, 2});
  for (int64_t k = 0; k < 12; ++k) {
    const bool row0 = 10 + k < 16;
    torch::Tensor next = torch::stack({ids[0][std::min<int64_t>(10 + k, 19)], ids[1][2 + k]});
    torch::Tensor logits = dec.step(next, {row0, true});
    const int64_t n = 3 + k;
    EXPECT_LT(max_abs_diff(logits[1], m->forward(ids[1].narrow(0, 0, n).unsqueeze(0))[0][n - 1]), kTol) << k;
  }
  EXPECT_EQ(dec.positions(), (std::vector<int64_t>{16, 14}));
  EXPECT_THROW(dec.step(ids.select(1, 0), {true, true}), InputError);  // row 0 is at capacity
}

TEST(Decode, RefusesWhatItCannotDecode) {
  ModelConfig mlm = small_config(Task::kMlm, 2.0, 4, 32);
  CstModel a(mlm);
  a->eval();
  EXPECT_THROW(Decoder(*a, 1, 8), InputError);
  CstModel b(lm_config(2.0, 4));
  EXPECT_THROW(Decoder(*b, 1, 8), InputError);  // training mode
  b->eval();
  EXPECT_THROW(Decoder(*b, 1, 33), InputError);  // past max_seq_len
  Decoder d(*b, 1, 8);
  EXPECT_THROW(d.prefill(torch::zeros({1, 9}, torch::kLong), {9}), InputError);  // past capacity
  EXPECT_GT(d.cache_bytes(), 0);
}

TEST(Decode, CacheMemoryGrowsWithSlicesNotWindowSquared) {
  // Memory O((L + e + n) D) per layer and row: doubling capacity adds only global keys/values.
  ModelConfig cfg = lm_config(3.0, 4);
  cfg.max_seq_len = 1024;
  CstModel m(cfg);
  m->eval();
  const int64_t small = Decoder(*m, 1, 512).cache_bytes(), large = Decoder(*m, 1, 1024).cache_bytes();
  const int64_t per_slice = 2 * cfg.d_model * 4 * cfg.n_layers;  // a key and a value, float32
  EXPECT_EQ(large - small, (1024 - 512) / cfg.slice_len * per_slice);
}

TEST(Sampling, GreedyTopKTopPAndSeeds) {
  torch::manual_seed(1);
  torch::Tensor logits = torch::randn({50});
  const int64_t best = logits.argmax().item<int64_t>();
  const torch::Tensor idx = std::get<1>(logits.topk(2));
  const std::set<int64_t> top2{idx[0].item<int64_t>(), idx[1].item<int64_t>()};
  auto gen = [](uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); };
  at::Generator g = gen(1);
  EXPECT_EQ(choose_token(logits, {0.0, 0, 1.0}, g), best);
  std::set<int64_t> seen_k, seen_p;
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(choose_token(logits, {1.0, 1, 1.0}, g), best);    // top-k 1
    EXPECT_EQ(choose_token(logits, {1.0, 0, 1e-6}, g), best);   // top-p: the likeliest only
    seen_k.insert(choose_token(logits, {5.0, 2, 1.0}, g));      // only the two likeliest
    seen_p.insert(choose_token(logits, {100.0, 0, 0.999}, g));  // nearly uniform: almost all
  }
  EXPECT_EQ(seen_k, top2);
  EXPECT_GT(seen_p.size(), 40u);
  std::vector<int64_t> a, b, c;
  at::Generator ga = gen(7), gb = gen(7), gc = gen(8);
  for (int i = 0; i < 20; ++i) {
    a.push_back(choose_token(logits, {1.0, 0, 1.0}, ga));
    b.push_back(choose_token(logits, {1.0, 0, 1.0}, gb));
    c.push_back(choose_token(logits, {1.0, 0, 1.0}, gc));
  }
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_THROW((SamplingOptions{-1.0, 0, 1.0}.validate()), InputError);
  EXPECT_THROW((SamplingOptions{1.0, -1, 1.0}.validate()), InputError);
  EXPECT_THROW((SamplingOptions{1.0, 0, 0.0}.validate()), InputError);
}

}  // namespace
}  // namespace cst::model
