// Sequence parallelism when MPI gives less than MPI_THREAD_MULTIPLE (this executable initialises
// MPI at MPI_THREAD_FUNNELED): the trainer's path, a gradient reducer on the world communicator
// launching its all-reduces from autograd hooks while the sequence-parallel exchanges of the same
// backward run on a group communicator split from it, both on the calling thread. One bucket per
// parameter, so that bucket launches fall between the exchanges (where, depends on each rank's
// autograd graph: rank 0 projects no left halo). It must neither deadlock (ctest's timeout) nor
// change the result: the averaged gradients equal one rank's on the whole batch within 1e-5.
// Also the guarantee underneath, with collectives issued in different orders on purpose (it
// hangs when all_reduce_async runs where it is issued).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "comm/mpi_communicator.h"
#include "comm/reducer.h"
#include "model/loss.h"
#include "model/model.h"
#include "tests/comm/mpi_main.h"
#include "tests/model/test_util.h"

namespace cst::model {
namespace {

using torch::Tensor;

// The guarantee itself, with an order no rank agreement can rescue: rank 0 starts a world
// all-reduce before a group exchange, the others after it. Entering the all-reduce when it is
// issued would block rank 0 in it while the others wait for rank 0 in the exchange.
TEST(SeqParallelThreadLevel, AllReduceAsyncWaitsForItsWait) {
  comm::MpiCommunicator::Options o;
  o.timeout_s = 60;
  comm::MpiCommunicator world(comm::testing::mpi(), o);
  const int S = world.size(), r = world.rank();
  auto group = world.split(0, r);
  Tensor grad = torch::full({5}, static_cast<double>(r + 1)), send = torch::full({3}, static_cast<double>(r));
  Tensor recv = torch::zeros({3});
  std::unique_ptr<comm::Work> work;
  if (r == 0) work = world.all_reduce_async(grad);
  group->send_recv(send, (r + 1) % S, recv, (r + S - 1) % S);
  if (r != 0) work = world.all_reduce_async(grad);
  work->wait(60);
  EXPECT_EQ(grad[0].item<double>(), S * (S + 1) / 2.0);
  EXPECT_EQ(recv[0].item<double>(), (r + S - 1) % S);
}

TEST(SeqParallelThreadLevel, ReducerHooksAndExchangesDoNotDeadlock) {
  comm::MpiEnvironment& env = comm::testing::mpi();
  ASSERT_LT(env.thread_level(), MPI_THREAD_MULTIPLE);
  comm::MpiCommunicator::Options o;
  o.timeout_s = 120;
  comm::MpiCommunicator world(env, o);
  ASSERT_FALSE(world.overlapping());
  const int S = world.size(), r = world.rank();
  auto group = world.split(0, r);
  for (Task task : {Task::kLm, Task::kMlm}) {
    ModelConfig cfg = testing::small_config(task, 3.0, /*slice_len=*/4, /*max_len=*/64);
    cfg.n_layers = 3, cfg.d_model = 16, cfg.d_ff = 32, cfg.init_std = 0.2;
    const int64_t N = S * 8;
    torch::manual_seed(11);
    Tensor ids = torch::randint(cfg.vocab_size, {2, N + 1}, torch::kLong);
    Tensor x = ids.narrow(1, 0, N), labels = task == Task::kLm ? ids.narrow(1, 1, N) : ids.narrow(1, 0, N);
    const double count = static_cast<double>(labels.numel());

    torch::manual_seed(5);
    CstModel one(cfg);
    (token_loss(one->forward(x), labels).sum / count).backward();

    torch::manual_seed(5);
    CstModel m(cfg);
    m->set_sequence_parallel(group.get());
    comm::ReducerOptions ro;
    ro.first_bucket_bytes = 1, ro.bucket_bytes = 1, ro.timeout_s = 120;  // a bucket per parameter
    comm::GradReducer reducer(world, *m, ro);
    const int64_t T = N / S;
    for (int64_t step = 0; step < 3; ++step) {
      m->zero_grad();
      reducer.prepare_for_backward(true);
      // Each rank's loss counts its own tokens, times the world size (the reducer averages).
      LossSum ls = token_loss(m->forward(x.narrow(1, r * T, T)), labels.narrow(1, r * T, T));
      (ls.sum * static_cast<double>(S) / count).backward();
      reducer.finalize(step);
    }
    EXPECT_GT(reducer.last_stats().buckets, 4);
    auto grad = [](const Tensor& p) { return p.grad().defined() ? p.grad() : torch::zeros_like(p); };
    auto a = one->parameters(), b = m->parameters();
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_LT(testing::max_abs_diff(grad(a[i]), grad(b[i])), 1e-5) << to_string(task) << " parameter " << i;
  }
}

}  // namespace
}  // namespace cst::model
