#include "model/global_range.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "common/error.h"
#include "model/global_range_rows.h"
#include "model/global_range_varlen.h"
#include "model/varlen_kernel.h"

namespace cst::model::csa {
namespace {

using at::Tensor;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// One kernel call: queries [q0, nq) over keys [k0, k0 + nk), top-left causal or not.
struct Block {
  int64_t q0, k0, nk;
  bool causal;
};

std::vector<Block> blocks_of(int64_t nq, int64_t prefix, bool diagonal) {
  std::vector<Block> b;
  if (prefix > 0) b.push_back({0, 0, prefix, false});              // keys every query sees
  if (diagonal && nq > 1) b.push_back({1, prefix, nq - 1, true});  // query i: keys [prefix, prefix + i)
  return b;
}

// The (query, key) pairs a block hands its kernel: a rectangle, or a top-left causal square
// (query i of the block sees keys [k0, k0 + i]).
int64_t pairs_of(const Block& b, int64_t nq) {
  const int64_t rows = nq - b.q0;
  return b.causal ? rows * (rows + 1) / 2 : rows * b.nk;
}

// The visible (query, key) pairs of a range, all that the fused kernels are handed.
int64_t visible_pairs(int64_t nq, int64_t prefix, bool diagonal) {
  int64_t pairs = 0;
  for (const Block& b : blocks_of(nq, prefix, diagonal)) pairs += pairs_of(b, nq);
  return pairs;
}

std::optional<Tensor> narrow_keys(const Tensor& t, const Block& b) {
  return t.defined() ? std::optional<Tensor>(t.narrow(-1, b.k0, b.nk)) : std::nullopt;
}

// [B, 1, rows]: whether each query of the block sees a real key (key_mask [B, m]).
Tensor sees_a_key(const Tensor& key_mask, const Block& b, int64_t nq) {
  const int64_t B = key_mask.size(0);
  Tensor keys = key_mask.narrow(1, b.k0, b.nk);
  if (!b.causal) return keys.any(-1).view({B, 1, 1}).expand({B, 1, nq - b.q0});
  return keys.cumsum(-1).gt(0).view({B, 1, b.nk});  // square: query q0 + i sees keys [k0, k0 + i]
}

// [B, 1, 1, m]: 0 for a real key slice, -inf for an empty one (key_mask [B, m]); undefined without
// a mask.
Tensor additive_keys(const std::optional<Tensor>& key_mask, const at::TensorOptions& opt) {
  if (!key_mask) return {};
  const int64_t B = key_mask->size(0), m = key_mask->size(1);
  return at::zeros({B, 1, 1, m}, opt).masked_fill_(key_mask->logical_not().view({B, 1, 1, m}), kNegInf);
}

// The inputs, merged output and log-sum-exp kept for backward, by name.
struct Saved {
  Tensor q, k, v, additive, out, lse, empty;
  std::vector<Tensor> list() const { return {q, k, v, additive, out, lse, empty}; }
  static Saved from(const std::vector<Tensor>& s) {
    return {s.at(0), s.at(1), s.at(2), s.at(3), s.at(4), s.at(5), s.at(6)};
  }
};

class RangeAttention : public torch::autograd::Function<RangeAttention> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                        const std::optional<Tensor>& key_mask, int64_t prefix, bool diagonal) {
    const int64_t B = q.size(0), H = q.size(1), nq = q.size(2);
    const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
    const Tensor additive = additive_keys(key_mask, q.options());
    std::vector<std::pair<Tensor, Tensor>> parts;  // per block: output [B, H, rows, d], lse [B, H, rows]
    Tensor lse;                                    // [B, H, nq], the merged log-sum-exp
    for (const Block& b : blocks_of(nq, prefix, diagonal)) {
      auto [o, l] = at::_scaled_dot_product_flash_attention_for_cpu(q.narrow(2, b.q0, nq - b.q0),
                                                                    k.narrow(2, b.k0, b.nk), v.narrow(2, b.k0, b.nk),
                                                                    0.0, b.causal, narrow_keys(additive, b), scale);
      // A row whose keys are all masked has no mass in this block (the kernel reports 0).
      if (key_mask) l = l.masked_fill(sees_a_key(*key_mask, b, nq).logical_not(), kNegInf);
      if (!lse.defined()) lse = at::full({B, H, nq}, kNegInf, l.options());
      Tensor rows = lse.narrow(2, b.q0, nq - b.q0);
      rows.copy_(at::logaddexp(rows, l));
      parts.emplace_back(o, l);
    }
    // No block (no key): every row is empty. A row with no visible key in any block gets 0.
    if (!lse.defined()) lse = at::full({B, H, nq}, kNegInf, q.options());
    const Tensor empty = lse.isneginf();
    lse.masked_fill_(empty, 0.0);
    Tensor acc = at::zeros({B, H, nq, q.size(3)}, lse.options());
    const std::vector<Block> blocks = blocks_of(nq, prefix, diagonal);
    for (size_t i = 0; i < parts.size(); ++i) {
      const Block& b = blocks[i];
      Tensor w = (parts[i].second - lse.narrow(2, b.q0, nq - b.q0)).exp().unsqueeze(-1);
      acc.narrow(2, b.q0, nq - b.q0).add_(parts[i].first.to(acc.scalar_type()) * w);
    }
    const Tensor out = acc.to(q.scalar_type());
    ctx->save_for_backward(Saved{q, k, v, additive, out, lse, empty}.list());
    ctx->saved_data["prefix"] = prefix;
    ctx->saved_data["diagonal"] = diagonal;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const Saved s = Saved::from(ctx->get_saved_variables());
    const int64_t prefix = ctx->saved_data["prefix"].toInt(), nq = s.q.size(2);
    const bool diagonal = ctx->saved_data["diagonal"].toBool();
    const double scale = 1.0 / std::sqrt(static_cast<double>(s.q.size(-1)));
    Tensor g = grads[0].masked_fill(s.empty.unsqueeze(-1), 0.0).contiguous();
    Tensor gq = at::zeros_like(s.q), gk = at::zeros_like(s.k), gv = at::zeros_like(s.v);
    // Each block with the merged output and log-sum-exp: its probabilities are those of the
    // union, so the blocks' gradients add up to the union's.
    for (const Block& b : blocks_of(nq, prefix, diagonal)) {
      const int64_t rows = nq - b.q0;
      auto [dq, dk, dv] = at::_scaled_dot_product_flash_attention_for_cpu_backward(
          g.narrow(2, b.q0, rows), s.q.narrow(2, b.q0, rows), s.k.narrow(2, b.k0, b.nk), s.v.narrow(2, b.k0, b.nk),
          s.out.narrow(2, b.q0, rows), s.lse.narrow(2, b.q0, rows).contiguous(), 0.0, b.causal,
          narrow_keys(s.additive, b), scale);
      gq.narrow(2, b.q0, rows).add_(dq);
      gk.narrow(2, b.k0, b.nk).copy_(dk);  // the blocks' keys are disjoint
      gv.narrow(2, b.k0, b.nk).copy_(dv);
    }
    return {gq, gk, gv, Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

bool global_range_fused(const Tensor& q, double dropout_p) {
  const at::ScalarType t = q.scalar_type();
  return q.device().is_cpu() && dropout_p == 0.0 &&
         (t == at::kFloat || t == at::kDouble || t == at::kBFloat16 || t == at::kHalf);
}

int64_t range_row_cost(const at::Device& device, double dropout_p) {
  if (dropout_p != 0.0) return kRowBlockRowCost;
  return device.is_cpu() ? kRangeRowCost : device.is_cuda() ? kVarlenRowCost : kRowBlockRowCost;
}

Tensor global_attention_range(const Tensor& q_rows, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                              int64_t prefix, bool diagonal, double dropout_p, int64_t* pairs) {
  const int64_t nq = q_rows.size(2), m = k.size(2);
  CST_CHECK(prefix >= 0 && m == prefix + (diagonal ? nq - 1 : 0) && v.size(2) == m,
            "global attention of a range: " << m << " keys for " << nq << " queries, prefix " << prefix
                                            << (diagonal ? " and a diagonal" : ""));
  CST_CHECK(!key_mask.defined() || (key_mask.dim() == 2 && key_mask.size(1) == m),
            "global attention of a range: key mask of " << (key_mask.defined() ? key_mask.size(-1) : 0)
                                                        << " slices for " << m << " keys");
  const std::optional<Tensor> mask = key_mask.defined() ? std::optional<Tensor>(key_mask) : std::nullopt;
  if (global_range_varlen(q_rows, k, v, key_mask, dropout_p)) {
    if (pairs) *pairs += visible_pairs(nq, prefix, diagonal);
    return global_attention_range_varlen(q_rows, k, v, prefix, diagonal, flash_attention_varlen());
  }
  if (!global_range_fused(q_rows, dropout_p)) {
    if (pairs) *pairs += row_block_pairs(nq, q_rows.size(3), prefix, diagonal);
    return row_block_attention(q_rows, k, v, additive_keys(mask, q_rows.options()), prefix, diagonal, dropout_p);
  }
  if (pairs) *pairs += visible_pairs(nq, prefix, diagonal);
  // Also without keys (the first slice of a causal sequence, alone): through the autograd node,
  // so that backward reaches k and v (and, under sequence parallelism, the all-gather's
  // reduce-scatter, which every rank of the group must join).
  return RangeAttention::apply(q_rows, k, v, mask, prefix, diagonal);
}

}  // namespace cst::model::csa
