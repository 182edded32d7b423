// cst-train's execution choices end to end: an unknown name of each exits 2 naming the key and
// the value (command line and config file; every enum option: execution_choices_test), as does
// a --config that names a folder; rank 0 logs the resolved execution once; setup_execution
// resolves dist.device = auto to this host's device.
#include <gtest/gtest.h>

#include <fstream>

#include "tests/dataio/test_util.h"
#include "tests/trainer/job_util.h"
#include "trainer/trainer.h"

namespace cst::trainer {
namespace {

using cst::testing::JobResult;
using cst::testing::run_job;

TEST(ExecutionJob, UnknownNamesAndAFolderConfigExitTwo) {
  dataio::testing::TempDir dir;
  for (const std::string key :
       {"dist.backend", "dist.device", "dist.bf16", "dist.sdpa", "train.activation_checkpointing"}) {
    JobResult r = run_job(1, "--" + key + " bogus", dir.file(key));
    EXPECT_EQ(r.code, 2) << key << ": " << r.err;
    EXPECT_NE(r.err.find(key + " = 'bogus'"), std::string::npos) << r.err;
  }
  std::ofstream(dir.file("bad.cfg")) << "[data]\ntrain = x\n[dist]\nbf16 = bogus\n";
  JobResult r = run_job(1, "--config " + dir.file("bad.cfg"), dir.file("bad_cfg"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("dist.bf16 = 'bogus' is not one of {auto, on, off}"), std::string::npos) << r.err;
  r = run_job(1, "--config " + dir.path().string(), dir.file("folder"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("'" + dir.path().string() + "'"), std::string::npos) << r.err;
}

// The line of the setup log that states the execution: rank 0 writes it once, whatever the
// number of ranks, and it holds what resolve_execution made of `auto` on this host.
TEST(ExecutionJob, ResolvedExecutionIsLoggedOnce) {
  dataio::testing::TempDir dir;
  dataio::testing::write_lm(dir.file("lm.h5"), dataio::testing::random_tokens(2000, 64, 1, 5), 64, 500);
  const std::string args =
      "--model.task lm --model.vocab_size 64 --model.d_model 16 --model.n_heads 2 --model.n_layers 1"
      " --model.d_ff 32 --model.max_seq_len 32 --model.slice_len 8 --model.alpha 2 --model.arch full"
      " --data.seq_len 32 --train.steps 1 --train.global_batch 4 --train.micro_batch 2 --log.peak_tflops 1"
      " --dist.threads 1 --checkpoint.save_final false --data.train " +
      dir.file("lm.h5") + " --log.dir " + dir.file("run");
  JobResult r = run_job(2, args, dir.file("run"));
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  const std::string all = r.out + r.err;
  size_t count = 0;
  for (size_t at = all.find(", device "); at != std::string::npos; at = all.find(", device ", at + 1)) ++count;
  EXPECT_EQ(count, 1u) << all;
  const std::string expected = torch::cuda::is_available()
                                   ? ", device cuda:0 (bf16 autocast); full attention through SDPA;"
                                   : ", device cpu; train samples";
  EXPECT_NE(r.out.find(expected), std::string::npos) << r.out;
}

TEST(SetupExecution, AutoIsThisHostsDevice) {
  TrainConfig cfg;
  const ProcessInfo proc;
  Execution ex = setup_execution(cfg, proc);
  if (torch::cuda::is_available()) {
    EXPECT_EQ(ex.device, Device::cuda(proc.local_rank % static_cast<int>(torch::cuda::device_count())));
    EXPECT_TRUE(ex.bf16);
  } else {
    EXPECT_EQ(ex.device, Device::cpu()) << ex.str();
    EXPECT_FALSE(ex.bf16);
  }
  cfg.set("dist.device", "cpu");
  ex = setup_execution(cfg, proc);
  EXPECT_EQ(ex.device, Device::cpu());
  EXPECT_FALSE(ex.bf16);
}

}  // namespace
}  // namespace cst::trainer
