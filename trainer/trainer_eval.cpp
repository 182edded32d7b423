// Validation: one pass over the validation split (or log.eval_batches batches).
#include "model/loss.h"
#include "trainer/autocast.h"
#include "trainer/trainer_state.h"

namespace cst::trainer {

using torch::Tensor;

void Trainer::State::evaluate(int64_t step, TrainResult& res) {
  if (!valid_src) return;
  torch::NoGradGuard no_grad;
  model->eval();
  dataio::Loader vl(valid_src, loader_options(false));
  double sums[3] = {0, 0, 0};  // loss sum, predicted tokens, correct predictions
  int64_t batches = 0;
  while (auto b = vl.next()) {
    if (cfg.log.eval_batches > 0 && batches >= cfg.log.eval_batches) break;
    ++batches;
    for (int64_t r0 = 0; r0 < b->rows; r0 += cfg.train.micro_batch) {
      const int64_t n = std::min(cfg.train.micro_batch, b->rows - r0);
      Tensor ids = to_tensor(b->input_ids, b->rows, b->cols, torch::kLong).narrow(0, r0, n).to(device);
      Tensor inputs = mlm ? ids : ids.narrow(1, 0, seq_len);
      Tensor labels = mlm ? to_tensor(b->labels, b->rows, b->cols, torch::kLong).narrow(0, r0, n).to(device)
                          : ids.narrow(1, 1, seq_len);
      Tensor mask = mlm ? to_tensor(b->attention_mask, b->rows, b->cols, torch::kBool).narrow(0, r0, n).to(device)
                        : Tensor();
      Bf16Autocast ac(bf16);
      Tensor logits = model->forward(inputs, mask);
      model::LossSum ls = model::token_loss(logits, labels);
      sums[0] += ls.sum.item<double>();
      sums[1] += static_cast<double>(ls.count);
      sums[2] += logits.argmax(-1).eq(labels).logical_and(labels.ne(-100)).sum().item<double>();
    }
  }
  const std::vector<double> t = collective("all_reduce(validation sums) at step " + std::to_string(step),
                                           [&] { return comm.all_reduce_doubles({sums[0], sums[1], sums[2]}); });
  model->train();
  const double count = t[1];
  res.final_eval_loss = count > 0 ? t[0] / count : 0.0;
  if (sink)
    sink->eval({step, res.final_eval_loss, mlm ? t[2] / std::max(1.0, count) : -1.0, static_cast<int64_t>(count)});
}

}  // namespace cst::trainer
