#include "model/local_attention.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <limits>

#include "common/error.h"
#include "model/csa.h"
#include "model/varlen_attention.h"

namespace cst::model::csa {

using at::Tensor;

const char* to_string(LocalKernel k) {
  switch (k) {
    case LocalKernel::kExplicit: return "explicit";
    case LocalKernel::kFlashCpu: return "flash-cpu";
    case LocalKernel::kSdpaBlocks: return "sdpa-blocks";
    case LocalKernel::kFlashVarlen: return "flash-varlen";
  }
  return "?";
}

Tensor key_validity(const LocalGeometry& g, int64_t batch, const Tensor& key_mask, const at::TensorOptions& opt) {
  const int64_t T = g.key_rows();
  if (!key_mask.defined() && g.key_begin() == 0 && g.key_end() == T) return {};
  Tensor valid = at::zeros({batch, T}, opt.dtype(at::kBool));
  valid.narrow(1, g.key_begin(), g.key_end() - g.key_begin()).fill_(true);
  if (key_mask.defined()) valid.logical_and_(key_mask.to(at::kBool));
  return valid;
}

namespace {

// The chunk prepared for cutting into blocks: block g = (b, s) is slice s of batch row b, its L
// queries and its W window keys.
struct Chunk {
  int64_t blocks = 0, L = 0, W = 0, H = 0, d = 0;
  Tensor q;             // [G*L, D] query rows
  Tensor keys, values;  // [B*T, D] rows of the key sequences
  Tensor pk;            // [W, D] or undefined
  Tensor rows;          // [G, W] int64: the key rows of each block's window
  Tensor valid;         // [B*T] bool, or undefined (all real)
  Tensor vis;           // [L, W] bool: local_visibility
};

Chunk prepare(const Tensor& q, const Tensor& keys, const Tensor& values, const Tensor& pk, const Tensor& key_mask,
              const LocalGeometry& g) {
  const int64_t B = q.size(0), D = q.size(2), n = g.slices(), T = g.key_rows();
  Chunk c;
  c.blocks = B * n, c.L = g.slice_len, c.W = g.window(), c.H = g.heads, c.d = D / g.heads;
  CST_CHECK(q.size(1) == n * c.L && keys.size(1) == T && values.sizes() == keys.sizes(),
            "local attention: q " << q.sizes() << ", keys " << keys.sizes() << ", values " << values.sizes()
                                  << " do not fit n = " << n << " slices of L = " << c.L << " with window W = " << c.W);
  c.q = q.reshape({-1, D}), c.keys = keys.reshape({-1, D}), c.values = values.reshape({-1, D}), c.pk = pk;
  const at::TensorOptions lopt = q.options().dtype(at::kLong);
  Tensor start = (at::arange(B, lopt).mul_(T).view({B, 1}) + at::arange(n, lopt).mul_(c.L).view({1, n})).view({-1, 1});
  c.rows = start + at::arange(c.W, lopt).view({1, c.W});
  Tensor valid = key_validity(g, B, key_mask, q.options());
  if (valid.defined()) c.valid = valid.view({-1});
  c.vis = local_visibility(c.L, g.ext, g.causal, q.options());
  return c;
}

// Blocks [g0, g0 + count) of a chunk: queries [count, H, L, d], keys / values [count, H, W, d]
// (views of [count, L|W, H, d] storage), and who may see whom, [count | 1, 1, L, W] bool
// (undefined: everyone). Keys: one gather of the windows plus one add of pk by window position.
struct Blocks {
  Tensor q, k, v, mask;
};

Blocks blocks(const Chunk& c, int64_t g0, int64_t count, bool causal) {
  const int64_t D = c.H * c.d;
  Tensor idx = c.rows.narrow(0, g0, count).reshape({-1});
  Blocks b;
  b.q = c.q.narrow(0, g0 * c.L, count * c.L).view({count, c.L, c.H, c.d}).transpose(1, 2);
  Tensor k = c.keys.index_select(0, idx).view({count, c.W, D});
  if (c.pk.defined()) k = k + c.pk;
  b.k = k.view({count, c.W, c.H, c.d}).transpose(1, 2);
  b.v = c.values.index_select(0, idx).view({count, c.W, c.H, c.d}).transpose(1, 2);
  if (c.valid.defined())
    b.mask = c.valid.index_select(0, idx).view({count, 1, 1, c.W}).logical_and(c.vis);
  else if (causal)
    b.mask = c.vis.view({1, 1, c.L, c.W});
  return b;
}

// Block outputs [G, H, L, d] -> [B, n*L, D].
Tensor merge_blocks(const Tensor& out, int64_t batch) {
  return out.transpose(1, 2).reshape({batch, -1, out.size(1) * out.size(3)});
}

// Additive form of a boolean block mask for the flash kernel: 0 visible, -inf hidden.
std::optional<Tensor> additive(const Tensor& mask, const at::ScalarType dtype) {
  if (!mask.defined()) return std::nullopt;
  return at::zeros(mask.sizes(), mask.options().dtype(dtype))
      .masked_fill_(mask.logical_not(), -std::numeric_limits<double>::infinity());
}

// Blocks per kernel call: the rebuilt keys and values of one call (and their gradients) stay
// within about half the size of the queries.
int64_t blocks_per_call(const Chunk& c) { return std::max<int64_t>(1, c.blocks * c.L / (4 * c.W)); }

void save_geometry(torch::autograd::AutogradContext* ctx, const LocalGeometry& g) {
  ctx->saved_data["L"] = g.slice_len, ctx->saved_data["e"] = g.ext, ctx->saved_data["causal"] = g.causal;
  ctx->saved_data["H"] = g.heads, ctx->saved_data["N"] = g.tokens;
  ctx->saved_data["left"] = g.left_halo, ctx->saved_data["right"] = g.right_halo;
}

LocalGeometry load_geometry(torch::autograd::AutogradContext* ctx) {
  LocalGeometry g;
  g.slice_len = ctx->saved_data["L"].toInt(), g.ext = ctx->saved_data["e"].toInt();
  g.causal = ctx->saved_data["causal"].toBool(), g.heads = ctx->saved_data["H"].toInt();
  g.tokens = ctx->saved_data["N"].toInt();
  g.left_halo = ctx->saved_data["left"].toBool(), g.right_halo = ctx->saved_data["right"].toBool();
  return g;
}

// SDPA's CPU flash kernel on blocks, a few blocks per call, as an autograd function that keeps
// its inputs, not the blocks (alpha times larger): backward rebuilds them call by call.
class FlashCpuLocal : public torch::autograd::Function<FlashCpuLocal> {
 public:
  // pk, key_mask: optional (autograd functions take no undefined tensors).
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& q, const Tensor& keys,
                        const Tensor& values, const std::optional<Tensor>& pk_opt,
                        const std::optional<Tensor>& mask_opt, LocalGeometry g) {
    const Tensor pk = pk_opt.value_or(Tensor()), key_mask = mask_opt.value_or(Tensor());
    const Chunk c = prepare(q, keys, values, pk, key_mask, g);
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
    Tensor out = at::empty_like(c.q), lse;  // [G*L, D], [G, H, L]
    for (int64_t g0 = 0, step = blocks_per_call(c); g0 < c.blocks; g0 += step) {
      const int64_t count = std::min(step, c.blocks - g0);
      Blocks b = blocks(c, g0, count, g.causal);
      auto [o, l] = at::_scaled_dot_product_flash_attention_for_cpu(b.q, b.k, b.v, 0.0, false,
                                                                     additive(b.mask, q.scalar_type()), scale);
      if (!lse.defined()) lse = at::empty({c.blocks, c.H, c.L}, l.options());
      out.narrow(0, g0 * c.L, count * c.L).view({count, c.L, c.H, c.d}).copy_(o.transpose(1, 2));
      lse.narrow(0, g0, count).copy_(l);
    }
    ctx->save_for_backward({q, keys, values, pk, key_mask, out, lse});
    save_geometry(ctx, g);
    return out.view(q.sizes());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto s = ctx->get_saved_variables();
    const Tensor &q = s[0], &keys = s[1], &values = s[2], &pk = s[3], &key_mask = s[4], &out = s[5], &lse = s[6];
    const LocalGeometry g = load_geometry(ctx);
    const Chunk c = prepare(q, keys, values, pk, key_mask, g);
    const int64_t D = c.H * c.d;
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
    const Tensor grad = grads[0].contiguous().view({-1, D});
    Tensor g_q = at::empty_like(c.q), g_keys = at::zeros_like(c.keys), g_values = at::zeros_like(c.values);
    Tensor g_pk = pk.defined() ? at::zeros_like(pk) : Tensor();
    auto blocks_of = [&](const Tensor& rows, int64_t g0, int64_t count) {
      return rows.narrow(0, g0 * c.L, count * c.L).view({count, c.L, c.H, c.d}).transpose(1, 2);
    };
    for (int64_t g0 = 0, step = blocks_per_call(c); g0 < c.blocks; g0 += step) {
      const int64_t count = std::min(step, c.blocks - g0);
      Blocks b = blocks(c, g0, count, g.causal);
      auto [gq, gk, gv] = at::_scaled_dot_product_flash_attention_for_cpu_backward(
          blocks_of(grad, g0, count), b.q, b.k, b.v, blocks_of(out, g0, count), lse.narrow(0, g0, count), 0.0, false,
          additive(b.mask, q.scalar_type()), scale);
      blocks_of(g_q, g0, count).copy_(gq);
      // Window keys back to their rows: overlapping windows add up.
      Tensor idx = c.rows.narrow(0, g0, count).reshape({-1});
      Tensor gk_rows = gk.transpose(1, 2).reshape({-1, D});
      g_keys.index_add_(0, idx, gk_rows);
      g_values.index_add_(0, idx, gv.transpose(1, 2).reshape({-1, D}));
      if (g_pk.defined()) g_pk.add_(gk_rows.view({count, c.W, D}).sum(0));
    }
    return {g_q.view(q.sizes()), g_keys.view(keys.sizes()), g_values.view(values.sizes()), g_pk, Tensor(), Tensor()};
  }
};

std::optional<Tensor> optional(const Tensor& t) { return t.defined() ? std::optional<Tensor>(t) : std::nullopt; }

// at::scaled_dot_product_attention on blocks under autograd.
Tensor sdpa_blocks(const Tensor& q, const Tensor& keys, const Tensor& values, const Tensor& pk,
                   const Tensor& key_mask, const LocalGeometry& g, double dropout_p) {
  const Chunk c = prepare(q, keys, values, pk, key_mask, g);
  Blocks b = blocks(c, 0, c.blocks, g.causal);
  Tensor out = b.mask.defined() ? sdpa_masked(b.q, b.k, b.v, b.mask, dropout_p)
                                : at::scaled_dot_product_attention(b.q, b.k, b.v, {}, dropout_p);
  return merge_blocks(out, q.size(0));
}

}  // namespace

Tensor local_attention_fused(const Tensor& q, const Tensor& keys, const Tensor& values, const Tensor& pk,
                             const Tensor& key_mask, const LocalGeometry& g, LocalKernel kernel, double dropout_p,
                             bool training, const VarlenKernel* varlen, VarlenPlanCache* plans) {
  const double p = training ? dropout_p : 0.0;
  switch (kernel) {
    case LocalKernel::kFlashCpu:
      CST_CHECK(p == 0.0, "local attention: the CPU flash kernel has no dropout (p = " << p << ")");
      return FlashCpuLocal::apply(q, keys, values, optional(pk), optional(key_mask), g);
    case LocalKernel::kSdpaBlocks:
      return sdpa_blocks(q, keys, values, pk, key_mask, g, p);
    case LocalKernel::kFlashVarlen:
      CST_CHECK(!key_mask.defined(), "local attention: the variable-length kernel takes no per-token key mask");
      return local_attention_varlen(q, keys, values, pk, g, dropout_p, training,
                                    varlen ? *varlen : flash_attention_varlen(), plans);
    case LocalKernel::kExplicit:
      break;
  }
  CST_THROW("local_attention_fused: kernel " << to_string(kernel) << " is not a fused kernel");
}

}  // namespace cst::model::csa
