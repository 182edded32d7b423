#include "model/loss.h"

#include <ATen/ATen.h>

namespace cst::model {

at::Tensor LossSum::mean() const { return sum / static_cast<double>(std::max<int64_t>(count, 1)); }

namespace {
constexpr int64_t kIgnore = -100;

LossSum ce_sum(const at::Tensor& logits2d, const at::Tensor& targets1d) {
  at::Tensor valid = targets1d.ne(kIgnore);
  int64_t count = valid.sum().item<int64_t>();
  // reduction 2 = sum (at::Reduction::Sum)
  at::Tensor sum = at::cross_entropy_loss(logits2d.to(at::kFloat), targets1d, {}, at::Reduction::Sum, kIgnore);
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

}  // namespace cst::model
