// The on-disk shard formats (specified in docs/DATA.md) and their writers.
//
//   LM token stream  (format "cst-lm-tokens", version 1)
//     tokens       [T]     uint16 if vocab_size <= 65536 else int32; chunks of kLmChunkTokens
//     doc_offsets  [D + 1] int64, document starts; doc_offsets[0] = 0, doc_offsets[D] = T
//   MLM sequences    (format "cst-mlm-sequences", version 1)
//     input_ids    [n, S]  int32, "[CLS] sentences... [SEP] [PAD]..."; chunks of kMlmChunkRows rows
//     input_mask   [n, S]  int8, 1 = real token
//     segment_ids  [n, S]  int8
//   Classification examples (format "cst-cls-examples", version 1)
//     input_ids      [n, S] int32, "<s> a </s> [b </s>] [PAD]..."; chunks of kMlmChunkRows rows
//     attention_mask [n, S] int8, 1 = real token
//     segment_ids    [n, S] int8, 0 up to and including the first </s>, 1 for the second text
//     labels         [n]    int64 class id (num_classes >= 2; -1 = no label, a test split) or
//                           float32 target (num_classes = 1, regression; NaN = no label)
//     example_index  [n]    int64, the example's index in its source split (row order of the
//                           input file), so that predictions can be written in that order
//     extra root attributes: task (e.g. "glue/mrpc", "lra/listops", "jsonl"), num_classes,
//     label_names (a JSON array of strings: label_names[id]; [] for regression)
//   Root attributes of all: format, format_version, vocab_size, tokenizer_sha256, created_by,
//   split, and the special token ids pad_id, unk_id, cls_id, sep_id, mask_id (-1 = none).
//
//   NVIDIA DeepLearningExamples BERT shards are read as they are (no attributes; see source.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/checksum.h"

namespace cst::dataio {

inline constexpr char kLmFormat[] = "cst-lm-tokens";
inline constexpr char kMlmFormat[] = "cst-mlm-sequences";
inline constexpr char kClsFormat[] = "cst-cls-examples";
inline constexpr int64_t kFormatVersion = 1;  // the newest version this code reads and writes
inline constexpr int64_t kLmChunkTokens = 32768;
inline constexpr int64_t kMlmChunkRows = 16;

// Ids of the tokenizer's special tokens; -1 when the tokenizer has none.
struct SpecialTokens {
  int32_t pad = -1, unk = -1, cls = -1, sep = -1, mask = -1;
  // pad, cls, sep and mask are never masked or drawn as random replacements (unk is a
  // normal token for masking, as in BERT).
  bool is_special(int32_t id) const { return id == pad || id == cls || id == sep || id == mask; }
};

// What a shard says about itself (root attributes).
struct ShardMeta {
  std::string format;  // kLmFormat, kMlmFormat or kClsFormat
  int64_t version = kFormatVersion;
  int64_t vocab_size = 0;        // every token id is < vocab_size
  std::string tokenizer_sha256;  // hex sha256 of the tokenizer file's bytes (below)
  std::string created_by;        // tool, version and command line that made the shard
  std::string split;             // "train", "validation" or "test"
  SpecialTokens special;
};

// Writes an LM shard (truncating path). doc_offsets as above; tokens < meta.vocab_size.
void write_lm_shard(const std::string& path, const ShardMeta& meta, const std::vector<int32_t>& tokens,
                    const std::vector<int64_t>& doc_offsets);

// Writes an MLM shard of `rows` rows of `seq_len` tokens (row-major vectors of rows*seq_len).
void write_mlm_shard(const std::string& path, const ShardMeta& meta, int64_t rows, int64_t seq_len,
                     const std::vector<int32_t>& input_ids, const std::vector<int8_t>& input_mask,
                     const std::vector<int8_t>& segment_ids);

// What a classification shard says of its task (root attributes besides ShardMeta's).
struct ClsMeta {
  std::string task;                      // e.g. "glue/mrpc", "lra/listops", "jsonl"
  int64_t num_classes = 2;               // >= 2: class ids in [0, num_classes); 1: regression
  std::vector<std::string> label_names;  // label_names[id] (size num_classes); empty for regression
};

// Classification examples of `rows` rows of `seq_len` tokens (row-major vectors as for MLM).
// Exactly one of class_labels (num_classes >= 2; -1 = no label) and targets (num_classes = 1;
// NaN = no label) holds `rows` values; the other is empty. example_index has `rows` values.
void write_cls_shard(const std::string& path, const ShardMeta& meta, const ClsMeta& cls, int64_t rows, int64_t seq_len,
                     const std::vector<int32_t>& input_ids, const std::vector<int8_t>& attention_mask,
                     const std::vector<int8_t>& segment_ids, const std::vector<int64_t>& class_labels,
                     const std::vector<float>& targets, const std::vector<int64_t>& example_index);

// tokenizer_sha256 = sha256_file(<SentencePiece .model file>) (common/checksum.h); for the built-in
// ListOps vocabulary, sha256_file of the vocabulary file cst-prep writes beside the shards.
using cst::sha256_file;

}  // namespace cst::dataio
