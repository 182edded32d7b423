// checkpoint.keep_best: the checkpoint of the best validation value of one metric, kept beside
// the newest checkpoint.keep ones (docs/CHECKPOINT.md, "Best checkpoint").
//
// The metric is named as metrics.jsonl names it: valid/<m> for the eval record's field m (loss,
// ppl, accuracy, f1, mcc, pearson, spearman) or valid/<corpus>/<m> for a corpus of a data.valid
// blend. Loss and ppl improve downwards, the others upwards (cls_metrics.h); a strictly better
// value improves (the first of equal values stays). <checkpoint dir>/best.json records it:
//   {"metric": "valid/accuracy", "value": 0.8125, "step": 40}
// written atomically by rank 0 once step_<step> is committed; a resume reads it back.
#pragma once

#include <cstdint>
#include <string>

#include "trainer/metrics.h"

namespace cst::trainer {

class BestCheckpoint {
 public:
  BestCheckpoint(std::string metric, std::string dir);
  // The metric's value in r; InputError naming the metric when r does not hold it (e.g. f1 of a
  // task judged by accuracy, or an unknown corpus).
  double value_of(const EvalRecord& r) const;
  bool improves(double value) const;  // false for NaN
  void set(int64_t step, double value);
  int64_t step() const { return step_; }  // -1: none yet
  double value() const { return value_; }
  const std::string& metric() const { return metric_; }
  void write() const;  // rank 0: <dir>/best.json
  // Resuming at `resumed_step`: reads <dir>/best.json when it exists, names the same metric, and
  // records a step <= resumed_step whose folder exists; otherwise there is no best yet.
  void restore(int64_t resumed_step);

 private:
  std::string metric_, dir_;
  bool higher_ = true;
  int64_t step_ = -1;
  double value_ = 0;
};

}  // namespace cst::trainer
