#include "model/varlen_attention.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <vector>

#include "common/error.h"

namespace cst::model::csa {

using at::Tensor;

namespace {

// The plan travels to backward inside the autograd context.
struct PlanHolder : torch::CustomClassHolder {
  std::shared_ptr<const VarlenPlan> plan;
  const VarlenKernel* kernel = nullptr;
  VarlenArgs args;  // the plan's, with scale and dropout_p
};

Tensor as_heads(const Tensor& rows, int64_t heads) { return rows.view({rows.size(0), heads, rows.size(1) / heads}); }

// Rows of the key sequence that exist as tensors: the halos present and the chunk.
int64_t stored_rows(const LocalGeometry& g) {
  return g.slices() * g.slice_len + (g.left_halo ? g.ext : 0) + (g.right_halo ? g.ext : 0);
}

// The stored keys (or values) of a chunk: the halos present and the chunk, [B, S, D] (no copy
// without halos). Rows [key_begin, key_begin + S) of the key sequence.
Tensor stored(const Tensor& chunk, const Tensor& left, const Tensor& right) {
  if (!left.defined() && !right.defined()) return chunk;
  std::vector<Tensor> parts;
  if (left.defined()) parts.push_back(left);
  parts.push_back(chunk);
  if (right.defined()) parts.push_back(right);
  return at::cat(parts, 1);
}

// Packed queries [total_q, H, d], keys and values [total_k, H, d] of a chunk.
struct Packed {
  Tensor q, k, v;
};

Packed pack(const VarlenPlan& p, const Tensor& q, const Tensor& keys, const Tensor& values, const Tensor& pk) {
  const int64_t D = q.size(2), H = p.geometry.heads;
  Tensor q_rows = q.reshape({-1, D});
  Packed out;
  out.q = as_heads(p.q_index.defined() ? q_rows.index_select(0, p.q_index) : q_rows.contiguous(), H);
  // One gather of every segment's keys plus one add of P_l's keys at their window positions.
  Tensor k = keys.reshape({-1, D}).index_select(0, p.k_index);
  if (pk.defined()) k.add_(pk.index_select(0, p.w_index));
  out.k = as_heads(k, H);
  out.v = as_heads(values.reshape({-1, D}).index_select(0, p.k_index), H);
  return out;
}

// Packed key grads [total_k, H, d] -> the stored keys' [B, S, D] (and pk's [W, D]): placed in
// the window layout [B, n, W, D], overlapping windows summed over the key sequence [B, T, D].
std::pair<Tensor, Tensor> unpack_keys(const VarlenPlan& p, const Tensor& grad, bool want_pk) {
  const LocalGeometry& g = p.geometry;
  const int64_t B = p.batch, n = g.slices(), W = g.window(), D = grad.size(1) * grad.size(2);
  Tensor windows = at::zeros({B * n * W, D}, grad.options()).index_copy_(0, p.slot, grad.reshape({-1, D}));
  windows = windows.view({B, n, W, D});
  Tensor g_seq = at::unfold_backward(windows.transpose(2, 3), {B, g.key_rows(), D}, 1, W, g.slice_len);
  return {g_seq.narrow(1, g.key_begin(), stored_rows(g)), want_pk ? windows.sum(at::IntArrayRef{0, 1}) : Tensor()};
}

// Packed query rows [total_q, H, d] -> [B, n*L, D] (padding rows 0).
Tensor unpack_queries(const VarlenPlan& p, const Tensor& rows, int64_t D) {
  const int64_t B = p.batch, NL = p.geometry.slices() * p.geometry.slice_len;
  Tensor flat = rows.reshape({-1, D});
  if (!p.q_index.defined()) return flat.view({B, NL, D});
  return at::zeros({B * NL, D}, flat.options()).index_copy_(0, p.q_index, flat).view({B, NL, D});
}

class VarlenLocal : public torch::autograd::Function<VarlenLocal> {
 public:
  // Optional tensors: absent halos, P_l and W_k (autograd functions take no undefined tensors).
  using Opt = std::optional<Tensor>;
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& q, const Tensor& kx, const Tensor& vx,
                        const Opt& lk, const Opt& lv, const Opt& rk, const Opt& rv, const Opt& pl, const Opt& wk,
                        c10::intrusive_ptr<PlanHolder> h) {
    const Tensor pk = position_keys(pl.value_or(Tensor()), wk.value_or(Tensor()), q.scalar_type());
    const Tensor keys = stored(kx, lk.value_or(Tensor()), rk.value_or(Tensor()));
    const Tensor values = stored(vx, lv.value_or(Tensor()), rv.value_or(Tensor()));
    Packed in = pack(*h->plan, q, keys, values, pk);
    std::vector<Tensor> fwd = h->kernel->forward(in.q, in.k, in.v, h->args);
    std::vector<Tensor> saved{q,
                              kx,
                              vx,
                              lk.value_or(Tensor()),
                              lv.value_or(Tensor()),
                              rk.value_or(Tensor()),
                              rv.value_or(Tensor()),
                              pl.value_or(Tensor()),
                              wk.value_or(Tensor())};
    saved.insert(saved.end(), fwd.begin(), fwd.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["plan"] = c10::IValue::make_capsule(h);
    return unpack_queries(*h->plan, fwd[0], q.size(2));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto h = c10::static_intrusive_pointer_cast<PlanHolder>(ctx->saved_data["plan"].toCapsule());
    const VarlenPlan& p = *h->plan;
    const LocalGeometry& g = p.geometry;
    auto s = ctx->get_saved_variables();
    const Tensor &q = s[0], &pl = s[7], &wk = s[8];
    const Tensor pk = position_keys(pl, wk, q.scalar_type());
    const std::vector<Tensor> fwd(s.begin() + 9, s.end());
    const int64_t D = q.size(2), e = g.ext, NL = g.slices() * g.slice_len;
    Packed in = pack(p, q, stored(s[1], s[3], s[5]), stored(s[2], s[4], s[6]), pk);
    Tensor g_rows = grads[0].reshape({-1, D});
    g_rows = p.q_index.defined() ? g_rows.index_select(0, p.q_index) : g_rows.contiguous();
    auto [dq, dk, dv] = h->kernel->backward(as_heads(g_rows, g.heads), in.q, in.k, in.v, fwd, h->args);
    auto [g_keys, g_pk] = unpack_keys(p, dk, pk.defined());
    auto [g_values, unused] = unpack_keys(p, dv, false);
    auto [g_pl, g_wk] = position_keys_backward(g_pk, pl, wk);
    // Stored rows: [left halo,] chunk[, right halo].
    const int64_t lo = g.left_halo ? e : 0;
    auto part = [&](const Tensor& t, bool present, int64_t at) { return present ? t.narrow(1, at, e) : Tensor(); };
    return {unpack_queries(p, dq, D),
            g_keys.narrow(1, lo, NL),
            g_values.narrow(1, lo, NL),
            part(g_keys, g.left_halo, 0),
            part(g_values, g.left_halo, 0),
            part(g_keys, g.right_halo, lo + NL),
            part(g_values, g.right_halo, lo + NL),
            g_pl,
            g_wk,
            Tensor()};
  }
};

bool same_geometry(const LocalGeometry& a, const LocalGeometry& b) {
  return a.slice_len == b.slice_len && a.ext == b.ext && a.causal == b.causal && a.heads == b.heads &&
         a.tokens == b.tokens && a.left_halo == b.left_halo && a.right_halo == b.right_halo;
}

}  // namespace

std::shared_ptr<const VarlenPlan> make_varlen_plan(int64_t batch, const LocalGeometry& g, c10::Device device) {
  const int64_t L = g.slice_len, W = g.window(), n = g.slices(), S = stored_rows(g), N = g.tokens;
  CST_CHECK(!g.right_halo || N == n * L, "varlen plan: a right halo needs a full last slice (N = " << N << ")");
  std::vector<int64_t> q_index, k_index, w_index, slot;
  std::vector<int32_t> cu_q{0}, cu_k{0};
  auto p = std::make_shared<VarlenPlan>();
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t s = 0; s < n; ++s) {
      const int64_t q_hi = std::min(s * L + L, N);  // queries [s*L, q_hi) of the chunk
      for (int64_t i = s * L; i < q_hi; ++i) q_index.push_back(b * n * L + i);
      // Keys: the window [s*L, s*L + W) inside the sequence. Causal: it ends at row e + q_hi, so
      // that bottom-right alignment puts query i's last key at its own row e + i.
      const int64_t k_lo = std::max(s * L, g.key_begin()), k_hi = std::min(s * L + W, g.key_end());
      for (int64_t t = k_lo; t < k_hi; ++t) {
        k_index.push_back(b * S + t - g.key_begin());
        w_index.push_back(t - s * L);
        slot.push_back((b * n + s) * W + t - s * L);
      }
      CST_CHECK(!g.causal || k_hi == g.ext + q_hi, "varlen plan: causal segment " << s << " ends at key " << k_hi);
      p->args.max_q = std::max<int64_t>(p->args.max_q, q_hi - s * L);
      p->args.max_k = std::max<int64_t>(p->args.max_k, k_hi - k_lo);
      cu_q.push_back(static_cast<int32_t>(q_index.size()));
      cu_k.push_back(static_cast<int32_t>(k_index.size()));
    }
  }
  CST_CHECK(k_index.size() < (1ull << 31), "varlen plan: " << k_index.size() << " keys overflow int32 offsets");
  auto to_dev = [&](const auto& v, at::ScalarType t) { return at::tensor(v, at::dtype(t)).to(device); };
  p->batch = batch, p->geometry = g;
  if (static_cast<int64_t>(q_index.size()) != batch * n * L) p->q_index = to_dev(q_index, at::kLong);
  p->k_index = to_dev(k_index, at::kLong);
  p->w_index = to_dev(w_index, at::kLong);
  p->slot = to_dev(slot, at::kLong);
  p->args.cu_q = to_dev(cu_q, at::kInt);
  p->args.cu_k = to_dev(cu_k, at::kInt);
  p->args.causal = g.causal;
  return p;
}

std::shared_ptr<const VarlenPlan> VarlenPlanCache::get(int64_t batch, const LocalGeometry& g, c10::Device device) {
  if (!last_ || last_->batch != batch || !same_geometry(last_->geometry, g) || last_->k_index.device() != device)
    last_ = make_varlen_plan(batch, g, device);
  return last_;
}

Tensor local_attention_varlen(const Tensor& q, const Tensor& kx, const Tensor& vx, const KvHalo& left,
                              const KvHalo& right, const Tensor& p_local, const Tensor& w_k, const LocalGeometry& g,
                              double dropout_p, const VarlenKernel& kernel, VarlenPlanCache* plans) {
  const int64_t B = q.size(0);
  CST_CHECK(q.size(1) == g.slices() * g.slice_len && kx.sizes() == q.sizes() && vx.sizes() == q.sizes(),
            "varlen local attention: q " << q.sizes() << ", kx " << kx.sizes() << " do not fit the geometry");
  auto h = c10::make_intrusive<PlanHolder>();
  h->plan = plans ? plans->get(B, g, q.device()) : make_varlen_plan(B, g, q.device());
  h->kernel = &kernel;
  h->args = h->plan->args;
  h->args.scale = 1.0 / std::sqrt(static_cast<double>(q.size(2) / g.heads));
  h->args.dropout_p = dropout_p;
  auto opt = [](const Tensor& t) { return t.defined() ? std::optional<Tensor>(t) : std::nullopt; };
  return VarlenLocal::apply(q, kx, vx, opt(left.k), opt(left.v), opt(right.k), opt(right.v), opt(p_local),
                            opt(p_local.defined() ? w_k : Tensor()), h);
}

}  // namespace cst::model::csa
