#include "trainer/cls_metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/error.h"

namespace cst::trainer {

std::vector<std::string> task_metrics(const std::string& task, int64_t num_classes) {
  if (num_classes == 1) return {"pearson", "spearman"};
  const std::string name = task.substr(task.find_last_of('/') + 1);
  if (name == "cola") return {"accuracy", "mcc"};
  if (name == "mrpc" || name == "qqp") return {"accuracy", "f1"};
  return {"accuracy"};
}

bool higher_is_better(const std::string& metric) {
  if (metric == "loss" || metric == "ppl") return false;
  CST_INPUT_CHECK(
      metric == "accuracy" || metric == "f1" || metric == "mcc" || metric == "pearson" || metric == "spearman",
      "unknown metric '" << metric << "' (loss, ppl, accuracy, f1, mcc, pearson, spearman)");
  return true;
}

double accuracy(const std::vector<int64_t>& pred, const std::vector<int64_t>& label) {
  CST_CHECK(!pred.empty() && pred.size() == label.size(), "accuracy of " << pred.size() << " and " << label.size());
  int64_t hits = 0;
  for (size_t i = 0; i < pred.size(); ++i) hits += pred[i] == label[i];
  return static_cast<double>(hits) / static_cast<double>(pred.size());
}

double f1_score(const std::vector<int64_t>& pred, const std::vector<int64_t>& label, int64_t positive) {
  CST_CHECK(pred.size() == label.size(), "f1 of " << pred.size() << " and " << label.size());
  double tp = 0, fp = 0, fn = 0;
  for (size_t i = 0; i < pred.size(); ++i) {
    const bool p = pred[i] == positive, l = label[i] == positive;
    tp += p && l, fp += p && !l, fn += !p && l;
  }
  return tp > 0 ? 2 * tp / (2 * tp + fp + fn) : 0.0;
}

double matthews_corrcoef(const std::vector<int64_t>& pred, const std::vector<int64_t>& label, int64_t num_classes) {
  CST_CHECK(pred.size() == label.size() && num_classes >= 2, "mcc of " << pred.size() << " and " << label.size());
  const size_t k = static_cast<size_t>(num_classes);
  std::vector<double> t(k, 0), p(k, 0);  // true and predicted counts per class
  double correct = 0, n = static_cast<double>(pred.size());
  for (size_t i = 0; i < pred.size(); ++i) {
    CST_CHECK(pred[i] >= 0 && pred[i] < num_classes && label[i] >= 0 && label[i] < num_classes,
              "mcc: class outside [0, " << num_classes << ")");
    t[static_cast<size_t>(label[i])] += 1, p[static_cast<size_t>(pred[i])] += 1;
    correct += pred[i] == label[i];
  }
  double tp = 0, pp = 0, tt = 0;
  for (size_t c = 0; c < k; ++c) tp += t[c] * p[c], pp += p[c] * p[c], tt += t[c] * t[c];
  const double den = std::sqrt(n * n - pp) * std::sqrt(n * n - tt);
  return den > 0 ? (correct * n - tp) / den : 0.0;
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  CST_CHECK(!x.empty() && x.size() == y.size(), "pearson of " << x.size() << " and " << y.size());
  const double n = static_cast<double>(x.size());
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n, my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double a = x[i] - mx, b = y[i] - my;
    sxy += a * b, sxx += a * a, syy += b * b;
  }
  return sxx > 0 && syy > 0 ? sxy / std::sqrt(sxx * syy) : 0.0;
}

namespace {
// 1-based ranks, ties sharing their average rank.
std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<size_t> order(v.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
    const double avg = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
    for (size_t q = i; q <= j; ++q) r[order[q]] = avg;
    i = j + 1;
  }
  return r;
}
}  // namespace

double spearman(const std::vector<double>& x, const std::vector<double>& y) { return pearson(ranks(x), ranks(y)); }

std::vector<NamedMetric> compute_cls_metrics(const std::string& task, int64_t num_classes,
                                             const std::vector<double>& pred, const std::vector<double>& label) {
  CST_CHECK(pred.size() == label.size(),
            "metrics of " << pred.size() << " predictions and " << label.size() << " labels");
  std::vector<NamedMetric> out;
  if (num_classes == 1) {
    std::vector<double> x, y;
    for (size_t i = 0; i < pred.size(); ++i)
      if (!std::isnan(label[i])) x.push_back(pred[i]), y.push_back(label[i]);
    if (x.empty()) return out;
    return {{"pearson", pearson(x, y)}, {"spearman", spearman(x, y)}};
  }
  std::vector<int64_t> p, l;
  for (size_t i = 0; i < pred.size(); ++i)
    if (label[i] >= 0) p.push_back(std::llround(pred[i])), l.push_back(std::llround(label[i]));
  if (p.empty()) return out;
  for (const std::string& m : task_metrics(task, num_classes)) {
    const double v = m == "accuracy" ? accuracy(p, l)
                     : m == "f1"     ? f1_score(p, l)
                                     : matthews_corrcoef(p, l, num_classes);
    out.push_back({m, v});
  }
  return out;
}

}  // namespace cst::trainer
