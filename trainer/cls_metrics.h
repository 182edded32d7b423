// The metrics a classification or regression task is judged by (GLUE's choices, as in
// HuggingFace's run_glue): accuracy everywhere; F1 of class 1 for MRPC and QQP; Matthews
// correlation for CoLA; Pearson and Spearman correlation for regression (STS-B). Torch-free.
//
// Names are those of metrics.jsonl and TensorBoard (valid/<name>): accuracy, f1, mcc, pearson,
// spearman; loss and ppl are the trainer's own. Higher is better for all but loss and ppl.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cst::trainer {

struct NamedMetric {
  std::string name;  // accuracy | f1 | mcc | pearson | spearman
  double value = 0;
};

// The metrics of a shard's `task` attribute (its last '/'-separated part decides: cola -> mcc,
// mrpc and qqp -> f1, besides accuracy) with num_classes classes; num_classes = 1 (regression):
// pearson, spearman.
std::vector<std::string> task_metrics(const std::string& task, int64_t num_classes);

// true for metrics where larger is better (all above); false for loss and ppl. InputError for a
// name that is none of them.
bool higher_is_better(const std::string& metric);

// Share of equal entries. pred and label of one size >= 1.
double accuracy(const std::vector<int64_t>& pred, const std::vector<int64_t>& label);
// F1 of the positive class: 2 TP / (2 TP + FP + FN); 0 when there is no positive anywhere.
double f1_score(const std::vector<int64_t>& pred, const std::vector<int64_t>& label, int64_t positive = 1);
// Matthews correlation over the K x K confusion matrix (Gorodkin's R_K; the usual
// (TP TN - FP FN) / sqrt(...) for two classes); 0 when a denominator term is 0.
double matthews_corrcoef(const std::vector<int64_t>& pred, const std::vector<int64_t>& label, int64_t num_classes);
// Pearson correlation; 0 when either side is constant. Sizes >= 1 and equal.
double pearson(const std::vector<double>& x, const std::vector<double>& y);
// Spearman correlation: Pearson of the ranks, ties getting their average rank (as scipy).
double spearman(const std::vector<double>& x, const std::vector<double>& y);

// The task's metrics over the labelled examples (classes: label >= 0; regression: label not NaN)
// of pred / label (class ids as doubles, or regression values). Empty when none is labelled.
std::vector<NamedMetric> compute_cls_metrics(const std::string& task, int64_t num_classes,
                                             const std::vector<double>& pred, const std::vector<double>& label);

}  // namespace cst::trainer
