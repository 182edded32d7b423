// Validation of a classifier (model.task = cls): loss, and the metrics each corpus's task is
// judged by (cls_metrics.h) over the predictions of all ranks.
//
// Every example of a corpus is evaluated by exactly one rank; each rank writes (seen, prediction,
// label) at the example's position in the validation split's index space and one all-reduce sums
// them, so every rank holds every prediction in the split's order, whatever the world size.
#include <algorithm>

#include "model/autocast_scope.h"
#include "model/loss.h"
#include "trainer/batch_tensors.h"
#include "trainer/cls_metrics.h"
#include "trainer/evaluation.h"

namespace cst::trainer {

using torch::Tensor;

EvalRecord Evaluator::evaluate_cls(model::CstModelImpl& model, int64_t step) const {
  dataio::Loader vl(valid_, lo_);
  const int corpora = valid_->num_corpora();
  const bool regression = ctx_.task.regression;
  std::vector<double> buf(3 * static_cast<size_t>(valid_->num_samples()), 0.0);  // [seen, prediction, label]
  std::vector<EvalSums> sums(static_cast<size_t>(corpora));                      // per example; per corpus
  while (auto b = vl.next()) {
    if (b->rows == 0) continue;
    EvalSums& at_corpus = sums[static_cast<size_t>(b->corpus.front())];  // an evaluation batch holds one corpus
    const BatchTensors all = batch_tensors(*b, ctx_.task, seq_len_, ctx_.layout());
    for (int64_t r0 = 0; r0 < b->rows; r0 += ctx_.cfg.train.micro_batch) {
      const int64_t m = std::min(ctx_.cfg.train.micro_batch, b->rows - r0);
      const BatchTensors t = all.rows(r0, m, ctx_.device);
      Tensor logits;
      {
        model::Bf16Autocast ac(ctx_.bf16);
        logits = model.forward(t.inputs, t.mask).to(torch::kFloat);
      }
      const model::LossSum ls =
          regression ? model::regression_loss(logits.squeeze(-1), t.labels) : model::cls_loss(logits, t.labels);
      at_corpus.loss_sum += ls.sum.item<double>();
      at_corpus.tokens += static_cast<double>(ls.count);
      Tensor pred = (regression ? logits.squeeze(-1) : logits.argmax(-1)).to(torch::kCPU, torch::kDouble).contiguous();
      Tensor y = t.labels.to(torch::kCPU, torch::kDouble).contiguous();
      const double *p = pred.data_ptr<double>(), *l = y.data_ptr<double>();
      for (int64_t i = 0; i < m; ++i) {
        double* at = buf.data() + 3 * static_cast<size_t>(b->sample_index[static_cast<size_t>(r0 + i)]);
        at[0] = 1, at[1] = p[i], at[2] = l[i] == -100 ? -1.0 : l[i];
      }
    }
  }
  const std::vector<EvalSums> total =
      EvalSums::all_reduce(ctx_, sums, "all_reduce(validation predictions) at step " + std::to_string(step), &buf);
  EvalRecord r;
  r.step = step;
  r.classification = true;
  const std::vector<std::string> names = dataio::corpus_names(valid_->spec());
  double weights = 0, loss = 0, accuracy = 0;
  std::vector<NamedMetric> blend;  // sums of weight x value, then divided by the weights that have them
  std::vector<double> blend_weights;
  for (int j = 0; j < corpora; ++j) {
    const EvalSums& x = total[static_cast<size_t>(j)];
    const double w = valid_->spec().corpora[static_cast<size_t>(j)].weight;
    std::vector<double> pred, label;
    for (int64_t i = valid_->start(j); i < valid_->start(j) + valid_->corpus(j).num_samples(); ++i) {
      const double* at = buf.data() + 3 * static_cast<size_t>(i);
      if (at[0] == 0) continue;  // beyond log.eval_batches
      pred.push_back(at[1]);
      label.push_back(at[2]);
    }
    const dataio::ClsMeta meta = valid_->corpus(j).cls_meta();
    CorpusEval c{names[static_cast<size_t>(j)],  w, x.tokens > 0 ? x.loss_sum / x.tokens : 0.0, -1.0,
                 static_cast<int64_t>(x.tokens), {}};
    for (const NamedMetric& nm : compute_cls_metrics(meta.task, meta.num_classes, pred, label)) {
      if (nm.name == "accuracy") {
        c.accuracy = nm.value;
        continue;
      }
      c.metrics.push_back(nm);
      size_t k = 0;
      while (k < blend.size() && blend[k].name != nm.name) ++k;
      if (k == blend.size()) blend.push_back({nm.name, 0.0}), blend_weights.push_back(0.0);
      blend[k].value += w * nm.value, blend_weights[k] += w;
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
