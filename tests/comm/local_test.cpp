// Single-process tests: LocalCommunicator semantics, the factory, and GradReducer's bucketing,
// hook-driven launches, accumulation micro-steps, unused parameters and watchdog on one rank.
#include <gtest/gtest.h>

#include <thread>

#include "comm/communicator.h"
#include "comm/factory.h"
#include "comm/reducer.h"
#include "tests/comm/test_util.h"

namespace cst::comm {
namespace {

using testing::CountingCommunicator;
using testing::grads_of;
using testing::loss_of;
using testing::Net;
using testing::small_buckets;

TEST(LocalCommunicator, CollectivesHaveSingleRankMeaning) {
  LocalCommunicator c;
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.size(), 1);
  EXPECT_STREQ(c.backend(), "local");
  at::Tensor f = at::arange(6, at::kFloat).reshape({2, 3}), f0 = f.clone();
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin}) {
    c.all_reduce(f, op);
    EXPECT_TRUE(f.equal(f0));
  }
  auto w = c.all_reduce_async(f, ReduceOp::kSum);
  EXPECT_TRUE(w->done());
  w->wait(1.0);
  at::Tensor out = at::zeros({1, 2, 3});
  c.all_gather(f, out);
  EXPECT_TRUE(out[0].equal(f0));
  at::Tensor r = at::zeros({2, 3});
  c.send_recv(f, 0, r, 0);
  EXPECT_TRUE(r.equal(f0));
  c.send_recv(f, -1, r, -1);
  at::Tensor scattered = at::zeros({2, 3});
  c.reduce_scatter(out, scattered, ReduceOp::kSum);
  EXPECT_TRUE(scattered.equal(f0));
  auto sub = c.split(3, 0);
  EXPECT_EQ(sub->size(), 1);
  EXPECT_STREQ(sub->backend(), "local");
  c.broadcast(f, 0);
  c.barrier();
  EXPECT_EQ(c.all_reduce_scalar(2.5, ReduceOp::kAvg), 2.5);
  EXPECT_EQ(c.all_reduce_int(7, ReduceOp::kMax), 7);
  EXPECT_EQ(c.collective_device(), at::Device(at::kCPU));
  EXPECT_EQ(c.all_reduce_doubles({1.5, -2.0}), (std::vector<double>{1.5, -2.0}));
  EXPECT_TRUE(c.all_reduce_doubles({}).empty());
}

TEST(LocalCommunicator, ErrorsNameTheProblem) {
  LocalCommunicator c;
  at::Tensor i = at::ones({3}, at::kLong);
  testing::expect_error([&] { c.all_reduce(i, ReduceOp::kAvg); }, {"kAvg needs a floating dtype"});
  EXPECT_THROW(c.all_reduce_int(1, ReduceOp::kAvg), Error);
  at::Tensor bad = at::zeros({2, 3});
  EXPECT_THROW(c.all_gather(i, bad), Error);
  EXPECT_THROW(c.broadcast(i, 1), Error);
  EXPECT_THROW(c.send_recv(i, 1, i, -1), Error);
  EXPECT_THROW(c.reduce_scatter(bad, i), Error);
  EXPECT_THROW(c.split(-1, 0), Error);
}

TEST(MakeCommunicator, BackendsAndErrors) {
  EXPECT_STREQ(make_communicator(nullptr, "local")->backend(), "local");
#ifndef CST_WITH_NCCL
  EXPECT_STREQ(make_communicator(nullptr, "auto")->backend(), "local");
#endif
  EXPECT_THROW(make_communicator(nullptr, "mpi"), InputError);
  EXPECT_THROW(make_communicator(nullptr, "nccl"), InputError);
  try {
    make_communicator(nullptr, "gloo");
    FAIL() << "no throw";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown communicator backend 'gloo'"), std::string::npos);
  }
}

TEST(GradReducer, BucketsInReverseOrderWithThresholds) {
  LocalCommunicator comm;
  Net net;
  GradReducer r(comm, net, small_buckets());
  auto layout = r.bucket_layout();
  ASSERT_EQ(layout.size(), 3u);
  // first bucket closes at >= 64 bytes, later ones at >= 256.
  EXPECT_EQ(layout[0].params, (std::vector<std::string>{"c.bias", "c.weight"}));
  EXPECT_EQ(layout[0].bytes, 72);
  EXPECT_EQ(layout[1].params, (std::vector<std::string>{"b.bias", "b.weight"}));
  EXPECT_EQ(layout[1].bytes, 288);
  EXPECT_EQ(layout[2].params, (std::vector<std::string>{"a.bias", "a.weight"}));
  EXPECT_EQ(layout[2].bytes, 160);

  // Defaults (1 MiB, 25 MiB): everything in one bucket, still in reverse order.
  GradReducer d(comm, net);
  auto one = d.bucket_layout();
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].params.front(), "c.bias");
  EXPECT_EQ(one[0].params.back(), "a.weight");
}

TEST(GradReducer, FirstBucketStartsBeforeBackwardEnds) {
  LocalCommunicator local;
  CountingCommunicator comm(local);
  Net net;
  GradReducer r(comm, net, small_buckets());
  // a.weight's gradient is computed last (first layer); bucket 0 (layer c) must be in flight by then.
  int launched_when_a_ready = -1;
  net.a->weight.register_hook([&](const at::Tensor& g) {
    launched_when_a_ready = testing::async_calls(comm);
    return g;
  });
  r.prepare_for_backward(true);
  loss_of(net, 1).backward();
  EXPECT_GE(launched_when_a_ready, 1);
  EXPECT_EQ(testing::async_calls(comm), 3);
  r.finalize(0);
  EXPECT_EQ(r.last_stats().buckets, 3);
  EXPECT_EQ(r.last_stats().buckets_launched_in_backward, 3);
  EXPECT_EQ(r.last_stats().bytes, 72 + 288 + 160);
}

TEST(GradReducer, OneRankKeepsGradientsAndAccumulationDoesNotCommunicate) {
  LocalCommunicator local;
  CountingCommunicator comm(local);
  Net ref, net;
  {
    auto src = ref.parameters();
    auto dst = net.parameters();
    at::NoGradGuard ng;
    for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
  }
  for (int m = 0; m < 3; ++m) loss_of(ref, 10 + m).backward();
  GradReducer r(comm, net, small_buckets());
  r.prepare_for_backward(false);
  loss_of(net, 10).backward();
  r.finalize(0);  // a no-op after a non-synchronising backward
  r.prepare_for_backward(false);
  loss_of(net, 11).backward();
  EXPECT_EQ(comm.total().calls, 0);
  r.prepare_for_backward(true);
  loss_of(net, 12).backward();
  r.finalize(0);
  EXPECT_EQ(testing::async_calls(comm), 3);
  auto a = grads_of(ref), b = grads_of(net);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::allclose(a[i], b[i], 1e-6, 1e-6)) << i;
}

TEST(GradReducer, MisuseIsReported) {
  LocalCommunicator comm;
  Net net;
  GradReducer r(comm, net, small_buckets());
  EXPECT_THROW(r.finalize(0), Error);  // no prepare_for_backward
  r.prepare_for_backward(true);
  loss_of(net, 1).backward();
  EXPECT_THROW(r.prepare_for_backward(true), Error);  // previous step not finalized
  r.finalize(0);
  // A backward outside a step is ignored.
  loss_of(net, 2).backward();
}

TEST(GradReducer, UnusedParameterIsZeroAndWarnedOnce) {
  LocalCommunicator comm;
  Net net(/*with_unused=*/true);
  GradReducer r(comm, net, small_buckets());
  ::testing::internal::CaptureStderr();
  r.prepare_for_backward(true);
  loss_of(net, 1).backward();
  r.finalize(0);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("u.weight"), std::string::npos) << err;
  EXPECT_NE(err.find("u.bias"), std::string::npos) << err;
  ASSERT_TRUE(net.u->weight.grad().defined());
  EXPECT_EQ(net.u->weight.grad().abs().sum().item<double>(), 0.0);
  ::testing::internal::CaptureStderr();
  r.prepare_for_backward(true);
  loss_of(net, 2).backward();
  r.finalize(1);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

// A communicator whose non-blocking all-reduce never completes.
class StuckCommunicator : public LocalCommunicator {
 public:
  class StuckWork : public Work {
   public:
    bool done() override { return false; }
    void wait(double timeout_s) override {
      std::this_thread::sleep_for(std::chrono::duration<double>(timeout_s));
      throw CommTimeout("stuck all_reduce did not complete");
    }
  };
  std::unique_ptr<Work> all_reduce_async(at::Tensor, ReduceOp) override { return std::make_unique<StuckWork>(); }
};

TEST(GradReducer, WatchdogNamesBucketBytesAndStep) {
  StuckCommunicator comm;
  Net net;
  ReducerOptions o = small_buckets();
  o.timeout_s = 0.05;
  GradReducer r(comm, net, o);
  r.prepare_for_backward(true);
  loss_of(net, 1).backward();
  try {
    r.finalize(7);
    FAIL() << "no throw";
  } catch (const CommTimeout& e) {
    std::string m = e.what();
    for (const char* s : {"all_reduce of bucket 0", "72 bytes", "step 7", "c.bias", "0.05 s"})
      EXPECT_NE(m.find(s), std::string::npos) << s << " not in: " << m;
  }
}

}  // namespace
}  // namespace cst::comm
