// The model on CUDA: equal to the model on CPU; CSA's fused kernels (FlashAttention-2 over
// variable-length segments, SDPA on blocks) equal the explicit scores within bf16 tolerance;
// FlashAttention-2's causal flag is aligned bottom-right; a sequence-parallel rank's global
// attention range equals the CPU flash kernels through FlashAttention-2 in bfloat16 and through
// the row blocks in float32 and bfloat16, and the row blocks draw the same dropout masks in
// backward; the chunked loss and the fused AdamW on the device. Built whenever the LibTorch found
// has CUDA; skipped, with a visible message, when no GPU is present.
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/attention.h"
#include "model/autocast_scope.h"
#include "model/csa_dispatch.h"
#include "model/global_range.h"
#include "model/global_range_rows.h"
#include "model/global_range_varlen.h"
#include "model/loss.h"
#include "model/model.h"
#include "model/varlen_attention.h"
#include "tests/model/local_reference.h"
#include "tests/model/test_util.h"
#include "trainer/optimizer.h"

namespace cst::model {
namespace {

using torch::Tensor;

#define CST_NEED_CUDA()             \
  if (!torch::cuda::is_available()) \
  GTEST_SKIP() << "SKIPPED: no CUDA device on this machine (the CUDA build is tested by scripts/gpu-check.sh)"

// |a - b| <= atol + rtol |b|, elementwise.
double excess(const Tensor& a, const Tensor& b, double atol, double rtol) {
  Tensor x = a.to(torch::kFloat).cpu(), y = b.to(torch::kFloat).cpu();
  return ((x - y).abs() - (atol + rtol * y.abs())).max().item<double>();
}

template <class T>
void copy_params(T& dst, T& src) {
  torch::NoGradGuard ng;
  auto s = src->named_parameters();
  for (auto& p : dst->named_parameters()) p.value().copy_(s[p.key()]);
}

TEST(Cuda, ForwardAndBackwardMatchCpu) {
  CST_NEED_CUDA();
  for (Task task : {Task::kLm, Task::kMlm}) {
    ModelConfig cfg = testing::small_config(task, 2.0, 8, 64);
    cfg.d_model = 64, cfg.n_heads = 4, cfg.n_layers = 2, cfg.init_std = 0.02;
    torch::manual_seed(1);
    CstModel cpu(cfg), gpu(cfg);
    copy_params(gpu, cpu);
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

// Activation checkpointing on CUDA, dropout on, with and without bf16 autocast: the recomputation
// replays the CUDA generator (and the autocast state), so results equal the uncheckpointed run,
// while another dropout seed gives other results.
TEST(Cuda, ActivationCheckpointingReplaysDropout) {
  if (!torch::cuda::is_available())
    GTEST_SKIP() << "SKIPPED: no CUDA device on this machine (the CUDA build is tested by scripts/gpu-check.sh)";
  for (bool bf16 : {false, true}) {
    auto run = [&](bool checkpoint, uint64_t dropout_seed) {
      ModelConfig cfg = testing::small_config(Task::kLm, 3.0, 8, 64);
      cfg.d_model = 64, cfg.n_heads = 4, cfg.n_layers = 3, cfg.init_std = 0.02, cfg.dropout = 0.2;
      cfg.activation_checkpointing = checkpoint;
      torch::manual_seed(1);
      CstModel m(cfg);
      m->to(torch::kCUDA);
      torch::Tensor ids = torch::randint(cfg.vocab_size, {2, 64}, torch::kLong).cuda();
      torch::manual_seed(dropout_seed);
      at::autocast::set_autocast_enabled(at::kCUDA, bf16);
      at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
      torch::Tensor loss = lm_loss(m->forward(ids), ids).mean();
      at::autocast::set_autocast_enabled(at::kCUDA, false);
      at::autocast::clear_cache();
      loss.backward();
      std::vector<torch::Tensor> g;
      for (auto& p : m->parameters()) g.push_back(p.grad().to(torch::kFloat).cpu());
      return g;
    };
    const auto plain = run(false, 5), ckpt = run(true, 5), other = run(false, 6);
    double same = 0, differ = 0;
    for (size_t i = 0; i < plain.size(); ++i) {
      same = std::max(same, testing::max_abs_diff(plain[i], ckpt[i]));
      differ = std::max(differ, testing::max_abs_diff(plain[i], other[i]));
    }
    EXPECT_LT(same, 1e-5) << "bf16 " << bf16;
    EXPECT_GT(differ, 100 * std::max(same, 1e-7)) << "bf16 " << bf16 << ": dropout did not change the gradients";
  }
}

// FlashAttention-2's causal mask with fewer queries than keys: query j of Lq sees keys
// m <= j + Lk - Lq (bottom-right), CST's causal local window. One segment of 4 queries over 6 keys.
TEST(Cuda, FlashAttentionCausalIsBottomRightAligned) {
  CST_NEED_CUDA();
  torch::manual_seed(2);
  auto opt = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kBFloat16);
  const int64_t Lq = 4, Lk = 6, H = 2, d = 16;
  Tensor q = torch::randn({Lq, H, d}, opt), k = torch::randn({Lk, H, d}, opt), v = torch::randn({Lk, H, d}, opt);
  csa::VarlenArgs a;
  a.cu_q = torch::tensor({0, int(Lq)}, torch::kInt).cuda(), a.cu_k = torch::tensor({0, int(Lk)}, torch::kInt).cuda();
  a.max_q = Lq, a.max_k = Lk, a.causal = true, a.scale = 1.0 / std::sqrt(double(d));
  Tensor got = csa::flash_attention_varlen().forward(q, k, v, a)[0];
  Tensor s = torch::matmul(q.transpose(0, 1).to(torch::kFloat), k.transpose(0, 1).transpose(1, 2).to(torch::kFloat));
  Tensor hidden = torch::ones({Lq, Lk}, torch::kBool).tril(Lk - Lq).logical_not().cuda();
  Tensor p = torch::softmax((s * a.scale).masked_fill(hidden, -INFINITY), -1);
  Tensor want = torch::matmul(p, v.transpose(0, 1).to(torch::kFloat)).transpose(0, 1);
  EXPECT_LT(excess(got, want, 2e-2, 2e-2), 0.0);
}

// Every fused local kernel on the device against the explicit scores (float32 on the same bf16
// values): outputs and the gradients of q, keys, values, P_l and W_k.
TEST(Cuda, FusedLocalKernelsEqualExplicitScores) {
  CST_NEED_CUDA();
  for (bool causal : {true, false})
    for (int64_t N : {64, 56}) {
      csa::LocalGeometry g;
      g.slice_len = 16, g.ext = 16, g.causal = causal, g.heads = 4, g.tokens = N;
      const int64_t B = 2, D = 64, NL = g.slices() * g.slice_len, W = g.window();
      torch::manual_seed(3);
      auto opt = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kBFloat16);
      // q, the chunk's keys and values, P_l, W_k (no halos: a whole sequence)
      const std::vector<Tensor> inputs{torch::randn({B, NL, D}, opt), torch::randn({B, NL, D}, opt),
                                       torch::randn({B, NL, D}, opt), torch::randn({W, D}, opt),
                                       torch::randn({D, D}, opt) * 0.1};
      Tensor valid = csa::key_validity(g, B, {}, inputs[0].options());
      Tensor row_w = torch::randn({B, NL, D}, opt.dtype(torch::kFloat)) *
                     (torch::arange(NL, opt.dtype(torch::kFloat)) < N).to(torch::kFloat).view({1, NL, 1});
      auto run = [&](auto&& fn, torch::ScalarType dt) {
        std::vector<Tensor> in;
        for (const auto& t : inputs) in.push_back(t.to(dt).detach().requires_grad_());
        Tensor y = fn(in[0], in[1], in[2], in[3], in[4]);
        (y.to(torch::kFloat) * row_w).sum().backward();
        std::vector<Tensor> out{y.to(torch::kFloat) * (row_w != 0)};
        for (auto& t : in) out.push_back(t.grad().to(torch::kFloat));
        return out;
      };
      const auto want = run(
          [&](auto& q, auto& kx, auto& vx, auto& pl, auto& wk) {
            return testing::explicit_local(q, csa::key_sequence(kx, {}, {}, g), csa::key_sequence(vx, {}, {}, g),
                                           torch::matmul(pl, wk.t()), valid, g);
          },
          torch::kFloat);
      for (csa::LocalKernel kernel : {csa::LocalKernel::kFlashVarlen, csa::LocalKernel::kSdpaBlocks}) {
        csa::VarlenPlanCache plans;
        const auto got = run(
            [&](auto& q, auto& kx, auto& vx, auto& pl, auto& wk) {
              return csa::local_attention_fused(q, kx, vx, {}, {}, pl, wk, {}, g, kernel, 0.0, false, nullptr, &plans);
            },
            torch::kBFloat16);
        for (size_t i = 0; i < want.size(); ++i)
          EXPECT_LT(excess(got[i], want[i], 5e-2, 5e-2), 0.0)
              << to_string(kernel) << " causal " << causal << " N " << N << " tensor " << i;
      }
    }
}

// The whole model in bf16 autocast: fused kernels (LM: FlashAttention-2; MLM with padding: SDPA
// on blocks) against explicit scores, hidden states and every parameter gradient.
TEST(Cuda, FusedModelEqualsExplicitInBf16) {
  CST_NEED_CUDA();
  for (Task task : {Task::kLm, Task::kMlm}) {
    ModelConfig cfg = testing::small_config(task, 3.0, 16, 128);
    cfg.d_model = 64, cfg.n_heads = 4, cfg.n_layers = 2, cfg.init_std = 0.05;
    cfg.csa_kernel = CsaKernel::kExplicit;
    ModelConfig fused = cfg;
    fused.csa_kernel = CsaKernel::kFused;
    torch::manual_seed(4);
    CstModel a(cfg), b(fused);
    copy_params(b, a);
    a->to(torch::kCUDA), b->to(torch::kCUDA);
    const int64_t B = 3, N = 120;
    Tensor ids = torch::randint(cfg.vocab_size, {B, N}, torch::kLong).cuda();
    Tensor mask;
    if (task == Task::kMlm) {
      mask = torch::ones({B, N}, torch::kBool);
      mask[1].narrow(0, 90, 30).fill_(false);
      mask = mask.cuda();
    }
    Tensor r = torch::randn({B, N, cfg.d_model}).cuda();
    std::vector<Tensor> h;
    for (CstModel* m : {&a, &b}) {
      model::Bf16Autocast ac(true);
      Tensor y = (*m)->forward_hidden(ids, mask).to(torch::kFloat);
      if (mask.defined()) y = y * mask.unsqueeze(-1);
      (y * r).sum().backward();
      h.push_back(y.detach());
    }
    EXPECT_LT(excess(h[1], h[0], 5e-2, 5e-2), 0.0) << to_string(task);
    auto ga = a->named_parameters();
    for (auto& p : b->named_parameters()) {
      if (!p.value().grad().defined()) continue;
      const double scale = ga[p.key()].grad().abs().max().item<double>();
      EXPECT_LT(excess(p.value().grad(), ga[p.key()].grad(), 5e-2 * scale, 5e-2), 0.0)
          << to_string(task) << " " << p.key();
    }
  }
}

// The chunked loss under bf16 autocast equals cross entropy on the bf16 logits.
TEST(Cuda, ChunkedLossEqualsFullLogitsInBf16) {
  CST_NEED_CUDA();
  torch::manual_seed(5);
  Tensor h = torch::randn({300, 64}).cuda().requires_grad_(), w = torch::randn({1000, 64}).cuda().requires_grad_();
  Tensor labels = torch::randint(1000, {300}, torch::kLong).cuda();
  Tensor h2 = h.detach().clone().requires_grad_(), w2 = w.detach().clone().requires_grad_();
  model::Bf16Autocast ac(true);
  LossSum want = token_loss(torch::nn::functional::linear(h, w), labels);
  LossSum got = chunked_cross_entropy(h2, w2, {}, labels, 64);
  want.sum.backward(), got.sum.backward();
  EXPECT_LT(excess(got.sum, want.sum, 1e-2, 1e-3), 0.0);
  EXPECT_LT(excess(h2.grad(), h.grad(), 1e-2, 2e-2), 0.0);
  EXPECT_LT(excess(w2.grad(), w.grad(), 1e-2, 2e-2), 0.0);
}

// The fused AdamW kernel on the device equals the per-parameter loop on the device.
TEST(Cuda, FusedAdamWEqualsTheLoop) {
  CST_NEED_CUDA();
  torch::manual_seed(6);
  trainer::OptimOptions o;
  o.lr = 1e-2, o.weight_decay = 0.1;
  Tensor w = torch::randn({64, 32}).cuda(), b = torch::randn({32}).cuda();
  Tensor w1 = w.clone().requires_grad_(), b1 = b.clone().requires_grad_();
  Tensor w2 = w.clone().requires_grad_(), b2 = b.clone().requires_grad_();
  trainer::Optimizer loop({{"layers.0.w", w1}, {"layers.0.b", b1}}, o, nullptr, 0, false);
  trainer::Optimizer fused({{"layers.0.w", w2}, {"layers.0.b", b2}}, o, nullptr, 0, true);
  for (int step = 0; step < 4; ++step) {
    Tensor gw = torch::randn_like(w), gb = torch::randn_like(b);
    w1.mutable_grad() = gw.clone(), b1.mutable_grad() = gb.clone();
    w2.mutable_grad() = gw.clone(), b2.mutable_grad() = gb.clone();
    loop.step(o.lr), fused.step(o.lr);
  }
  EXPECT_LT(testing::max_abs_diff(w1.cpu(), w2.cpu()), 1e-5);
  EXPECT_LT(testing::max_abs_diff(b1.cpu(), b2.cpu()), 1e-5);
}

// The global attention of a causal query range (128 queries after 120 keys, padded keys: four
// row blocks) on CUDA equals the CPU flash kernels: float32 and bfloat16 inputs, outputs and
// gradients.
TEST(Cuda, GlobalRangeRowBlocksEqualCpu) {
  CST_NEED_CUDA();
  torch::manual_seed(2);
  const int64_t nq = 128, prefix = 120, m = prefix + nq - 1;
  Tensor q = torch::randn({2, 2, nq, 4}), k = torch::randn({2, 2, m, 4}), v = torch::randn({2, 2, m, 4});
  Tensor key_mask = torch::rand({2, m}) > 0.2, g = torch::randn({2, 2, nq, 4});
  auto grads = [&](const Tensor& q0, const Tensor& k0, const Tensor& v0, const Tensor& mask) {
    Tensor a = q0.detach().requires_grad_(), b = k0.detach().requires_grad_(), c = v0.detach().requires_grad_();
    Tensor out = csa::global_attention_range(a, b, c, mask, prefix, true);
    (out.to(torch::kFloat) * g.to(out.device())).sum().backward();
    return std::vector<Tensor>{out, a.grad(), b.grad(), c.grad()};
  };
  const auto ref = grads(q, k, v, key_mask);
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    auto opt = torch::TensorOptions().device(torch::kCUDA).dtype(dtype);
    const auto got = grads(q.to(opt), k.to(opt), v.to(opt), key_mask.cuda());
    const double tol = dtype == torch::kFloat ? 1e-4 : 3e-2;
    for (size_t i = 0; i < ref.size(); ++i)
      EXPECT_LE(excess(got[i], ref[i], tol, tol), 0.0) << "tensor " << i << " " << dtype;
  }
}

// A range through FlashAttention-2 (bfloat16, no key padding, no dropout): the causal offset as
// its bottom-right alignment (128 queries after 120 keys), the first slice of a causal sequence
// (prefix 0) and a bidirectional rectangle equal the CPU flash kernels in float32, outputs and
// gradients; the kernels are handed only the visible pairs.
TEST(Cuda, GlobalRangeFlashAttentionEqualsCpu) {
  CST_NEED_CUDA();
  struct Case {
    int64_t nq, prefix;
    bool diagonal;
  };
  for (const Case c : {Case{128, 120, true}, Case{96, 0, true}, Case{64, 200, false}}) {
    SCOPED_TRACE(::testing::Message() << "nq " << c.nq << " prefix " << c.prefix << " diagonal " << c.diagonal);
    const int64_t m = c.prefix + (c.diagonal ? c.nq - 1 : 0), d = 32;
    torch::manual_seed(5);
    Tensor q = torch::randn({2, 2, c.nq, d}), k = torch::randn({2, 2, m, d}), v = torch::randn({2, 2, m, d});
    Tensor g = torch::randn({2, 2, c.nq, d});
    int64_t pairs = 0;
    auto grads = [&](const Tensor& q0, const Tensor& k0, const Tensor& v0) {
      Tensor a = q0.detach().requires_grad_(), b = k0.detach().requires_grad_(), e = v0.detach().requires_grad_();
      Tensor out = csa::global_attention_range(a, b, e, Tensor(), c.prefix, c.diagonal, 0.0, &pairs);
      (out.to(torch::kFloat) * g.to(out.device())).sum().backward();
      return std::vector<Tensor>{out, a.grad(), b.grad(), e.grad()};
    };
    const auto ref = grads(q, k, v);
    auto opt = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kBFloat16);
    ASSERT_TRUE(csa::global_range_varlen(q.to(opt), k.to(opt), v.to(opt), Tensor(), 0.0));
    pairs = 0;
    const auto got = grads(q.to(opt), k.to(opt), v.to(opt));
    EXPECT_EQ(pairs, c.nq * c.prefix + (c.diagonal ? c.nq * (c.nq - 1) / 2 : 0));
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_LE(excess(got[i], ref[i], 3e-2, 3e-2), 0.0) << "tensor " << i;
  }
}

// Dropout on CUDA: with v the identity the output is the dropped probabilities P', each 0 or
// P / (1 - p); the gradient of v is P'^T g, so backward drew the forward's masks again.
TEST(Cuda, GlobalRangeDropoutDrawsTheSameMasksInBackward) {
  CST_NEED_CUDA();
  const int64_t nq = 96, m = 32;
  const double p = 0.4;
  auto opt = torch::TensorOptions().device(torch::kCUDA);
  torch::manual_seed(3);
  Tensor q = torch::randn({2, 2, nq, m}, opt), k = torch::randn({2, 2, m, m}, opt);
  Tensor v = torch::eye(m, opt).expand({2, 2, m, m}).contiguous().requires_grad_();
  Tensor g = torch::randn({2, 2, nq, m}, opt);
  const Tensor probs = csa::row_block_attention(q, k, v, Tensor(), m, false, 0.0).detach();
  Tensor dropped = csa::row_block_attention(q, k, v, Tensor(), m, false, p);
  (dropped * g).sum().backward();
  const Tensor kept = dropped.detach().ne(0);
  EXPECT_LT(testing::max_abs_diff(dropped.detach().masked_select(kept), probs.masked_select(kept) / (1 - p)), 1e-5);
  EXPECT_NEAR(kept.logical_not().to(torch::kDouble).mean().item<double>(), p, 0.03);
  EXPECT_LT(testing::max_abs_diff(v.grad(), torch::matmul(dropped.detach().transpose(-1, -2), g)), 1e-4);
}

}  // namespace
}  // namespace cst::model
