// MPI tests of the non-blocking all_gather_async, reduce_scatter_async and send_recv_async, run under mpirun with 2
// and 3 ranks, with the communication thread (MPI_THREAD_MULTIPLE) and without it (the same
// source built at MPI_THREAD_FUNNELED, where they are deferred until waited for): results equal
// the blocking forms, several in flight at once complete in issue order whichever is waited for
// first, a blocking collective issued after them sees them done, byte counts of the counting
// decorator, and the one-rank defaults.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <vector>

#include "comm/counting_communicator.h"
#include "comm/mpi_communicator.h"
#include "tests/comm/mpi_main.h"

namespace cst::comm {
namespace {

MpiCommunicator& world() {
  static MpiCommunicator c(testing::mpi());
  return c;
}

// What rank q contributes in round i: [2, 3] of q * 100 + i * 10 + k.
at::Tensor block(int q, int i, at::ScalarType dt = at::kFloat) {
  return (at::arange(6, at::kDouble).reshape({2, 3}) + q * 100 + i * 10).to(dt);
}

TEST(MpiAsync, AllGatherEqualsBlocking) {
  MpiCommunicator& c = world();
  const int W = c.size(), R = c.rank();
  for (auto dt : {at::kFloat, at::kDouble, at::kLong, at::kBFloat16, at::kBool}) {
    at::Tensor in = dt == at::kBool ? block(R, 0).gt(100 * R + 2) : block(R, 0, dt);
    at::Tensor async_out = at::empty({W, 2, 3}, in.options()), blocking_out = at::empty({W, 2, 3}, in.options());
    auto work = c.all_gather_async(in, async_out);
    c.all_gather(in, blocking_out);  // issued after: runs after the async one
    EXPECT_TRUE(work->done()) << dt;
    work->wait(60.0);
    EXPECT_TRUE(async_out.equal(blocking_out)) << dt;
    for (int q = 0; q < W; ++q)
      if (dt != at::kBool) EXPECT_TRUE(async_out[q].equal(block(q, 0, dt))) << dt << " rank " << q;
  }
}

// reduce_scatter_async over dtypes and ops: equals the blocking form issued after it, and the
// reduction computed here from every rank's input (row r of rank q's input is block(q, r)).
TEST(MpiAsync, ReduceScatterEqualsBlocking) {
  MpiCommunicator& c = world();
  const int W = c.size(), R = c.rank();
  for (auto dt : {at::kFloat, at::kDouble, at::kLong, at::kInt, at::kBFloat16})
    for (auto op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin, ReduceOp::kAvg}) {
      if (op == ReduceOp::kAvg && !at::isFloatingType(dt)) continue;
      std::vector<at::Tensor> rows;
      for (int r = 0; r < W; ++r) rows.push_back(block(R, r, dt));
      at::Tensor in = at::stack(rows);  // [W, 2, 3]
      at::Tensor async_out = at::full({2, 3}, -1, in.options()), blocking_out = at::full({2, 3}, -1, in.options());
      auto work = c.reduce_scatter_async(in, async_out, op);
      c.reduce_scatter(in, blocking_out, op);  // issued after: runs after the async one
      EXPECT_TRUE(work->done()) << dt << " " << to_string(op);
      work->wait(60.0);
      EXPECT_TRUE(async_out.equal(blocking_out)) << dt << " " << to_string(op);
      std::vector<at::Tensor> mine;  // what every rank q put in row R
      for (int q = 0; q < W; ++q) mine.push_back(block(q, R).to(at::kDouble));
      const at::Tensor all = at::stack(mine);
      at::Tensor want = op == ReduceOp::kSum   ? all.sum(0)
                        : op == ReduceOp::kMax ? std::get<0>(all.max(0))
                        : op == ReduceOp::kMin ? std::get<0>(all.min(0))
                                               : all.sum(0) / W;
      EXPECT_TRUE(async_out.to(at::kDouble).allclose(want, dt == at::kBFloat16 ? 1e-2 : 1e-6, 0))
          << dt << " " << to_string(op) << ": " << async_out << " vs " << want;
    }
}

// Several exchanges in flight, waited for in reverse order: each gets its own round's data.
TEST(MpiAsync, SeveralInFlightWaitedInAnyOrder) {
  MpiCommunicator& c = world();
  const int W = c.size(), R = c.rank();
  const int right = R + 1 < W ? R + 1 : -1, left = R > 0 ? R - 1 : -1;
  constexpr int kRounds = 6;
  std::vector<at::Tensor> gathered, scattered, from_left, from_right;
  std::vector<std::unique_ptr<Work>> works;
  for (int i = 0; i < kRounds; ++i) {
    gathered.push_back(at::full({W, 2, 3}, -1.0f));
    scattered.push_back(at::full({2, 3}, -1.0f));
    from_left.push_back(at::full({2, 3}, -1.0f));
    from_right.push_back(at::full({2, 3}, -1.0f));
    works.push_back(c.send_recv_async(block(R, i), right, from_left.back(), left));
    works.push_back(c.all_gather_async(block(R, i), gathered.back()));
    // Row r of this rank's input: block(R, i) + r, so that rank R receives the sum over q of block(q, i) + R.
    works.push_back(c.reduce_scatter_async(block(R, i).unsqueeze(0) + at::arange(W).view({W, 1, 1}), scattered.back()));
    works.push_back(c.send_recv_async(block(R, i), left, from_right.back(), right));
  }
  for (auto it = works.rbegin(); it != works.rend(); ++it) (*it)->wait(60.0);
  for (int i = 0; i < kRounds; ++i) {
    at::Tensor sum = at::zeros({2, 3});
    for (int q = 0; q < W; ++q) sum += block(q, i) + R;
    EXPECT_TRUE(scattered[i].equal(sum)) << "round " << i;
    for (int q = 0; q < W; ++q) EXPECT_TRUE(gathered[i][q].equal(block(q, i))) << "round " << i << " rank " << q;
    EXPECT_TRUE(from_left[i].equal(left >= 0 ? block(left, i) : at::full({2, 3}, -1.0f))) << "round " << i;
    EXPECT_TRUE(from_right[i].equal(right >= 0 ? block(right, i) : at::full({2, 3}, -1.0f))) << "round " << i;
  }
}

// In flight beside compute: the Work completes on its own with the thread (polled, never
// waited), and its inputs may be dropped by the caller at once (the Work keeps them).
TEST(MpiAsync, CompletesWithoutWaitAndKeepsItsTensors) {
  MpiCommunicator& c = world();
  const int W = c.size(), R = c.rank();
  at::Tensor out = at::empty({W, 1 << 16});
  std::unique_ptr<Work> work = c.all_gather_async(at::full({1 << 16}, static_cast<float>(R)), out);
  at::Tensor busy = at::randn({256, 256});
  for (int i = 0; i < 4; ++i) busy = at::tanh(at::matmul(busy, busy) / 256);
  while (!work->done()) {
  }
  work->wait(60.0);
  for (int q = 0; q < W; ++q) EXPECT_TRUE(out[q].equal(at::full({1 << 16}, static_cast<float>(q)))) << q;
  EXPECT_GE(work->elapsed_seconds(), 0.0);
}

TEST(MpiAsync, ErrorsAreRaisedWhenIssued) {
  MpiCommunicator& c = world();
  at::Tensor wrong = at::empty({c.size() + 1, 3});
  EXPECT_THROW(c.all_gather_async(at::zeros({3}), wrong), Error);
  at::Tensor recv = at::empty({3});
  EXPECT_THROW(c.send_recv_async(at::zeros({3}), c.size(), recv, -1), Error);
  EXPECT_THROW(c.reduce_scatter_async(at::zeros({c.size() + 1, 3}), recv), Error);
  EXPECT_THROW(c.reduce_scatter_async(at::zeros({c.size(), 3}, at::kLong), at::empty({3}, at::kLong), ReduceOp::kAvg),
               Error);
  EXPECT_EQ(c.all_reduce_int(1, ReduceOp::kSum), c.size());  // still usable, ranks matched
}

TEST(MpiAsync, CountedAsTheBlockingForms) {
  MpiCommunicator& w = world();
  CountingCommunicator c(w);
  const int W = c.size(), R = c.rank();
  at::Tensor gathered = at::empty({W, 10}), recv = at::empty({3}), scattered = at::empty({5});
  auto a = c.all_gather_async(at::zeros({10}), gathered);
  auto b = c.send_recv_async(at::zeros({3}), R + 1 < W ? R + 1 : -1, recv, R - 1);
  auto d = c.reduce_scatter_async(at::zeros({W, 5}), scattered);
  d->wait(60.0);
  b->wait(60.0);
  a->wait(60.0);
  EXPECT_EQ(c.count("all_gather").received_bytes, (W - 1) * 40);
  EXPECT_EQ(c.count("send_recv").received_bytes, R > 0 ? 12 : 0);
  EXPECT_EQ(c.count("reduce_scatter").received_bytes, (W - 1) * 20);
  EXPECT_EQ(c.count("reduce_scatter").calls, 1);
  EXPECT_EQ(c.total().calls, 3);
}

TEST(LocalAsync, DoneWhenReturned) {
  LocalCommunicator c;
  at::Tensor out = at::empty({1, 2, 3}), recv = at::empty({2, 3}), scattered = at::empty({2, 3});
  auto a = c.all_gather_async(block(0, 1), out);
  auto b = c.send_recv_async(block(0, 2), 0, recv, 0);
  auto d = c.reduce_scatter_async(block(0, 3).unsqueeze(0), scattered);
  EXPECT_TRUE(a->done() && b->done() && d->done());
  EXPECT_TRUE(out[0].equal(block(0, 1)));
  EXPECT_TRUE(recv.equal(block(0, 2)));
  EXPECT_TRUE(scattered.equal(block(0, 3)));
}

}  // namespace
}  // namespace cst::comm
