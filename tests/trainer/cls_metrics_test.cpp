// Classification metrics: hand-computed cases, the task -> metrics table, and (with the venv's
// python) agreement with scipy's pearsonr / spearmanr and with F1 and MCC computed by another
// formula (counts; covariance of one-hot matrices) on random predictions.
#include "trainer/cls_metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "common/error.h"

namespace cst::trainer {
namespace {

TEST(ClsMetrics, HandComputedValues) {
  const std::vector<int64_t> pred{1, 1, 0, 0, 1}, label{1, 0, 0, 1, 1};  // TP 2, FP 1, FN 1, TN 1
  EXPECT_DOUBLE_EQ(accuracy(pred, label), 0.6);
  EXPECT_DOUBLE_EQ(f1_score(pred, label), 4.0 / 6.0);
  EXPECT_NEAR(matthews_corrcoef(pred, label, 2), 1.0 / 6.0, 1e-12);
  EXPECT_DOUBLE_EQ(f1_score({0, 0}, {0, 0}), 0.0) << "no positive anywhere";
  EXPECT_DOUBLE_EQ(matthews_corrcoef({1, 1, 1}, {0, 1, 1}, 2), 0.0) << "constant prediction";
  EXPECT_NEAR(matthews_corrcoef({0, 1, 2, 0}, {0, 1, 2, 0}, 3), 1.0, 1e-12);
  EXPECT_NEAR(pearson({1, 2, 3, 4}, {2, 4, 6, 8}), 1.0, 1e-12);
  EXPECT_NEAR(pearson({1, 2, 3, 4}, {1, 3, 2, 4}), 0.8, 1e-12);
  EXPECT_NEAR(spearman({1, 2, 2, 3}, {1, 3, 2, 4}), 4.5 / std::sqrt(22.5), 1e-12) << "ties share their mean rank";
  EXPECT_NEAR(spearman({1, 2, 3, 4}, {10, 200, 3000, 40000}), 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(pearson({1, 1, 1}, {1, 2, 3}), 0.0);
}

TEST(ClsMetrics, TaskTable) {
  EXPECT_EQ(task_metrics("glue/cola", 2), (std::vector<std::string>{"accuracy", "mcc"}));
  EXPECT_EQ(task_metrics("glue/mrpc", 2), (std::vector<std::string>{"accuracy", "f1"}));
  EXPECT_EQ(task_metrics("glue/qqp", 2), (std::vector<std::string>{"accuracy", "f1"}));
  EXPECT_EQ(task_metrics("glue/stsb", 1), (std::vector<std::string>{"pearson", "spearman"}));
  EXPECT_EQ(task_metrics("glue/mnli", 3), (std::vector<std::string>{"accuracy"}));
  EXPECT_EQ(task_metrics("lra/listops", 10), (std::vector<std::string>{"accuracy"}));
  EXPECT_TRUE(higher_is_better("mcc"));
  EXPECT_FALSE(higher_is_better("loss"));
  EXPECT_THROW(higher_is_better("bleu"), InputError);
  // Unlabelled examples (-1, NaN) are left out.
  auto m = compute_cls_metrics("glue/mrpc", 2, {1, 1, 0, 0, 1, 1}, {1, 0, 0, 1, 1, -1});
  ASSERT_EQ(m.size(), 2u);
  EXPECT_DOUBLE_EQ(m[0].value, 0.6);
  EXPECT_DOUBLE_EQ(m[1].value, 4.0 / 6.0);
  auto r = compute_cls_metrics("glue/stsb", 1, {1, 2, 3, 9}, {1, 3, 2, std::nan("")});
  ASSERT_EQ(r.size(), 2u);
  EXPECT_NEAR(r[0].value, pearson({1, 2, 3}, {1, 3, 2}), 1e-12);
  EXPECT_TRUE(compute_cls_metrics("glue/sst2", 2, {1, 0}, {-1, -1}).empty()) << "a test split";
}

#ifdef CST_PYTHON
TEST(ClsMetrics, AgreeWithScipyAndOtherFormulas) {
  std::mt19937 gen(7);
  std::uniform_int_distribution<int> cls(0, 2);
  std::normal_distribution<double> noise(0.0, 1.0);
  const int n = 500;
  std::vector<int64_t> p2, l2, p3, l3;
  std::vector<double> x, y;
  for (int i = 0; i < n; ++i) {
    l2.push_back(cls(gen) % 2), p2.push_back(noise(gen) > 0.6 ? 1 - l2.back() : l2.back());
    l3.push_back(cls(gen)), p3.push_back(noise(gen) > 0.4 ? cls(gen) : l3.back());
    x.push_back(std::round(noise(gen) * 10) / 10);  // ties
    y.push_back(std::round((x.back() + noise(gen)) * 10) / 10);
  }
  const std::string in = ::testing::TempDir() + "cls_metrics_in.txt", out = ::testing::TempDir() + "cls_metrics.txt";
  {
    std::ofstream f(in);
    f.precision(17);
    for (int i = 0; i < n; ++i)
      f << p2[i] << " " << l2[i] << " " << p3[i] << " " << l3[i] << " " << x[i] << " " << y[i] << "\n";
  }
  const std::string script = R"PY(
import sys, numpy as np
from scipy.stats import pearsonr, spearmanr
d = np.loadtxt(sys.argv[1]); p2, l2, p3, l3, x, y = d.T
tp = np.sum((p2 == 1) & (l2 == 1)); fp = np.sum((p2 == 1) & (l2 == 0)); fn = np.sum((p2 == 0) & (l2 == 1))
def mcc(p, l, k):
    P = np.eye(k)[p.astype(int)]; L = np.eye(k)[l.astype(int)]
    c = lambda A, B: np.sum(np.mean(A * B, 0) - np.mean(A, 0) * np.mean(B, 0))
    return c(P, L) / np.sqrt(c(P, P) * c(L, L))
vals = [np.mean(p2 == l2), 2 * tp / (2 * tp + fp + fn), mcc(p2, l2, 2), mcc(p3, l3, 3), np.mean(p3 == l3),
        pearsonr(x, y)[0], spearmanr(x, y)[0]]
open(sys.argv[2], "w").write(" ".join(repr(float(v)) for v in vals))
)PY";
  const std::string py = ::testing::TempDir() + "cls_metrics_oracle.py";
  std::ofstream(py) << script;
  const std::string cmd = std::string(CST_PYTHON) + " " + py + " " + in + " " + out;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream f(out);
  std::vector<double> want(7);
  for (double& v : want) f >> v;
  ASSERT_TRUE(f) << "oracle output";
  EXPECT_NEAR(accuracy(p2, l2), want[0], 1e-12);
  EXPECT_NEAR(f1_score(p2, l2), want[1], 1e-12);
  EXPECT_NEAR(matthews_corrcoef(p2, l2, 2), want[2], 1e-12);
  EXPECT_NEAR(matthews_corrcoef(p3, l3, 3), want[3], 1e-12);
  EXPECT_NEAR(accuracy(p3, l3), want[4], 1e-12);
  EXPECT_NEAR(pearson(x, y), want[5], 1e-12);
  EXPECT_NEAR(spearman(x, y), want[6], 1e-12);
}
#else
TEST(ClsMetrics, AgreeWithScipyAndOtherFormulas) { GTEST_SKIP() << "no python next to the LibTorch found"; }
#endif

}  // namespace
}  // namespace cst::trainer
