// cst-prep's tokenizer step (prep.h): train one SentencePiece model on a sample of every input's
// train split, or take the given one. Used by run_prep only.
#pragma once

#include <string>
#include <vector>

#include "dataio/format.h"
#include "dataio/prep.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace cst::dataio {

// An input of run_prep with its format resolved and its files listed.
struct PrepCorpus {
  PrepInput input;  // format resolved (never kAuto)
  std::vector<InputFile> files;
  std::string dir;    // output folder of its splits
  int64_t bytes = 0;  // sum of its files' sizes
};

// Writes the tokenizer to `out`: a copy of opt.tokenizer (loaded first: InputError naming
// opt.tokenizer when it is missing or not a SentencePiece model), or a model trained (seed opt.seed, one
// thread, pad/unk/<s>/</s> = 0..3, control symbol [MASK]) from memory on train-split sentences:
// of each corpus, in file order, its first spm_max_bytes * bytes / (bytes of all corpora), so
// that the sample follows the corpora's sizes. Throws InputError when there is no such text.
void make_tokenizer(const PrepOptions& opt, const std::vector<PrepCorpus>& corpora, const std::string& out);

// Loads the SentencePiece model at `path` into sp. Throws InputError "cannot load tokenizer
// '<shown>': ..." naming `shown`, the path the user gave (path may be a copy of it).
void load_tokenizer(sentencepiece::SentencePieceProcessor& sp, const std::string& path, const std::string& shown);

// The special token ids of a cst-prep tokenizer (mask = the [MASK] piece, -1 if none).
SpecialTokens special_tokens(const sentencepiece::SentencePieceProcessor& sp);

}  // namespace cst::dataio
