// cst-train on classification shards (model.task = cls) under mpirun: W = 2 and 4 equal one rank
// (classes and regression), exact resume, sequence parallelism refused, the task's metrics in
// metrics.jsonl and TensorBoard, init.weights from an MLM run, and checkpoint.keep_best.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/json.h"
#include "tests/dataio/test_util.h"
#include "tests/trainer/job_util.h"

namespace cst {
namespace {

namespace fs = std::filesystem;
using cst::testing::JobResult;
using cst::testing::Params;

class ClsJob : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new dataio::testing::TempDir();
    for (const char* d :
         {"c3/train", "c3/valid", "mrpc/train", "mrpc/valid", "cola/valid", "reg/train", "reg/valid", "mlm"})
      fs::create_directories(dir_->file(d));
    using dataio::testing::write_cls_fixture;
    write_cls_fixture(dir_->file("c3/train/a.h5"), 40, 16, 64, 3, 1, "jsonl", 0, true);
    write_cls_fixture(dir_->file("c3/train/b.h5"), 24, 16, 64, 3, 2, "jsonl", 40);
    write_cls_fixture(dir_->file("c3/valid/a.h5"), 21, 16, 64, 3, 3);
    write_cls_fixture(dir_->file("mrpc/train/a.h5"), 48, 16, 64, 2, 4, "glue/mrpc");
    write_cls_fixture(dir_->file("mrpc/valid/a.h5"), 19, 16, 64, 2, 5, "glue/mrpc");
    write_cls_fixture(dir_->file("cola/valid/a.h5"), 19, 16, 64, 2, 6, "glue/cola");
    write_cls_fixture(dir_->file("reg/train/a.h5"), 48, 16, 64, 1, 7, "glue/stsb");
    write_cls_fixture(dir_->file("reg/valid/a.h5"), 17, 16, 64, 1, 8, "glue/stsb");
    dataio::testing::write_mlm_fixture(dir_->file("mlm/a.h5"), 64, 16, 64, 3);
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::string model_args() {
    return " --model.vocab_size 64 --model.d_model 16 --model.n_heads 2 --model.n_layers 2 --model.d_ff 32"
           " --model.max_seq_len 32 --model.slice_len 8 --model.alpha 2";
  }
  // A classifier of `classes` on `data` (c3, mrpc, reg); dropout 0 so that runs that differ only
  // in summation order agree.
  // valid: the validation split ("" = <data>/valid).
  static std::string cls_args(const std::string& data, int classes, int steps = 5, const std::string& lr = "1e-2",
                              const std::string& valid = "") {
    return " --model.task cls --model.num_classes " + std::to_string(classes) +
           " --model.dropout 0 --data.seq_len 0 --data.train " + dir_->file(data + "/train") + " --data.valid " +
           dir_->file(valid.empty() ? data + "/valid" : valid) + " --optim.lr " + lr +
           " --optim.eps 1e-6 --optim.warmup_steps 2 --log.peak_tflops 1 --log.interval 1"
           " --dist.threads 1 --train.global_batch 8 --train.micro_batch 2 --train.steps " +
           std::to_string(steps);
  }
  static JobResult run(int np, const std::string& args) {
    return cst::testing::run_job(np, args, dir_->file("job" + std::to_string(counter_++)));
  }
  static Params train(int np, const std::string& args) {
    return cst::testing::train_job(np, args, dir_->file("run" + std::to_string(counter_++)));
  }
  // The eval records of <logdir>/metrics.jsonl.
  static std::vector<Json> evals(const std::string& logdir) {
    std::vector<Json> out;
    std::ifstream in(logdir + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      Json j = parse_json(line, "metrics.jsonl");
      if (j["kind"] == "eval") out.push_back(j);
    }
    return out;
  }

  static dataio::testing::TempDir* dir_;
  static int counter_;
};

dataio::testing::TempDir* ClsJob::dir_ = nullptr;
int ClsJob::counter_ = 0;

TEST_F(ClsJob, WorldSizesTwoAndFourEqualOne) {
  for (auto [data, classes] : {std::pair{"c3", 3}, std::pair{"reg", 1}}) {
    const std::string a = model_args() + cls_args(data, classes);
    const Params one = train(1, a), two = train(2, a), four = train(4, a);
    ASSERT_FALSE(one.empty()) << data;
    EXPECT_LT(cst::testing::max_diff(one, two), 1e-5) << data;
    EXPECT_LT(cst::testing::max_diff(one, four), 1e-5) << data;
    const Params still = train(1, model_args() + cls_args(data, classes, 1, "1e-9"));
    EXPECT_GT(cst::testing::max_diff(one, still), 1e-3) << data << ": training did not move the parameters";
  }
}

TEST_F(ClsJob, ResumeContinuesExactly) {
  const std::string logdir = dir_->file("resume");
  const std::string a = model_args() + cls_args("c3", 3, 6);
  JobResult r = run(2, a + " --checkpoint.interval 3 --checkpoint.keep 0 --log.dir " + logdir);
  ASSERT_EQ(r.code, 0) << r.err;
  const Params straight = cst::testing::load_params(logdir + "/model.h5");
  const Params resumed = train(2, a + " --resume " + logdir + "/checkpoints/step_3");
  EXPECT_TRUE(cst::testing::bitwise_equal(straight, resumed));
}

TEST_F(ClsJob, SequenceParallelIsRefused) {
  JobResult r = run(2, model_args() + cls_args("c3", 3) + " --dist.seq_parallel 2 --log.dir " + dir_->file("sp"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("pools over the whole sequence"), std::string::npos) << r.err;
  r = run(1, model_args() + cls_args("c3", 2) + " --log.dir " + dir_->file("nc"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("num_classes 3"), std::string::npos) << r.err;
}

// Each task's metrics, over the predictions of all ranks: the same values on 1 and 2 ranks.
TEST_F(ClsJob, TaskMetricsInMetricsJsonlAndTensorBoard) {
  struct Case {
    std::string data, valid;
    int classes;
    std::vector<std::string> keys;
  };
  for (const Case& c : {Case{"mrpc", "mrpc/valid", 2, {"accuracy", "f1"}}, Case{"mrpc", "cola/valid", 2, {"mcc"}},
                        Case{"reg", "reg/valid", 1, {"pearson", "spearman"}}}) {
    std::vector<std::vector<Json>> runs;
    for (int np : {1, 2}) {
      const std::string logdir = dir_->file("metrics" + std::to_string(counter_++));
      JobResult r = run(np, model_args() + cls_args(c.data, c.classes, 4, "1e-2", c.valid) +
                                " --log.eval_interval 2 --log.dir " + logdir);
      ASSERT_EQ(r.code, 0) << r.err;
      runs.push_back(evals(logdir));
      ASSERT_EQ(runs.back().size(), 2u);
      for (const std::string& k : c.keys) {
        EXPECT_TRUE(runs.back()[1].contains(k)) << c.valid << " " << k << ": " << runs.back()[1].dump();
        if (k != "accuracy") {
          EXPECT_NE(r.out.find(" " + k + " "), std::string::npos) << k << " in the line: " << r.out;
        }
      }
      EXPECT_EQ(runs.back()[1]["tokens"], c.valid == "reg/valid" ? 17 : 19) << "every labelled example";
#ifdef CST_PYTHON
      std::string tags;
      for (const std::string& k : c.keys) tags += " valid/" + k + "=2";
      const std::string cmd =
          std::string(CST_PYTHON) + " " + CST_SOURCE_DIR + "/tests/python/check_tensorboard.py " + logdir + tags;
      EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
#endif
    }
    for (const std::string& k : c.keys)
      EXPECT_NEAR(runs[0][1][k].get<double>(), runs[1][1][k].get<double>(), 1e-4) << c.valid << " " << k;
  }
}

TEST_F(ClsJob, KeepBestSurvivesPruningAndResume) {
  const std::string logdir = dir_->file("best");
  const std::string base = model_args() + cls_args("c3", 3, 12, "3e-2") +
                           " --log.eval_interval 1 --checkpoint.interval 1 --checkpoint.keep 1";
  const std::string a = base + " --checkpoint.keep_best valid/loss --log.dir " + logdir;
  JobResult r = run(2, base + " --checkpoint.keep_best valid/loss --log.dir " + logdir +
                           " --debug.signal_rank 0"
                           " --debug.signal_at_step 6");
  ASSERT_EQ(r.code, 138) << r.err;
  r = run(2, a + " --resume auto");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<Json> e = evals(logdir);
  ASSERT_EQ(e.size(), 12u);
  int64_t best = -1;
  double value = 0;
  for (const Json& j : e)
    if (best < 0 || j["loss"].get<double>() < value) best = j["step"].get<int64_t>(), value = j["loss"].get<double>();
  const Json kept = parse_json(cst::testing::read_file(logdir + "/checkpoints/best.json"), "best.json");
  EXPECT_EQ(kept["step"].get<int64_t>(), best) << kept.dump();
  EXPECT_TRUE(fs::is_directory(logdir + "/checkpoints/step_" + std::to_string(best)));
  EXPECT_TRUE(fs::is_directory(logdir + "/checkpoints/step_12"));
  int dirs = 0;
  for (const auto& d : fs::directory_iterator(logdir + "/checkpoints")) dirs += d.is_directory();
  EXPECT_EQ(dirs, best == 12 ? 1 : 2) << "keep 1 plus the best";
  r = run(1, base + " --checkpoint.keep_best valid/f1 --log.dir " + dir_->file("best_f1"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("valid/f1"), std::string::npos) << r.err;
  r = run(1, base + " --checkpoint.keep_best valid/bleu --log.dir " + dir_->file("best_bleu"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("unknown metric 'bleu'"), std::string::npos) << r.err;
}

TEST_F(ClsJob, InitWeightsFromAnMlmRun) {
  const std::string mlm = dir_->file("pretrain");
  JobResult r =
      run(1, model_args() + " --model.task mlm --model.dropout 0 --data.seq_len 0 --data.train " + dir_->file("mlm") +
                 " --train.steps 3 --train.global_batch 8 --train.micro_batch 8 --log.peak_tflops 1"
                 " --log.dir " +
                 mlm);
  ASSERT_EQ(r.code, 0) << r.err;
  // The shape comes from the file: no model.* option but the task's.
  const std::string fine = cls_args("c3", 3, 2) + " --init.weights ";
  for (const std::string& source : {mlm + "/model.h5", mlm + "/checkpoints/step_3"}) {
    r = run(2, fine + source + " --log.dir " + dir_->file("fine" + std::to_string(counter_++)));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("loaded 37 tensor(s): "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("tok_emb.weight, "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("new 4 tensor(s): cls_head.fc1.weight"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("left out 5 tensor(s) of the source: mlm_head.bias"), std::string::npos) << r.out;
  }
  r = run(1, fine + mlm + "/model.h5 --model.max_seq_len 16 --log.dir " + dir_->file("short"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("pos_global (first 2 of 4 rows)"), std::string::npos) << r.out;
  r = run(1, fine + mlm + "/model.h5 --model.d_model 32 --log.dir " + dir_->file("wide"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("model.d_model = 32 but init.weights"), std::string::npos) << r.err;
  r = run(1, fine + mlm + "/model.h5 --model.max_seq_len 64 --log.dir " + dir_->file("long"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("model.max_seq_len = 64 exceeds the 32"), std::string::npos) << r.err;
  const std::string lm = dir_->file("lm_src");
  fs::create_directories(dir_->file("lm"));
  dataio::testing::write_lm(dir_->file("lm/a.h5"), dataio::testing::random_tokens(4000, 64, 1, 5), 64);
  r = run(1, model_args() + " --model.task lm --data.train " + dir_->file("lm") +
                 " --data.seq_len 32 --train.steps 1 --train.global_batch 8 --log.peak_tflops 1 --log.dir " + lm);
  ASSERT_EQ(r.code, 0) << r.err;
  r = run(1, fine + lm + "/model.h5 --log.dir " + dir_->file("from_lm"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("causal LM"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace cst
