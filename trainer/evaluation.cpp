// Validation of lm and mlm: loss and accuracy per corpus, and the blend's loss as their
// weighted mean.
#include "trainer/evaluation.h"

#include <algorithm>

#include "model/autocast_scope.h"
#include "model/loss.h"
#include "trainer/batch_tensors.h"

namespace cst::trainer {

using torch::Tensor;

std::vector<EvalSums> EvalSums::all_reduce(const RunContext& ctx, const std::vector<EvalSums>& sums,
                                           const std::string& what, std::vector<double>* also) {
  std::vector<double> flat = also ? *also : std::vector<double>{};
  const size_t at = flat.size();
  for (const EvalSums& s : sums) flat.insert(flat.end(), {s.loss_sum, s.tokens, s.correct});
  const std::vector<double> t = ctx.collective(what, [&] { return ctx.comm.all_reduce_doubles(flat); });
  if (also) std::copy(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(at), also->begin());
  std::vector<EvalSums> out(sums.size());
  for (size_t j = 0; j < out.size(); ++j) out[j] = {t[at + 3 * j], t[at + 3 * j + 1], t[at + 3 * j + 2]};
  return out;
}

Evaluator::Evaluator(const RunContext& ctx, std::shared_ptr<dataio::BlendSource> valid, int64_t seq_len,
                     dataio::LoaderOptions lo)
    : ctx_(ctx), valid_(std::move(valid)), seq_len_(seq_len), lo_(lo) {}

EvalRecord Evaluator::evaluate(model::CstModelImpl& model, int64_t step) const {
  torch::NoGradGuard no_grad;
  model.eval();
  EvalRecord r = ctx_.task.cls ? evaluate_cls(model, step) : evaluate_tokens(model, step);
  model.train();
  return r;
}

EvalRecord Evaluator::evaluate_tokens(model::CstModelImpl& model, int64_t step) const {
  dataio::Loader vl(valid_, lo_);
  const int corpora = valid_->num_corpora();
  const bool mlm = ctx_.task.mlm;
  std::vector<EvalSums> sums(static_cast<size_t>(corpora));
  while (auto b = vl.next()) {
    if (b->rows == 0) continue;
    EvalSums& at = sums[static_cast<size_t>(b->corpus.front())];  // an evaluation batch holds one corpus
    const BatchTensors all = batch_tensors(*b, ctx_.task, seq_len_, ctx_.layout());
    for (int64_t r0 = 0; r0 < b->rows; r0 += ctx_.cfg.train.micro_batch) {
      const BatchTensors t = all.rows(r0, std::min(ctx_.cfg.train.micro_batch, b->rows - r0), ctx_.device);
      model::Bf16Autocast ac(ctx_.bf16);
      Tensor correct;
      model::LossSum ls = model.loss(t.inputs, t.mask, t.labels, &correct);
      at.loss_sum += ls.sum.item<double>();
      at.tokens += static_cast<double>(ls.count);
      at.correct += correct.item<double>();
    }
  }
  const std::vector<EvalSums> total =
      EvalSums::all_reduce(ctx_, sums, "all_reduce(validation sums) at step " + std::to_string(step));
  // The blend's loss: the corpora's losses weighted by data.valid's normalised weights (over the
  // corpora that predicted any token); one corpus: its loss.
  EvalRecord r;
  r.step = step;
  const std::vector<std::string> names = dataio::corpus_names(valid_->spec());
  double weights = 0, loss = 0, accuracy = 0;
  for (int j = 0; j < corpora; ++j) {
    const EvalSums& x = total[static_cast<size_t>(j)];
    const double w = valid_->spec().corpora[static_cast<size_t>(j)].weight;
    CorpusEval c{names[static_cast<size_t>(j)],
                 w,
                 x.tokens > 0 ? x.loss_sum / x.tokens : 0.0,
                 mlm ? x.correct / std::max(1.0, x.tokens) : -1.0,
                 static_cast<int64_t>(x.tokens),
                 {}};
    r.tokens += c.tokens;
    if (c.tokens > 0) weights += w, loss += w * c.loss, accuracy += w * c.accuracy;
    if (corpora > 1) r.corpora.push_back(std::move(c));
  }
  r.loss = weights > 0 ? loss / weights : 0.0;
  r.accuracy = mlm ? (weights > 0 ? accuracy / weights : 0.0) : -1.0;
  return r;
}

}  // namespace cst::trainer
