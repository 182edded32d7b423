#include "model/local_attention.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <limits>

#include "common/error.h"
#include "model/csa.h"

namespace cst::model::csa {

using at::Tensor;

Tensor key_validity(const LocalGeometry& g, int64_t batch, const Tensor& key_mask, const at::TensorOptions& opt) {
  const int64_t T = g.key_rows();
  if (!key_mask.defined() && g.key_begin() == 0 && g.key_end() == T) return {};
  Tensor valid = at::zeros({batch, T}, opt.dtype(at::kBool));
  valid.narrow(1, g.key_begin(), g.key_end() - g.key_begin()).fill_(true);
  if (key_mask.defined()) valid.logical_and_(key_mask.to(at::kBool));
  return valid;
}

Tensor position_keys(const Tensor& p_local, const Tensor& w_k, at::ScalarType dtype) {
  return p_local.defined() ? at::matmul(p_local.to(dtype), w_k.to(dtype).t()) : Tensor();
}

std::pair<Tensor, Tensor> position_keys_backward(const Tensor& grad_pk, const Tensor& p_local, const Tensor& w_k) {
  if (!grad_pk.defined()) return {};
  const Tensor g = grad_pk.to(p_local.scalar_type());
  return {at::matmul(g, w_k.to(g.scalar_type())), at::matmul(g.t(), p_local)};
}

Tensor key_sequence(const Tensor& chunk, const Tensor& left, const Tensor& right, const LocalGeometry& g) {
  if (g.ext == 0) return chunk;
  std::vector<int64_t> shape = chunk.sizes().vec();
  shape[1] = g.ext;
  std::vector<Tensor> parts{left.defined() ? left : at::zeros(shape, chunk.options()), chunk};
  if (!g.causal) parts.push_back(right.defined() ? right : at::zeros(shape, chunk.options()));
  return at::cat(parts, 1);
}

namespace {

// A chunk ready to be cut into blocks: block (b, s) is slice s of batch row b, its L queries and
// its W window keys.
struct Chunk {
  int64_t B = 0, n = 0, L = 0, W = 0, H = 0, d = 0, T = 0;
  Tensor q;             // [B, n*L, D]
  Tensor keys, values;  // [B, T, D] key sequences
  Tensor pk;            // [W, D] or undefined
  // Who may see whom, [B, n, L, W] or [1, 1, L, W] (the same for every block), undefined:
  // everyone. Boolean (true = visible), or additive (0 visible, -inf hidden) for the flash kernel.
  Tensor mask;
};

Chunk prepare(const Tensor& q, const Tensor& keys, const Tensor& values, const Tensor& pk, const Tensor& key_mask,
              const LocalGeometry& g, bool additive) {
  Chunk c;
  c.B = q.size(0), c.n = g.slices(), c.L = g.slice_len, c.W = g.window(), c.H = g.heads, c.d = q.size(2) / g.heads;
  c.T = g.key_rows();
  CST_CHECK(q.size(1) == c.n * c.L && keys.size(1) == c.T && values.sizes() == keys.sizes(),
            "local attention: q " << q.sizes() << " and key sequences " << keys.sizes() << " do not fit n = " << c.n
                                  << " slices of L = " << c.L << " with window W = " << c.W);
  c.q = q.contiguous(), c.keys = keys, c.values = values, c.pk = pk;
  Tensor valid = key_validity(g, c.B, key_mask, q.options());        // [B, T]
  Tensor vis = local_visibility(c.L, g.ext, g.causal, q.options());  // [L, W]
  if (valid.defined())
    c.mask = valid.unfold(1, c.W, c.L).unsqueeze(2).logical_and(vis);  // [B, n, L, W]
  else if (g.causal)
    c.mask = vis.view({1, 1, c.L, c.W});
  if (c.mask.defined() && additive)
    c.mask = at::where(c.mask, at::zeros({}, q.options()),
                       at::full({}, -std::numeric_limits<double>::infinity(), q.options()));
  return c;
}

// The blocks of one kernel call: batch rows [b0, b0 + rows), slices [s0, s0 + ns) of each
// (ns < n only for a single row).
struct Group {
  int64_t b0, rows, s0, ns;
  int64_t count() const { return rows * ns; }
};

// Calls of at most about 2^24 window elements (W * D per block), as the head's loss chunks: the
// rebuilt keys and values of one call and their gradients stay bounded however long the chunk.
std::vector<Group> groups(const Chunk& c, const LocalGeometry& g) {
  const int64_t budget = g.call_elements > 0 ? g.call_elements : int64_t{1} << 24;
  const int64_t per_call = std::max<int64_t>(1, budget / (c.W * c.H * c.d));
  std::vector<Group> out;
  if (per_call >= c.n) {
    const int64_t rows = per_call / c.n;
    for (int64_t b0 = 0; b0 < c.B; b0 += rows) out.push_back({b0, std::min(rows, c.B - b0), 0, c.n});
  } else {
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t s0 = 0; s0 < c.n; s0 += per_call) out.push_back({b, 1, s0, std::min(per_call, c.n - s0)});
  }
  return out;
}

// The rows of a key sequence [B, T, ...] that a group's windows cover: [rows, (ns-1)*L + W, ...].
Tensor covered(const Tensor& seq, const Chunk& c, const Group& gr) {
  return seq.narrow(0, gr.b0, gr.rows).narrow(1, gr.s0 * c.L, (gr.ns - 1) * c.L + c.W);
}

// The group's rows of a [B, n*L, D] tensor as blocks [count, H, L, d] (a view).
Tensor query_blocks(const Tensor& t, const Chunk& c, const Group& gr) {
  return t.narrow(0, gr.b0, gr.rows)
      .narrow(1, gr.s0 * c.L, gr.ns * c.L)
      .view({gr.count(), c.L, c.H, c.d})
      .transpose(1, 2);
}

// Queries [count, H, L, d], keys / values [count, H, W, d] (views of [count, L|W, H, d] storage),
// and the mask [count | 1, 1, L, W]. Keys: the windows (an unfold, a view) plus pk by window
// position, in one add.
struct Blocks {
  Tensor q, k, v, mask;
};

Blocks blocks(const Chunk& c, const Group& gr) {
  Blocks b;
  b.q = query_blocks(c.q, c, gr);
  Tensor kw = covered(c.keys, c, gr).unfold(1, c.W, c.L).transpose(2, 3);  // [rows, ns, W, D]
  Tensor k = c.pk.defined() ? kw + c.pk : kw.contiguous();
  b.k = k.view({gr.count(), c.W, c.H, c.d}).transpose(1, 2);
  b.v = covered(c.values, c, gr)
            .unfold(1, c.W, c.L)
            .transpose(2, 3)
            .contiguous()
            .view({gr.count(), c.W, c.H, c.d})
            .transpose(1, 2);
  if (c.mask.defined())
    b.mask = c.mask.size(0) == 1 && c.mask.size(1) == 1  // [1, 1, L, W]: the same for every block
                 ? c.mask
                 : c.mask.narrow(0, gr.b0, gr.rows).narrow(1, gr.s0, gr.ns).reshape({gr.count(), 1, c.L, c.W});
  return b;
}

// Gradients of a group's windows [rows, ns, W, D] -> added to those of the key sequences
// [B, T, D] (overlapping windows add up); with one group, the result itself.
void fold(const Tensor& grad_windows, const Chunk& c, const Group& gr, bool only, Tensor& grad_seq) {
  if (only) {
    grad_seq = at::unfold_backward(grad_windows.transpose(2, 3), {c.B, c.T, c.H * c.d}, 1, c.W, c.L);
    return;
  }
  if (!grad_seq.defined()) grad_seq = at::zeros({c.B, c.T, c.H * c.d}, grad_windows.options());
  Tensor dst = covered(grad_seq, c, gr);
  dst.add_(at::unfold_backward(grad_windows.transpose(2, 3), dst.sizes(), 1, c.W, c.L));
}

std::optional<Tensor> optional(const Tensor& t) { return t.defined() ? std::optional<Tensor>(t) : std::nullopt; }
Tensor value(const std::optional<Tensor>& t) { return t.value_or(Tensor()); }

// What FlashCpuLocal keeps for backward, by name: its inputs (undefined where absent) and output
// with the log-sum-exp of the flash kernel, and the geometry (in a capsule, as the varlen kernel
// passes its plan).
struct FlashCpuSaved {
  Tensor q, kx, vx, left_k, left_v, right_k, right_v, p_local, w_k, key_mask, out, lse;

  std::vector<Tensor> list() const {
    return {q, kx, vx, left_k, left_v, right_k, right_v, p_local, w_k, key_mask, out, lse};
  }
  static FlashCpuSaved from(const std::vector<Tensor>& s) {
    return {s.at(0), s.at(1), s.at(2), s.at(3), s.at(4),  s.at(5),
            s.at(6), s.at(7), s.at(8), s.at(9), s.at(10), s.at(11)};
  }
};

struct GeometryHolder : torch::CustomClassHolder {
  explicit GeometryHolder(const LocalGeometry& geometry) : g(geometry) {}
  LocalGeometry g;
};

// SDPA's CPU flash kernel on blocks, a group of blocks per call, as an autograd function that
// keeps its inputs (q, kx, vx, halos) and output, not the windows (alpha times larger) nor the
// key sequences: backward rebuilds them.
class FlashCpuLocal : public torch::autograd::Function<FlashCpuLocal> {
 public:
  // Optional tensors: absent halos, P_l and W_k, key_mask (autograd functions take no undefined
  // tensors).
  using Opt = std::optional<Tensor>;
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& q, const Tensor& kx, const Tensor& vx,
                        const Opt& lk, const Opt& lv, const Opt& rk, const Opt& rv, const Opt& pl, const Opt& wk,
                        const Opt& mask, LocalGeometry g) {
    const Chunk c = prepare(q, key_sequence(kx, value(lk), value(rk), g), key_sequence(vx, value(lv), value(rv), g),
                            position_keys(value(pl), value(wk), q.scalar_type()), value(mask), g, /*additive=*/true);
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
    const std::vector<Group> calls = groups(c, g);
    Tensor out, lse;  // [B, n*L, D], [B, n, H, L]
    for (const Group& gr : calls) {
      Blocks b = blocks(c, gr);
      auto [o, l] = at::_scaled_dot_product_flash_attention_for_cpu(b.q, b.k, b.v, 0.0, false, optional(b.mask), scale);
      if (calls.size() == 1) {  // o is [G, L, H, d] in memory: already [B, n*L, D]
        out = o.transpose(1, 2).reshape(q.sizes()), lse = l.view({c.B, c.n, c.H, c.L});
        break;
      }
      if (!out.defined()) out = at::empty_like(c.q), lse = at::empty({c.B, c.n, c.H, c.L}, l.options());
      query_blocks(out, c, gr).copy_(o);
      lse.narrow(0, gr.b0, gr.rows).narrow(1, gr.s0, gr.ns).view({gr.count(), c.H, c.L}).copy_(l);
    }
    const FlashCpuSaved saved{q,         kx,        vx,        value(lk),   value(lv), value(rk),
                              value(rv), value(pl), value(wk), value(mask), out,       lse};
    ctx->save_for_backward(saved.list());
    ctx->saved_data["geometry"] = c10::IValue::make_capsule(c10::make_intrusive<GeometryHolder>(g));
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const FlashCpuSaved s = FlashCpuSaved::from(ctx->get_saved_variables());
    const Tensor &q = s.q, &pl = s.p_local, &wk = s.w_k, &out = s.out, &lse = s.lse;
    const LocalGeometry g =
        c10::static_intrusive_pointer_cast<GeometryHolder>(ctx->saved_data["geometry"].toCapsule())->g;
    const Tensor pk = position_keys(pl, wk, q.scalar_type());
    const Chunk c = prepare(q, key_sequence(s.kx, s.left_k, s.right_k, g), key_sequence(s.vx, s.left_v, s.right_v, g),
                            pk, s.key_mask, g, true);
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
    const Tensor grad = grads[0].contiguous();
    const std::vector<Group> calls = groups(c, g);
    Tensor g_q, g_keys, g_values, g_pk;
    for (const Group& gr : calls) {
      Blocks b = blocks(c, gr);
      auto [gq, gk, gv] = at::_scaled_dot_product_flash_attention_for_cpu_backward(
          query_blocks(grad, c, gr), b.q, b.k, b.v, query_blocks(out, c, gr),
          lse.narrow(0, gr.b0, gr.rows).narrow(1, gr.s0, gr.ns).view({gr.count(), c.H, c.L}), 0.0, false,
          optional(b.mask), scale);
      if (calls.size() == 1) {
        g_q = gq.transpose(1, 2).reshape(q.sizes());  // [G, L, H, d] in memory, like q
      } else {
        if (!g_q.defined()) g_q = at::empty_like(c.q);
        query_blocks(g_q, c, gr).copy_(gq);
      }
      const std::vector<int64_t> wshape{gr.rows, gr.ns, c.W, c.H * c.d};
      Tensor gkw = gk.transpose(1, 2).reshape(wshape);  // [count, W, H, d] storage: a view
      if (pk.defined()) {
        Tensor part = gkw.sum(at::IntArrayRef{0, 1});
        g_pk = g_pk.defined() ? g_pk.add_(part) : part;
      }
      fold(gkw, c, gr, calls.size() == 1, g_keys);
      fold(gv.transpose(1, 2).reshape(wshape), c, gr, calls.size() == 1, g_values);
    }
    // Back from the key sequences to the chunk and its halos.
    const int64_t e = g.ext, NL = c.n * c.L;
    auto part = [&](const Tensor& t, bool present, int64_t at) { return present ? t.narrow(1, at, e) : Tensor(); };
    auto [g_pl, g_wk] = position_keys_backward(g_pk, pl, wk);
    return {g_q,
            g_keys.narrow(1, e, NL),
            g_values.narrow(1, e, NL),
            part(g_keys, g.left_halo && e > 0, 0),
            part(g_values, g.left_halo && e > 0, 0),
            part(g_keys, g.right_halo && e > 0, e + NL),
            part(g_values, g.right_halo && e > 0, e + NL),
            g_pl,
            g_wk,
            Tensor(),
            Tensor()};
  }
};

}  // namespace

Tensor local_attention_sdpa_blocks(const Tensor& q, const Tensor& kx, const Tensor& vx, const KvHalo& left,
                                   const KvHalo& right, const Tensor& p_local, const Tensor& w_k,
                                   const Tensor& key_mask, const LocalGeometry& g, double dropout_p) {
  const Chunk c = prepare(q, key_sequence(kx, left.k, right.k, g), key_sequence(vx, left.v, right.v, g),
                          position_keys(p_local, w_k, q.scalar_type()), key_mask, g, false);
  Blocks b = blocks(c, {0, c.B, 0, c.n});
  Tensor out = b.mask.defined() ? sdpa_masked(b.q, b.k, b.v, b.mask, dropout_p)
                                : at::scaled_dot_product_attention(b.q, b.k, b.v, {}, dropout_p);
  return out.transpose(1, 2).reshape(q.sizes());
}

Tensor local_attention_flash_cpu(const Tensor& q, const Tensor& kx, const Tensor& vx, const KvHalo& left,
                                 const KvHalo& right, const Tensor& p_local, const Tensor& w_k, const Tensor& key_mask,
                                 const LocalGeometry& g) {
  return FlashCpuLocal::apply(q, kx, vx, optional(left.k), optional(left.v), optional(right.k), optional(right.v),
                              optional(p_local), optional(p_local.defined() ? w_k : Tensor()), optional(key_mask), g);
}

}  // namespace cst::model::csa
