// NcclCommunicator and GradReducer on CUDA tensors. Built when CST_WITH_NCCL; every test is
// skipped, visibly ("SKIPPED: no CUDA device"), on machines without a GPU or with fewer GPUs
// than ranks. Ranks use device rank % device_count.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <gtest/gtest.h>

#include "comm/nccl_communicator.h"
#include "comm/reducer.h"
#include "model/loss.h"
#include "model/model.h"
#include "tests/comm/mpi_main.h"
#include "tests/comm/test_util.h"

namespace cst::comm {
namespace {

// The communicator, or null (and the reason) when this machine cannot run the test.
NcclCommunicator* comm_or_skip(std::string* why) {
  MpiEnvironment& env = testing::mpi();
  const int devices = NcclCommunicator::cuda_available() ? static_cast<int>(c10::cuda::device_count()) : 0;
  if (devices == 0) {
    *why = "SKIPPED: no CUDA device on this machine (NCCL tests need a GPU)";
    return nullptr;
  }
  if (devices < env.size()) {
    *why = "SKIPPED: no CUDA device for every rank (" + std::to_string(devices) + " devices, " +
           std::to_string(env.size()) + " ranks)";
    return nullptr;
  }
  static std::unique_ptr<NcclCommunicator> c;
  if (!c) {
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(env.rank() % devices));
    c = std::make_unique<NcclCommunicator>(env);
  }
  return c.get();
}

#define NCCL_OR_SKIP(var)                      \
  std::string why_;                            \
  NcclCommunicator* var = comm_or_skip(&why_); \
  if (var == nullptr) GTEST_SKIP() << why_

at::TensorOptions cuda(NcclCommunicator* c, at::ScalarType dt) {
  return at::TensorOptions().dtype(dt).device(at::kCUDA, c->device());
}

TEST(NcclCommunicator, Collectives) {
  NCCL_OR_SKIP(c);
  const int W = c->size(), R = c->rank();
  EXPECT_STREQ(c->backend(), "nccl");
  for (auto dt : {at::kFloat, at::kBFloat16, at::kDouble, at::kLong}) {
    at::Tensor t = at::full({1000}, R + 1, cuda(c, dt));
    c->all_reduce(t, ReduceOp::kSum);
    EXPECT_EQ(t.cpu().to(at::kDouble).max().item<double>(), W * (W + 1) / 2.0) << dt;
    t = at::full({1000}, R + 1, cuda(c, dt));
    c->all_reduce(t, ReduceOp::kMax);
    EXPECT_EQ(t.cpu().to(at::kDouble).min().item<double>(), W) << dt;
  }
  at::Tensor a = at::full({4096}, 2.0 * R, cuda(c, at::kFloat));
  auto w = c->all_reduce_async(a, ReduceOp::kAvg);
  w->wait(60.0);
  EXPECT_TRUE(w->done());
  EXPECT_NEAR(a.cpu().mean().item<double>(), W - 1.0, 1e-6);
  at::Tensor b = at::full({7}, R, cuda(c, at::kLong));
  c->broadcast(b, W - 1);
  EXPECT_EQ(b.cpu().min().item<int64_t>(), W - 1);
  at::Tensor out = at::empty({W, 3}, cuda(c, at::kFloat));
  c->all_gather(at::full({3}, R, cuda(c, at::kFloat)), out);
  for (int r = 0; r < W; ++r) EXPECT_EQ(out[r].cpu().sum().item<double>(), 3.0 * r);
  at::Tensor recv = at::empty({5}, cuda(c, at::kFloat));
  c->send_recv(at::full({5}, R, cuda(c, at::kFloat)), (R + 1) % W, recv, (R + W - 1) % W);
  EXPECT_EQ(recv.cpu().max().item<double>(), (R + W - 1) % W);
  c->barrier();
  at::Tensor cpu = at::ones({3});
  EXPECT_THROW(c->all_reduce(cpu, ReduceOp::kSum), Error);
}

// What sequence parallelism runs on its groups: split into groups, reduce_scatter, and the
// halo exchange along an open chain (rank 0 has no left neighbour, the last rank no right one:
// -1, nothing sent or received there). On 2 ranks with a GPU each (np1 runs the 1-rank case).
TEST(NcclCommunicator, SplitReduceScatterAndOpenChainSendRecv) {
  NCCL_OR_SKIP(c);
  const int W = c->size(), R = c->rank();
  // reduce_scatter: row r of rank q's input holds (q + 1) * (r + 1); this rank gets row R summed.
  at::Tensor in = (at::arange(1, W + 1, cuda(c, at::kFloat)).unsqueeze(1) * (R + 1)).expand({W, 4}).contiguous();
  at::Tensor out = at::empty({4}, cuda(c, at::kFloat));
  c->reduce_scatter(in, out, ReduceOp::kSum);
  EXPECT_EQ(out.cpu().min().item<double>(), (R + 1) * W * (W + 1) / 2.0);
  EXPECT_EQ(out.cpu().max().item<double>(), (R + 1) * W * (W + 1) / 2.0);
  // split: even and odd ranks, ranked by descending rank; a collective on each group sees its own.
  std::unique_ptr<Communicator> g = c->split(R % 2, -R);
  ASSERT_NE(g, nullptr);
  EXPECT_STREQ(g->backend(), "nccl");
  EXPECT_EQ(g->collective_device(), c->collective_device());
  int members = 0, above = 0, sum = 0;
  for (int q = R % 2; q < W; q += 2) members += 1, above += q > R, sum += q + 1;
  EXPECT_EQ(g->size(), members);
  EXPECT_EQ(g->rank(), above);
  at::Tensor t = at::full({3}, R + 1, cuda(c, at::kFloat));
  g->all_reduce(t, ReduceOp::kSum);
  EXPECT_EQ(t.cpu().max().item<double>(), sum);
  // open chain: send right, receive from the left; the ends pass -1.
  const int right = R + 1 < W ? R + 1 : -1, left = R > 0 ? R - 1 : -1;
  at::Tensor recv = at::full({6}, -1.0, cuda(c, at::kFloat));
  c->send_recv(at::full({6}, R, cuda(c, at::kFloat)), right, recv, left);
  EXPECT_EQ(recv.cpu().max().item<double>(), left) << "rank " << R;  // -1: untouched
  EXPECT_EQ(recv.cpu().min().item<double>(), left) << "rank " << R;
  c->barrier();
}

// The host-value helpers the trainer uses for losses, token counts and the preemption flag:
// NCCL rejects host tensors, so they must stage through collective_device().
// all_gather_async / send_recv_async on the side stream: issued after the caller's work so far
// (the input is written on the current stream just before), waited for in reverse order.
TEST(NcclCommunicator, AsyncGatherAndSendRecvEqualBlocking) {
  NCCL_OR_SKIP(c);
  const int W = c->size(), R = c->rank();
  at::Tensor in = at::empty({1 << 16}, cuda(c, at::kFloat));
  in.fill_(static_cast<float>(R));
  at::Tensor gathered = at::empty({W, 1 << 16}, cuda(c, at::kFloat)), recv = at::full({8}, -1.0f, cuda(c, at::kFloat));
  const int right = R + 1 < W ? R + 1 : -1, left = R > 0 ? R - 1 : -1;
  auto g = c->all_gather_async(in, gathered);
  auto h = c->send_recv_async(at::full({8}, static_cast<float>(R), cuda(c, at::kFloat)), right, recv, left);
  h->wait(60.0);
  g->wait(60.0);
  for (int q = 0; q < W; ++q) EXPECT_EQ(gathered[q].cpu().min().item<float>(), q) << q;
  EXPECT_EQ(recv.cpu().min().item<float>(), left >= 0 ? left : -1.0f);
}

// reduce_scatter_async on the side stream, issued after the caller's write of its input and
// beside an all_gather_async, waited for in reverse order: equals the blocking form.
TEST(NcclCommunicator, AsyncReduceScatterEqualsBlocking) {
  NCCL_OR_SKIP(c);
  const int W = c->size(), R = c->rank();
  // Row r of rank q's input holds (q + 1) * (r + 1): this rank gets (R + 1) * W (W + 1) / 2.
  at::Tensor in = at::empty({W, 1 << 12}, cuda(c, at::kFloat));
  for (int r = 0; r < W; ++r) in[r].fill_(static_cast<float>((R + 1) * (r + 1)));
  at::Tensor async_out = at::full({1 << 12}, -1.0f, cuda(c, at::kFloat)), blocking_out = at::empty_like(async_out);
  at::Tensor gathered = at::empty({W, 8}, cuda(c, at::kFloat));
  auto s = c->reduce_scatter_async(in, async_out);
  auto g = c->all_gather_async(at::full({8}, static_cast<float>(R), cuda(c, at::kFloat)), gathered);
  g->wait(60.0);
  s->wait(60.0);
  c->reduce_scatter(in, blocking_out);
  EXPECT_TRUE(async_out.equal(blocking_out));
  EXPECT_EQ(async_out.cpu().min().item<float>(), static_cast<float>((R + 1) * W * (W + 1) / 2));
  EXPECT_EQ(async_out.cpu().max().item<float>(), static_cast<float>((R + 1) * W * (W + 1) / 2));
  for (int q = 0; q < W; ++q) EXPECT_EQ(gathered[q].cpu().min().item<float>(), q) << q;
}

TEST(NcclCommunicator, HostValueHelpersStageThroughTheDevice) {
  NCCL_OR_SKIP(c);
  const int W = c->size(), R = c->rank();
  EXPECT_EQ(c->collective_device(), at::Device(at::kCUDA, c->device()));
  EXPECT_EQ(c->all_reduce_int(R + 1, ReduceOp::kSum), int64_t{W} * (W + 1) / 2);
  EXPECT_EQ(c->all_reduce_int(R, ReduceOp::kMax), W - 1);
  EXPECT_DOUBLE_EQ(c->all_reduce_scalar(R + 0.5, ReduceOp::kAvg), (W - 1) / 2.0 + 0.5);
  const std::vector<double> v = c->all_reduce_doubles({1.0, 0.25 * R, 1e300});
  ASSERT_EQ(v.size(), 3u);
  EXPECT_DOUBLE_EQ(v[0], W);
  EXPECT_DOUBLE_EQ(v[1], 0.25 * W * (W - 1) / 2);
  EXPECT_DOUBLE_EQ(v[2], 1e300 * W);
}

TEST(NcclCommunicator, ReducerOnCudaEqualsFlatAllReduce) {
  NCCL_OR_SKIP(c);
  model::ModelConfig cfg = testing::tiny_config();
  at::manual_seed(1);
  model::CstModel net(cfg);
  net->to(at::Device(at::kCUDA, c->device()));
  ReducerOptions o;
  o.first_bucket_bytes = 4096;
  o.bucket_bytes = 16384;
  GradReducer r(*c, *net, o);
  r.broadcast_parameters(cfg.hash());
  at::manual_seed(100 + c->rank());
  at::Tensor ids = at::randint(cfg.vocab_size, {2, cfg.max_seq_len}, at::kLong).to(at::kCUDA);
  auto loss = [&] { return model::lm_loss(net->forward(ids), ids).mean(); };
  r.prepare_for_backward(true);
  loss().backward();
  r.finalize(0);
  std::vector<at::Tensor> g;
  for (auto& p : net->parameters()) g.push_back(p.grad().flatten());
  at::Tensor bucketed = at::cat(g);
  net->zero_grad();
  loss().backward();
  g.clear();
  for (auto& p : net->parameters()) g.push_back(p.grad().flatten());
  at::Tensor flat = at::cat(g);
  c->all_reduce(flat, ReduceOp::kAvg);
  EXPECT_LT((bucketed - flat).abs().max().item<double>(), 1e-5);
}

}  // namespace
}  // namespace cst::comm
