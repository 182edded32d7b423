// cst-score on classification examples: per-example probabilities (regression: values) equal
// the model's, with their example_index; the task's metrics when labelled; the GLUE submission
// TSV ordered by example_index with label names; bad combinations exit 2.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/h5.h"
#include "dataio/source.h"
#include "model/weights_io.h"
#include "tests/dataio/test_util.h"
#include "tests/launcher/tool_util.h"
#include "tests/model/test_util.h"

namespace cst {
namespace {

namespace fs = std::filesystem;
using testing::expect_words;

class ScoreCls : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("cst_score_cls_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "split");
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string p(const std::string& n) { return (dir_ / n).string(); }
  std::pair<int, std::string> run(const std::string& args) { return testing::run_tool(CST_SCORE_BIN, args, dir_); }
  std::string out() { return testing::read_text(p("tool-stdout.txt")); }

  // A classifier of `classes` outputs over vocab 64, saved to w.h5.
  model::CstModel classifier(int64_t classes) {
    model::ModelConfig cfg = model::testing::small_config(model::Task::kCls, 2.0, 4, 16);
    cfg.vocab_size = 64, cfg.num_classes = classes, cfg.init_std = 0.3;
    torch::manual_seed(5);
    model::CstModel m(cfg);
    m->eval();
    model::save_weights(*m, p("w.h5"));
    return m;
  }

  fs::path dir_;
};

// Every example of the split in its order: ids, mask, label or target, example_index.
struct Examples {
  torch::Tensor ids, mask;
  std::vector<int64_t> labels, index;
  std::vector<float> targets;
};
Examples read_all(const std::string& split) {
  dataio::SourceOptions so;
  so.kind = dataio::SampleKind::kCls;
  dataio::Hdf5Source src(dataio::list_shards(split), so);
  const int64_t n = src.num_samples(), s = src.sample_len();
  Examples e{torch::zeros({n, s}, torch::kInt), torch::zeros({n, s}, torch::kByte), {}, {}, {}};
  std::vector<uint8_t> seg(static_cast<size_t>(s));
  for (int64_t i = 0; i < n; ++i) {
    int64_t label = 0, index = 0;
    float target = 0;
    src.read(i, {e.ids.data_ptr<int32_t>() + i * s, e.mask.data_ptr<uint8_t>() + i * s, seg.data(), nullptr, nullptr,
                 &label, &target, &index});
    e.labels.push_back(label), e.index.push_back(index), e.targets.push_back(target);
  }
  return e;
}

TEST_F(ScoreCls, ProbabilitiesMetricsAndGlueSubmission) {
  // example_index: the second shard holds the split's first rows.
  dataio::testing::write_cls_fixture(p("split/a.h5"), 10, 12, 64, 2, 1, "glue/mrpc", 7);
  dataio::testing::write_cls_fixture(p("split/b.h5"), 7, 12, 64, 2, 2, "glue/mrpc", 0);
  model::CstModel m = classifier(2);
  auto [code, err] = run("--weights " + p("w.h5") + " --input " + p("split") + " --output " + p("o.h5") +
                         " --glue-submission " + p("MRPC.tsv") + " --batch-size 4");
  ASSERT_EQ(code, 0) << err;
  const Examples e = read_all(p("split"));
  torch::Tensor want;
  {
    torch::NoGradGuard g;
    want = torch::softmax(m->forward(e.ids.to(torch::kLong), e.mask.to(torch::kBool)), -1);
  }
  h5::File f(p("o.h5"), h5::File::Mode::kRead);
  const std::vector<float> probs = f.open("probs").read<float>();
  const std::vector<int64_t> index = f.open("example_index").read<int64_t>();
  ASSERT_EQ(probs.size(), 34u);
  EXPECT_EQ(index, e.index);
  int64_t hits = 0;
  for (int64_t i = 0; i < 17; ++i) {
    for (int64_t c = 0; c < 2; ++c)
      EXPECT_NEAR(probs[static_cast<size_t>(2 * i + c)], want[i][c].item<float>(), 1e-5) << i;
    hits += want[i].argmax().item<int64_t>() == e.labels[static_cast<size_t>(i)];
  }
  char acc[32];
  std::snprintf(acc, sizeof(acc), "accuracy %.4f", static_cast<double>(hits) / 17.0);
  expect_words(out(), {"glue/mrpc: ", acc, " | f1 ", "(17 labelled examples)"});
  // The TSV: a header, then example_index 0..16 in order with the predicted label's name.
  std::istringstream tsv(testing::read_text(p("MRPC.tsv")));
  std::string line;
  std::getline(tsv, line);
  EXPECT_EQ(line, "index\tprediction");
  for (int64_t want_index = 0; want_index < 17; ++want_index) {
    ASSERT_TRUE(std::getline(tsv, line));
    const size_t row = static_cast<size_t>(std::find(e.index.begin(), e.index.end(), want_index) - e.index.begin());
    EXPECT_EQ(line, std::to_string(want_index) + "\tclass" +
                        std::to_string(want[static_cast<int64_t>(row)].argmax().item<int64_t>()));
  }
  EXPECT_FALSE(std::getline(tsv, line));
  // Again only with --overwrite; a file that is no submission TSV is never replaced.
  std::tie(code, err) = run("--weights " + p("w.h5") + " --input " + p("split") + " --output " + p("o2.h5") +
                            " --glue-submission " + p("MRPC.tsv"));
  EXPECT_EQ(code, 2);
  std::ofstream(p("notes.tsv")) << "my notes\n";
  std::tie(code, err) = run("--weights " + p("w.h5") + " --input " + p("split") + " --output " + p("o3.h5") +
                            " --glue-submission " + p("notes.tsv") + " --overwrite");
  EXPECT_EQ(code, 2);
  EXPECT_EQ(testing::read_text(p("notes.tsv")), "my notes\n");
}

TEST_F(ScoreCls, RegressionValues) {
  dataio::testing::write_cls_fixture(p("split/a.h5"), 9, 12, 64, 1, 3, "glue/stsb", 0);
  model::CstModel m = classifier(1);
  auto [code, err] = run("--weights " + p("w.h5") + " --input " + p("split/a.h5") + " --output " + p("o.h5") +
                         " --glue-submission " + p("STS-B.tsv"));
  ASSERT_EQ(code, 0) << err;
  const Examples e = read_all(p("split"));
  torch::Tensor want;
  {
    torch::NoGradGuard g;
    want = m->forward(e.ids.to(torch::kLong), e.mask.to(torch::kBool)).squeeze(-1);
  }
  h5::File f(p("o.h5"), h5::File::Mode::kRead);
  const std::vector<float> pred = f.open("prediction").read<float>();
  ASSERT_EQ(pred.size(), 9u);
  for (size_t i = 0; i < 9; ++i) EXPECT_NEAR(pred[i], want[static_cast<int64_t>(i)].item<float>(), 1e-5);
  expect_words(out(), {"glue/stsb: pearson ", " | spearman ", "(9 labelled examples)"});
  std::istringstream tsv(testing::read_text(p("STS-B.tsv")));
  std::string line;
  std::getline(tsv, line);
  std::getline(tsv, line);
  char first[48];
  std::snprintf(first, sizeof(first), "0\t%.3f", static_cast<double>(pred[0]));
  EXPECT_EQ(line, first);
}

TEST_F(ScoreCls, BadInputsExitTwo) {
  dataio::testing::write_cls_fixture(p("split/a.h5"), 6, 12, 64, 3, 1, "glue/mnli", 0);
  classifier(2);
  auto [code, err] = run("--weights " + p("w.h5") + " --input " + p("split") + " --output " + p("o.h5"));
  EXPECT_EQ(code, 2);
  expect_words(err, {"num_classes 3", "num_classes 2"});
  {
    h5::File ids(p("ids.h5"), h5::File::Mode::kCreate);
    const std::vector<int32_t> v(12, 5);
    ids.write<int32_t>("input_ids", v.data(), {1, 12});
  }
  std::tie(code, err) = run("--weights " + p("w.h5") + " --input " + p("ids.h5") + " --output " + p("o.h5") +
                            " --glue-submission " + p("X.tsv"));
  EXPECT_EQ(code, 2);
  expect_words(err, {"--glue-submission needs classification examples"});
}

}  // namespace
}  // namespace cst
