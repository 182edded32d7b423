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

#include "dataio/source.h"
#include "dataio/text.h"

namespace cst::dataio {

// One corpus to prepare.
struct PrepInput {
  std::string path;  // corpus root (file or folder), see text.h
  InputFormat format = InputFormat::kAuto;
  std::string name;  // output sub-folder when there are several inputs
};

// The inputs of a command line: each `[name=]path` (name: letters, digits, '_', '-', '.'; else
// the path's last component), with `formats` empty (auto for all), one format for all, or one
// per input. Throws InputError naming the option and value on a count mismatch, an unknown
// format or two inputs with the same name.
std::vector<PrepInput> parse_prep_inputs(const std::vector<std::string>& inputs,
                                         const std::vector<std::string>& formats);

struct PrepOptions {
  std::vector<PrepInput> inputs;                // >= 1 corpora; several share one tokenizer
  std::string jsonl_field = "text";             // jsonl: the field holding the document
  TextEncoding encoding = TextEncoding::kUtf8;  // how input files are read (text.h)
  std::string output;                           // output folder (created)
  bool overwrite = false;                       // replace the files an earlier cst-prep run wrote in output
  SampleKind task = SampleKind::kLm;            // kLm: token streams; kMlm: packed sequences
  std::string tokenizer;                        // an existing SentencePiece .model; "" = train one
  int64_t vocab_size = 8000;                    // trained tokenizer: vocabulary size (upper bound)
  std::string model_type = "unigram";           // trained tokenizer: unigram, bpe, char or word
  double character_coverage = 0.9995;           // trained tokenizer: characters covered
  int64_t spm_max_bytes = 256ll << 20;          // trained tokenizer: bytes of text it sees (at most)
  int64_t seq_len = 128;                        // MLM: S, tokens per row incl. [CLS] and [SEP]
  int64_t shard_tokens = 1ll << 25;             // LM: a shard closes once it holds >= this many tokens
  int64_t shard_rows = 1ll << 16;               // MLM: rows per shard
  double valid_fraction = 0.01;                 // non-pg19 inputs: documents sent to validation
  double test_fraction = 0.0;                   // non-pg19 inputs: documents sent to test
  uint64_t seed = 1234;                         // tokenizer training's sampling seed
  std::string created_by = "cst-prep";          // stored in every shard ("what made it")
  bool progress = true;                         // rank 0 prints progress with an ETA to stderr
  void validate() const;                        // throws InputError
};

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
