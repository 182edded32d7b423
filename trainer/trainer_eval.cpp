// Validation: one pass over each corpus of the validation split (or log.eval_batches batches of
// each), loss and accuracy per corpus, and the blend's loss as their weighted mean; and
// checkpoint.keep_best after it.
#include "checkpoint/manifest.h"
#include "model/autocast_scope.h"
#include "model/loss.h"
#include "trainer/trainer_state.h"

namespace cst::trainer {

using torch::Tensor;

void TrainerState::evaluate(int64_t step, TrainResult& res) {
  if (!valid_src) return;
  if (cls) {
    last_eval = evaluate_cls(step);
    res.final_eval_loss = last_eval->loss;
    if (sink) sink->eval(*last_eval);
    return;
  }
  torch::NoGradGuard no_grad;
  model->eval();
  dataio::Loader vl(valid_src, loader_options(false));
  const int corpora = valid_src->num_corpora();
  std::vector<double> sums(3 * static_cast<size_t>(corpora), 0.0);  // per corpus: loss sum, tokens, correct
  while (auto b = vl.next()) {
    if (b->rows == 0) continue;
    double* at = sums.data() + 3 * b->corpus.front();  // an evaluation batch holds one corpus
    for (int64_t r0 = 0; r0 < b->rows; r0 += cfg.train.micro_batch) {
      const int64_t n = std::min(cfg.train.micro_batch, b->rows - r0);
      Tensor ids = to_tensor(b->input_ids, b->rows, b->cols, torch::kLong).narrow(0, r0, n).to(device);
      Tensor inputs = chunk(mlm ? ids : ids.narrow(1, 0, seq_len));
      Tensor labels = chunk(mlm ? to_tensor(b->labels, b->rows, b->cols, torch::kLong).narrow(0, r0, n).to(device)
                                : ids.narrow(1, 1, seq_len));
      Tensor mask = chunk(mlm ? to_tensor(b->attention_mask, b->rows, b->cols, torch::kBool).narrow(0, r0, n).to(device)
                              : Tensor());
      model::Bf16Autocast ac(bf16);
      Tensor correct;
      model::LossSum ls = model->loss(inputs, mask, labels, &correct);
      at[0] += ls.sum.item<double>();
      at[1] += static_cast<double>(ls.count);
      at[2] += correct.item<double>();
    }
  }
  const std::vector<double> t = collective("all_reduce(validation sums) at step " + std::to_string(step),
                                           [&] { return comm.all_reduce_doubles(sums); });
  model->train();
  // The blend's loss: the corpora's losses weighted by data.valid's normalised weights (over the
  // corpora that predicted any token); one corpus: its loss.
  EvalRecord r;
  r.step = step;
  const std::vector<std::string> names = dataio::corpus_names(valid_src->spec());
  double weights = 0, loss = 0, accuracy = 0;
  for (int j = 0; j < corpora; ++j) {
    const double* x = t.data() + 3 * j;
    const double w = valid_src->spec().corpora[static_cast<size_t>(j)].weight;
    CorpusEval c{names[static_cast<size_t>(j)], w, x[1] > 0 ? x[0] / x[1] : 0.0,
                 mlm ? x[2] / std::max(1.0, x[1]) : -1.0, static_cast<int64_t>(x[1])};
    r.tokens += c.tokens;
    if (c.tokens > 0) weights += w, loss += w * c.loss, accuracy += w * c.accuracy;
    if (corpora > 1) r.corpora.push_back(std::move(c));
  }
  r.loss = weights > 0 ? loss / weights : 0.0;
  r.accuracy = mlm ? (weights > 0 ? accuracy / weights : 0.0) : -1.0;
  res.final_eval_loss = r.loss;
  if (sink) sink->eval(r);
  last_eval = std::move(r);
}

void TrainerState::keep_best(int64_t step) {
  if (!best || !last_eval || last_eval->step != step) return;
  const double v = best->value_of(*last_eval);
  if (!best->improves(v)) return;
  ckpt->protect(step);
  if (last_checkpoint_step != step) save_checkpoint(step, true);
  best->set(step, v);
  if (!rank0()) return;
  best->write();
  sink->text("best " + best->metric() + " " + std::to_string(v) + " at step " + std::to_string(step) + ": " +
             checkpoint::step_dir_name(step) + " kept (best.json)");
}

}  // namespace cst::trainer
