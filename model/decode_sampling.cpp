#include "model/decode_sampling.h"

#include <ATen/ATen.h>

#include <limits>

#include "common/error.h"

namespace cst::model {

void SamplingOptions::validate() const {
  CST_INPUT_CHECK(temperature >= 0 && temperature <= 1e4, "--temperature = " << temperature << " must be in [0, 1e4]");
  CST_INPUT_CHECK(top_k >= 0, "--top-k = " << top_k << " must be >= 0 (0 = all tokens)");
  CST_INPUT_CHECK(top_p > 0 && top_p <= 1, "--top-p = " << top_p << " must be in (0, 1]");
}

int64_t choose_token(const at::Tensor& logits, const SamplingOptions& opt, at::Generator& gen) {
  at::Tensor l = logits.to(at::kFloat).flatten();
  if (opt.temperature == 0) return l.argmax().item<int64_t>();
  l = l / opt.temperature;
  const float lowest = -std::numeric_limits<float>::infinity();
  if (opt.top_k > 0 && opt.top_k < l.size(0)) {
    const at::Tensor kth = std::get<0>(l.topk(opt.top_k)).min();
    l = l.masked_fill(l < kth, lowest);
  }
  if (opt.top_p < 1) {
    auto [sorted, order] = l.sort(/*dim=*/0, /*descending=*/true);
    const at::Tensor cum = sorted.softmax(0).cumsum(0);
    // Keep a token while the mass before it is below top_p (the most likely one always).
    const at::Tensor drop = (cum - sorted.softmax(0)) >= opt.top_p;
    l = l.scatter(0, order, sorted.masked_fill(drop, lowest));
  }
  return at::multinomial(l.softmax(0), 1, /*replacement=*/false, gen).item<int64_t>();
}

}  // namespace cst::model
