// The options of the cst-prep pipeline (prep.h): the corpora and how to tokenize and shard them.
// Apart from prep.h so that the pipeline's steps (prep_tokenizer.h) take them without the
// pipeline itself.
#pragma once

#include <cstdint>
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

}  // namespace cst::dataio
