// `cst-prep --task cls`: labelled examples (cls_formats.h) -> classification shards
// (format.h "cst-cls-examples"), with an existing SentencePiece tokenizer or, for LRA ListOps,
// the built-in ListOps vocabulary (cls_formats.h listops_vocabulary()).
//
// Output folder layout:
//   <output>/tokenizer.model            a copy of the given tokenizer (SentencePiece), or
//   <output>/listops-vocab.txt          the ListOps vocabulary, one token a line (id = line - 1)
//   <output>/<split>/shard-NNNNN.h5     per split folder (cls_formats.h list_cls_splits)
//   <output>/cst-prep.json              the files cst-prep wrote (common/output_folder.h)
// Output safety as run_prep's (prep.h): no overlap with the input or tokenizer, a non-empty
// folder only with `overwrite`, everything staged and moved into place at the end.
//
// Row layout (as the MLM rows): "<s> a </s> [PAD]..." or "<s> a </s> b </s> [PAD]...", segment
// 0 up to and including the first </s>, 1 for b and its </s>. Texts longer than fit are cut
// longest-first: one token at a time from the end of the longer text (of two equally long, the
// second), as HF tokenizers' truncation="longest_first".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dataio/cls_formats.h"
#include "dataio/format.h"

namespace cst::dataio {

struct ClsPrepOptions {
  std::string input;                    // a file or folder (cls_formats.h)
  ClsReadOptions read;                  // format, GLUE task, jsonl fields, encoding
  std::string output;                   // output folder (created)
  bool overwrite = false;               // replace the files an earlier cst-prep run wrote in output
  std::string tokenizer;                // SentencePiece .model; required unless lra-listops (unused there)
  int64_t seq_len = 128;                // S, tokens per row incl. <s> and </s>
  int64_t shard_rows = 1ll << 16;       // rows per shard
  double valid_fraction = 0.01;         // one input file: share of rows sent to validation
  uint64_t seed = 1234;                 // one input file: the split's draw
  bool skip_bad_rows = false;           // skip (count, report) rows that are an error otherwise
  std::string created_by = "cst-prep";  // stored in every shard
  bool report_skips = true;             // report skipped rows on stderr (the first 20 of a file)
  void validate() const;                // throws InputError
};

struct ClsSplitSummary {
  std::string split;                  // its folder under the output
  int64_t examples = 0;               // rows written
  int64_t truncated = 0;              // rows whose texts were cut to fit seq_len
  int64_t skipped = 0;                // bad rows skipped (skip_bad_rows)
  int64_t unlabelled = 0;             // rows without a label (test files)
  int64_t shards = 0;                 // shard files written
  std::vector<int64_t> label_counts;  // rows per class id (empty for regression)
};

struct ClsPrepSummary {
  std::string task;            // ClsMeta::task
  std::string tokenizer_file;  // in the output folder
  int64_t vocab_size = 0;
  std::string tokenizer_sha256;          // of the .model file, or of the ListOps vocabulary file
  int64_t num_classes = 0;               // 1 = regression
  std::vector<std::string> label_names;  // label_names[id]
  std::vector<ClsSplitSummary> splits;   // in output order
};

// One process. Throws InputError on bad input (naming file, line and column of a bad row), on a
// tokenizer that does not load (naming opt.tokenizer) or lacks <pad>, <s> or </s>, and on an
// output it may not write.
ClsPrepSummary run_cls_prep(const ClsPrepOptions& opt);

// Lays out one row of `seq_len` tokens at ids/mask/segments (see above), cutting a and b
// longest-first. Returns true when anything was cut.
bool layout_cls_row(std::vector<int32_t>& a, std::vector<int32_t>& b, bool pair, const SpecialTokens& special,
                    int64_t seq_len, int32_t* ids, int8_t* mask, int8_t* segments);

}  // namespace cst::dataio
