// Classification batches as tensors (model.task = cls).
#include "trainer/trainer_state.h"

namespace cst::trainer {

torch::Tensor cls_labels(const dataio::Batch& b, bool regression) {
  if (regression) return torch::from_blob(const_cast<float*>(b.targets.data()), {b.rows}, torch::kFloat).clone();
  torch::Tensor y = torch::from_blob(const_cast<int64_t*>(b.class_labels.data()), {b.rows}, torch::kLong).clone();
  return y.masked_fill_(y.lt(0), -100);
}

int64_t labelled_count(const torch::Tensor& labels) {
  return (labels.is_floating_point() ? labels.isnan().logical_not() : labels.ne(-100)).sum().item<int64_t>();
}

}  // namespace cst::trainer
