// cst-score end to end: the tool's log-probabilities equal the model's, for LM and MLM; bad
// inputs exit 2 with a message naming file, dataset, index and value; outputs never replace an
// input or a file cst-score did not write.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/h5.h"
#include "model/weights_io.h"
#include "tests/launcher/tool_util.h"
#include "tests/model/test_util.h"

namespace cst {
namespace {

namespace fs = std::filesystem;
using model::ModelConfig;
using model::Task;
using testing::expect_words;

class ScoreTool : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("cst_score_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string p(const std::string& n) { return (dir_ / n).string(); }

  // Runs cst-score; returns {exit code, stderr}.
  std::pair<int, std::string> run(const std::string& args) { return testing::run_tool(CST_SCORE_BIN, args, dir_); }

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
                         " --batch-size 2 --overwrite");
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

// No output may be an input or a file cst-score did not write; a failed run leaves nothing.
TEST_F(ScoreTool, OutputNeverReplacesAnInputOrAForeignFile) {
  ModelConfig cfg = model::testing::small_config(Task::kLm, 2.0, 4, 16);
  model::CstModel m(cfg);
  model::save_weights(*m, p("w.h5"));
  write_ids(p("ids.h5"), torch::randint(cfg.vocab_size, {3, 8}, torch::kLong), {});
  const std::string w_sum = testing::read_text(p("w.h5")), ids_sum = testing::read_text(p("ids.h5"));
  const std::string args = "--weights " + p("w.h5") + " --input " + p("ids.h5");
  fs::create_symlink(p("w.h5"), p("w-link.h5"));
  for (const auto& [out, ow] : std::vector<std::pair<std::string, std::string>>{
           {p("w.h5"), ""}, {p("w-link.h5"), " --overwrite"}, {p("ids.h5"), " --overwrite"}}) {
    auto [rc, err] = run(args + " --output " + out + ow);
    EXPECT_EQ(rc, 2) << err;
    expect_words(err, {"--output '" + out + "'", "refusing to write over an input"});
  }
  EXPECT_EQ(testing::read_text(p("w.h5")), w_sum);
  EXPECT_EQ(testing::read_text(p("ids.h5")), ids_sum);

  std::ofstream(p("precious.h5")) << "not ours\n";
  for (const char* ow : {"", " --overwrite"}) {
    auto [rc, err] = run(args + " --output " + p("precious.h5") + ow);
    EXPECT_EQ(rc, 2) << err;
    expect_words(err, {p("precious.h5"), *ow ? "not written by cst-score" : "exists: pass --overwrite"});
  }
  EXPECT_EQ(testing::read_text(p("precious.h5")), "not ours\n");

  // Its own earlier output: refused without --overwrite, replaced with it.
  ASSERT_EQ(run(args + " --output " + p("s.h5")).first, 0);
  EXPECT_EQ(run(args + " --output " + p("s.h5")).first, 2);
  EXPECT_EQ(run(args + " --output " + p("s.h5") + " --overwrite").first, 0);

  // A run that fails half-way (a bad id in the second batch) leaves no output and no temporary file.
  torch::Tensor bad = torch::randint(cfg.vocab_size, {4, 8}, torch::kLong);
  bad[3][2] = 99;
  write_ids(p("bad.h5"), bad, {});
  auto [rc, err] =
      run("--weights " + p("w.h5") + " --input " + p("bad.h5") + " --output " + p("new.h5") + " --batch-size 2");
  EXPECT_EQ(rc, 2) << err;
  expect_words(err, {"bad.h5", "[3, 2]", "token id 99"});
  EXPECT_FALSE(fs::exists(p("new.h5")));
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST_F(ScoreTool, BadOutputPathsExitTwoNamingThePath) {
  ModelConfig cfg = model::testing::small_config(Task::kLm, 2.0, 4, 16);
  model::CstModel m(cfg);
  model::save_weights(*m, p("w.h5"));
  write_ids(p("ids.h5"), torch::randint(cfg.vocab_size, {2, 8}, torch::kLong), {});
  const std::string args = "--weights " + p("w.h5") + " --input " + p("ids.h5") + " --output ";
  fs::create_directories(p("folder"));
  std::ofstream(p("afile")) << "x";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {p("nodir/s.h5"), "does not exist"},
      {p("folder"), "is a folder, a file is needed"},
      {p("afile/s.h5"), "does not exist"},
  };
  for (const auto& [out, why] : cases) {
    auto [rc, err] = run(args + out);
    EXPECT_EQ(rc, 2) << err;
    expect_words(err, {"--output '" + out + "'", why});
  }
  // Unwritable: a read-only folder (root may write anywhere, but not create files in /proc).
  std::string ro = "/proc/self/s.h5";
  if (::geteuid() != 0) {
    fs::create_directories(p("ro"));
    fs::permissions(p("ro"), fs::perms::owner_read | fs::perms::owner_exec);
    ro = p("ro/s.h5");
  }
  auto [rc, err] = run(args + ro);
  EXPECT_EQ(rc, 2) << err;
  expect_words(err, {fs::path(ro).parent_path().string(), "s.h5"});
}

// Sizes read from the weights file are checked before anything is allocated; one forward pass
// keeps its logits within --memory-budget-mb.
TEST_F(ScoreTool, HugeSizesAreRefusedBeforeAllocating) {
  ModelConfig cfg = model::testing::small_config(Task::kLm, 2.0, 4, 16);
  model::CstModel m(cfg);
  model::save_weights(*m, p("w.h5"));
  write_ids(p("ids.h5"), torch::randint(cfg.vocab_size, {2, 8}, torch::kLong), {});
  {
    h5::File f(p("w.h5"), h5::File::Mode::kReadWrite);
    f.set_attr("config.vocab_size", int64_t{1000000000000});
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto [rc, err] = run("--weights " + p("w.h5") + " --input " + p("ids.h5") + " --output " + p("s.h5"));
  EXPECT_EQ(rc, 2) << err;
  expect_words(err, {p("w.h5"), "config.*", "vocab_size = 1000000000000"});
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 30.0);

  cfg.vocab_size = 20000;  // one sequence of 16 tokens: 16 x 20000 x 4 B x 2 = 2.4 MiB
  model::CstModel big(cfg);
  model::save_weights(*big, p("big.h5"));
  write_ids(p("ids16.h5"), torch::randint(cfg.vocab_size, {5, 16}, torch::kLong), {});
  const std::string args = "--weights " + p("big.h5") + " --input " + p("ids16.h5") + " --no-logits --output ";
  std::tie(rc, err) = run(args + p("a.h5") + " --memory-budget-mb 1");
  EXPECT_EQ(rc, 2) << err;
  expect_words(err, {"ids16.h5", "--memory-budget-mb = 1", "16 tokens over vocab_size 20000"});
  std::tie(rc, err) = run(args + p("b.h5") + " --memory-budget-mb 5 --batch-size 4");
  ASSERT_EQ(rc, 0) << err;
  expect_words(err, {"2 sequences per forward pass"});
  std::tie(rc, err) = run(args + p("c.h5") + " --batch-size 4");
  ASSERT_EQ(rc, 0) << err;
  h5::File b(p("b.h5"), h5::File::Mode::kRead), c(p("c.h5"), h5::File::Mode::kRead);
  EXPECT_EQ(b.open("token_logprobs").read<float>(), c.open("token_logprobs").read<float>());
}

}  // namespace
}  // namespace cst
