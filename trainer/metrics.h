// What the user sees: one line per log interval on rank 0, and the same records in
// <dir>/metrics.jsonl and TensorBoard event files. Only rank 0 constructs a MetricsSink.
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "trainer/cls_metrics.h"

namespace cst::trainer {

class TensorBoardWriter;

struct TrainRecord {
  int64_t step = 0;  // optimizer steps done
  double loss = 0;   // mean loss per predicted token over the interval (all ranks)
  double lr = 0;
  double grad_norm = 0;     // before clipping, last step of the interval
  double tokens_per_s = 0;  // all ranks
  double mfu = 0;           // model FLOPs / (world size x per-device peak)
  double data_wait = 0;     // share of step time spent waiting for the loader
  double comm_wait = 0;     // share of step time blocked on communication
  double step_time_s = 0;   // mean over the interval
  double eta_s = 0;
};

// Validation of one corpus of a blend.
struct CorpusEval {
  std::string name;                  // dataio::corpus_names: "wiki" for data/wiki/validation
  double weight = 0;                 // normalised weight in data.valid
  double loss = 0;                   // mean loss per predicted token of this corpus
  double accuracy = -1;              // MLM: masked-token accuracy; classification: accuracy; -1 = not measured
  int64_t tokens = 0;                // predicted tokens evaluated (classification: labelled examples)
  std::vector<NamedMetric> metrics;  // classification: the task's metrics but accuracy (f1, mcc, pearson, spearman)
};

struct EvalRecord {
  int64_t step = 0;
  double loss = 0;                   // one corpus: mean loss per predicted token; a blend: sum of weight x loss
                                     // over its corpora (weights renormalised over those with tokens)
  double accuracy = -1;              // MLM: masked-token accuracy; classification: accuracy (a blend: weighted as
                                     // loss); -1 = not measured
  int64_t tokens = 0;                // predicted tokens evaluated (all corpora; classification: labelled examples)
  bool classification = false;       // model.task = cls: accuracy is valid/accuracy, not valid/mlm_accuracy
  std::vector<NamedMetric> metrics;  // classification: f1, mcc, pearson, spearman as the task has them
                                     // (a blend: weighted as loss over the corpora that have them)
  // A blend of >= 2 corpora: each one; else empty.
  std::vector<CorpusEval> corpora;
};

class MetricsSink {
 public:
  MetricsSink(const std::string& dir, bool tensorboard);
  ~MetricsSink();
  void train(const TrainRecord& r);
  void eval(const EvalRecord& r);
  void text(const std::string& line);  // a plain line to the console

 private:
  std::ofstream jsonl_;
  std::unique_ptr<TensorBoardWriter> tb_;
};

}  // namespace cst::trainer
