#include "common/parallel_layout.h"

#include <sstream>

#include "common/error.h"

namespace cst {

ParallelLayout::ParallelLayout(const LayoutSpec& spec) {
  const int64_t S = spec.seq_parallel;
  CST_INPUT_CHECK(spec.world_size >= 1, "world size " << spec.world_size << " must be >= 1");
  CST_CHECK(spec.rank >= 0 && spec.rank < spec.world_size,
            "rank " << spec.rank << " outside [0, " << spec.world_size << ")");
  CST_INPUT_CHECK(S >= 1 && spec.world_size % S == 0,
                  "dist.seq_parallel = " << S << " does not divide the world size " << spec.world_size << " (ranks)");
  CST_INPUT_CHECK(spec.slice_len >= 1, "model.slice_len = " << spec.slice_len << " must be >= 1");
  if (S > 1) {
    CST_INPUT_CHECK(!spec.classifier,
                    "dist.seq_parallel = " << S << ": the classifier head (model.task = cls) pools over the whole "
                                           << "sequence; sequence parallelism is for lm and mlm");
    CST_INPUT_CHECK(!spec.full_attention, "dist.seq_parallel = " << S
                                                                 << " needs model.arch = cst (full attention would "
                                                                    "need every token on every rank), got "
                                                                    "model.arch = full");
  }
  world_size_ = spec.world_size, rank_ = spec.rank, sp_size_ = static_cast<int>(S);
  slice_len_ = spec.slice_len;
}

std::string ParallelLayout::length_problem(int64_t n) const {
  const int64_t S = sp_size_, L = slice_len_;
  if (S == 1 || (n > 0 && n % S == 0 && (n / S) % L == 0)) return "";
  std::ostringstream os;
  os << n << " split over dist.seq_parallel = " << S << " ranks gives chunks of "
     << (n % S == 0 ? std::to_string(n / S) : "(not whole) " + std::to_string(static_cast<double>(n) / S))
     << " tokens, not a multiple of model.slice_len = " << L << " (N / S must be a multiple of L)";
  return os.str();
}

TokenRange ParallelLayout::token_range(int64_t n) const {
  const std::string problem = length_problem(n);
  CST_CHECK(problem.empty(), "sequence of " << problem);
  const int64_t c = n / sp_size_;
  return {sp_rank() * c, (sp_rank() + 1) * c};
}

void ParallelLayout::check_seq_len(int64_t n, const std::string& what) const {
  const std::string problem = length_problem(n);
  CST_INPUT_CHECK(problem.empty(), what << " = " << problem);
}

void ParallelLayout::check_split_len(const std::string& split, int64_t n, int64_t train_n) const {
  if (!seq_parallel()) return;
  CST_INPUT_CHECK(n == train_n, split << ": samples of " << n << " tokens, but the training length is " << train_n
                                      << " (dist.seq_parallel = " << sp_size_ << ", model.slice_len = " << slice_len_
                                      << "): under sequence parallelism every split has the training length");
  check_seq_len(n, split + ": sample length");
}

std::string ParallelLayout::describe(int64_t n) const {
  std::string s = std::to_string(world_size_) + " rank(s)";
  if (seq_parallel())
    s += " (" + std::to_string(dp_size()) + " data-parallel x " + std::to_string(sp_size_) +
         " sequence-parallel: " + std::to_string(token_range(n).size()) + " tokens per rank)";
  return s;
}

namespace {
// The work of causal rows [0, a): row t sees t keys and costs t + c.
int64_t causal_work_below(int64_t a, int64_t c) { return a * (a - 1) / 2 + c * a; }

// The row count a in [lo, hi] whose work is nearest target / parts (ties: the smaller).
int64_t nearest_boundary(int64_t target, int64_t parts, int64_t c, int64_t lo, int64_t hi) {
  int64_t a = lo, b = hi;  // the first a with causal_work_below(a) * parts >= target, or hi
  while (a < b) {
    const int64_t mid = a + (b - a) / 2;
    if (causal_work_below(mid, c) * parts >= target)
      b = mid;
    else
      a = mid + 1;
  }
  if (a > lo && target - causal_work_below(a - 1, c) * parts <= causal_work_below(a, c) * parts - target) --a;
  return a;
}

// The first row of part j: its share of the work, with at least one row for every part.
int64_t boundary(int64_t n, int64_t parts, int64_t c, int64_t j) {
  if (j == 0) return 0;
  if (j == parts) return n;
  const int64_t lo = boundary(n, parts, c, j - 1) + 1;  // part j - 1 keeps a row
  return nearest_boundary(j * causal_work_below(n, c), parts, c, lo, n - (parts - j));
}
}  // namespace

TokenRange balanced_causal_rows(int64_t n, int64_t parts, int64_t part, int64_t row_cost) {
  CST_INPUT_CHECK(parts >= 1 && parts <= n && part >= 0 && part < parts && row_cost >= 0,
                  "balanced causal rows: part " << part << " of " << parts << " for " << n << " slices, row cost "
                                                << row_cost << " (every part needs a slice)");
  return {boundary(n, parts, row_cost, part), boundary(n, parts, row_cost, part + 1)};
}

}  // namespace cst
