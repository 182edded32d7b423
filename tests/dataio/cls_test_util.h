// Helpers of the cst-prep --task cls tests: input files and a small SentencePiece model.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>

#include "dataio/prep.h"
#include "test_util.h"

namespace cst::dataio::testing {

// Writes `text` (bytes as given) to path, creating its folders.
inline void write_input(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// A SentencePiece model trained by cst-prep (vocabulary `vocab`) on `line` repeated; returns
// its path (<dir>/tok/tokenizer.model).
inline std::string small_tokenizer(const TempDir& dir, const std::string& line, int64_t vocab) {
  std::string text;
  for (int i = 0; i < 300; ++i) text += line + " " + std::to_string(i % 13) + ".\n";
  write_input(dir.file("corpus/train/1.txt"), text);
  PrepOptions o;
  o.inputs = {{dir.file("corpus"), InputFormat::kPg19, ""}};
  o.output = dir.file("tok");
  o.vocab_size = vocab;
  o.progress = false;
  run_prep(o, {});
  return dir.file("tok/tokenizer.model");
}

}  // namespace cst::dataio::testing
