// MPI tests of split() and reduce_scatter(), run under mpirun with 2 and 4 ranks: groups formed
// by color and ordered by key, collectives inside a group, reduce_scatter over dtypes and ops,
// a group collective while a world all-reduce is in flight (two communication threads), nested
// splits, the counting decorator's byte counts, and errors raised on every rank.
#include <gtest/gtest.h>

#include "comm/counting_communicator.h"
#include "comm/mpi_communicator.h"
#include "tests/comm/mpi_main.h"
#include "tests/comm/test_util.h"

namespace cst::comm {
namespace {

MpiCommunicator& world() {
  static MpiCommunicator c(testing::mpi());
  return c;
}

TEST(MpiSplit, GroupsByColorOrderedByKey) {
  MpiCommunicator& w = world();
  const int W = w.size(), R = w.rank();
  const int color = R % 2;
  auto g = w.split(color, /*key=*/-R);  // reversed: the highest world rank is rank 0 of its group
  int members = 0, below = 0;
  for (int r = 0; r < W; ++r)
    if (r % 2 == color) ++members, below += r > R;
  EXPECT_EQ(g->size(), members);
  EXPECT_EQ(g->rank(), below);
  EXPECT_STREQ(g->backend(), "mpi");
  // Sum of world ranks within the group.
  int64_t expect = 0;
  for (int r = color; r < W; r += 2) expect += r;
  EXPECT_EQ(g->all_reduce_int(R, ReduceOp::kSum), expect);
  // Nested: a split of the group with one color is the group again.
  auto gg = g->split(0, g->rank());
  EXPECT_EQ(gg->size(), g->size());
  EXPECT_EQ(gg->rank(), g->rank());
  EXPECT_EQ(gg->all_reduce_int(R, ReduceOp::kSum), expect);
  EXPECT_THROW(w.split(-1, 0), Error);  // checked before communicating: no rank is left waiting
}

TEST(MpiSplit, ReduceScatterDtypesAndOps) {
  MpiCommunicator& c = world();
  const int W = c.size(), R = c.rank();
  // Rank q's input block r holds (q + 1) * (r + 1) + k for k in [0, 6).
  auto block = [](int q, int r) { return at::arange(6, at::kDouble).reshape({2, 3}) + (q + 1) * (r + 1); };
  at::Tensor sum = at::zeros({2, 3}, at::kDouble), mx = block(W - 1, R);
  for (int q = 0; q < W; ++q) sum += block(q, R);
  for (auto dt : {at::kFloat, at::kDouble, at::kLong, at::kBFloat16}) {
    std::vector<at::Tensor> blocks;
    for (int r = 0; r < W; ++r) blocks.push_back(block(R, r));
    const at::Tensor in = at::stack(blocks).to(dt);
    at::Tensor out = at::full({2, 3}, -1, at::TensorOptions().dtype(dt));
    c.reduce_scatter(in, out, ReduceOp::kSum);
    EXPECT_TRUE(out.to(at::kDouble).equal(sum)) << dt;
    c.reduce_scatter(in, out, ReduceOp::kMax);
    EXPECT_TRUE(out.to(at::kDouble).equal(mx)) << dt;
    if (at::isFloatingType(dt) && dt != at::kBFloat16) {
      c.reduce_scatter(in, out, ReduceOp::kAvg);
      EXPECT_TRUE(at::allclose(out.to(at::kDouble), sum / W)) << dt;
    }
  }
  // A non-contiguous output is written in place.
  at::Tensor in = at::ones({W, 3, 2});
  at::Tensor out = at::zeros({2, 3}).t();
  c.reduce_scatter(in, out, ReduceOp::kSum);
  EXPECT_TRUE(out.equal(at::full({3, 2}, static_cast<float>(W))));
}

TEST(MpiSplit, ReduceScatterErrorsOnEveryRank) {
  MpiCommunicator& c = world();
  at::Tensor out = at::zeros({4});
  at::Tensor wrong = at::zeros({c.size() + 1, 4});
  testing::expect_error([&] { c.reduce_scatter(wrong, out); }, {"reduce_scatter(sum)", "in must be"});
  at::Tensor li = at::zeros({c.size(), 4}, at::kLong), lo = at::zeros({4}, at::kLong);
  testing::expect_error([&] { c.reduce_scatter(li, lo, ReduceOp::kAvg); }, {"kAvg needs a floating dtype"});
  EXPECT_EQ(c.all_reduce_int(1, ReduceOp::kSum), c.size());  // still usable
}

// A group's blocking collectives complete while a large world all-reduce is in flight on the
// world communicator's thread (the trainer's gradient buckets vs. sequence-parallel exchanges).
TEST(MpiSplit, GroupCollectivesRunBesideWorldAllReduce) {
  MpiCommunicator& w = world();
  auto g = w.split(w.rank() / 2, w.rank());
  at::Tensor big = at::full({1 << 22}, 1.0f);
  auto work = w.all_reduce_async(big, ReduceOp::kSum);
  for (int i = 0; i < 20; ++i) {
    at::Tensor in = at::full({g->size(), 8}, static_cast<float>(i));
    at::Tensor out = at::empty({8});
    g->reduce_scatter(in, out, ReduceOp::kSum);
    ASSERT_TRUE(out.equal(at::full({8}, static_cast<float>(i * g->size()))));
    at::Tensor halo = at::full({8}, -1.0f);
    const int r = g->rank(), s = g->size();
    g->send_recv(at::full({8}, static_cast<float>(r)), r + 1 < s ? r + 1 : -1, halo, r - 1);
    ASSERT_TRUE(halo.equal(at::full({8}, r == 0 ? -1.0f : static_cast<float>(r - 1))));
  }
  work->wait(60.0);
  EXPECT_TRUE(big.equal(at::full({1 << 22}, static_cast<float>(w.size()))));
}

TEST(CountingCommunicator, CountsBytesPerOperation) {
  MpiCommunicator& w = world();
  CountingCommunicator c(w);
  const int W = c.size(), R = c.rank();
  at::Tensor in = at::zeros({10});  // 40 bytes
  at::Tensor gathered = at::empty({W, 10});
  c.all_gather(in, gathered);
  c.reduce_scatter(gathered, in);
  at::Tensor recv = at::empty({3});
  c.send_recv(at::zeros({3}), R + 1 < W ? R + 1 : -1, recv, R - 1);
  EXPECT_EQ(c.count("all_gather").calls, 1);
  EXPECT_EQ(c.count("all_gather").received_bytes, (W - 1) * 40);
  EXPECT_EQ(c.count("reduce_scatter").received_bytes, (W - 1) * 40);
  EXPECT_EQ(c.count("send_recv").received_bytes, R > 0 ? 12 : 0);
  EXPECT_EQ(c.count("send_recv").sent_bytes, R + 1 < W ? 12 : 0);
  EXPECT_EQ(c.count("broadcast").calls, 0);
  EXPECT_EQ(c.total().calls, 3);
  c.reset();
  EXPECT_EQ(c.total().received_bytes, 0);
}

}  // namespace
}  // namespace cst::comm
