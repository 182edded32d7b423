// Helpers shared by the dataio tests: a temporary folder, shard writers for fixtures and an
// expectation that a call throws InputError mentioning given words.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "common/error.h"
#include "dataio/format.h"
#include "dataio/rng.h"

namespace cst::dataio::testing {

// A fresh folder under /tmp, removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("cst-dataio-" + std::to_string(getpid()) + "-" + (info ? info->name() : "x"));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// `n` pseudo-random token ids in [lo, vocab) from `seed`.
inline std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed, int32_t lo = 0) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    t[static_cast<size_t>(i)] =
        lo + static_cast<int32_t>(counter_hash(seed, static_cast<uint64_t>(i)) % static_cast<uint64_t>(vocab - lo));
  return t;
}

inline ShardMeta test_meta(int64_t vocab) {
  ShardMeta m;
  m.vocab_size = vocab;
  m.tokenizer_sha256 = "abc123";
  m.created_by = "dataio_test";
  m.split = "train";
  m.special = {0, 1, 2, 3, 4};
  return m;
}

// Writes an LM shard of `tokens` as documents of (at most) `doc_len` tokens.
inline void write_lm(const std::string& path, const std::vector<int32_t>& tokens, int64_t vocab,
                     int64_t doc_len = 1000) {
  std::vector<int64_t> offsets{0};
  for (int64_t at = doc_len; at < static_cast<int64_t>(tokens.size()); at += doc_len) offsets.push_back(at);
  offsets.push_back(static_cast<int64_t>(tokens.size()));
  write_lm_shard(path, test_meta(vocab), tokens, offsets);
}

// An MLM shard of `rows` rows of s tokens: "[CLS]=2 ids... [SEP]=3 [PAD]=0 x (r % 9)", ids in
// [5, vocab), segment 1 at column 1 of every row.
inline void write_mlm_fixture(const std::string& path, int64_t rows, int64_t s, int64_t vocab, uint64_t seed = 11) {
  auto ids = random_tokens(rows * s, vocab, seed, 5);
  std::vector<int8_t> mask(ids.size(), 1), seg(ids.size(), 0);
  for (int64_t r = 0; r < rows; ++r) {
    const size_t row = static_cast<size_t>(r * s), len = static_cast<size_t>(s - r % 9);
    ids[row] = 2;
    ids[row + len - 1] = 3;
    seg[row + 1] = 1;
    for (size_t c = len; c < static_cast<size_t>(s); ++c) ids[row + c] = 0, mask[row + c] = 0;
  }
  write_mlm_shard(path, test_meta(vocab), rows, s, ids, mask, seg);
}

// A classification shard of `rows` examples of s tokens: "<s>=2 ids... </s>=3 [PAD]=0 x (r % 5)",
// ids in [5, vocab), segment 1 after the middle of the row. Class label (num_classes >= 2): the
// first id after <s> modulo num_classes (so the task is learnable), -1 for every 7th row when
// `unlabelled_every7`; regression (num_classes = 1): the share of ids below vocab / 2.
// example_index = first_index + r.
inline void write_cls_fixture(const std::string& path, int64_t rows, int64_t s, int64_t vocab, int64_t num_classes,
                              uint64_t seed = 21, const std::string& task = "jsonl", int64_t first_index = 0,
                              bool unlabelled_every7 = false) {
  auto ids = random_tokens(rows * s, vocab, seed, 5);
  std::vector<int8_t> mask(ids.size(), 1), seg(ids.size(), 0);
  std::vector<int64_t> labels, index;
  std::vector<float> targets;
  for (int64_t r = 0; r < rows; ++r) {
    const size_t row = static_cast<size_t>(r * s), len = static_cast<size_t>(s - r % 5);
    ids[row] = 2;
    ids[row + len - 1] = 3;
    int64_t low = 0;
    for (size_t c = 0; c < static_cast<size_t>(s); ++c) {
      if (c >= len) ids[row + c] = 0, mask[row + c] = 0;
      if (c > len / 2 && c < len) seg[row + c] = 1;
      if (c > 0 && c + 1 < len) low += ids[row + c] < vocab / 2;
    }
    if (num_classes == 1)
      targets.push_back(static_cast<float>(low) / static_cast<float>(len - 2));
    else
      labels.push_back(unlabelled_every7 && r % 7 == 6 ? -1 : ids[row + 1] % num_classes);
    index.push_back(first_index + r);
  }
  ClsMeta cls;
  cls.task = task;
  cls.num_classes = num_classes;
  for (int64_t c = 0; num_classes > 1 && c < num_classes; ++c) cls.label_names.push_back("class" + std::to_string(c));
  write_cls_shard(path, test_meta(vocab), cls, rows, s, ids, mask, seg, labels, targets, index);
}

// Expects fn() to throw cst::InputError whose message contains every word of `words`.
inline void expect_input_error(const std::function<void()>& fn, const std::vector<std::string>& words) {
  try {
    fn();
    ADD_FAILURE() << "no InputError thrown";
  } catch (const InputError& e) {
    const std::string what = e.what();
    for (const auto& w : words) EXPECT_NE(what.find(w), std::string::npos) << "'" << w << "' not in: " << what;
  }
}

}  // namespace cst::dataio::testing
