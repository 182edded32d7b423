// The cst-prep pipeline: raw text (text.h) -> SentencePiece tokenizer -> HDF5 shards (format.h).
//
// Output folder layout:
//   <output>/tokenizer.model                 the tokenizer (trained, or a copy of the given one)
//   <output>/{train,validation,test}/shard-NNNNN.h5   (a split folder only if it has documents)
// Several inputs (corpora for a blend, blend.h) share the one tokenizer and each gets a folder:
//   <output>/<name>/{train,validation,test}/shard-NNNNN.h5
//   <output>/cst-prep.json                   the files cst-prep wrote (common/output_folder.h)
// Output safety: the output may not overlap an input or the tokenizer; a non-empty output folder
// is refused unless `overwrite`, which replaces only the files an earlier cst-prep run wrote
// there. Everything is written into <output>/.cst-prep-staging/ and moved into place when the
// run has succeeded: a failed run leaves the folder as it was.
//
// Parallelism: run_prep is collective. Rank r of W encodes input files i with i % W == r into
// <staging>/parts/part-<r>.h5; rank 0 then writes every shard by reading the parts back in file
// order. Shards therefore hold the same documents in the same order, cut at the same places, for
// every W: the output equals a 1-rank run's. Documents are never split across shards.
// Determinism: the tokenizer is trained by rank 0 on train-split text in file order, with
// SentencePiece's random seed set to `seed` and one thread: of each input its first
// spm_max_bytes * bytes(input) / bytes(all inputs) (one input: its first spm_max_bytes).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dataio/prep_options.h"
#include "dataio/source.h"

namespace cst::dataio {

// How the ranks of a job cooperate; the default is a single process.
struct PrepWorld {
  int rank = 0;
  int size = 1;
  std::function<void()> barrier = [] {};  // collective over all ranks
};

struct CorpusSummary {
  std::string name, dir;  // dir: where its split folders are (<output> or <output>/<name>)
  std::array<int64_t, kNumSplits> documents{}, tokens{}, samples{}, shards{};  // by Split;
  // samples: MLM rows (LM: 0, windows depend on the model's N)
};

struct PrepSummary {
  int64_t vocab_size = 0;
  std::string tokenizer_sha256;
  std::vector<CorpusSummary> corpora;  // one per input, in order (rank 0)
};

// Collective: every rank calls it with the same options. Rank 0's summary is complete; the
// others' hold the tokenizer fields only. Throws InputError on bad input (missing or empty
// input, unreadable files, malformed documents, a tokenizer lacking MLM's special tokens) and
// on an output it may not write (see above).
PrepSummary run_prep(const PrepOptions& opt, const PrepWorld& world);

}  // namespace cst::dataio
