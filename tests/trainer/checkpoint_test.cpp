// Sharded checkpoints end to end (docs/CHECKPOINT.md): exact resume, resume on other world
// sizes (optimizer re-partitioned), ZeRO-1 == ZeRO-0, async saves, preemption signals, the
// load-time checks (damaged and hostile manifests, version 1), the refusal of a fresh start in
// a used folder, and the kill -9 trials of scripts/kill-test.sh (mid-save and mid-prune).
#include "checkpoint/checkpoint.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "common/checksum.h"
#include "common/json.h"
#include "tests/dataio/test_util.h"
#include "tests/trainer/job_util.h"
#include "trainer/checkpoint_config.h"

namespace cst {
namespace {

namespace fs = std::filesystem;
using checkpoint::Manifest;
using testing::JobResult;
using testing::Params;

// The checkpoint in step_dir verified, its optimizer options read as cst-train reads them.
Manifest verify_checkpoint(const std::string& step_dir) {
  return checkpoint::verify_checkpoint(step_dir, trainer::optim_schema());
}

class CheckpointJob : public ::testing::Test {
 protected:
  // Shared by both suites below; removed at exit.
  static void SetUpTestSuite() {
    if (dir_) return;
    dir_ = std::make_unique<dataio::testing::TempDir>();
    for (const char* d : {"lm", "lm128"}) fs::create_directories(dir_->file(d));
    dataio::testing::write_lm(dir_->file("lm/shard0.h5"), dataio::testing::random_tokens(6000, 64, 1, 5), 64, 500);
    dataio::testing::write_lm(dir_->file("lm/shard1.h5"), dataio::testing::random_tokens(4000, 64, 2, 5), 64, 700);
    dataio::testing::write_lm(dir_->file("lm128/shard0.h5"), dataio::testing::random_tokens(6000, 64, 1, 5), 128, 500);
  }

  // A tiny LM, W-independent batches (G = 8, micro 2), 8 steps; dropout as given.
  static std::string args(const std::string& dropout = "0", int steps = 8, const std::string& vocab = "64",
                          const std::string& d_ff = "32", const std::string& data = "lm") {
    return " --model.task lm --model.vocab_size " + vocab +
           " --model.d_model 16 --model.n_heads 2 --model.n_layers 2"
           " --model.d_ff " +
           d_ff + " --model.max_seq_len 32 --model.slice_len 8 --model.alpha 2 --model.dropout " + dropout +
           " --optim.eps 1e-6 --optim.warmup_steps 2 --optim.lr 1e-2 --log.peak_tflops 1 --log.interval 1"
           " --dist.threads 1 --log.eval_interval 0 --log.tensorboard false --train.global_batch 8"
           " --train.micro_batch 2 --data.seq_len 32 --data.train " +
           dir_->file(data) + " --train.steps " + std::to_string(steps);
  }
  static std::string logdir(const std::string& name) { return dir_->file(name); }
  static JobResult run(int np, const std::string& a, const std::string& name) {
    return testing::run_job(np, a + " --log.dir " + logdir(name), logdir(name));
  }
  // Runs to completion and returns the final parameters.
  static Params train(int np, const std::string& a, const std::string& name) {
    JobResult r = run(np, a, name);
    EXPECT_EQ(r.code, 0) << r.err << r.out;
    return r.code == 0 ? testing::load_params(logdir(name) + "/model.h5") : Params{};
  }
  // The uninterrupted W = 2 run (dropout 0) with checkpoints every 4 steps; made once.
  static const Params& reference() {
    static Params p = train(2, args() + " --checkpoint.interval 4", "ref");
    return p;
  }
  static std::string ref_step(int step) { return logdir("ref") + "/checkpoints/step_" + std::to_string(step); }
  // "loss grad_norm" of every step in metrics.jsonl, keyed by step.
  static std::map<int, std::string> losses(const std::string& name) {
    std::map<int, std::string> out;
    std::ifstream f(logdir(name) + "/metrics.jsonl");
    const std::regex re("\"step\": (\\d+), \"loss\": ([^,]+),.*\"grad_norm\": ([^,]+),");
    std::smatch m;
    for (std::string line; std::getline(f, line);)
      if (std::regex_search(line, m, re)) out[std::stoi(m[1])] = m[2].str() + " " + m[3].str();
    return out;
  }

  static std::unique_ptr<dataio::testing::TempDir> dir_;
};

std::unique_ptr<dataio::testing::TempDir> CheckpointJob::dir_;

TEST_F(CheckpointJob, ResumeIsBitwiseExactAtTheSameWorldSize) {
  // dropout 0.1: the per-rank RNG states must be restored too.
  Params straight = train(2, args("0.1") + " --checkpoint.interval 4", "exact_a");
  ASSERT_FALSE(straight.empty());
  const std::string ckpt = logdir("exact_a") + "/checkpoints";
  EXPECT_EQ(testing::read_file(ckpt + "/latest"), "step_8\n");
  const Manifest m = verify_checkpoint(ckpt + "/step_4");
  EXPECT_EQ(m.step, 4);
  EXPECT_EQ(m.world_size, 2);
  EXPECT_EQ(m.loader.consumed_samples, 32);
  EXPECT_EQ(m.files.size(), 3u);                    // model.h5 + 2 optimizer shards
  testing::load_params(ckpt + "/step_4/model.h5");  // docs/WEIGHTS.md layout
  // The shards' tokenizer (test_meta) is recorded, though data.tokenizer_sha256 was not given.
  EXPECT_EQ(m.run.tokenizer_sha256, "abc123");
  EXPECT_EQ(model::read_weights_tokenizer(ckpt + "/step_4/model.h5"), "abc123");
  EXPECT_EQ(model::read_weights_tokenizer(logdir("exact_a") + "/model.h5"), "abc123");

  Params resumed = train(2, args("0.1") + " --resume " + ckpt + "/step_4", "exact_b");
  EXPECT_TRUE(testing::bitwise_equal(straight, resumed)) << testing::max_diff(straight, resumed);
  auto la = losses("exact_a"), lb = losses("exact_b");
  ASSERT_EQ(lb.size(), 4u);
  for (const auto& [step, text] : lb) EXPECT_EQ(text, la[step]) << "step " << step;
}

TEST_F(CheckpointJob, TwoRankCheckpointResumesOnOneAndFourRanks) {
  ASSERT_FALSE(reference().empty());
  Params one = train(1, args() + " --resume " + ref_step(4), "elastic1");
  Params four = train(4, args() + " --resume " + ref_step(4), "elastic4");
  ASSERT_FALSE(one.empty());
  ASSERT_FALSE(four.empty());
  EXPECT_LT(testing::max_diff(reference(), one), 1e-5);
  EXPECT_LT(testing::max_diff(reference(), four), 1e-5);
  EXPECT_NE(testing::read_file(logdir("elastic4") + ".out").find("RNG reseeded"), std::string::npos);
}

TEST_F(CheckpointJob, ZeroOneEqualsZeroZeroAndItsShardsRepartition) {
  ASSERT_FALSE(reference().empty());
  Params z1 = train(2, args() + " --checkpoint.zero_stage 1 --checkpoint.interval 4", "zero1");
  ASSERT_FALSE(z1.empty());
  EXPECT_LT(testing::max_diff(reference(), z1), 1e-6);
  // ZeRO-1 shards of 2 ranks -> 1 rank without ZeRO; ZeRO-0 shards of 2 ranks -> 4 ranks with ZeRO-1.
  Params to_one = train(1, args() + " --resume " + logdir("zero1") + "/checkpoints/step_4", "zero1_to1");
  Params to_four = train(4, args() + " --checkpoint.zero_stage 1 --resume " + ref_step(4), "zero0_to4z1");
  EXPECT_LT(testing::max_diff(reference(), to_one), 1e-5);
  EXPECT_LT(testing::max_diff(reference(), to_four), 1e-5);
  // LAMB: per-parameter norms from partial norms on each rank's partition.
  Params lamb0 = train(2, args() + " --optim.name lamb", "lamb0");
  Params lamb1 = train(2, args() + " --optim.name lamb --checkpoint.zero_stage 1", "lamb1");
  ASSERT_FALSE(lamb0.empty());
  EXPECT_LT(testing::max_diff(lamb0, lamb1), 1e-6);
}

TEST_F(CheckpointJob, AsyncSavesLeaveResultsUnchangedAndPruneToKeep) {
  ASSERT_FALSE(reference().empty());
  Params async = train(2,
                       args() +
                           " --checkpoint.interval 2 --checkpoint.async true --checkpoint.keep 2"
                           " --debug.save_delay_ms 150",
                       "async");
  EXPECT_TRUE(testing::bitwise_equal(reference(), async)) << testing::max_diff(reference(), async);
  std::set<std::string> dirs;
  for (const auto& e : fs::directory_iterator(logdir("async") + "/checkpoints")) dirs.insert(e.path().filename());
  EXPECT_EQ(dirs, (std::set<std::string>{"latest", "step_6", "step_8"}));
  verify_checkpoint(logdir("async") + "/checkpoints/step_6");
}

TEST_F(CheckpointJob, SignalOnOneRankSavesEverywhereAndExits128PlusSignal) {
  ASSERT_FALSE(reference().empty());
  JobResult r = run(2, args() + " --debug.signal_rank 1 --debug.signal_at_step 3", "signal");
  EXPECT_EQ(r.code, 138) << r.err << r.out;  // 128 + SIGUSR1
  const std::string ckpt = logdir("signal") + "/checkpoints";
  EXPECT_EQ(testing::read_file(ckpt + "/latest"), "step_3\n");
  EXPECT_FALSE(fs::exists(ckpt + "/step_8"));
  JobResult resumed = run(2, args() + " --resume auto", "signal");
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("resumed from " + ckpt + "/step_3"), std::string::npos) << resumed.out;
  EXPECT_TRUE(testing::bitwise_equal(reference(), testing::load_params(logdir("signal") + "/model.h5")));
}

// A copy of the reference's step_4 to damage; every check must exit 2 naming file and field and
// leave the folder as it was.
class DamagedCheckpoint : public CheckpointJob {
 protected:
  void SetUp() override {
    ASSERT_FALSE(reference().empty());
    copy_ = logdir("damaged_" + std::to_string(n_++));
    fs::create_directories(copy_ + "/checkpoints");
    fs::copy(ref_step(4), copy_ + "/checkpoints/step_4", fs::copy_options::recursive);
    step_ = copy_ + "/checkpoints/step_4";
  }
  void expect_rejected(const std::vector<std::string>& words, const std::string& job_args = args()) {
    std::vector<std::string> before;
    for (const auto& e : fs::recursive_directory_iterator(copy_ + "/checkpoints")) before.push_back(e.path());
    JobResult r = testing::run_job(1, job_args + " --resume " + step_ + " --log.dir " + copy_, copy_ + "/job");
    EXPECT_EQ(r.code, 2) << r.err;
    for (const auto& w : words) EXPECT_NE(r.err.find(w), std::string::npos) << "'" << w << "' not in: " << r.err;
    std::vector<std::string> after;
    for (const auto& e : fs::recursive_directory_iterator(copy_ + "/checkpoints")) after.push_back(e.path());
    EXPECT_EQ(before, after) << "files were deleted or added";
  }
  static void flip_byte(const std::string& path, int64_t at) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(at);
    char c = 0;
    f.read(&c, 1);
    c ^= 0x10;
    f.seekp(at);
    f.write(&c, 1);
  }
  std::string copy_, step_;
  static int n_;
};
int DamagedCheckpoint::n_ = 0;

TEST_F(DamagedCheckpoint, ModelMismatch) {
  expect_rejected({"manifest.json", "model.d_ff = 32", "model.d_ff = 64"}, args("0", 8, "64", "64"));
}

TEST_F(DamagedCheckpoint, VocabMismatch) {
  expect_rejected({"manifest.json", "model.vocab_size = 64", "vocabulary mismatch"},
                  args("0", 8, "128", "32", "lm128"));
}

TEST_F(DamagedCheckpoint, UnknownFormatVersion) {
  std::string text = testing::read_file(step_ + "/manifest.json");
  text.replace(text.find("\"format_version\": 2"), 19, "\"format_version\": 7");
  std::ofstream(step_ + "/manifest.json") << text;
  expect_rejected({"manifest.json", "format_version = 7"});
}

TEST_F(DamagedCheckpoint, BitFlip) {
  const std::string shard = step_ + "/optim_rank1_of2.h5";
  flip_byte(shard, static_cast<int64_t>(fs::file_size(shard)) / 2);
  expect_rejected({"optim_rank1_of2.h5", "xxh3_128", "checksum mismatch"});
}

TEST_F(DamagedCheckpoint, TruncatedFile) {
  fs::resize_file(step_ + "/model.h5", fs::file_size(step_ + "/model.h5") - 100);
  expect_rejected({"model.h5", "size", "truncated"});
}

TEST_F(DamagedCheckpoint, MissingShard) {
  fs::remove(step_ + "/optim_rank0_of2.h5");
  expect_rejected({"missing file", "optim_rank0_of2.h5"});
}

TEST_F(DamagedCheckpoint, AutoSkipsDamagedNewestWithAWarning) {
  fs::copy(ref_step(8), copy_ + "/checkpoints/step_8", fs::copy_options::recursive);
  flip_byte(copy_ + "/checkpoints/step_8/model.h5", 4000);
  fs::create_directories(copy_ + "/checkpoints/step_9.tmp");  // an unfinished save
  JobResult r = testing::run_job(2, args() + " --resume auto --log.dir " + copy_, copy_ + "/job");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("skipping checkpoint '" + copy_ + "/checkpoints/step_8'"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("resumed from " + step_), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(copy_ + "/checkpoints/step_9.tmp"));
  EXPECT_TRUE(testing::bitwise_equal(reference(), testing::load_params(copy_ + "/model.h5")));
}

TEST_F(DamagedCheckpoint, HostileManifestsAreRejectedNamingTheFileNotCrashing) {
  const std::string manifest = step_ + "/manifest.json", good = testing::read_file(manifest);
  std::ofstream(manifest, std::ios::trunc) << std::string(1000000, '[');  // a recursive reader overflows its stack
  expect_rejected({"manifest.json", "not valid JSON", "nested deeper than"});
  std::string text = good;
  text.insert(text.find("\"code_version\": \"") + 17, "\\uZZZZ");
  std::ofstream(manifest, std::ios::trunc) << text;
  expect_rejected({"manifest.json", "not valid JSON"});
  text = good;
  text.replace(text.find("\"world_size\": 2"), 15, "\"world_size\": 100000000000");
  std::ofstream(manifest, std::ios::trunc) << text;
  expect_rejected({"manifest.json", "world_size", "100000000000"});
  text = good;  // a data position beyond the split (the loader checks it against the data)
  text.replace(text.find("\"consumed_samples\": 32"), 22, "\"consumed_samples\": 1000000000000");
  std::ofstream(manifest, std::ios::trunc) << text;
  expect_rejected({"manifest.json", "field loader", "consumed_samples 1000000000000"});
}

// --resume auto: damaged newer checkpoints (nested brackets, a step number beyond int64) are
// skipped with a warning and the older good one continues, to the uninterrupted result.
TEST_F(DamagedCheckpoint, AutoSkipsHostileManifestsAndHugeStepNumbers) {
  const std::string ckpt = copy_ + "/checkpoints";
  fs::copy(ref_step(8), ckpt + "/step_8", fs::copy_options::recursive);
  std::ofstream(ckpt + "/step_8/manifest.json", std::ios::trunc) << std::string(1000000, '[');
  fs::copy(ref_step(8), ckpt + "/step_12345678901234567890", fs::copy_options::recursive);
  JobResult r = testing::run_job(1, args() + " --resume auto --log.dir " + copy_, copy_ + "/job");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("skipping checkpoint '" + ckpt + "/step_8'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nested deeper than"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("step_12345678901234567890': its step number does not fit"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("resumed from " + step_), std::string::npos) << r.out;
  EXPECT_LT(testing::max_diff(reference(), testing::load_params(copy_ + "/model.h5")), 1e-5);
}

// A version-1 checkpoint (sha256 per file) resumes exactly, and its checksums are checked.
TEST_F(DamagedCheckpoint, VersionOneCheckpointsStillResume) {
  Json m = Json::parse(testing::read_file(step_ + "/manifest.json"));
  m["format_version"] = 1;
  for (Json& f : m["files"]) {
    f.erase("xxh3_128");
    f["sha256"] = sha256_file(step_ + "/" + f["name"].get<std::string>());
  }
  std::ofstream(step_ + "/manifest.json", std::ios::trunc) << m.dump(2);
  Params resumed = train(2, args() + " --resume " + step_, "v1_resumed");
  EXPECT_TRUE(testing::bitwise_equal(reference(), resumed)) << testing::max_diff(reference(), resumed);
  flip_byte(step_ + "/model.h5", 4000);
  expect_rejected({"model.h5", "sha256", "checksum mismatch"});
}

// Without --resume, a folder holding another run's files is refused (exit 2, nothing touched);
// --resume auto continues that run, and in an empty folder starts fresh.
TEST_F(DamagedCheckpoint, FreshStartInAUsedFolderIsRefused) {
  for (const std::string& used : {copy_, logdir("ref")}) {
    std::map<std::string, std::string> before;
    for (const auto& e : fs::recursive_directory_iterator(used))
      if (e.is_regular_file()) before[e.path()] = testing::read_file(e.path());
    JobResult r = testing::run_job(2, args() + " --log.dir " + used, copy_ + "_fresh");
    EXPECT_EQ(r.code, 2) << r.err;
    for (const char* w : {"earlier run", "step_4", "--resume auto", "--log.dir"})
      EXPECT_NE(r.err.find(w), std::string::npos) << "'" << w << "' not in: " << r.err;
    std::map<std::string, std::string> after;
    for (const auto& e : fs::recursive_directory_iterator(used))
      if (e.is_regular_file()) after[e.path()] = testing::read_file(e.path());
    EXPECT_TRUE(before == after) << "files of " << used << " were changed";
  }
  const std::string empty = logdir("auto_empty");
  JobResult r = testing::run_job(1, args("0", 2) + " --resume auto --log.dir " + empty, empty);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("starting from scratch"), std::string::npos) << r.err;
}

// scripts/kill-test.sh: kill -9 a random rank at random moments (mid-save included), and rank 0
// in the middle of pruning, in 10 seeded trials, then --resume auto; no half-deleted folder may
// look committed, and the final parameters must equal the uninterrupted run.
TEST_F(CheckpointJob, RandomKillNineTrialsResumeToTheSameParameters) {
  const int steps = 12;
  const std::string a = args("0", steps) + " --checkpoint.interval 2";
  Params straight = train(2, a, "kill_ref");
  ASSERT_FALSE(straight.empty());
  const std::string out = logdir("kill");
  const std::string cmd = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 bash " +
                          std::string(CST_SOURCE_DIR) + "/scripts/kill-test.sh --bin " + CST_TRAIN_BIN + " --mpiexec " +
                          CST_MPIEXEC + " --out " + out + " --trials 10 --seed 5 --np 2 -- " + a + " > " + out +
                          ".log 2>&1";
  const int rc = std::system(cmd.c_str());
  const std::string log = testing::read_file(out + ".log");
  ASSERT_EQ(rc, 0) << log;
  std::printf("%s", log.c_str());
  std::smatch mid_prune;
  ASSERT_TRUE(std::regex_search(log, mid_prune, std::regex("(\\d+) mid-prune"))) << log;
  EXPECT_GE(std::stoi(mid_prune[1]), 1) << "no kill landed in the middle of pruning";
  for (int t = 1; t <= 10; ++t) {
    const std::string w = out + "/trial_" + std::to_string(t) + "/model.h5";
    ASSERT_TRUE(fs::exists(w)) << w;
    EXPECT_TRUE(testing::bitwise_equal(straight, testing::load_params(w))) << "trial " << t;
  }
}

}  // namespace
}  // namespace cst
