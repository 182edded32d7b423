// Evaluation: one pass over each corpus of the validation split (or log.eval_batches batches of
// each) with the model in eval mode: loss and accuracy per corpus (classification: the task's
// metrics, cls_metrics.h), and the blend's as their weighted mean.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dataio/blend.h"
#include "dataio/loader.h"
#include "model/model.h"
#include "trainer/metrics.h"
#include "trainer/run_context.h"

namespace cst::trainer {

// What one corpus's validation sums: on each rank over its batches, then over all ranks.
struct EvalSums {
  double loss_sum = 0;  // summed token losses (classification: example losses)
  double tokens = 0;    // predicted tokens (classification: labelled examples)
  double correct = 0;   // MLM: correctly predicted masked tokens

  // Collective over ctx.comm (one all-reduce, named `what` to the watchdog): the element-wise
  // sum of every rank's `sums` (one per corpus); `also`, when given, is summed in the same
  // all-reduce, in place.
  static std::vector<EvalSums> all_reduce(const RunContext& ctx, const std::vector<EvalSums>& sums,
                                          const std::string& what, std::vector<double>* also = nullptr);
};

class Evaluator {
 public:
  // valid: the validation split; seq_len: N of the training split (every split has it under
  // sequence parallelism, TrainData checks); lo: this rank's loader options for evaluation.
  // ctx must outlive the evaluator.
  Evaluator(const RunContext& ctx, std::shared_ptr<dataio::BlendSource> valid, int64_t seq_len,
            dataio::LoaderOptions lo);

  // Collective over ctx.comm (and the model's sequence-parallel group): evaluates `model` (left
  // in train mode) at `step`; every rank returns the same record.
  EvalRecord evaluate(model::CstModelImpl& model, int64_t step) const;

 private:
  EvalRecord evaluate_tokens(model::CstModelImpl& model, int64_t step) const;  // lm, mlm (evaluation.cpp)
  // cls (cls_eval.cpp): loss and the task's metrics per corpus, over the predictions of all ranks.
  EvalRecord evaluate_cls(model::CstModelImpl& model, int64_t step) const;
  const RunContext& ctx_;
  std::shared_ptr<dataio::BlendSource> valid_;
  int64_t seq_len_;
  dataio::LoaderOptions lo_;
};

}  // namespace cst::trainer
