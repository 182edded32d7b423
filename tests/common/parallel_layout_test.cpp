// ParallelLayout: every rank's numbers, the tokens each rank holds, and every rule with an error
// naming its values.
#include "common/parallel_layout.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>

#include "common/error.h"

namespace cst {
namespace {

LayoutSpec spec(int world, int rank, int64_t S, int64_t L = 8) {
  LayoutSpec s;
  s.world_size = world, s.rank = rank, s.seq_parallel = S, s.slice_len = L;
  return s;
}

// Expects fn to throw InputError whose message holds every one of `parts`.
void expect_input_error(const std::function<void()>& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no InputError";
  } catch (const InputError& e) {
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(ParallelLayout, RanksOfEightWithSequencesOverFour) {
  for (int r = 0; r < 8; ++r) {
    const ParallelLayout l(spec(8, r, 4));
    EXPECT_EQ(l.world_size(), 8);
    EXPECT_EQ(l.rank(), r);
    EXPECT_EQ(l.dp_size(), 2);
    EXPECT_EQ(l.dp_rank(), r / 4) << "consecutive ranks share a sequence";
    EXPECT_EQ(l.sp_size(), 4);
    EXPECT_EQ(l.sp_rank(), r % 4);
    EXPECT_TRUE(l.seq_parallel());
  }
  const ParallelLayout one;
  EXPECT_EQ(one.dp_size(), 1);
  EXPECT_FALSE(one.seq_parallel());
  EXPECT_EQ(ParallelLayout(spec(3, 2, 1)).dp_rank(), 2);
}

// The S ranks of a sequence hold contiguous chunks that cover it exactly once, in rank order.
TEST(ParallelLayout, TokenRangesTileTheSequence) {
  for (int S : {1, 2, 4}) {
    const int64_t n = 64;
    int64_t next = 0;
    for (int r = 0; r < S; ++r) {
      const TokenRange t = ParallelLayout(spec(S, r, S)).token_range(n);
      EXPECT_EQ(t.begin, next) << "S " << S << " rank " << r;
      EXPECT_EQ(t.size(), n / S);
      next = t.end;
    }
    EXPECT_EQ(next, n);
  }
  EXPECT_EQ(ParallelLayout(spec(4, 3, 2)).chunk_offset(16), 16);
  EXPECT_EQ(ParallelLayout(spec(1, 0, 1)).token_range(13).size(), 13) << "one rank: any length";
  // A length that was not checked is a bug, not silently dropped tail tokens.
  EXPECT_THROW(ParallelLayout(spec(2, 1, 2)).token_range(40), Error);
  EXPECT_THROW(ParallelLayout(spec(2, 1, 2)).token_range(33), Error);
}

TEST(ParallelLayout, SeqParallelMustDivideTheWorld) {
  expect_input_error([] { ParallelLayout(spec(2, 0, 3)); }, {"dist.seq_parallel = 3", "world size 2"});
  expect_input_error([] { ParallelLayout(spec(6, 0, 4)); }, {"dist.seq_parallel = 4", "world size 6"});
  expect_input_error([] { ParallelLayout(spec(2, 0, 0)); }, {"dist.seq_parallel = 0"});
  EXPECT_NO_THROW(ParallelLayout(spec(6, 5, 3)));
}

TEST(ParallelLayout, ClassifierAndFullAttentionOnlyOnWholeSequences) {
  LayoutSpec cls = spec(2, 0, 2);
  cls.classifier = true;
  expect_input_error([&] { ParallelLayout{cls}; }, {"dist.seq_parallel = 2", "model.task = cls"});
  LayoutSpec full = spec(4, 1, 4);
  full.full_attention = true;
  expect_input_error([&] { ParallelLayout{full}; }, {"dist.seq_parallel = 4", "needs model.arch = cst"});
  cls.seq_parallel = 1, full.seq_parallel = 1;
  EXPECT_NO_THROW(ParallelLayout{cls});
  EXPECT_NO_THROW(ParallelLayout{full});
}

TEST(ParallelLayout, LengthRulesNameTheValues) {
  const ParallelLayout l(spec(4, 0, 2, 8));
  EXPECT_NO_THROW(l.check_seq_len(32, "data.seq_len"));
  expect_input_error(
      [&] { l.check_seq_len(24, "data.seq_len"); },
      {"data.seq_len = 24 split over dist.seq_parallel = 2 ranks gives chunks of 12 tokens", "model.slice_len = 8"});
  expect_input_error([&] { l.check_seq_len(33, "data.seq_len"); }, {"data.seq_len = 33", "(not whole) 16.5"});
  EXPECT_NO_THROW(ParallelLayout(spec(4, 0, 1, 8)).check_seq_len(33, "data.seq_len")) << "S = 1: any length";
}

TEST(ParallelLayout, EverySplitHasTheTrainingLength) {
  const ParallelLayout l(spec(2, 1, 2, 8));
  EXPECT_NO_THROW(l.check_split_len("data.valid = 'v'", 32, 32));
  expect_input_error(
      [&] { l.check_split_len("data.valid = 'v'", 48, 32); },
      {"data.valid = 'v'", "48 tokens", "training length is 32", "dist.seq_parallel = 2", "model.slice_len = 8"});
  expect_input_error([&] { l.check_split_len("data.train = 't'", 24, 24); },
                     {"data.train = 't': sample length = 24", "dist.seq_parallel = 2", "model.slice_len = 8"});
  EXPECT_NO_THROW(ParallelLayout(spec(2, 0, 1, 8)).check_split_len("data.valid = 'v'", 48, 32))
      << "one rank holds any length";
}

// Causal global attention split by work: row t sees t keys and costs t + c (c: row_cost), so
// rows [a, b) cost W(b) - W(a), W(a) = a (a - 1) / 2 + c a. The parts tile the rows in order, each
// keeps a row, and each part's work is within one row's (n - 1 + c) of the mean: its two
// boundaries are each the nearest row to their share.
TEST(ParallelLayout, BalancedCausalRowsSplitTheWorkEvenly) {
  for (int64_t c : {0, 3, 512}) {
    auto work = [c](const TokenRange& t) {
      return t.end * (t.end - 1) / 2 + c * t.end - (t.begin * (t.begin - 1) / 2 + c * t.begin);
    };
    for (int64_t parts : {1, 2, 3, 4, 8})
      for (int64_t n : {parts, parts + 1, int64_t{16}, int64_t{64}, int64_t{1000}, int64_t{8192}}) {
        if (n < parts) continue;
        const double mean = static_cast<double>(work({0, n})) / parts;
        int64_t next = 0;
        for (int64_t j = 0; j < parts; ++j) {
          const TokenRange t = balanced_causal_rows(n, parts, j, c);
          SCOPED_TRACE(::testing::Message() << "n " << n << " parts " << parts << " part " << j << " c " << c);
          EXPECT_EQ(t.begin, next);
          EXPECT_GE(t.size(), 1);
          EXPECT_LE(std::abs(static_cast<double>(work(t)) - mean), static_cast<double>(n - 1 + c));
          next = t.end;
        }
        EXPECT_EQ(next, n);
      }
  }
  // n = 16 over 4 (120 pairs, shares 30, 60, 90): the nearest boundaries are 8 (28 pairs below),
  // 11 (55) and 14 (91); part 0 takes the most rows, the last the fewest.
  EXPECT_EQ(balanced_causal_rows(16, 4, 0).end, 8);
  EXPECT_EQ(balanced_causal_rows(16, 4, 1).end, 11);
  EXPECT_EQ(balanced_causal_rows(16, 4, 2).end, 14);
  EXPECT_EQ(balanced_causal_rows(16, 4, 3).size(), 2);
  // Large n: the last part holds about n (1 - sqrt(3/4)) rows (the continuous share, a^2 / 2 = 3/4
  // of n^2 / 2), 0.54 of the own chunk of n / 4 rows.
  EXPECT_NEAR(static_cast<double>(balanced_causal_rows(8192, 4, 3).size()), 8192 * (1 - std::sqrt(0.75)), 2.0);
  // A cost per row moves rows to the later parts: 16 over 2 with c = 8 (248, share 124): 10 rows
  // below cost 125, 9 cost 108.
  EXPECT_EQ(balanced_causal_rows(16, 2, 0, 8).end, 10);
  expect_input_error([] { balanced_causal_rows(3, 4, 0); }, {"part 0 of 4", "3 slices"});
  expect_input_error([] { balanced_causal_rows(8, 2, 0, -1); }, {"row cost -1"});
  expect_input_error([] { balanced_causal_rows(8, 2, 2); }, {"part 2 of 2"});
}

}  // namespace
}  // namespace cst
