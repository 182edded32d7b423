#include "model/global_range_rows.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <optional>

#include "common/error.h"

namespace cst::model::csa {
namespace {

using at::Tensor;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Block [r0, r0 + rows) and the keys its rows may see, [0, keys).
struct RowBlock {
  int64_t r0, rows, keys;
};

template <class Fn>
void for_each_block(int64_t nq, int64_t d, int64_t prefix, bool diagonal, Fn&& fn) {
  const int64_t m = prefix + (diagonal ? nq - 1 : 0);
  const int64_t R = row_block_rows(nq, d, m);
  for (int64_t r0 = 0; r0 < nq; r0 += R) {
    const int64_t rows = std::min(R, nq - r0);
    const int64_t keys = prefix + (diagonal ? r0 + rows - 1 : 0);
    if (keys > 0) fn(RowBlock{r0, rows, keys});  // a block without keys: its rows stay 0
  }
}

// Half and bfloat16 are computed in float32; float32 and float64 as they are.
at::ScalarType compute_type(at::ScalarType t) { return t == at::kHalf || t == at::kBFloat16 ? at::kFloat : t; }

// A generator of `device`'s kind, private to one call, seeded with `seed`.
at::Generator private_generator(const at::Device& device, uint64_t seed) {
  at::Generator base = at::globalContext().defaultGenerator(device);
  at::Generator g;
  {
    std::lock_guard<std::mutex> lock(base.mutex());
    g = base.clone();
  }
  g.set_current_seed(seed);
  return g;
}

uint64_t draw_seed() {
  at::Generator cpu = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(cpu.mutex());
  return cpu.get<at::CPUGeneratorImpl>()->random64();
}

// The inputs in the compute type, the additive key row and the geometry of one call.
struct Problem {
  Tensor q, k, v, additive;
  int64_t prefix;
  bool diagonal;
  double scale;

  // q, k, v and additive (may be undefined) converted to the compute type of q's dtype.
  static Problem of(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& additive, int64_t prefix,
                    bool diagonal) {
    const at::ScalarType ct = compute_type(q.scalar_type());
    return {q.to(ct),
            k.to(ct),
            v.to(ct),
            additive.defined() ? additive.to(ct) : Tensor(),
            prefix,
            diagonal,
            1.0 / std::sqrt(static_cast<double>(q.size(-1)))};
  }

  // Scaled scores of a block's rows over its keys, -inf where a key is hidden: [B, H, rows, keys].
  Tensor scores(const RowBlock& b) const {
    Tensor s = at::matmul(q.narrow(2, b.r0, b.rows), k.narrow(2, 0, b.keys).transpose(-1, -2)).mul_(scale);
    if (additive.defined()) s.add_(additive.narrow(-1, 0, b.keys));
    if (diagonal && b.rows > 1) {  // row j sees the band's columns c < j (keys prefix + r0 + c)
      const auto opt = s.options().dtype(at::kLong);
      Tensor hidden = at::arange(b.rows - 1, opt).unsqueeze(0) >= at::arange(b.rows, opt).unsqueeze(1);
      s.narrow(-1, prefix + b.r0, b.rows - 1).masked_fill_(hidden, kNegInf);
    }
    return s;
  }
};

// The inverted-dropout keep mask of a block, from the call's generator: 0 or 1 / (1 - p).
Tensor keep_mask(const Tensor& like, double p, at::Generator& gen) {
  return at::empty_like(like).bernoulli_(1.0 - p, gen).div_(1.0 - p);
}

class RowBlockAttention : public torch::autograd::Function<RowBlockAttention> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& q_in, const Tensor& k_in,
                        const Tensor& v_in, const std::optional<Tensor>& additive_in, int64_t prefix, bool diagonal,
                        double p) {
    // Autocast would put the matmuls in bfloat16: this kernel keeps its own compute type.
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    const Problem pr = Problem::of(q_in, k_in, v_in, additive_in ? *additive_in : Tensor(), prefix, diagonal);
    const int64_t nq = pr.q.size(2);
    const uint64_t seed = p > 0 ? draw_seed() : 0;
    std::optional<at::Generator> gen;
    if (p > 0) gen = private_generator(pr.q.device(), seed);
    Tensor out = at::zeros_like(pr.q), lse = at::zeros(out.sizes().slice(0, 3), out.options());
    for_each_block(nq, pr.q.size(3), prefix, diagonal, [&](const RowBlock& b) {
      Tensor s = pr.scores(b);
      Tensor l = at::logsumexp(s, -1);
      l.masked_fill_(l.isneginf(), 0.0);  // a row without a visible key: probabilities exp(-inf) = 0
      Tensor probs = s.sub_(l.unsqueeze(-1)).exp_();
      if (p > 0) probs.mul_(keep_mask(probs, p, *gen));
      out.narrow(2, b.r0, b.rows).copy_(at::matmul(probs, pr.v.narrow(2, 0, b.keys)));
      lse.narrow(2, b.r0, b.rows).copy_(l);
    });
    ctx->save_for_backward({q_in, k_in, v_in, pr.additive, out, lse});
    ctx->saved_data["prefix"] = prefix;
    ctx->saved_data["diagonal"] = diagonal;
    ctx->saved_data["p"] = p;
    ctx->saved_data["seed"] = static_cast<int64_t>(seed);
    return out.to(q_in.scalar_type());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    const auto s = ctx->get_saved_variables();
    const Tensor &q_in = s.at(0), &k_in = s.at(1), &v_in = s.at(2), &out = s.at(4), &lse = s.at(5);
    const Problem pr =
        Problem::of(q_in, k_in, v_in, s.at(3), ctx->saved_data["prefix"].toInt(), ctx->saved_data["diagonal"].toBool());
    const at::ScalarType ct = out.scalar_type();
    const double p = ctx->saved_data["p"].toDouble();
    std::optional<at::Generator> gen;
    if (p > 0) gen = private_generator(pr.q.device(), static_cast<uint64_t>(ctx->saved_data["seed"].toInt()));
    const Tensor g = grads[0].to(ct);
    const Tensor delta = (g * out).sum(-1, /*keepdim=*/true);  // [B, H, nq, 1]: rowsum(dO * O)
    Tensor gq = at::zeros_like(pr.q), gk = at::zeros_like(pr.k), gv = at::zeros_like(pr.v);
    for_each_block(pr.q.size(2), pr.q.size(3), pr.prefix, pr.diagonal, [&](const RowBlock& b) {
      const Tensor gb = g.narrow(2, b.r0, b.rows), kb = pr.k.narrow(2, 0, b.keys), vb = pr.v.narrow(2, 0, b.keys);
      Tensor probs = pr.scores(b).sub_(lse.narrow(2, b.r0, b.rows).unsqueeze(-1)).exp_();
      Tensor dp = at::matmul(gb, vb.transpose(-1, -2));  // d(dropped probabilities)
      if (p > 0) {
        const Tensor keep = keep_mask(probs, p, *gen);  // the forward's mask, drawn again
        dp.mul_(keep);
        gv.narrow(2, 0, b.keys).add_(at::matmul((probs * keep).transpose(-1, -2), gb));
      } else {
        gv.narrow(2, 0, b.keys).add_(at::matmul(probs.transpose(-1, -2), gb));
      }
      Tensor ds = probs.mul_(dp.sub_(delta.narrow(2, b.r0, b.rows))).mul_(pr.scale);
      gq.narrow(2, b.r0, b.rows).copy_(at::matmul(ds, kb));
      gk.narrow(2, 0, b.keys).add_(at::matmul(ds.transpose(-1, -2), pr.q.narrow(2, b.r0, b.rows)));
    });
    return {gq.to(q_in.scalar_type()),
            gk.to(k_in.scalar_type()),
            gv.to(v_in.scalar_type()),
            Tensor(),
            Tensor(),
            Tensor(),
            Tensor()};
  }
};

}  // namespace

int64_t row_block_rows(int64_t nq, int64_t d, int64_t m) {
  if (m <= 0) return std::max<int64_t>(nq, 1);
  const int64_t budget = kRowBlockElements * nq * d / m;
  return std::max<int64_t>(1, std::min(nq, std::max(budget, kMinBlockRows)));
}

int64_t row_block_pairs(int64_t nq, int64_t d, int64_t prefix, bool diagonal) {
  int64_t pairs = 0;
  for_each_block(nq, d, prefix, diagonal, [&](const RowBlock& b) { pairs += b.rows * b.keys; });
  return pairs;
}

Tensor row_block_attention(const Tensor& q_rows, const Tensor& k, const Tensor& v, const Tensor& additive,
                           int64_t prefix, bool diagonal, double dropout_p) {
  CST_CHECK(dropout_p >= 0.0 && dropout_p < 1.0, "global attention of a range: dropout " << dropout_p);
  CST_CHECK(at::isFloatingType(q_rows.scalar_type()),
            "global attention of a range: needs a floating-point tensor, got " << q_rows.toString());
  return RowBlockAttention::apply(q_rows, k, v, additive.defined() ? std::optional<Tensor>(additive) : std::nullopt,
                                  prefix, diagonal, dropout_p);
}

}  // namespace cst::model::csa
