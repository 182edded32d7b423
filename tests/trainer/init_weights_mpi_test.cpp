// init.weights under mpirun: after the Trainer's setup, every rank holds the source's encoder
// tensors bit for bit (pos_global / abs_pos: their first rows for a shorter max_seq_len), and a
// fresh classifier head.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>

#include "comm/factory.h"
#include "model/model.h"
#include "model/weights_io.h"
#include "tests/comm/mpi_main.h"
#include "tests/dataio/test_util.h"
#include "trainer/init_weights.h"
#include "trainer/trainer.h"

namespace cst {
namespace {

namespace fs = std::filesystem;

TEST(InitWeightsMpi, EveryRankHoldsTheSourceEncoderAfterSetup) {
  comm::MpiEnvironment& mpi = comm::testing::mpi();
  auto comm = comm::make_communicator(&mpi, "mpi", 60);
  const std::string root = "/tmp/cst-init-mpi-" + std::to_string(static_cast<long>(getppid()));
  for (const std::string arch : {"cst", "full"}) {
    const std::string dir = root + "/" + arch, src_path = dir + "/mlm.h5";
    if (mpi.rank() == 0) {
      fs::remove_all(dir);
      fs::create_directories(dir + "/train");
      dataio::testing::write_cls_fixture(dir + "/train/a.h5", 32, 16, 64, 3);
      model::ModelConfig mc;
      mc.task = model::Task::kMlm, mc.arch = arch == "cst" ? model::Arch::kCst : model::Arch::kFull;
      mc.vocab_size = 64, mc.d_model = 16, mc.n_heads = 2, mc.n_layers = 2, mc.d_ff = 32;
      mc.max_seq_len = 32, mc.slice_len = 8;
      torch::manual_seed(99);
      model::CstModel src(mc);
      {
        torch::NoGradGuard g;
        for (auto& p : src->parameters()) p.add_(torch::rand_like(p));  // unlike any fresh init
      }
      model::save_weights(*src, src_path);
    }
    comm->barrier();
    trainer::TrainConfig cfg;
    cfg.model.task = model::Task::kCls, cfg.model.num_classes = 3, cfg.model.max_seq_len = 16;
    cfg.init.weights = src_path;
    cfg.data.train = dir + "/train", cfg.data.seq_len = 0;
    cfg.train.global_batch = 4, cfg.train.micro_batch = 2;
    cfg.log.dir = dir + "/run", cfg.log.peak_tflops = 1, cfg.log.tensorboard = false;
    cfg.dist.threads = 1;
    trainer::adopt_init_config(cfg, {"model.task", "model.num_classes", "model.max_seq_len"});
    cfg.validate(mpi.size());
    EXPECT_EQ(cfg.model.d_model, 16);
    const trainer::ProcessInfo proc = trainer::ProcessInfo::from_environment(mpi.rank(), mpi.size(), mpi.host());
    trainer::Trainer t(cfg, *comm, proc, nullptr);
    model::CstModel src = model::load_model(src_path);
    auto source = src->named_parameters();
    int compared = 0;
    for (const auto& p : t.model().named_parameters()) {
      const std::string& name = p.key();
      if (name.rfind("cls_head.", 0) == 0) {
        EXPECT_FALSE(source.contains(name));
        continue;
      }
      ASSERT_TRUE(source.contains(name)) << name;
      torch::Tensor want = source[name];
      if (name == "pos_global" || name == "abs_pos") {
        EXPECT_LT(p.value().size(0), want.size(0)) << name;
        want = want.narrow(0, 0, p.value().size(0));
      }
      EXPECT_TRUE(torch::equal(p.value().detach().cpu(), want)) << "rank " << mpi.rank() << " " << arch << " " << name;
      ++compared;
    }
    EXPECT_EQ(compared, arch == "cst" ? 37 : 36) << arch;
    comm->barrier();
  }
  if (mpi.rank() == 0) fs::remove_all(root);
}

}  // namespace
}  // namespace cst
