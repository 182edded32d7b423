// Validation of a classifier (model.task = cls): loss, and the metrics each corpus's task is
// judged by (cls_metrics.h) over the predictions of all ranks.
//
// Every example of a corpus is evaluated by exactly one rank; each rank writes (seen, prediction,
// label) at the example's position in the validation split's index space and one all-reduce sums
// them, so every rank holds every prediction in the split's order, whatever the world size.
#include "model/autocast_scope.h"
#include "model/loss.h"
#include "trainer/trainer_state.h"

namespace cst::trainer {

using torch::Tensor;

EvalRecord TrainerState::evaluate_cls(int64_t step) {
  torch::NoGradGuard no_grad;
  model->eval();
  dataio::Loader vl(valid_src, loader_options(false));
  const int corpora = valid_src->num_corpora();
  const size_t n = static_cast<size_t>(valid_src->num_samples()), sums_at = 3 * n;
  // [seen, prediction, label] per example, then per corpus [loss sum, labelled examples].
  std::vector<double> buf(sums_at + 2 * static_cast<size_t>(corpora), 0.0);
  while (auto b = vl.next()) {
    if (b->rows == 0) continue;
    double* sums = buf.data() + sums_at + 2 * b->corpus.front();  // an evaluation batch holds one corpus
    for (int64_t r0 = 0; r0 < b->rows; r0 += cfg.train.micro_batch) {
      const int64_t m = std::min(cfg.train.micro_batch, b->rows - r0);
      Tensor ids = to_tensor(b->input_ids, b->rows, b->cols, torch::kLong).narrow(0, r0, m).to(device);
      Tensor mask = to_tensor(b->attention_mask, b->rows, b->cols, torch::kBool).narrow(0, r0, m).to(device);
      Tensor labels = cls_labels(*b, regression).narrow(0, r0, m).to(device);
      Tensor logits;
      {
        model::Bf16Autocast ac(bf16);
        logits = model->forward(ids, mask).to(torch::kFloat);
      }
      const model::LossSum ls =
          regression ? model::regression_loss(logits.squeeze(-1), labels) : model::cls_loss(logits, labels);
      sums[0] += ls.sum.item<double>();
      sums[1] += static_cast<double>(ls.count);
      Tensor pred = (regression ? logits.squeeze(-1) : logits.argmax(-1)).to(torch::kCPU, torch::kDouble).contiguous();
      Tensor y = labels.to(torch::kCPU, torch::kDouble).contiguous();
      const double *p = pred.data_ptr<double>(), *l = y.data_ptr<double>();
      for (int64_t i = 0; i < m; ++i) {
        double* at = buf.data() + 3 * static_cast<size_t>(b->sample_index[static_cast<size_t>(r0 + i)]);
        at[0] = 1, at[1] = p[i], at[2] = l[i] == -100 ? -1.0 : l[i];
      }
    }
  }
  const std::vector<double> t = collective("all_reduce(validation predictions) at step " + std::to_string(step),
                                           [&] { return comm.all_reduce_doubles(buf); });
  model->train();
  EvalRecord r;
  r.step = step;
  r.classification = true;
  const std::vector<std::string> names = dataio::corpus_names(valid_src->spec());
  double weights = 0, loss = 0, accuracy = 0;
  std::vector<NamedMetric> blend;  // sums of weight x value, then divided by the weights that have them
  std::vector<double> blend_weights;
  for (int j = 0; j < corpora; ++j) {
    const double* x = t.data() + sums_at + 2 * j;
    const double w = valid_src->spec().corpora[static_cast<size_t>(j)].weight;
    std::vector<double> pred, label;
    for (int64_t i = valid_src->start(j); i < valid_src->start(j) + valid_src->corpus(j).num_samples(); ++i) {
      const double* at = t.data() + 3 * static_cast<size_t>(i);
      if (at[0] == 0) continue;  // beyond log.eval_batches
      pred.push_back(at[1]);
      label.push_back(at[2]);
    }
    const dataio::ClsMeta meta = valid_src->corpus(j).cls_meta();
    CorpusEval c{names[static_cast<size_t>(j)], w, x[1] > 0 ? x[0] / x[1] : 0.0, -1.0, static_cast<int64_t>(x[1]), {}};
    for (const NamedMetric& m : compute_cls_metrics(meta.task, meta.num_classes, pred, label)) {
      if (m.name == "accuracy") {
        c.accuracy = m.value;
        continue;
      }
      c.metrics.push_back(m);
      size_t k = 0;
      while (k < blend.size() && blend[k].name != m.name) ++k;
      if (k == blend.size()) blend.push_back({m.name, 0.0}), blend_weights.push_back(0.0);
      blend[k].value += w * m.value, blend_weights[k] += w;
    }
    r.tokens += c.tokens;
    if (c.tokens > 0) weights += w, loss += w * c.loss, accuracy += w * std::max(c.accuracy, 0.0);
    if (corpora > 1) r.corpora.push_back(c);
    if (j == 0 && corpora == 1) r.metrics = c.metrics, r.accuracy = c.accuracy;
  }
  r.loss = weights > 0 ? loss / weights : 0.0;
  if (corpora > 1) {
    r.accuracy = regression || weights == 0 ? -1.0 : accuracy / weights;
    for (size_t k = 0; k < blend.size(); ++k) r.metrics.push_back({blend[k].name, blend[k].value / blend_weights[k]});
  }
  return r;
}

}  // namespace cst::trainer
