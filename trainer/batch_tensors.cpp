#include "trainer/batch_tensors.h"

#include <torch/torch.h>

#include <type_traits>
#include <vector>

namespace cst::trainer {

namespace {

// A [rows, cols] tensor copied from a loader vector.
template <class T>
torch::Tensor to_tensor(const std::vector<T>& v, int64_t rows, int64_t cols, at::ScalarType as) {
  auto dtype = std::is_same_v<T, int32_t> ? torch::kInt : torch::kByte;
  return torch::from_blob(const_cast<T*>(v.data()), {rows, cols}, dtype).to(as);
}

torch::Tensor cls_labels(const dataio::Batch& b, bool regression) {
  if (regression) return torch::from_blob(const_cast<float*>(b.targets.data()), {b.rows}, torch::kFloat).clone();
  torch::Tensor y = torch::from_blob(const_cast<int64_t*>(b.class_labels.data()), {b.rows}, torch::kLong).clone();
  return y.masked_fill_(y.lt(0), -100);
}

}  // namespace

BatchTensors batch_tensors(const dataio::Batch& b, const TaskKind& task, int64_t seq_len,
                           const ParallelLayout& layout) {
  auto chunk = [&](const torch::Tensor& t) {  // this rank's tokens of t [rows, N]
    if (!t.defined() || task.cls) return t;
    const TokenRange r = layout.token_range(t.size(1));
    return r.size() == t.size(1) ? t : t.narrow(1, r.begin, r.size());
  };
  const torch::Tensor ids = to_tensor(b.input_ids, b.rows, b.cols, torch::kLong);
  BatchTensors t;
  if (task.mlm || task.cls) {
    t.inputs = chunk(ids);
    t.mask = chunk(to_tensor(b.attention_mask, b.rows, b.cols, torch::kBool));
    t.labels = task.cls ? cls_labels(b, task.regression) : chunk(to_tensor(b.labels, b.rows, b.cols, torch::kLong));
  } else {  // a window of N + 1 tokens: inputs its first N, targets its last N
    t.inputs = chunk(ids.narrow(1, 0, seq_len));
    t.labels = chunk(ids.narrow(1, 1, seq_len));
  }
  return t;
}

BatchTensors BatchTensors::rows(int64_t first, int64_t n, const c10::Device& device) const {
  auto cut = [&](const torch::Tensor& t) { return t.defined() ? t.narrow(0, first, n).to(device) : t; };
  return {cut(inputs), cut(mask), cut(labels)};
}

int64_t BatchTensors::count() const {
  return (labels.is_floating_point() ? labels.isnan().logical_not() : labels.ne(-100)).sum().item<int64_t>();
}

}  // namespace cst::trainer
