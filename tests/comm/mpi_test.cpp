// MPI tests, run under mpirun with 2 and 4 ranks: MpiCommunicator collectives, errors, timeout
// and synchronous fallback; GradReducer on a small CST model (bucketed overlapped reduction ==
// one flat all-reduce; accumulation micro-steps silent; unused parameters; broadcast_parameters
// and its mismatch checks).
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "comm/factory.h"
#include "comm/mpi_communicator.h"
#include "comm/reducer.h"
#include "model/loss.h"
#include "model/model.h"
#include "tests/comm/mpi_main.h"
#include "tests/comm/test_util.h"

namespace cst::comm {
namespace {

using testing::CountingCommunicator;
using testing::expect_error;

MpiCommunicator& comm() {
  static MpiCommunicator c(testing::mpi());
  return c;
}

// Rank r's tensor: base + r, of dtype.
at::Tensor per_rank(at::ScalarType dtype, int r) {
  return (at::arange(6, at::kDouble).reshape({2, 3}) + 10 * r).to(dtype);
}

TEST(MpiCommunicator, AllReduceOps) {
  MpiCommunicator& c = comm();
  const int W = c.size(), R = c.rank();
  EXPECT_STREQ(c.backend(), "mpi");
  EXPECT_TRUE(c.overlapping());
  at::Tensor sum_ref = at::zeros({2, 3}, at::kDouble);
  for (int r = 0; r < W; ++r) sum_ref += per_rank(at::kDouble, r);
  for (auto dt : {at::kFloat, at::kDouble, at::kLong, at::kInt, at::kBFloat16}) {
    at::Tensor t = per_rank(dt, R);
    c.all_reduce(t, ReduceOp::kSum);
    EXPECT_TRUE(t.to(at::kDouble).equal(sum_ref)) << dt;
    t = per_rank(dt, R);
    c.all_reduce(t, ReduceOp::kMax);
    EXPECT_TRUE(t.to(at::kDouble).equal(per_rank(at::kDouble, W - 1))) << dt;
    t = per_rank(dt, R);
    c.all_reduce(t, ReduceOp::kMin);
    EXPECT_TRUE(t.to(at::kDouble).equal(per_rank(at::kDouble, 0))) << dt;
  }
  for (auto dt : {at::kFloat, at::kDouble}) {
    at::Tensor t = per_rank(dt, R);
    c.all_reduce(t, ReduceOp::kAvg);
    EXPECT_TRUE(at::allclose(t.to(at::kDouble), sum_ref / W)) << dt;
  }
  // bool: or / and; a non-contiguous view is reduced in place.
  at::Tensor b = at::full({3}, R == 0, at::kBool);
  c.all_reduce(b, ReduceOp::kMax);
  EXPECT_TRUE(b.all().item<bool>());
  b = at::full({3}, R == 0, at::kBool);
  c.all_reduce(b, ReduceOp::kMin);
  EXPECT_FALSE(b.any().item<bool>());
  at::Tensor m = per_rank(at::kFloat, R).t();
  c.all_reduce(m, ReduceOp::kSum);
  EXPECT_TRUE(m.to(at::kDouble).equal(sum_ref.t()));
  EXPECT_DOUBLE_EQ(c.all_reduce_scalar(R + 0.5, ReduceOp::kAvg), (W - 1) / 2.0 + 0.5);
  EXPECT_EQ(c.all_reduce_int(R, ReduceOp::kSum), int64_t{W} * (W - 1) / 2);
  EXPECT_EQ(c.all_reduce_int(R, ReduceOp::kMax), W - 1);
  const std::vector<double> v = c.all_reduce_doubles({1.0, 0.25 * R}, ReduceOp::kSum);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_DOUBLE_EQ(v[0], W);
  EXPECT_DOUBLE_EQ(v[1], 0.25 * W * (W - 1) / 2);
}

TEST(MpiCommunicator, AsyncAllReducesRunInIssueOrderWithBlockingOnes) {
  MpiCommunicator& c = comm();
  const int W = c.size(), R = c.rank();
  std::vector<at::Tensor> ts;
  std::vector<std::unique_ptr<Work>> ws;
  for (int i = 0; i < 8; ++i) {
    ts.push_back(at::full({1000 * (i + 1)}, static_cast<float>(R + i), at::kFloat));
    ws.push_back(c.all_reduce_async(ts.back(), ReduceOp::kSum));
  }
  at::Tensor blocking = at::full({5}, 1.0, at::kDouble);
  c.all_reduce(blocking, ReduceOp::kSum);  // queued behind the async ones
  EXPECT_TRUE(blocking.equal(at::full({5}, static_cast<double>(W), at::kDouble)));
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(ws[i]->done()) << i;  // completed before the later blocking call
    ws[i]->wait(10.0);
    EXPECT_GE(ws[i]->elapsed_seconds(), 0.0);
    const float expect = static_cast<float>(W * (W - 1) / 2 + W * i);
    EXPECT_TRUE(ts[i].equal(at::full_like(ts[i], expect))) << i;
  }
}

TEST(MpiCommunicator, BroadcastAllGatherSendRecv) {
  MpiCommunicator& c = comm();
  const int W = c.size(), R = c.rank();
  for (auto dt : {at::kFloat, at::kBFloat16, at::kLong, at::kByte}) {
    at::Tensor t = per_rank(dt, R);
    c.broadcast(t, W - 1);
    EXPECT_TRUE(t.equal(per_rank(dt, W - 1))) << dt;
    at::Tensor out = at::empty({W, 2, 3}, at::TensorOptions().dtype(dt));
    c.all_gather(per_rank(dt, R), out);
    for (int r = 0; r < W; ++r) EXPECT_TRUE(out[r].equal(per_rank(dt, r))) << dt << " rank " << r;
  }
  // Ring: send to the right, receive from the left.
  at::Tensor recv = at::empty({2, 3}, at::kFloat);
  c.send_recv(per_rank(at::kFloat, R), (R + 1) % W, recv, (R + W - 1) % W);
  EXPECT_TRUE(recv.equal(per_rank(at::kFloat, (R + W - 1) % W)));
  // Open chain (halo exchange at the ends): rank 0 receives nothing, the last sends nothing.
  at::Tensor halo = at::full({4}, -1.0f);
  c.send_recv(per_rank(at::kFloat, R).flatten().narrow(0, 0, 4), R + 1 < W ? R + 1 : -1, halo, R - 1);
  if (R == 0)
    EXPECT_TRUE(halo.equal(at::full({4}, -1.0f)));
  else
    EXPECT_TRUE(halo.equal(per_rank(at::kFloat, R - 1).flatten().narrow(0, 0, 4)));
  c.barrier();
}

TEST(MpiCommunicator, ErrorsAreClearAndRaisedOnEveryRank) {
  MpiCommunicator& c = comm();
  at::Tensor z = at::zeros({4}, at::kComplexFloat);
  expect_error([&] { c.all_reduce(z, ReduceOp::kSum); }, {"all_reduce(sum)", "unsupported dtype", "32 bytes", "rank"});
  at::Tensor i = at::ones({4}, at::kLong);
  expect_error([&] { c.all_reduce(i, ReduceOp::kAvg); }, {"kAvg needs a floating dtype"});
  at::Tensor wrong = at::empty({c.size(), 4}, at::kInt);
  expect_error([&] { c.all_gather(i, wrong); }, {"all_gather", "out must be"});
  expect_error([&] { c.broadcast(i, c.size()); }, {"broadcast", "root"});
  // Still usable afterwards: the checks run before anything is communicated.
  EXPECT_EQ(c.all_reduce_int(1, ReduceOp::kSum), c.size());
}

TEST(MpiCommunicator, SynchronousFallbackWithoutCommThread) {
  MpiCommunicator::Options o;
  o.comm_thread = false;
  MpiCommunicator c(testing::mpi(), o);
  EXPECT_FALSE(c.overlapping());
  at::Tensor t = at::ones({10});
  auto w = c.all_reduce_async(t, ReduceOp::kSum);
  EXPECT_TRUE(w->done());
  EXPECT_TRUE(t.equal(at::full({10}, static_cast<float>(c.size()))));
}

TEST(MakeCommunicator, UnderMpi) {
  auto c = make_communicator(&testing::mpi(), "mpi", 30.0);
  EXPECT_STREQ(c->backend(), "mpi");
  EXPECT_EQ(c->size(), testing::mpi().size());
#ifndef CST_WITH_NCCL
  EXPECT_STREQ(make_communicator(&testing::mpi(), "auto")->backend(), "mpi");
#endif
  // "local" with several ranks is a configuration error, raised on every rank.
  EXPECT_THROW(make_communicator(&testing::mpi(), "local"), InputError);
  EXPECT_EQ(c->all_reduce_int(2, ReduceOp::kSum), 2 * c->size());
}

TEST(MpiCommunicator, PolledNonBlockingAllReduce) {
  MpiCommunicator::Options o;
  o.progress_sleep_us = 20;
  MpiCommunicator c(testing::mpi(), o);
  at::Tensor t = at::full({100000}, static_cast<double>(c.rank()), at::kDouble);
  auto w = c.all_reduce_async(t, ReduceOp::kAvg);
  w->wait(30.0);
  EXPECT_TRUE(t.equal(at::full_like(t, (c.size() - 1) / 2.0)));
}

TEST(MpiCommunicator, TimeoutNamesOperationBytesAndRank) {
  MpiCommunicator::Options o;
  o.timeout_s = 0.3;
  auto c = std::make_unique<MpiCommunicator>(testing::mpi(), o);
  at::Tensor t = at::ones({256});
  if (c->rank() == 0) {
    try {
      c->all_reduce(t, ReduceOp::kSum);
      ADD_FAILURE() << "no timeout";
    } catch (const CommTimeout& e) {
      std::string m = e.what();
      for (const char* s : {"all_reduce(sum)", "1024 bytes", "within 0.3 s", "rank 0"})
        EXPECT_NE(m.find(s), std::string::npos) << s << " in " << m;
    }
    EXPECT_THROW(c->barrier(), Error);  // unusable after a timeout
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // a slow peer
    c->all_reduce(t, ReduceOp::kSum);
  }
  c.reset();
  comm().barrier();  // the late collective completed everywhere
}

// ---- GradReducer on a small CST model --------------------------------------------------------

struct Tiny {
  model::ModelConfig cfg = testing::tiny_config();
  model::CstModel net{nullptr};
  explicit Tiny(int64_t init_seed) {
    at::manual_seed(init_seed);
    net = model::CstModel(cfg);
  }
  // Different data on every rank (and micro-step).
  at::Tensor loss(int rank, int micro = 0) {
    at::manual_seed(1000 + 17 * rank + micro);
    at::Tensor ids = at::randint(cfg.vocab_size, {2, cfg.max_seq_len}, at::kLong);
    return model::lm_loss(net->forward(ids), ids).mean();
  }
  at::Tensor flat_grads() {
    std::vector<at::Tensor> g;
    for (auto& p : net->parameters()) g.push_back(p.grad().flatten());
    return at::cat(g);
  }
  at::Tensor flat_params() {
    std::vector<at::Tensor> g;
    for (auto& p : net->parameters()) g.push_back(p.detach().flatten());
    return at::cat(g);
  }
};

ReducerOptions cst_buckets() {
  ReducerOptions o;
  o.first_bucket_bytes = 4096;
  o.bucket_bytes = 16384;
  return o;
}

// Max over ranks of |x_r - x_0|, checked on every rank.
double spread(Communicator& c, const at::Tensor& x) {
  at::Tensor all = at::empty({c.size(), x.numel()}, x.options());
  c.all_gather(x.contiguous(), all);
  return (all - all[0]).abs().max().item<double>();
}

TEST(GradReducer, BroadcastParametersMakesRanksEqual) {
  MpiCommunicator& c = comm();
  Tiny m(/*init_seed=*/1 + c.rank());
  GradReducer r(c, *m.net, cst_buckets());
  if (c.size() > 1) {
    EXPECT_GT(spread(c, m.flat_params()), 0.0);
  }
  r.broadcast_parameters(m.cfg.hash());
  EXPECT_EQ(spread(c, m.flat_params()), 0.0);
}

TEST(GradReducer, BroadcastParametersRejectsMismatchOnEveryRank) {
  MpiCommunicator& c = comm();
  const int last = c.size() - 1;
  Tiny m(1);
  GradReducer r(c, *m.net, cst_buckets());
  expect_error([&] { r.broadcast_parameters(m.cfg.hash() + (c.rank() == last ? 1 : 0)); },
               {"config hash differs", "rank " + std::to_string(last)});

  model::ModelConfig other = m.cfg;
  if (c.rank() == last) other.d_ff = 48;
  at::manual_seed(2);
  model::CstModel net(other);
  GradReducer r2(c, *net, cst_buckets());
  expect_error([&] { r2.broadcast_parameters(0); }, {"'layers.0.ffn.fc1.weight'", "[64, 32] Float on rank 0",
                                                     "[48, 32] Float on rank " + std::to_string(last)});

  model::ModelConfig deeper = m.cfg;
  if (c.rank() == last) deeper.n_layers = 3;
  model::CstModel net3(deeper);
  GradReducer r3(c, *net3, cst_buckets());
  expect_error([&] { r3.broadcast_parameters(0); }, {"trainable parameters", "rank " + std::to_string(last)});
  // No collective is left dangling: the communicator still works.
  EXPECT_EQ(c.all_reduce_int(1, ReduceOp::kSum), c.size());
}

// The bucketed, overlapped reduction equals one flat all-reduce of all gradients.
void check_bucketed_equals_flat(Communicator& c) {
  Tiny m(1);
  CountingCommunicator counting(c);
  GradReducer r(counting, *m.net, cst_buckets());
  r.broadcast_parameters(m.cfg.hash());
  const size_t nb = r.bucket_layout().size();
  ASSERT_GE(nb, 3u);
  EXPECT_EQ(r.bucket_layout().front().params.front(), "ln_f.bias");  // reverse registration order

  // Bucket 0 (last layers) must be in flight before the first layer's gradient is computed.
  int launched_at_first_layer = -1;
  m.net->tok_emb->weight.register_hook([&](const at::Tensor& g) {
    if (launched_at_first_layer < 0) launched_at_first_layer = testing::async_calls(counting);
    return g;
  });
  counting.reset();
  r.prepare_for_backward(true);
  m.loss(c.rank()).backward();
  r.finalize(0);
  EXPECT_GE(launched_at_first_layer, 1);
  EXPECT_EQ(r.last_stats().buckets_launched_in_backward, static_cast<int>(nb));
  EXPECT_EQ(testing::async_calls(counting), static_cast<int>(nb));
  at::Tensor bucketed = m.flat_grads();

  m.net->zero_grad();
  m.loss(c.rank()).backward();  // outside a step: the reducer ignores it
  at::Tensor flat = m.flat_grads();
  if (c.size() > 1) {
    EXPECT_GT(spread(c, flat), 0.0);  // the ranks' gradients differ
  }
  c.all_reduce(flat, ReduceOp::kAvg);
  EXPECT_LT((bucketed - flat).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(spread(c, bucketed), 0.0);
}

TEST(GradReducer, BucketedOverlappedEqualsFlatAllReduce) { check_bucketed_equals_flat(comm()); }

TEST(GradReducer, BucketedEqualsFlatWithoutCommThread) {
  MpiCommunicator::Options o;
  o.comm_thread = false;
  MpiCommunicator sync(testing::mpi(), o);
  check_bucketed_equals_flat(sync);
}

TEST(GradReducer, AccumulationMicroStepsDoNotCommunicate) {
  MpiCommunicator& c = comm();
  Tiny m(1), ref(1);
  CountingCommunicator counting(c);
  GradReducer r(counting, *m.net, cst_buckets());
  r.broadcast_parameters(m.cfg.hash());
  {
    GradReducer rr(c, *ref.net, cst_buckets());
    rr.broadcast_parameters(ref.cfg.hash());
  }
  const int64_t before = counting.total().calls;
  for (int micro = 0; micro < 3; ++micro) {
    r.prepare_for_backward(false);
    m.loss(c.rank(), micro).backward();
  }
  r.finalize(0);
  EXPECT_EQ(counting.total().calls, before);
  r.prepare_for_backward(true);
  m.loss(c.rank(), 3).backward();
  r.finalize(0);
  EXPECT_EQ(testing::async_calls(counting), static_cast<int>(r.bucket_layout().size()));

  // Reference: the four micro-batches' gradients summed locally, then averaged over ranks.
  for (int micro = 0; micro < 4; ++micro) ref.loss(c.rank(), micro).backward();
  at::Tensor expect = ref.flat_grads();
  c.all_reduce(expect, ReduceOp::kAvg);
  EXPECT_LT((m.flat_grads() - expect).abs().max().item<double>(), 1e-6);
}

TEST(GradReducer, UnusedParameterOnAllRanksNeverHangs) {
  MpiCommunicator& c = comm();
  at::manual_seed(3);
  testing::Net net(/*with_unused=*/true);
  GradReducer r(c, net, testing::small_buckets());
  r.broadcast_parameters(0);
  ::testing::internal::CaptureStderr();
  for (int step = 0; step < 2; ++step) {
    r.prepare_for_backward(true);
    testing::loss_of(net, 50 + c.rank()).backward();
    r.finalize(step);
  }
  std::string err = ::testing::internal::GetCapturedStderr();
  if (c.rank() == 0) {
    EXPECT_NE(err.find("u.bias, u.weight"), std::string::npos) << err;
    EXPECT_EQ(err.find("warning", err.find("warning") + 1), std::string::npos) << "warned twice: " << err;
  } else {
    EXPECT_EQ(err.find("u.weight"), std::string::npos) << err;
  }
  EXPECT_EQ(net.u->weight.grad().abs().sum().item<double>(), 0.0);
  EXPECT_EQ(spread(c, net.a->weight.grad().flatten()), 0.0);
}

}  // namespace
}  // namespace cst::comm
