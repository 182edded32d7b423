// Sequence parallelism against one rank, under mpirun with 2 and 4 ranks (groups of S = 2 and
// S = 4 split from the world): logits, loss and every parameter gradient of a CST model run on
// S chunks of a sequence equal the whole-sequence model within 1e-5 in float32, for LM and MLM,
// alpha 1, 2, 3, with padding and with one slice per rank, every composition, aggregation and
// positional scheme; activation checkpointing under sequence parallelism gives bitwise the
// gradients without it (dropout on); the bytes communicated per layer are the formula's.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>

#include "comm/counting_communicator.h"
#include "comm/mpi_communicator.h"
#include "common/parallel_layout.h"
#include "model/loss.h"
#include "model/memory.h"
#include "model/model.h"
#include "model/seq_parallel.h"
#include "tests/comm/mpi_main.h"
#include "tests/model/test_util.h"

namespace cst::model {
namespace {

using torch::Tensor;

comm::MpiCommunicator& world() { return comm::testing::world(); }

// Groups of S consecutive world ranks (S must divide the world size).
std::unique_ptr<comm::Communicator> group_of(int S) { return world().split(world().rank() / S, world().rank()); }

ModelConfig tiny(Task task, double alpha) {
  ModelConfig c = testing::small_config(task, alpha, /*slice_len=*/4, /*max_len=*/64);
  c.vocab_size = 37, c.d_model = 16, c.n_layers = 2, c.d_ff = 32;
  c.init_std = 0.2;
  return c;
}

// One batch of B = 2 sequences of N tokens, identical on every rank: ids, mask (padding at the
// end of row 1 and, when `holes`, a hole in row 0), labels (-100 where nothing is predicted).
struct Batch {
  Tensor ids, mask, labels;
};

Batch make_batch(const ModelConfig& cfg, int64_t N, bool padding) {
  torch::manual_seed(99);
  Batch b;
  Tensor window = torch::randint(cfg.vocab_size, {2, N + 1}, torch::kLong);
  b.mask = torch::ones({2, N}, torch::kBool);
  if (padding) {
    b.mask[1].narrow(0, N - N / 3 - 1, N / 3 + 1).fill_(false);  // crosses chunk borders
    b.mask[0].narrow(0, N / 2 - 3, 5).fill_(false);              // a hole across the middle
  }
  if (cfg.task == Task::kLm) {
    b.ids = window.narrow(1, 0, N);
    b.labels = window.narrow(1, 1, N).clone();
    b.labels.masked_fill_(b.mask.logical_not(), -100);
  } else {
    b.ids = window.narrow(1, 0, N);
    b.labels = torch::where(torch::rand({2, N}) < 0.4, b.ids, torch::full_like(b.ids, -100));
    b.labels.masked_fill_(b.mask.logical_not(), -100);
  }
  return b;
}

Tensor chunk(const Tensor& t, int r, int S) {
  const int64_t T = t.size(1) / S;
  return t.narrow(1, r * T, T);
}

struct Outcome {
  Tensor logits, loss;
  std::vector<Tensor> grads;  // registration order
};

// Forward + backward of the loss normalised by the global count of predicted tokens. With a
// group, on this rank's chunk; the loss and gradients are then summed over the group.
Outcome run(const ModelConfig& cfg, const Batch& b, comm::Communicator* group, int64_t seed = 7) {
  torch::manual_seed(5);
  CstModel m(cfg);
  m->set_sequence_parallel(group);
  const int S = group ? group->size() : 1, r = group ? group->rank() : 0;
  const double count = static_cast<double>(b.labels.ne(-100).sum().item<int64_t>());
  torch::manual_seed(seed + r);  // dropout
  Outcome out;
  out.logits = m->forward(chunk(b.ids, r, S), chunk(b.mask, r, S));
  LossSum ls = token_loss(out.logits, chunk(b.labels, r, S));
  (ls.sum / count).backward();
  out.loss = ls.sum.detach() / count;
  for (const auto& p : m->parameters())
    out.grads.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
  if (group) {
    group->all_reduce(out.loss);
    for (Tensor& g : out.grads) group->all_reduce(g);
  }
  return out;
}

double max_diff(const Tensor& a, const Tensor& b) { return (a - b).abs().max().item<double>(); }

struct Case {
  Task task;
  double alpha;
  bool padding;
  int64_t slices_per_rank;
  Composition comp = Composition::kLocalGlobal;
  Aggregation agg = Aggregation::kMean;
  PosEmb pos = PosEmb::kAuto;
};

class SeqParallelExact : public ::testing::TestWithParam<Case> {};

TEST_P(SeqParallelExact, EqualsOneRank) {
  const Case c = GetParam();
  ModelConfig cfg = tiny(c.task, c.alpha);
  cfg.composition = c.comp, cfg.aggregation = c.agg, cfg.pos_emb = c.pos;
  for (CsaKernel kernel : {CsaKernel::kExplicit, CsaKernel::kFused})
    for (int S : {2, 4}) {
      if (world().size() % S != 0) continue;
      cfg.csa_kernel = kernel;
      auto group = group_of(S);
      const int64_t N = S * c.slices_per_rank * cfg.slice_len;
      cfg.max_seq_len = std::max<int64_t>(cfg.max_seq_len, N);
      const Batch b = make_batch(cfg, N, c.padding);
      const Outcome ref = run(cfg, b, nullptr), sp = run(cfg, b, group.get());
      const int r = group->rank();
      Tensor mask = chunk(b.mask, r, S).unsqueeze(-1);  // outputs at padded positions are discarded
      EXPECT_LT(max_diff(sp.logits * mask, chunk(ref.logits, r, S) * mask), 1e-5)
          << "S = " << S << ", kernel " << to_string(kernel);
      EXPECT_LT(max_diff(sp.loss, ref.loss), 1e-5) << "S = " << S << ", kernel " << to_string(kernel);
      ASSERT_EQ(sp.grads.size(), ref.grads.size());
      // (Causal with two slices, slice 1 has one global key: P_g gets no gradient, rightly.)
      const bool all_learn = !(c.task == Task::kLm && N / cfg.slice_len <= 2);
      for (size_t i = 0; i < ref.grads.size(); ++i) {
        if (all_learn) {
          EXPECT_GT(ref.grads[i].abs().max().item<double>(), 0.0) << "parameter " << i << " has no gradient";
        }
        EXPECT_LT(max_diff(sp.grads[i], ref.grads[i]), 1e-5)
            << "parameter " << i << ", S = " << S << ", kernel " << to_string(kernel);
      }
    }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SeqParallelExact,
    ::testing::Values(Case{Task::kLm, 1.0, false, 2}, Case{Task::kLm, 2.0, false, 2}, Case{Task::kLm, 3.0, false, 2},
                      Case{Task::kLm, 2.0, true, 3}, Case{Task::kLm, 3.0, false, 1}, Case{Task::kLm, 3.0, true, 1},
                      Case{Task::kMlm, 1.0, false, 2}, Case{Task::kMlm, 2.0, false, 2}, Case{Task::kMlm, 3.0, false, 2},
                      Case{Task::kMlm, 3.0, true, 3}, Case{Task::kMlm, 3.0, false, 1}, Case{Task::kMlm, 2.0, true, 1},
                      Case{Task::kLm, 3.0, true, 2, Composition::kGlobalLocal, Aggregation::kMax},
                      Case{Task::kMlm, 3.0, true, 2, Composition::kParallel, Aggregation::kLinear},
                      Case{Task::kLm, 2.0, true, 2, Composition::kLocalGlobal, Aggregation::kLinear, PosEmb::kAbsolute},
                      Case{Task::kMlm, 2.0, false, 2, Composition::kLocalGlobal, Aggregation::kMean, PosEmb::kAbsolute},
                      // Enough slices that the causal global attention rows are split by work
                      // (64 over 2 ranks: 33, 31; 128 over 4: 35, 33, 31, 29): the balanced path.
                      Case{Task::kLm, 1.0, false, 32}, Case{Task::kLm, 2.0, true, 32}, Case{Task::kLm, 3.0, true, 32},
                      Case{Task::kMlm, 2.0, true, 32},
                      Case{Task::kLm, 3.0, true, 32, Composition::kGlobalLocal, Aggregation::kMax},
                      Case{Task::kLm, 2.0, false, 32, Composition::kParallel, Aggregation::kLinear, PosEmb::kAbsolute}),
    [](const ::testing::TestParamInfo<Case>& info) {
      const Case& c = info.param;
      std::string name = std::string(to_string(c.task)) + "_alpha" + std::to_string(static_cast<int>(c.alpha)) +
                         (c.padding ? "_padded" : "") + "_" + std::to_string(c.slices_per_rank) + "slices_" +
                         to_string(c.comp) + "_" + to_string(c.agg) + "_" + to_string(c.pos);
      std::replace(name.begin(), name.end(), '-', '_');
      return name;
    });

// Activation checkpointing under sequence parallelism, dropout on: bitwise the gradients of the
// same sequence-parallel run without checkpointing (the recomputation repeats the exchanges and
// draws the same dropout masks, also those of the global attention's row blocks). The causal
// global attention rows are split by work (the balanced path), with and without dropout.
TEST(SeqParallelCheckpoint, BitwiseEqualWithDropout) {
  for (CsaKernel kernel : {CsaKernel::kExplicit, CsaKernel::kFused})
    for (Task task : {Task::kLm, Task::kMlm})
      for (double dropout : {0.2, 0.0}) {
        ModelConfig cfg = tiny(task, 3.0);
        cfg.dropout = dropout, cfg.csa_kernel = kernel;
        const int S = world().size();
        auto group = group_of(S);
        const int64_t slices = 32;  // per rank: the balanced rows
        cfg.max_seq_len = S * slices * cfg.slice_len;
        const Batch b = make_batch(cfg, S * slices * cfg.slice_len, true);
        const Outcome plain = run(cfg, b, group.get());
        cfg.activation_checkpointing = true;
        const Outcome ckpt = run(cfg, b, group.get());
        EXPECT_TRUE(torch::equal(plain.logits, ckpt.logits));
        EXPECT_TRUE(torch::equal(plain.loss, ckpt.loss));
        for (size_t i = 0; i < plain.grads.size(); ++i)
          EXPECT_TRUE(torch::equal(plain.grads[i], ckpt.grads[i])) << "parameter " << i;
      }
}

// rows_to_chunks: rows computed on the ranks that own other rows reach their owners bitwise, and
// the gradient of each owner's chunk reaches the rank that computed the row (the ranges of
// balanced_causal_rows, disjoint, tiling the sequence).
TEST(SeqParallelRows, RowsReachTheirOwnersAndGradientsComeBack) {
  for (int S : {2, 4}) {
    if (world().size() % S != 0) continue;
    auto group = group_of(S);
    const int r = group->rank();
    const int64_t T = 3, n = S * T;
    torch::manual_seed(11);
    const Tensor all = torch::randn({2, n, 5}), grad_all = torch::randn({2, n, 5});
    const TokenRange rows = balanced_causal_rows(n, S, r);
    Tensor x = all.narrow(1, rows.begin, rows.size()).clone().requires_grad_();
    Tensor mine = rows_to_chunks(*group, x, rows.begin, T);
    EXPECT_TRUE(torch::equal(mine, chunk(all, r, S))) << "S = " << S;
    (mine * chunk(grad_all, r, S)).sum().backward();
    EXPECT_TRUE(torch::equal(x.grad(), grad_all.narrow(1, rows.begin, rows.size()))) << "S = " << S;
  }
}

// Bytes per layer and rank, counted at the communicator, against the formula: the halo of the
// local input (e tokens, D values; from both sides when bidirectional) and the all-gather of the
// slice embeddings ((S - 1) n_local D values), each once in forward and once in backward; causal,
// the balanced global attention rows returned to their owners, as many again.
TEST(SeqParallelComm, BytesPerLayerAreTheFormula) {
  for (CsaKernel kernel : {CsaKernel::kExplicit, CsaKernel::kFused})
    for (Task task : {Task::kLm, Task::kMlm}) {
      ModelConfig cfg = tiny(task, 3.0);
      cfg.csa_kernel = kernel;
      const int S = world().size();
      auto group = group_of(S);
      comm::CountingCommunicator counting(*group);
      const int64_t T = 32 * cfg.slice_len, N = S * T, B = 2, D = cfg.d_model, e = cfg.extension();
      cfg.max_seq_len = N;
      const Batch b = make_batch(cfg, N, false);
      torch::manual_seed(5);
      CstModel m(cfg);
      m->set_sequence_parallel(&counting);
      const int r = counting.rank();
      Tensor logits = m->forward(chunk(b.ids, r, S), chunk(b.mask, r, S));
      const auto fwd_halo = counting.count("send_recv"), fwd_gather = counting.count("all_gather");
      const auto fwd_rs = counting.count("reduce_scatter");
      logits.square().sum().backward();
      const int64_t sides = task == Task::kLm ? 1 : 2, layers = cfg.n_layers, f = 4;  // float32
      // Received from each side that has a neighbour (ends: none).
      const int64_t neighbours = task == Task::kLm ? (r > 0) : (r > 0) + (r + 1 < S);
      const int64_t mask_bytes = neighbours * B * e;  // bool key-mask halos, once per forward
      EXPECT_EQ(fwd_halo.calls, sides * (layers + 1));
      EXPECT_EQ(fwd_halo.received_bytes, neighbours * layers * B * e * D * f + mask_bytes);
      EXPECT_EQ(fwd_gather.calls, layers + 1);  // + the slice mask, once per forward
      const int64_t gather_bytes = layers * (S - 1) * B * (T / cfg.slice_len) * D * f;
      EXPECT_EQ(fwd_gather.received_bytes, gather_bytes + (S - 1) * B * (T / cfg.slice_len));
      // Causal, the global attention rows are split by work (128 slices over 4 ranks: 35, 33,
      // 31, 29; 64 over 2: 33, 31) and return to their owners: one reduce-scatter of the chunk's rows per
      // layer in forward, an all-gather in backward, as many bytes as the slice embeddings.
      const int64_t moves = task == Task::kLm ? 1 : 0;
      EXPECT_EQ(fwd_rs.calls, moves * layers);
      EXPECT_EQ(fwd_rs.received_bytes, moves * gather_bytes);
      const auto all_halo = counting.count("send_recv"), rs = counting.count("reduce_scatter");
      // Backward returns each halo's gradient to its owner: what this rank receives is the
      // gradient of what it sent (its boundary tokens), from each neighbour it sent to.
      const int64_t receivers = task == Task::kLm ? (r + 1 < S) : neighbours;
      EXPECT_EQ(all_halo.calls, sides * (2 * layers + 1));
      EXPECT_EQ(all_halo.received_bytes - fwd_halo.received_bytes, receivers * layers * B * e * D * f);
      EXPECT_EQ(rs.calls, (1 + moves) * layers);
      EXPECT_EQ(rs.received_bytes, (1 + moves) * gather_bytes);
      const auto all_gather = counting.count("all_gather");
      EXPECT_EQ(all_gather.calls, (1 + moves) * layers + 1);
      EXPECT_EQ(all_gather.received_bytes - fwd_gather.received_bytes, moves * gather_bytes);
    }
}

// No (query slice x key slice) tensor on a rank: at L = 2 a rank's [n/S, n] visibility mask of
// global attention (and its float copy, and the explicit kernel's scores) would be the largest
// tensor of a layer by far; with the causal offset as key ranges the largest allocation of
// forward and backward stays a small multiple of the chunk's activations [B, N/S, D] (or of the
// gathered slice embeddings [B, n, D]), with attention dropout too (the row-block kernel). Padding
// at the end: key padding without a mask.
class SeqParallelMemory : public ::testing::TestWithParam<CsaKernel> {};

TEST_P(SeqParallelMemory, LargestAllocationIsLinearInTheChunk) {
  for (Task task : {Task::kLm, Task::kMlm})
    for (double dropout : {0.0, 0.1}) {
      ModelConfig cfg;
      cfg.task = task, cfg.vocab_size = 50, cfg.d_model = 64, cfg.n_heads = 2, cfg.n_layers = 1, cfg.d_ff = 128;
      cfg.max_seq_len = 8192, cfg.slice_len = 2, cfg.alpha = 2.0, cfg.dropout = dropout, cfg.csa_kernel = GetParam();
      const int S = world().size();
      const int64_t N = cfg.max_seq_len, T = N / S, n = N / cfg.slice_len, D = cfg.d_model;
      auto group = group_of(S);
      torch::manual_seed(4);
      CstModel m(cfg);
      m->set_sequence_parallel(group.get());
      Tensor ids = torch::randint(cfg.vocab_size, {1, N}, torch::kLong);
      Tensor mask = torch::ones({1, N}, torch::kBool);
      mask.narrow(1, N - N / 8, N / 8).fill_(false);
      const int r = group->rank();
      // The tracker sees this thread's allocations only: no intra-op threads.
      const int threads = at::get_num_threads();
      at::set_num_threads(1);
      MemoryTracker mem;
      Tensor h = m->forward_hidden(chunk(ids, r, S), chunk(mask, r, S));
      (h * h).sum().backward();
      at::set_num_threads(threads);
      const int64_t linear = std::max(T, n) * D * 4, rectangle = (n / S) * n * 4;  // float32 bytes
      EXPECT_LE(mem.largest_alloc_bytes(), 4 * linear)
          << "a [n/S, n] float32 tensor is " << rectangle << " bytes; dropout " << dropout;
      if (r == S - 1)
        std::printf(
            "%s %s, dropout %.1f, N=%ld L=2 S=%d: largest allocation %.2f MiB, peak %.2f MiB (one [n/S, n] float32: "
            "%.0f MiB)\n",
            to_string(task), to_string(cfg.csa_kernel), dropout, (long)N, S, mem.largest_alloc_bytes() / 1048576.0,
            mem.peak_bytes() / 1048576.0, rectangle / 1048576.0);
    }
}

INSTANTIATE_TEST_SUITE_P(Kernels, SeqParallelMemory, ::testing::Values(CsaKernel::kExplicit, CsaKernel::kFused),
                         [](const ::testing::TestParamInfo<CsaKernel>& i) { return to_string(i.param); });

TEST(SeqParallel, RefusesFullAttentionAndClassifier) {
  auto group = group_of(world().size());
  ModelConfig cfg = tiny(Task::kLm, 2.0);
  cfg.arch = Arch::kFull;
  CstModel full(cfg);
  EXPECT_THROW(full->set_sequence_parallel(group.get()), InputError);
  cfg = tiny(Task::kCls, 2.0);
  CstModel cls(cfg);
  EXPECT_THROW(cls->set_sequence_parallel(group.get()), InputError);
}

}  // namespace
}  // namespace cst::model
