// cst-train on a blend of two corpora (docs/DATA.md, Blends): exact resume across the blend, on
// the same and another world size; a changed blend refused on resume unless
// --data.reset_position; validation per corpus and for the blend (metrics.jsonl, console,
// TensorBoard); blend errors exit 2.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/json.h"
#include "tests/dataio/test_util.h"
#include "tests/trainer/job_util.h"

namespace cst {
namespace {

namespace fs = std::filesystem;
using testing::JobResult;
using testing::Params;

class BlendJob : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (dir_) return;
    dir_ = std::make_unique<dataio::testing::TempDir>();
    // Train corpora of 151 and 60 windows of 33 tokens; validation corpora of 21 and 12 windows.
    const std::vector<std::tuple<const char*, int64_t, uint64_t>> corpora{
        {"wiki", 5000, 1}, {"books", 2000, 2}, {"vwiki", 700, 3}, {"vbooks", 400, 4}};
    for (const auto& [name, tokens, seed] : corpora) {
      fs::create_directories(dir_->file(name));
      dataio::testing::write_lm(dir_->file(std::string(name) + "/shard0.h5"),
                                dataio::testing::random_tokens(tokens, 64, seed, 5), 64, 500);
    }
    // Another tokenizer's corpus.
    fs::create_directories(dir_->file("other"));
    dataio::ShardMeta m = dataio::testing::test_meta(64);
    m.tokenizer_sha256 = "0ther";
    dataio::write_lm_shard(dir_->file("other/shard0.h5"), m, dataio::testing::random_tokens(2000, 64, 9, 5), {0, 2000});
  }

  static std::string blend(const std::string& wa, const std::string& a, const std::string& wb, const std::string& b) {
    return "'" + wa + " " + dir_->file(a) + " " + wb + " " + dir_->file(b) + "'";
  }
  // A tiny LM, G = 8, micro 2, on `train` (default: the blend 0.7 wiki + 0.3 books).
  static std::string args(const std::string& train = "", int steps = 8, int eval_interval = 0,
                          bool tensorboard = false) {
    return " --model.task lm --model.vocab_size 64 --model.d_model 16 --model.n_heads 2 --model.n_layers 2"
           " --model.d_ff 32 --model.max_seq_len 32 --model.slice_len 8 --model.alpha 2 --model.dropout 0"
           " --optim.eps 1e-6 --optim.warmup_steps 2 --optim.lr 1e-2 --log.peak_tflops 1 --log.interval 1"
           " --dist.threads 1 --train.global_batch 8 --train.micro_batch 2 --data.seq_len 32"
           " --log.eval_interval " +
           std::to_string(eval_interval) + " --log.tensorboard " + (tensorboard ? "true" : "false") +
           " --train.steps " + std::to_string(steps) + " --data.train " +
           (train.empty() ? blend("0.7", "wiki", "0.3", "books") : train);
  }
  static std::string logdir(const std::string& name) { return dir_->file(name); }
  static JobResult run(int np, const std::string& a, const std::string& name) {
    return testing::run_job(np, a + " --log.dir " + logdir(name), logdir(name));
  }
  static Params train(int np, const std::string& a, const std::string& name) {
    return testing::train_job(np, a, logdir(name));
  }
  static Json loader_state(const std::string& step_dir) {
    return parse_json(testing::read_file(step_dir + "/manifest.json"), step_dir).at("loader");
  }
  // The JSON lines of metrics.jsonl of one kind.
  static std::vector<Json> records(const std::string& name, const std::string& kind) {
    std::vector<Json> out;
    std::ifstream f(logdir(name) + "/metrics.jsonl");
    for (std::string line; std::getline(f, line);) {
      Json j = parse_json(line, "metrics.jsonl");
      if (j.at("kind") == kind) out.push_back(std::move(j));
    }
    return out;
  }

  static std::unique_ptr<dataio::testing::TempDir> dir_;
};

std::unique_ptr<dataio::testing::TempDir> BlendJob::dir_;

TEST_F(BlendJob, ResumeAcrossABlendIsExactAndAChangedBlendIsRefused) {
  const Params straight = train(2, args() + " --checkpoint.interval 4", "straight");
  ASSERT_FALSE(straight.empty());
  const std::string step4 = logdir("straight") + "/checkpoints/step_4";
  const Json state = loader_state(step4);
  ASSERT_EQ(state.at("corpora").size(), 2u) << state.dump();
  EXPECT_EQ(state.at("consumed_samples"), 32);
  EXPECT_EQ(state.at("corpora")[0].at("consumed_samples").get<int64_t>() +
                state.at("corpora")[1].at("consumed_samples").get<int64_t>(),
            32);
  EXPECT_EQ(state.at("corpora")[1].at("samples"), 60);

  // Same world size: bitwise; another: within summation-order noise.
  const Params same = train(2, args() + " --resume " + step4, "resume2");
  EXPECT_TRUE(testing::bitwise_equal(straight, same)) << testing::max_diff(straight, same);
  const Params one = train(1, args() + " --resume " + step4, "resume1");
  ASSERT_FALSE(one.empty());
  EXPECT_LT(testing::max_diff(straight, one), 1e-5);

  // Other weights: refused, naming both blends and the way out.
  JobResult r = run(2, args(blend("0.5", "wiki", "0.5", "books")) + " --resume " + step4, "changed");
  EXPECT_EQ(r.code, 2) << r.err << r.out;
  for (const std::string& word : std::vector<std::string>{"cannot continue data.train", "'0.7 " + dir_->file("wiki"),
                                                          "'0.5 " + dir_->file("wiki"), "--data.reset_position"})
    EXPECT_NE(r.err.find(word), std::string::npos) << word << " not in: " << r.err;
  // One corpus instead of the blend: refused too.
  r = run(1, args(dir_->file("wiki")) + " --resume " + step4, "changed1");
  EXPECT_EQ(r.code, 2) << r.err << r.out;
  EXPECT_NE(r.err.find("now is a single corpus"), std::string::npos) << r.err;

  // With --data.reset_position: model, optimizer and step restored, data from position 0.
  r = run(2, args(blend("0.5", "wiki", "0.5", "books")) + " --resume " + step4 + " --data.reset_position true",
          "reset");
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("data position reset to 0"), std::string::npos) << r.out;
  const Json after = loader_state(logdir("reset") + "/checkpoints/step_8");
  EXPECT_EQ(after.at("consumed_samples"), 32);  // 4 steps of 8 since the reset
  EXPECT_EQ(after.at("corpora")[0].at("weight"), 0.5);
}

TEST_F(BlendJob, ValidationReportsEachCorpusAndTheWeightedBlend) {
  const std::string name = "valid";
  JobResult r = run(2, args("", 4, 2, true) + " --data.valid " + blend("0.25", "vwiki", "0.75", "vbooks"), name);
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  const std::vector<Json> evals = records(name, "eval");
  ASSERT_EQ(evals.size(), 2u);
  for (const Json& e : evals) {
    const Json& c = e.at("corpora");
    const double wiki = c.at("vwiki").at("loss"), books = c.at("vbooks").at("loss");
    EXPECT_NEAR(e.at("loss").get<double>(), 0.25 * wiki + 0.75 * books, 1e-6) << e.dump();
    EXPECT_NE(wiki, books);
    // Each corpus evaluated once, every window: 21 and 12 windows of 32 predicted tokens.
    EXPECT_EQ(c.at("vwiki").at("tokens"), 21 * 32);
    EXPECT_EQ(c.at("vbooks").at("tokens"), 12 * 32);
    EXPECT_EQ(e.at("tokens"), 33 * 32);
    EXPECT_EQ(c.at("vbooks").at("weight"), 0.75);
  }
  EXPECT_NE(r.out.find("| vwiki loss "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| vbooks loss "), std::string::npos) << r.out;
#ifdef CST_PYTHON
  const std::string cmd = std::string(CST_PYTHON) + " " + CST_SOURCE_DIR + "/tests/python/check_tensorboard.py " +
                          logdir(name) + " valid/loss=2 valid/vwiki/loss=2 valid/vbooks/perplexity=2";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
#else
  std::printf("SKIPPED: TensorBoard reader check (no python next to the LibTorch found)\n");
#endif
}

TEST_F(BlendJob, BlendErrorsExitTwoNamingKeyAndShards) {
  JobResult r = run(1, args("'0.7 " + dir_->file("wiki") + " 0.3'"), "bad_spec");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("data.train"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("weight '0.3' (token 3) has no path"), std::string::npos) << r.err;
  r = run(1, args() + " --data.valid '0 " + dir_->file("vwiki") + " 1 " + dir_->file("vbooks") + "'", "bad_weight");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("data.valid: weight '0' (token 1)"), std::string::npos) << r.err;
  r = run(1, args(blend("0.5", "wiki", "0.5", "other")), "bad_tokenizer");
  EXPECT_EQ(r.code, 2) << r.err;
  for (const std::string& word : std::vector<std::string>{
           "agree on the tokenizer", dir_->file("other/shard0.h5") + "' has tokenizer_sha256 0ther",
           dir_->file("wiki/shard0.h5") + "' has tokenizer_sha256 abc123"})
    EXPECT_NE(r.err.find(word), std::string::npos) << word << " not in: " << r.err;
}

}  // namespace
}  // namespace cst
