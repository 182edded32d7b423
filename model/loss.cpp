#include "model/loss.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

namespace cst::model {

at::Tensor LossSum::mean() const { return sum / static_cast<double>(std::max<int64_t>(count, 1)); }

namespace {
constexpr int64_t kIgnore = -100;

LossSum ce_sum(const at::Tensor& logits2d, const at::Tensor& targets1d) {
  at::Tensor valid = targets1d.ne(kIgnore);
  int64_t count = valid.sum().item<int64_t>();
  // In float32 at least (bf16 logits under autocast), float64 for float64 logits.
  const at::Tensor l = logits2d.scalar_type() == at::kDouble ? logits2d : logits2d.to(at::kFloat);
  at::Tensor sum = at::cross_entropy_loss(l, targets1d, {}, at::Reduction::Sum, kIgnore);
  return {sum, count};
}
}  // namespace

LossSum lm_loss(const at::Tensor& logits, const at::Tensor& input_ids, const at::Tensor& mask) {
  const int64_t V = logits.size(-1), N = logits.size(1);
  at::Tensor pred = logits.narrow(1, 0, N - 1).reshape({-1, V});
  at::Tensor tgt = input_ids.narrow(1, 1, N - 1).clone();
  if (mask.defined()) {
    at::Tensor ok = mask.narrow(1, 0, N - 1).logical_and(mask.narrow(1, 1, N - 1));
    tgt.masked_fill_(ok.logical_not(), kIgnore);
  }
  return ce_sum(pred, tgt.reshape({-1}));
}

LossSum token_loss(const at::Tensor& logits, const at::Tensor& labels) {
  return ce_sum(logits.reshape({-1, logits.size(-1)}), labels.reshape({-1}));
}

LossSum cls_loss(const at::Tensor& logits, const at::Tensor& labels) { return ce_sum(logits, labels); }

LossSum regression_loss(const at::Tensor& pred, const at::Tensor& targets) {
  TORCH_CHECK(pred.dim() == 1 && targets.sizes() == pred.sizes(), "regression_loss: pred ", pred.sizes(), ", targets ",
              targets.sizes());
  const at::ScalarType dt = pred.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor y = targets.to(dt), valid = y.isnan().logical_not();
  const at::Tensor diff = at::where(valid, pred.to(dt) - y.nan_to_num(0.0), at::zeros({}, y.options()));
  return {diff.square().sum(), valid.sum().item<int64_t>()};
}

namespace {

// Rows per chunk unless asked: a chunk's logits hold about as many values as the R x D hidden
// rows they come from, so that the head never dominates a step's memory however few tokens a
// rank holds (sequence parallelism), within [2^20, 2^24] logits (4 to 64 MiB in float32: fewer
// would only add matmul calls).
int64_t rows_per_chunk(int64_t asked, int64_t rows, int64_t width, int64_t vocab) {
  if (asked > 0) return asked;
  const int64_t V = std::max<int64_t>(vocab, 1);
  const int64_t lo = (int64_t{1} << 20) / V, hi = (int64_t{1} << 24) / V;
  return std::max<int64_t>(1, std::clamp(rows * width / V, lo, hi));
}

// The dtype of the head's matmul: autocast's for h's device when it is on.
at::ScalarType head_dtype(const at::Tensor& h) {
  const at::DeviceType dev = h.device().type();
  return at::autocast::is_autocast_enabled(dev) ? at::autocast::get_autocast_dtype(dev) : h.scalar_type();
}

// Forward computes, chunk by chunk, the loss and (when any input needs a gradient) the
// gradients of the summed loss w.r.t. h, weight and bias: d loss / d logits = softmax - one_hot
// does not depend on what follows the loss, so no chunk's logits are needed again. Backward
// scales them by the incoming gradient. Keeps [R, D] + [V, D] instead of [R, V].
class ChunkedCrossEntropy : public torch::autograd::Function<ChunkedCrossEntropy> {
 public:
  // bias: optional (autograd functions take no undefined tensors).
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& h, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias_opt, const at::Tensor& labels, int64_t chunk,
                            at::Tensor* correct, bool grad_mode) {
    const at::Tensor bias = bias_opt.value_or(at::Tensor());
    const bool grads =
        grad_mode && (h.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad()));
    // Casts are explicit; under autocast they are no-ops.
    const at::ScalarType dt = head_dtype(h);
    const at::Tensor w = weight.to(dt), b = bias.defined() ? bias.to(dt) : at::Tensor();
    const int64_t R = h.size(0);
    at::Tensor total = at::zeros({}, h.options().dtype(dt == at::kDouble ? at::kDouble : at::kFloat));
    at::Tensor hits = at::zeros({}, labels.options().dtype(at::kLong));
    at::Tensor g_h, g_w, g_b;
    if (grads) {
      g_h = at::empty_like(h), g_w = at::zeros_like(weight);
      if (bias.defined()) g_b = at::zeros_like(bias);
    }
    for (int64_t r0 = 0; r0 < R; r0 += chunk) {
      const int64_t rows = std::min(chunk, R - r0);
      const at::Tensor h_c = h.narrow(0, r0, rows).to(dt);
      at::Tensor logits = at::linear(h_c, w, b).to(total.scalar_type());
      at::Tensor y = labels.narrow(0, r0, rows), valid = y.ne(kIgnore), target = y.clamp_min(0).unsqueeze(1);
      at::Tensor lse = at::logsumexp(logits, 1, /*keepdim=*/true);
      total += ((lse.squeeze(1) - logits.gather(1, target).squeeze(1)) * valid).sum();
      if (correct) hits += logits.argmax(1).eq(y).logical_and(valid).sum();
      if (!grads) continue;
      // d loss / d logits = (softmax - one_hot(label)) on predicted rows.
      at::Tensor d = logits.sub_(lse).exp_();
      d.scatter_add_(1, target, at::full({rows, 1}, -1.0, d.options()));
      d.mul_(valid.unsqueeze(1).to(d.scalar_type()));
      const at::Tensor d_dt = d.to(dt);
      g_h.narrow(0, r0, rows).copy_(at::matmul(d_dt, w));
      g_w.add_(at::matmul(d_dt.t(), h_c));
      if (g_b.defined()) g_b.add_(d.sum(0));
    }
    if (correct) *correct = hits;
    ctx->save_for_backward({g_h, g_w, g_b.defined() ? g_b : at::zeros({0}, h.options())});
    return total;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto s = ctx->get_saved_variables();
    const at::Tensor& g = grads[0];
    auto scaled = [&](const at::Tensor& t) {
      return t.defined() && t.numel() > 0 ? t * g.to(t.scalar_type()) : at::Tensor();
    };
    return {scaled(s[0]), scaled(s[1]), scaled(s[2]), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

LossSum chunked_cross_entropy(const at::Tensor& h, const at::Tensor& weight, const at::Tensor& bias,
                              const at::Tensor& labels, int64_t chunk_rows, at::Tensor* correct) {
  TORCH_CHECK(h.dim() == 2 && labels.dim() == 1 && labels.size(0) == h.size(0) && weight.size(1) == h.size(1),
              "chunked_cross_entropy: h ", h.sizes(), ", weight ", weight.sizes(), ", labels ", labels.sizes());
  const int64_t count = labels.ne(kIgnore).sum().item<int64_t>();
  const int64_t chunk = rows_per_chunk(chunk_rows, h.size(0), h.size(1), weight.size(0));
  const std::optional<at::Tensor> b = bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt;
  return {ChunkedCrossEntropy::apply(h, weight, b, labels, chunk, correct, at::GradMode::is_enabled()), count};
}

}  // namespace cst::model
