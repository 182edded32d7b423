// The parts of a training run, each built alone: TrainData from shards and a layout (no model,
// no communicator), batches as tensors for every rank of a sequence, and ModelState on one rank
// (no data).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "comm/communicator.h"
#include "tests/dataio/test_util.h"
#include "trainer/batch_tensors.h"
#include "trainer/model_state.h"
#include "trainer/run_context.h"
#include "trainer/train_data.h"

namespace cst::trainer {
namespace {

namespace fs = std::filesystem;

TrainConfig mlm_config(const std::string& train, const std::string& valid, int64_t S) {
  TrainConfig cfg;
  cfg.model.task = model::Task::kMlm;
  cfg.model.vocab_size = 64, cfg.model.d_model = 16, cfg.model.n_heads = 2, cfg.model.n_layers = 1;
  cfg.model.d_ff = 32, cfg.model.max_seq_len = 32, cfg.model.slice_len = 8;
  cfg.data.train = train, cfg.data.valid = valid, cfg.data.seq_len = 0;
  cfg.train.global_batch = 8, cfg.train.micro_batch = 4;
  cfg.dist.seq_parallel = S;
  return cfg;
}

class TrainParts : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_.file("mlm32"));
    fs::create_directories(dir_.file("mlm24"));
    dataio::testing::write_mlm_fixture(dir_.file("mlm32/shard0.h5"), 40, 32, 64, 3);
    dataio::testing::write_mlm_fixture(dir_.file("mlm24/shard0.h5"), 40, 24, 64, 5);
  }
  dataio::testing::TempDir dir_;
};

// Rank 3 of 4 with S = 2: replica 1 of 2 reads its samples; splits of another length refused.
TEST_F(TrainParts, TrainDataAloneOpensSplitsAndChecksThemAgainstTheLayout) {
  const TrainConfig cfg = mlm_config(dir_.file("mlm32"), dir_.file("mlm32"), 2);
  const ParallelLayout layout(cfg.layout_spec(4, 3));
  TrainData d(cfg, TaskKind::of(cfg.model), layout);
  EXPECT_EQ(d.seq_len, 32);
  ASSERT_TRUE(d.valid_src);
  const dataio::LoaderOptions lo = d.loader_options(false);
  EXPECT_EQ(lo.rank, 1);
  EXPECT_EQ(lo.world_size, 2);
  EXPECT_FALSE(lo.train);
  d.start_loader("");
  const auto b = d.loader->next();
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->rows, 4) << "global batch 8 over 2 replicas";

  const TrainConfig short_valid = mlm_config(dir_.file("mlm32"), dir_.file("mlm24"), 2);
  dataio::testing::expect_input_error(
      [&] { TrainData(short_valid, TaskKind::of(short_valid.model), ParallelLayout(short_valid.layout_spec(2, 0))); },
      {"data.valid = '" + dir_.file("mlm24") + "'", "24 tokens", "training length is 32", "dist.seq_parallel = 2"});
  const TrainConfig one_rank = mlm_config(dir_.file("mlm32"), dir_.file("mlm24"), 1);
  EXPECT_NO_THROW(TrainData(one_rank, TaskKind::of(one_rank.model), ParallelLayout(one_rank.layout_spec(2, 1))));
}

// The S ranks of a sequence hold its tokens in rank order; an LM rank's last target is the next
// rank's first input.
TEST(BatchTensors, RanksOfASequenceTileTheWholeBatch) {
  dataio::Batch b;
  b.rows = 3, b.cols = 33;  // LM windows of N + 1 = 33 tokens
  b.input_ids = dataio::testing::random_tokens(b.rows * b.cols, 64, 7);
  LayoutSpec spec;
  spec.slice_len = 8;
  const BatchTensors whole = batch_tensors(b, TaskKind{}, 32, ParallelLayout(spec));
  ASSERT_EQ(whole.inputs.sizes(), (std::vector<int64_t>{3, 32}));
  EXPECT_FALSE(whole.mask.defined());
  EXPECT_TRUE(torch::equal(whole.labels.narrow(1, 0, 31), whole.inputs.narrow(1, 1, 31)));
  EXPECT_EQ(whole.count(), 3 * 32);
  spec.world_size = 4, spec.seq_parallel = 4;
  std::vector<torch::Tensor> inputs, labels;
  for (int r = 0; r < 4; ++r) {
    spec.rank = r;
    const BatchTensors t = batch_tensors(b, TaskKind{}, 32, ParallelLayout(spec));
    EXPECT_EQ(t.inputs.size(1), 8);
    inputs.push_back(t.inputs), labels.push_back(t.labels);
  }
  EXPECT_TRUE(torch::equal(torch::cat(inputs, 1), whole.inputs));
  EXPECT_TRUE(torch::equal(torch::cat(labels, 1), whole.labels));
  const BatchTensors rows = whole.rows(1, 2, torch::kCPU);
  EXPECT_TRUE(torch::equal(rows.inputs, whole.inputs.narrow(0, 1, 2)));
  spec.rank = 0;
  b.cols = 30;  // 29 tokens do not split over 4 ranks: an error, not dropped tokens
  b.input_ids.resize(static_cast<size_t>(b.rows * b.cols));
  EXPECT_THROW(batch_tensors(b, TaskKind{}, 29, ParallelLayout(spec)), Error);
}

// The model and optimizer of one rank, without data: identical from the same seed.
TEST(ModelStateAlone, BuildsTheSameModelFromTheSeed) {
  comm::LocalCommunicator local;
  const TrainConfig cfg = mlm_config("unused", "", 1);
  RunContext ctx(cfg, local, ProcessInfo{}, nullptr);
  ModelState a(ctx, cfg.model), b(ctx, cfg.model);
  ASSERT_FALSE(a.params.empty());
  ASSERT_EQ(a.params.size(), b.params.size());
  for (size_t i = 0; i < a.params.size(); ++i) EXPECT_TRUE(torch::equal(a.params[i].second, b.params[i].second));
  EXPECT_EQ(a.model->sequence_parallel(), nullptr);
  EXPECT_EQ(a.opt->steps_taken(), 0);
}

}  // namespace
}  // namespace cst::trainer
