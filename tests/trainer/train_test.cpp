// cst-train end to end under mpirun: W = 2 and W = 4 equal W = 1, accumulation equals one big
// batch, sequence parallelism (S = 2, 4) equals one rank and its checkpoints resume with another
// S, activation checkpointing trains bitwise the same, a failing or hanging rank ends the whole
// job quickly, and config errors (sequence lengths included) exit 2.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "common/parallel_layout.h"
#include "model/global_range.h"
#include "model/weights_io.h"
#include "tests/dataio/test_util.h"
#include "tests/trainer/job_util.h"

namespace cst {
namespace {

namespace fs = std::filesystem;

using cst::testing::JobResult;

class TrainJob : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new dataio::testing::TempDir();
    fs::create_directories(dir_->file("lm"));
    fs::create_directories(dir_->file("mlm"));
    dataio::testing::write_lm(dir_->file("lm/shard0.h5"), dataio::testing::random_tokens(6000, 64, 1, 5), 64, 500);
    dataio::testing::write_lm(dir_->file("lm/shard1.h5"), dataio::testing::random_tokens(4000, 64, 2, 5), 64, 700);
    dataio::testing::write_mlm_fixture(dir_->file("mlm/shard0.h5"), 96, 32, 64, 3);
  }
  static void TearDownTestSuite() { delete dir_; }

  // A tiny model; dropout 0 and eps 1e-6 so that runs differing only in summation order agree.
  static std::string common_args(const std::string& task, int steps = 5, const std::string& lr = "1e-2",
                                 int eval_interval = 0) {
    std::string a = " --model.task " + task +
                    " --model.vocab_size 64 --model.d_model 16 --model.n_heads 2 --model.n_layers 2 --model.d_ff 32"
                    " --model.max_seq_len 32 --model.slice_len 8 --model.alpha 2 --model.dropout 0"
                    " --optim.eps 1e-6 --optim.warmup_steps 2 --log.peak_tflops 1 --log.interval 1 --dist.threads 1"
                    " --train.steps " +
                    std::to_string(steps) + " --optim.lr " + lr + " --log.eval_interval " +
                    std::to_string(eval_interval);
    if (task == "lm")
      a += " --data.train " + dir_->file("lm") + " --data.seq_len 32";
    else
      a += " --data.train " + dir_->file("mlm") + " --data.seq_len 0";
    return a;
  }

  static JobResult run(int np, const std::string& args) {
    return cst::testing::run_job(np, args, dir_->file("job" + std::to_string(counter_++)));
  }

  // Trains and returns the final parameters.
  static std::map<std::string, torch::Tensor> train(int np, const std::string& task, const std::string& extra,
                                                    int steps = 5, const std::string& lr = "1e-2") {
    const std::string logdir = dir_->file("run" + std::to_string(counter_));
    JobResult r = run(np, common_args(task, steps, lr) + extra + " --log.dir " + logdir);
    EXPECT_EQ(r.code, 0) << r.err << r.out;
    if (r.code != 0) return {};
    return cst::testing::load_params(logdir + "/model.h5");
  }

  static double max_diff(const cst::testing::Params& a, const cst::testing::Params& b) {
    return cst::testing::max_diff(a, b);
  }

  static dataio::testing::TempDir* dir_;
  static int counter_;
};

dataio::testing::TempDir* TrainJob::dir_ = nullptr;
int TrainJob::counter_ = 0;

TEST_F(TrainJob, LmWorldSizesTwoAndFourEqualOne) {
  auto one = train(1, "lm", " --train.global_batch 8 --train.micro_batch 2");
  auto two = train(2, "lm", " --train.global_batch 8 --train.micro_batch 2");
  auto four = train(4, "lm", " --train.global_batch 8 --train.micro_batch 2");
  ASSERT_FALSE(one.empty());
  EXPECT_LT(max_diff(one, two), 1e-5);
  EXPECT_LT(max_diff(one, four), 1e-5);
  auto init = train(1, "lm", " --train.global_batch 8 --train.micro_batch 2", 1, "1e-9");
  EXPECT_GT(max_diff(one, init), 1e-3) << "training did not move the parameters";
}

// MLM: ranks see different numbers of masked tokens; the loss is normalised globally.
TEST_F(TrainJob, MlmWorldSizeTwoEqualsOne) {
  auto one = train(1, "mlm", " --train.global_batch 8 --train.micro_batch 4");
  auto two = train(2, "mlm", " --train.global_batch 8 --train.micro_batch 4");
  ASSERT_FALSE(one.empty());
  EXPECT_LT(max_diff(one, two), 1e-5);
}

TEST_F(TrainJob, FourMicroBatchesEqualOneBatchFourTimesLarger) {
  auto accum = train(1, "lm", " --train.global_batch 8 --train.micro_batch 2");
  auto big = train(1, "lm", " --train.global_batch 8 --train.micro_batch 8");
  ASSERT_FALSE(accum.empty());
  EXPECT_LT(max_diff(accum, big), 1e-5);
}

// dist.sdpa: full attention through the fused kernel trains to the same parameters as with
// explicit scores (LM: causal, no padding, no mask; MLM: padded rows, the masked kernel), says
// so at start, and is refused for CST.
TEST_F(TrainJob, FullAttentionThroughSdpaEqualsExplicitScores) {
  for (std::string task : {"lm", "mlm"}) {
    const std::string shape = " --model.arch full --train.global_batch 8 --train.micro_batch 4";
    auto explicit_scores = train(1, task, shape + " --dist.sdpa off");
    auto fused = train(1, task, shape + " --dist.sdpa on");
    ASSERT_FALSE(explicit_scores.empty());
    EXPECT_LT(max_diff(explicit_scores, fused), 1e-4) << task;
    auto init = train(1, task, shape + " --dist.sdpa on", 1, "1e-9");
    EXPECT_GT(max_diff(fused, init), 1e-3) << task << ": training did not move the parameters";
  }
  const std::string lm = common_args("lm", 1) + " --train.global_batch 8 --train.micro_batch 4";
  JobResult r = run(1, lm + " --model.arch full --dist.sdpa on --log.dir " + dir_->file("sdpa_on"));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("full attention through SDPA"), std::string::npos) << r.out;
  r = run(1, lm + " --model.arch full --log.dir " + dir_->file("sdpa_auto_cpu"));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find("full attention through SDPA"), std::string::npos) << "auto is off on CPU: " << r.out;
  r = run(1, lm + " --dist.sdpa on");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("dist.sdpa = on applies to model.arch = full"), std::string::npos) << r.err;
}

// One sequence over S ranks (8 tokens per rank at S = 4: one slice), alone and beside data
// parallelism (4 ranks = 2 x 2), with gradient accumulation: the parameters of one rank. With
// the fused kernels (csa_kernel = auto without dropout) and, at S = 2, the explicit one.
TEST_F(TrainJob, SequenceParallelEqualsOneRank) {
  for (std::string task : {"lm", "mlm"}) {
    const std::string batch = " --train.global_batch 8 --train.micro_batch 4";
    auto one = train(1, task, batch);
    ASSERT_FALSE(one.empty());
    EXPECT_LT(max_diff(one, train(2, task, batch + " --dist.seq_parallel 2")), 1e-5) << task << " S = 2";
    EXPECT_LT(max_diff(one, train(4, task, batch + " --dist.seq_parallel 4")), 1e-5) << task << " S = 4";
    EXPECT_LT(max_diff(one, train(4, task, batch + " --dist.seq_parallel 2")), 1e-5) << task << " 2 x S = 2";
    const std::string explicit_kernel = batch + " --model.csa_kernel explicit";
    EXPECT_LT(max_diff(train(1, task, explicit_kernel), train(2, task, explicit_kernel + " --dist.seq_parallel 2")),
              1e-5)
        << task << " explicit kernel, S = 2";
  }
}

// Long enough for the causal global attention's rows to be split by work (64 slices of 2 tokens
// at S = 2, 128 at S = 4, both split away from the own-chunk rows): the parameters of one rank,
// with block checkpointing too.
TEST_F(TrainJob, SequenceParallelBalancedRowsEqualOneRank) {
  for (int S : {2, 4})
    ASSERT_NE(balanced_causal_rows(128 / 2, S, 0, model::csa::kRangeRowCost).end, 64 / S)
        << "S = " << S << ": the geometry no longer takes the split path";
  auto params = [](int np, const std::string& extra) -> cst::testing::Params {
    std::string a = common_args("lm", 3);
    for (const auto& [from, to] :
         {std::pair<std::string, std::string>{"--model.max_seq_len 32", "--model.max_seq_len 128"},
          {"--data.seq_len 32", "--data.seq_len 128"},
          {"--model.slice_len 8", "--model.slice_len 2"}})
      a.replace(a.find(from), from.size(), to);
    const std::string logdir = dir_->file("run" + std::to_string(counter_));
    JobResult r = run(np, a + " --train.global_batch 4 --train.micro_batch 2" + extra + " --log.dir " + logdir);
    EXPECT_EQ(r.code, 0) << r.err << r.out;
    return r.code == 0 ? cst::testing::load_params(logdir + "/model.h5") : cst::testing::Params{};
  };
  auto one = params(1, "");
  ASSERT_FALSE(one.empty());
  EXPECT_LT(max_diff(one, params(2, " --dist.seq_parallel 2")), 1e-5) << "S = 2";
  EXPECT_LT(max_diff(one, params(4, " --dist.seq_parallel 4")), 1e-5) << "S = 4";
  EXPECT_LT(max_diff(one, params(2, " --dist.seq_parallel 2 --train.activation_checkpointing block")), 1e-5)
      << "S = 2, block checkpointing";
}

// Dropout on: the recomputation replays the random state, so checkpointed blocks train to
// bitwise the same parameters (under sequence parallelism too), with either CSA kernel.
TEST_F(TrainJob, ActivationCheckpointingTrainsBitwiseTheSame) {
  auto with_dropout = [](std::string a) { return a.replace(a.find("--model.dropout 0"), 17, "--model.dropout 0.2"); };
  for (std::string kernel : {"explicit", "fused"}) {
    const std::string args =
        " --train.global_batch 8 --train.micro_batch 4 --dist.seq_parallel 2 --model.csa_kernel " + kernel;
    const std::string none = dir_->file("ac_none_" + kernel), block = dir_->file("ac_block_" + kernel);
    JobResult plain = run(2, with_dropout(common_args("lm", 3)) + args + " --log.dir " + none);
    JobResult ckpt = run(
        2, with_dropout(common_args("lm", 3)) + args + " --train.activation_checkpointing block --log.dir " + block);
    ASSERT_EQ(plain.code, 0) << plain.err;
    ASSERT_EQ(ckpt.code, 0) << ckpt.err;
    EXPECT_NE(ckpt.out.find("activation checkpointing"), std::string::npos) << ckpt.out;
    EXPECT_TRUE(cst::testing::bitwise_equal(cst::testing::load_params(none + "/model.h5"),
                                            cst::testing::load_params(block + "/model.h5")))
        << kernel;
  }
}

// A checkpoint written with S = 2 resumes with S = 1 (another world size) and S = 4: the same
// parameters as the run that went on.
TEST_F(TrainJob, CheckpointResumesWithAnotherSeqParallel) {
  const std::string batch = " --train.global_batch 8 --train.micro_batch 4";
  const std::string logdir = dir_->file("sp_ckpt");
  JobResult r = run(2, common_args("lm", 4) + batch +
                           " --dist.seq_parallel 2 --checkpoint.interval 2 --checkpoint.keep 0 --log.dir " + logdir);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto straight = cst::testing::load_params(logdir + "/model.h5");
  const std::string from = " --resume " + logdir + "/checkpoints/step_2";
  EXPECT_LT(max_diff(straight, train(1, "lm", batch + from, 4)), 1e-5) << "S = 1";
  EXPECT_LT(max_diff(straight, train(4, "lm", batch + " --dist.seq_parallel 4" + from, 4)), 1e-5) << "S = 4";
}

TEST_F(TrainJob, SequenceParallelConfigErrorsExitTwo) {
  const std::string lm = common_args("lm", 1) + " --train.global_batch 8 --train.micro_batch 4";
  JobResult r = run(2, lm + " --dist.seq_parallel 3");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("dist.seq_parallel = 3 does not divide the world size 2"), std::string::npos) << r.err;
  r = run(4, lm + " --dist.seq_parallel 4 --model.arch full");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("needs model.arch = cst"), std::string::npos) << r.err;
  const std::string odd =
      " --model.task lm --model.vocab_size 64 --model.max_seq_len 32 --model.slice_len 8"
      " --data.train " +
      dir_->file("lm") +
      " --data.seq_len 24 --train.global_batch 8"
      " --train.micro_batch 4 --dist.seq_parallel 2";
  r = run(2, odd);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("data.seq_len = 24 split over dist.seq_parallel = 2 ranks gives chunks of 12 tokens"),
            std::string::npos)
      << r.err;
  r = run(2, lm + " --train.activation_checkpointing layer");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("train.activation_checkpointing = 'layer'"), std::string::npos) << r.err;
}

// Under sequence parallelism every split the model sees has the training length and splits into
// whole slices per rank, checked before step 1: an MLM validation split of another length, and
// MLM shards (data.seq_len = 0) whose chunks are not whole slices, exit 2 naming the split, the
// length, S and L. One rank takes any validation length; S = 2 takes one of the training length.
TEST_F(TrainJob, SequenceParallelSplitLengthsAreCheckedAtStart) {
  const std::string short_dir = dir_->file("mlm24");
  fs::create_directories(short_dir);
  dataio::testing::write_mlm_fixture(short_dir + "/shard0.h5", 48, 24, 64, 5);
  const std::string mlm = common_args("mlm", 2, "1e-2", 2) + " --train.global_batch 8 --train.micro_batch 4";
  auto expect_named = [](const JobResult& r, const std::vector<std::string>& parts) {
    EXPECT_EQ(r.code, 2) << r.err;
    for (const std::string& p : parts) EXPECT_NE(r.err.find(p), std::string::npos) << p << "\n" << r.err;
    EXPECT_EQ(r.out.find("| loss"), std::string::npos) << "no step ran:\n" << r.out;
  };
  expect_named(run(2, mlm + " --dist.seq_parallel 2 --data.valid " + short_dir),
               {"data.valid = '" + short_dir + "': samples of 24 tokens", "training length is 32",
                "dist.seq_parallel = 2", "model.slice_len = 8"});
  std::string short_train = mlm;
  const std::string train_dir = " --data.train " + dir_->file("mlm") + " ";
  short_train.replace(short_train.find(train_dir), train_dir.size(), " --data.train " + short_dir + " ");
  expect_named(run(2, short_train + " --dist.seq_parallel 2"),
               {"data.train = '" + short_dir + "': sample length = 24",
                "split over dist.seq_parallel = 2 ranks gives chunks of 12 tokens", "model.slice_len = 8"});
  JobResult r = run(2, mlm + " --data.valid " + short_dir + " --log.dir " + dir_->file("valid24"));
  EXPECT_EQ(r.code, 0) << r.err;
  r = run(2, mlm + " --dist.seq_parallel 2 --data.valid " + dir_->file("mlm") + " --log.dir " + dir_->file("valid32"));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("eval"), std::string::npos) << r.out;
}

TEST_F(TrainJob, RankThrowingAtStepThreeEndsBothRanksQuickly) {
  JobResult r = run(2, common_args("lm", 50) +
                           " --train.global_batch 8 --train.micro_batch 2"
                           " --debug.fail_rank 1 --debug.fail_at_step 3 --log.dir " +
                           dir_->file("fail"));
  EXPECT_NE(r.code, 0);
  EXPECT_LT(r.seconds, 30.0);
  EXPECT_NE(r.err.find("[rank 1 "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("injected failure at step 3"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("step     10"), std::string::npos) << "training went on after the failure";
}

TEST_F(TrainJob, HangingRankTripsTheWatchdog) {
  JobResult r = run(2, common_args("lm", 50) +
                           " --train.global_batch 8 --train.micro_batch 2"
                           " --debug.hang_rank 1 --debug.hang_at_step 2 --dist.comm_timeout_s 3"
                           " --log.dir " +
                           dir_->file("hang"));
  EXPECT_NE(r.code, 0);
  EXPECT_LT(r.seconds, 30.0);
  EXPECT_NE(r.err.find("step 2"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("[rank 0 "), std::string::npos) << r.err;
}

TEST_F(TrainJob, ConfigErrorsExitTwoNamingKeyAndValue) {
  const std::string minimal = " --data.train " + dir_->file("lm") +
                              " --data.seq_len 32 --model.max_seq_len 32"
                              " --model.slice_len 8 --train.global_batch 8 --train.micro_batch 8";
  const std::string cfg = dir_->file("bad.cfg");
  std::ofstream(cfg) << "[model]\nd_model = 16\n[optim]\nlearning_rate = 0.1\n";
  JobResult r = run(1, "--config " + cfg);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("learning_rate"), std::string::npos) << r.err;

  r = run(1, minimal + " --model.vocab_size 64 --optim.lr fast");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("optim.lr = 'fast'"), std::string::npos) << r.err;

  r = run(2, common_args("lm") + " --train.global_batch 6 --train.micro_batch 2");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("train.global_batch = 6"), std::string::npos) << r.err;

  r = run(1, minimal + " --model.vocab_size 64 --model.n_heads 3");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("n_heads = 3"), std::string::npos) << r.err;

  r = run(1, minimal + " --model.vocab_size 32");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("vocab"), std::string::npos) << r.err;

  r = run(1, common_args("lm") + " --no-such-option 1");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("no-such-option"), std::string::npos) << r.err;

  r = run(1, "--config " + dir_->file("missing.cfg"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("missing.cfg"), std::string::npos) << r.err;
}

// Also the profile of one step (--log.profile_step): its phases, two micro-steps each for the
// forward and backward, and the operator table.
TEST_F(TrainJob, MetricsTensorBoardEventsAndStepProfileAreWritten) {
  const std::string logdir = dir_->file("tb");
  JobResult r = run(2, common_args("lm", 5, "1e-2", 5) + " --train.global_batch 8 --train.micro_batch 2 --log.dir " +
                           logdir + " --data.valid " + dir_->file("lm") + " --log.profile_step 3");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("profile of step 3: data "), std::string::npos) << r.out;
  std::ifstream prof(logdir + "/profile_step3.md");
  const std::string profile((std::istreambuf_iterator<char>(prof)), std::istreambuf_iterator<char>());
  for (const char* row :
       {"| data |", "| forward + loss | ", "| backward (+ overlapped all-reduce) | ",
        "| gradient all-reduce (finalize) |", "| clip |", "| optimizer |", "| total |", "| aten::mm |"})
    EXPECT_NE(profile.find(row), std::string::npos) << row << " in\n" << profile;
  for (const char* phase : {"| forward + loss |", "| backward (+ overlapped all-reduce) |"}) {
    const size_t at = profile.find(phase);
    ASSERT_NE(at, std::string::npos) << phase;
    const std::string line = profile.substr(at, profile.find('\n', at) - at);
    EXPECT_EQ(line.substr(line.size() - 5), "| 2 |") << "two micro-steps: " << line;
  }
  std::ifstream jl(logdir + "/metrics.jsonl");
  int train_lines = 0, eval_lines = 0;
  for (std::string line; std::getline(jl, line);) {
    train_lines += line.find("\"kind\": \"train\"") != std::string::npos;
    eval_lines += line.find("\"kind\": \"eval\"") != std::string::npos;
  }
  EXPECT_EQ(train_lines, 5);
  EXPECT_EQ(eval_lines, 1);
  for (const char* word : {"tok/s", "MFU", "data", "comm", "ETA", "ppl", "grad"})
    EXPECT_NE(r.out.find(word), std::string::npos) << word;
#ifdef CST_PYTHON
  // TensorBoard's own reader must see the scalars.
  const std::string cmd = std::string(CST_PYTHON) + " " + CST_SOURCE_DIR + "/tests/python/check_tensorboard.py " +
                          logdir + " train/loss=5 valid/loss=1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
#else
  std::printf("SKIPPED: TensorBoard reader check (no python next to the LibTorch found)\n");
#endif
}

}  // namespace
}  // namespace cst
