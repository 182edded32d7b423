// cst-score end to end: the tool's log-probabilities equal the model's, for LM and MLM, and bad
// inputs exit 2 with a message naming file, dataset, index and value.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/h5.h"
#include "model/weights_io.h"
#include "tests/model/test_util.h"

namespace cst {
namespace {

namespace fs = std::filesystem;
using model::ModelConfig;
using model::Task;

class ScoreTool : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("cst_score_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string p(const std::string& n) { return (dir_ / n).string(); }

  // Runs cst-score; returns {exit code, stderr}.
  std::pair<int, std::string> run(const std::string& args) {
    std::string cmd = std::string(CST_SCORE_BIN) + " " + args + " > " + p("out.txt") + " 2> " + p("err.txt");
    int rc = std::system(cmd.c_str());
    std::ifstream e(p("err.txt"));
    std::stringstream ss;
    ss << e.rdbuf();
    return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, ss.str()};
  }

  void write_ids(const std::string& path, const torch::Tensor& ids, const torch::Tensor& mask) {
    h5::File f(path, h5::File::Mode::kCreate);
    torch::Tensor i32 = ids.to(torch::kInt).contiguous();
    f.write<int32_t>("input_ids", i32.data_ptr<int32_t>(), ids.sizes().vec());
    if (mask.defined()) {
      torch::Tensor m8 = mask.to(torch::kByte).contiguous();
      f.write<uint8_t>("attention_mask", m8.data_ptr<uint8_t>(), mask.sizes().vec());
    }
  }

  fs::path dir_;
};

TEST_F(ScoreTool, LogProbsEqualTheModelForLmAndMlm) {
  for (Task task : {Task::kLm, Task::kMlm}) {
    ModelConfig cfg = model::testing::small_config(task, 2.0, 4, 16);
    cfg.init_std = 0.1;
    torch::manual_seed(3);
    model::CstModel m(cfg);
    m->eval();
    model::save_weights(*m, p("w.h5"));
    torch::Tensor ids = torch::randint(cfg.vocab_size, {5, 13}, torch::kLong);
    torch::Tensor mask = torch::ones({5, 13}, torch::kBool);
    mask[2].narrow(0, 9, 4).fill_(false);
    write_ids(p("ids.h5"), ids, mask);
    auto [rc, err] = run("--weights " + p("w.h5") + " --input " + p("ids.h5") + " --output " + p("s.h5") +
                         " --batch-size 2");
    ASSERT_EQ(rc, 0) << err;

    torch::NoGradGuard ng;
    torch::Tensor logp = torch::log_softmax(m->forward(ids, mask), -1);
    torch::Tensor want = task == Task::kLm
                             ? logp.narrow(1, 0, 12).gather(-1, ids.narrow(1, 1, 12).unsqueeze(-1)).squeeze(-1)
                             : logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1);
    torch::Tensor valid = task == Task::kLm ? mask.narrow(1, 0, 12).logical_and(mask.narrow(1, 1, 12)) : mask;
    want = want.masked_fill(valid.logical_not(), 0.0);
    h5::File out(p("s.h5"), h5::File::Mode::kRead);
    h5::Dataset tl = out.open("token_logprobs");
    ASSERT_EQ(tl.shape(), want.sizes().vec());
    torch::Tensor got = torch::empty(want.sizes(), torch::kFloat);
    tl.read<float>(got.data_ptr<float>());
    EXPECT_LT((got - want).abs().max().item<double>(), 1e-5);
    ASSERT_EQ(out.open("logits").shape(), (std::vector<int64_t>{5, 13, cfg.vocab_size}));
    std::vector<float> seq = out.open("sequence_logprob").read<float>();
    EXPECT_NEAR(seq[2], want[2].sum().item<double>(), 1e-4);
    EXPECT_EQ(out.open("num_scored").read<int64_t>()[2], valid[2].sum().item<int64_t>());
  }
}

TEST_F(ScoreTool, BadInputsExitTwoNamingFileDatasetIndexValue) {
  ModelConfig cfg = model::testing::small_config(Task::kLm, 2.0, 4, 16);
  model::CstModel m(cfg);
  model::save_weights(*m, p("w.h5"));
  torch::Tensor ids = torch::randint(cfg.vocab_size, {2, 6}, torch::kLong);
  ids[1][4] = cfg.vocab_size + 3;
  write_ids(p("bad.h5"), ids, {});
  auto [rc, err] = run("--weights " + p("w.h5") + " --input " + p("bad.h5") + " --output " + p("s.h5"));
  EXPECT_EQ(rc, 2);
  for (const std::string& n : std::vector<std::string>{p("bad.h5"), "input_ids", "[1, 4]", "token id 14"})
    EXPECT_NE(err.find(n), std::string::npos) << err;

  torch::Tensor long_ids = torch::zeros({1, 17}, torch::kLong);  // max_seq_len = 16
  write_ids(p("long.h5"), long_ids, {});
  std::tie(rc, err) = run("--weights " + p("w.h5") + " --input " + p("long.h5") + " --output " + p("s.h5"));
  EXPECT_EQ(rc, 2);
  EXPECT_NE(err.find("max_seq_len = 16"), std::string::npos) << err;

  std::tie(rc, err) = run("--weights " + p("missing.h5") + " --input " + p("bad.h5") + " --output " + p("s.h5"));
  EXPECT_EQ(rc, 2);
  EXPECT_NE(err.find("missing.h5"), std::string::npos) << err;

  std::tie(rc, err) = run("--weights " + p("w.h5") + " --bogus 1");
  EXPECT_EQ(rc, 2);
}

}  // namespace
}  // namespace cst
