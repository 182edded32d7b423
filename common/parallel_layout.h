// ParallelLayout: which rank holds which part of the work, as plain numbers (no torch, no MPI,
// so that the loader and config checks link it without the communicators; the communicators
// of a layout are comm::ParallelGroups).
//
// W ranks form W / S data-parallel replicas of S consecutive ranks each (S = dist.seq_parallel):
// rank r is data-parallel rank r / S and sequence-parallel rank r % S. The S ranks of a replica
// read the same samples and each holds one part of every sequence (token_range). Every rule a
// layout must satisfy is checked here, and only here, with errors naming the values:
//   - S >= 1 divides the world size W;
//   - S > 1 needs a model that attends within slices (model.arch = cst; full attention needs
//     every token on every rank) and no head that pools the whole sequence (model.task = cls);
//   - a sequence of n tokens splits into S chunks of whole slices: n % S == 0 and
//     (n / S) % L == 0 (check_seq_len), and every split the model sees has the training
//     length (check_split_len), so no rank drops tokens.
#pragma once

#include <cstdint>
#include <string>

namespace cst {

// What a layout is made from: the job's ranks and what the model asks of a split sequence.
struct LayoutSpec {
  int world_size = 1;           // W: ranks of the job
  int rank = 0;                 // this rank, in [0, W)
  int64_t seq_parallel = 1;     // S (dist.seq_parallel): ranks holding one sequence
  int64_t slice_len = 1;        // L (model.slice_len): a rank's part holds whole slices
  bool full_attention = false;  // model.arch = full: every token attends to every token
  bool classifier = false;      // model.task = cls: the head pools over the whole sequence
};

// The tokens [begin, end) of a sequence that one rank holds.
struct TokenRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

// The query slices [begin, end) of n whose causal global attention part `part` of `parts` computes
// when the work is split evenly over the parts (docs/SEQUENCE_PARALLEL.md "Balance"). Causal, slice
// t attends to the t slices before it, so row t costs t (query, key) pairs plus row_cost (the
// kernels' work per row beyond its pairs, in pairs) and rows [0, a) cost a (a - 1) / 2 +
// row_cost a; the boundary a_j of part j is the row count whose cost is nearest j / parts of the
// whole, and each part keeps at least one row (parts <= n). The parts tile [0, n) in order: part
// 0 takes the most rows (the cheap ones), the last part the fewest. The same on every rank
// (integer arithmetic). InputError unless 1 <= parts <= n, 0 <= part < parts and row_cost >= 0.
TokenRange balanced_causal_rows(int64_t n, int64_t parts, int64_t part, int64_t row_cost = 0);

class ParallelLayout {
 public:
  ParallelLayout() = default;  // one rank holding whole sequences
  // Checks every rule that does not depend on a sequence length; InputError naming the values.
  explicit ParallelLayout(const LayoutSpec& spec);

  int world_size() const { return world_size_; }
  int rank() const { return rank_; }
  int dp_size() const { return world_size_ / sp_size_; }  // data-parallel replicas, W / S
  int dp_rank() const { return rank_ / sp_size_; }        // this rank's replica
  int sp_size() const { return sp_size_; }                // S
  int sp_rank() const { return rank_ % sp_size_; }        // this rank's place in its sequence group
  int64_t slice_len() const { return slice_len_; }
  bool seq_parallel() const { return sp_size_ > 1; }

  // The tokens this rank holds of a sequence of n tokens: the contiguous chunk
  // [sp_rank * n / S, (sp_rank + 1) * n / S) (all of it when S = 1). n must satisfy
  // check_seq_len (Error otherwise: a length that was not checked at start).
  TokenRange token_range(int64_t n) const;
  // The first token of this rank's part when every rank holds chunk_len tokens.
  int64_t chunk_offset(int64_t chunk_len) const { return token_range(chunk_len * sp_size_).begin; }

  // InputError unless a sequence of n tokens splits over the S ranks into chunks of whole
  // slices; `what` names where n comes from (a key, or a split's shards). Nothing when S = 1.
  void check_seq_len(int64_t n, const std::string& what) const;
  // Under sequence parallelism, InputError unless the samples of `split` (a key and its value,
  // e.g. "data.valid = 'dir'"), n tokens each, have the training length train_n and satisfy
  // check_seq_len. Nothing when S = 1 (any length fits one rank).
  void check_split_len(const std::string& split, int64_t n, int64_t train_n) const;

  // "W rank(s)", or "W rank(s) (D data-parallel x S sequence-parallel: T tokens per rank)" for
  // sequences of n tokens.
  std::string describe(int64_t n) const;

 private:
  std::string length_problem(int64_t n) const;  // "" when n splits into whole slices per rank
  int world_size_ = 1, rank_ = 0, sp_size_ = 1;
  int64_t slice_len_ = 1;
};

}  // namespace cst
