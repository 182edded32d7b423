// The overlapped schedule of sequence parallelism's exchanges (model/seq_parallel.h, SeqGroup),
// under mpirun with the world as one group (built twice: with the communication thread, and at
// MPI_THREAD_FUNNELED where the exchanges are deferred until waited for): a CSA layer gives
// bitwise the same outputs and gradients overlapped as blocking, for every composition, both
// kernels, causal and bidirectional, and sends the halos' gradients early in backward and keeps the all-gather's
// reduce-scatter in flight until x's gradient; the independent work runs between a gather's start and its wait, once,
// in the caller's grad mode, and its backward while the gather's reduce-scatter is in flight; a started halo exchange
// waited for after other work equals the blocking one, gradients included.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <tuple>

#include "comm/mpi_communicator.h"
#include "model/attention.h"
#include "model/autograd_op.h"
#include "model/seq_parallel.h"
#include "tests/comm/mpi_main.h"
#include "tests/model/test_util.h"

namespace cst::model {
namespace {

using torch::Tensor;

// The group: every rank of the world (S = W).
comm::Communicator& world() { return comm::testing::world(); }

struct LayerRun {
  Tensor y, grad_x;
  std::vector<Tensor> grads;
  ExchangeTimes times;
};

// One layer's forward + backward on this rank's chunk of a random sequence (the same on every
// rank), with the exchanges scheduled as `overlap` says.
LayerRun run_layer(const ModelConfig& cfg, bool overlap) {
  comm::Communicator& g = world();
  const int S = g.size();
  const int64_t T = 3 * cfg.slice_len, B = 2, D = cfg.d_model;
  torch::manual_seed(5);
  CompositeSliceAttention layer(cfg);
  Tensor whole = torch::randn({B, S * T, D});
  Tensor mask = torch::ones({B, S * T}, torch::kBool);
  mask.index_put_({1, torch::indexing::Slice(S * T - 5, torch::indexing::None)}, false);  // padding at the end
  Tensor x = whole.narrow(1, g.rank() * T, T).clone().requires_grad_(true);
  Tensor m = mask.narrow(1, g.rank() * T, T).contiguous();
  LayerContext ctx;
  ctx.local = torch::randn({cfg.window(), D}) * 0.1;
  ctx.global = torch::randn({cfg.max_slices(), D}) * 0.1;
  ctx.sp = std::make_shared<SeqChunk>(
      SeqChunk::make(g, m, true, g.rank() * T, cfg.slice_len, cfg.extension(), cfg.causal()));
  ctx.sp->group->overlap = overlap;
  LayerRun r;
  r.y = layer.forward(x, m, ctx);
  (r.y * torch::randn_like(r.y)).sum().backward();
  r.grad_x = x.grad();
  for (const Tensor& p : layer.parameters()) r.grads.push_back(p.grad());
  r.times = *ctx.sp->group->times;
  return r;
}

using Case = std::tuple<Composition, CsaKernel, Task>;
class SeqOverlap : public ::testing::TestWithParam<Case> {};

TEST_P(SeqOverlap, OverlappedEqualsBlockingBitwise) {
  const auto [comp, kernel, task] = GetParam();
  ModelConfig cfg = testing::small_config(task, /*alpha=*/2.0, /*slice_len=*/4, /*max_len=*/64);
  cfg.composition = comp, cfg.csa_kernel = kernel;
  const LayerRun blocking = run_layer(cfg, false), overlapped = run_layer(cfg, true);
  EXPECT_TRUE(overlapped.y.equal(blocking.y));
  EXPECT_TRUE(overlapped.grad_x.equal(blocking.grad_x));
  ASSERT_EQ(overlapped.grads.size(), blocking.grads.size());
  for (size_t i = 0; i < blocking.grads.size(); ++i)
    if (blocking.grads[i].defined()) {
      EXPECT_TRUE(overlapped.grads[i].equal(blocking.grads[i])) << "parameter " << i;
    }
  // One halo and one gather waited for in forward; work ran beside the gather unless the
  // composition leaves none (global-local: local attention reads the gathered result).
  // Backward: the halos' gradients leave before x's gradient is complete wherever a halo was
  // used (every rank but the first when causal), only when overlapping.
  EXPECT_EQ(blocking.times.halo_grads_early, 0);
  EXPECT_EQ(overlapped.times.halo_grads_early, task == Task::kLm && world().rank() == 0 ? 0 : 1);
  // The gather's reduce-scatter is started in the gathered output's node and, only when
  // overlapping, waited for later, in x's node.
  EXPECT_EQ(blocking.times.gather_grads_early, 0);
  EXPECT_EQ(overlapped.times.gather_grads_early, 1);
  for (const ExchangeTimes* t : {&blocking.times, &overlapped.times}) {
    EXPECT_EQ(t->gather_grads_started, 1);
    EXPECT_EQ(t->gather_grad_waits, 1);
    EXPECT_EQ(t->halo_waits, 1);
    EXPECT_EQ(t->gather_waits, 1);
    EXPECT_EQ(t->gathers_overlapped, comp == Composition::kGlobalLocal ? 0 : 1);
    EXPECT_GE(t->backward_exchanges, 2);
  }
}

INSTANTIATE_TEST_SUITE_P(All, SeqOverlap,
                         ::testing::Combine(::testing::Values(Composition::kLocalGlobal, Composition::kParallel,
                                                              Composition::kGlobalLocal),
                                            ::testing::Values(CsaKernel::kExplicit, CsaKernel::kFused),
                                            ::testing::Values(Task::kLm, Task::kMlm)));

TEST(SeqOverlapGroup, IndependentWorkRunsBetweenStartAndWaitOnce) {
  comm::Communicator& g = world();
  const int S = g.size(), R = g.rank();
  for (bool overlap : {true, false}) {
    SeqGroup group;
    group.comm = &g;
    group.overlap = overlap;
    Tensor x = torch::full({1, 2, 3}, static_cast<float>(R)).requires_grad_(true);
    Tensor z = torch::ones({2}).requires_grad_(true), local;
    int ran = 0;
    bool grad_mode = false;
    int64_t in_flight = -1;  // the gather's reduce-scatters in flight when the independent work's backward ran
    int64_t waited = -1;     // the gather's waits done when the independent work ran
    const ExchangeTimes& t = *group.times;
    Tensor all = all_gather_seq(group, x, [&] {
      ++ran, grad_mode = torch::GradMode::is_enabled(), waited = t.gather_waits;
      std::vector<Tensor> out{z.detach()};
      attach_backward("Probe", {z}, out, [&](std::vector<Tensor> grads) {
        in_flight = t.gather_grads_started - t.gather_grad_waits;
        return grads;
      });
      local = out[0];
    });
    EXPECT_EQ(ran, 1);
    EXPECT_TRUE(grad_mode);
    EXPECT_EQ(waited, overlap ? 0 : 1) << "overlapped: after the gather's start, before its wait";
    EXPECT_EQ(t.gather_waits, 1);
    EXPECT_EQ(group.times->gathers_overlapped, 1);
    for (int q = 0; q < S; ++q) EXPECT_TRUE(all.narrow(1, 2 * q, 2).equal(torch::full({1, 2, 3}, float(q))));
    (all.sum() + local.sum()).backward();  // the reduce-scatter of ones: S per element
    EXPECT_TRUE(x.grad().equal(torch::full({1, 2, 3}, static_cast<float>(S))));
    EXPECT_TRUE(z.grad().equal(torch::ones({2})));
    EXPECT_EQ(in_flight, overlap ? 1 : 0);
    EXPECT_EQ(t.gather_grads_early, overlap ? 1 : 0);
    EXPECT_EQ(t.gather_grad_waits, 1);
    // Without independent work the gather overlaps nothing.
    all_gather_seq(group, x.detach());
    EXPECT_EQ(group.times->gathers_overlapped, 1);
  }
}

TEST(SeqOverlapGroup, StartedHaloWaitedLaterEqualsBlocking) {
  comm::Communicator& g = world();
  for (bool both : {false, true}) {
    Tensor base = torch::randn({2, 6, 4}) + g.rank();
    Tensor x1 = base.clone().requires_grad_(true), x2 = base.clone().requires_grad_(true);
    const Halo blocking = halo_exchange(g, x1, 2, both);
    auto times = std::make_shared<ExchangeTimes>();
    PendingHalo pending = start_halo_exchange(g, x2, 2, both, times);
    Tensor busy = torch::matmul(pending.x(), pending.x().transpose(1, 2));  // work on x while the halos fly
    const Halo overlapped = pending.wait();
    EXPECT_TRUE(overlapped.left.equal(blocking.left));
    if (both) {
      EXPECT_TRUE(overlapped.right.equal(blocking.right));
    }
    auto loss = [&](const Halo& h) {
      Tensor l = (h.x * h.x).sum() + (h.left * 3).sum();
      return both ? l + (h.right * 5).sum() : l;
    };
    loss(blocking).backward();
    (loss(overlapped) + busy.sum() * 0).backward();
    EXPECT_TRUE(x2.grad().equal(x1.grad()));
    EXPECT_EQ(times->halo_waits, 1);
    EXPECT_EQ(times->backward_exchanges, 1);
  }
}

}  // namespace
}  // namespace cst::model
