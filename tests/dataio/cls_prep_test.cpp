// cst-prep --task cls (dataio/prep_cls.h, cls_formats.h): the row layout and longest-first
// truncation, jsonl folders and single files, every GLUE task's layout, LRA ListOps with its
// built-in vocabulary, and bad rows named by file, line and column (or skipped and counted).
#include <sentencepiece_processor.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "cls_test_util.h"
#include "common/h5.h"
#include "common/json.h"
#include "dataio/prep.h"
#include "dataio/prep_cls.h"

namespace cst::dataio {
namespace {
namespace fs = std::filesystem;
using testing::expect_input_error;
using testing::TempDir;
using testing::write_input;

std::string make_tokenizer(const TempDir& dir) {
  return testing::small_tokenizer(dir, "the ship sailed leagues over the grey sea and a plane flew by", 60);
}

// One cls shard read back.
struct ClsShard {
  int64_t rows = 0, seq = 0, num_classes = 0;
  std::string task, split, sha;
  std::vector<std::string> label_names;
  std::vector<int32_t> ids;
  std::vector<int8_t> mask, seg;
  std::vector<int64_t> labels, index;
  std::vector<float> targets;
  std::vector<int32_t> row(int64_t r) const { return {ids.begin() + r * seq, ids.begin() + (r + 1) * seq}; }
};

ClsShard read_shard(const std::string& path) {
  h5::File f(path, h5::File::Mode::kRead);
  ClsShard s;
  EXPECT_EQ(f.attr_string("format"), "cst-cls-examples");
  s.task = f.attr_string("task");
  s.split = f.attr_string("split");
  s.sha = f.attr_string("tokenizer_sha256");
  s.num_classes = f.attr_int("num_classes");
  s.label_names = parse_json(f.attr_string("label_names"), path).get<std::vector<std::string>>();
  s.ids = f.open("input_ids").read<int32_t>();
  s.mask = f.open("attention_mask").read<int8_t>();
  s.seg = f.open("segment_ids").read<int8_t>();
  s.index = f.open("example_index").read<int64_t>();
  s.rows = static_cast<int64_t>(s.index.size());
  s.seq = static_cast<int64_t>(s.ids.size()) / std::max<int64_t>(1, s.rows);
  if (s.num_classes == 1)
    s.targets = f.open("labels").read<float>();
  else
    s.labels = f.open("labels").read<int64_t>();
  return s;
}

ClsPrepOptions cls_opts(const TempDir& dir, const std::string& input, ClsFormat format, const std::string& tok) {
  ClsPrepOptions o;
  o.input = dir.file(input);
  o.read.format = format;
  o.output = dir.file("cls-out");
  o.tokenizer = tok;
  o.seq_len = 16;
  return o;
}

TEST(ClsPrep, PairLayoutAndLongestFirstTruncation) {
  const SpecialTokens sp{0, 1, 2, 3, -1};
  std::vector<int32_t> ids(12), a, b;
  std::vector<int8_t> mask(12), seg(12);
  for (int i = 0; i < 10; ++i) a.push_back(10 + i);
  b = {20, 21, 22, 23};
  // 14 text tokens for 9 places: the longer text loses 5 from its end.
  EXPECT_TRUE(layout_cls_row(a, b, true, sp, 12, ids.data(), mask.data(), seg.data()));
  EXPECT_EQ(ids, (std::vector<int32_t>{2, 10, 11, 12, 13, 14, 3, 20, 21, 22, 23, 3}));
  EXPECT_EQ(seg, (std::vector<int8_t>{0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1}));
  EXPECT_EQ(mask, std::vector<int8_t>(12, 1));
  // Equally long: the second text loses the token first.
  a = {10, 11, 12, 13, 14}, b = {20, 21, 22, 23, 24};
  EXPECT_TRUE(layout_cls_row(a, b, true, sp, 12, ids.data(), mask.data(), seg.data()));
  EXPECT_EQ(ids, (std::vector<int32_t>{2, 10, 11, 12, 13, 14, 3, 20, 21, 22, 23, 3}));
  // One text that fits: padded, mask 0 and segment 0 on the padding.
  a = {10, 11, 12}, b.clear();
  EXPECT_FALSE(layout_cls_row(a, b, false, sp, 12, ids.data(), mask.data(), seg.data()));
  EXPECT_EQ(ids, (std::vector<int32_t>{2, 10, 11, 12, 3, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(mask, (std::vector<int8_t>{1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(seg, std::vector<int8_t>(12, 0));
}

TEST(ClsPrep, JsonlFolderPairsStringLabelsAndTruncation) {
  TempDir dir;
  const std::string tok = make_tokenizer(dir);
  std::string longer;
  for (int i = 0; i < 30; ++i) longer += "the grey sea ";
  write_input(dir.file("j/train.jsonl"),
              "{\"a\": \"the ship\", \"b\": \"a plane\", \"y\": \"pos\"}\n\n"
              "{\"a\": \"" +
                  longer +
                  "\", \"b\": \"the sea\", \"y\": \"neg\"}\n"
                  "{\"a\": \"sailed\", \"b\": \"flew\", \"y\": \"neutral\"}\n");
  write_input(dir.file("j/validation.jsonl"), "{\"a\": \"the sea\", \"b\": \"grey\", \"y\": \"neg\"}\n");
  write_input(dir.file("j/test.jsonl"), "{\"a\": \"x\", \"b\": \"y\"}\n{\"a\": \"the\", \"b\": \"sea\"}\n");
  ClsPrepOptions o = cls_opts(dir, "j", ClsFormat::kJsonl, tok);
  o.read.jsonl_field = "a", o.read.jsonl_pair_field = "b", o.read.jsonl_label_field = "y";
  o.seq_len = 32;
  const ClsPrepSummary sum = run_cls_prep(o);
  ASSERT_EQ(sum.splits.size(), 3u);
  EXPECT_EQ(sum.splits[0].examples, 3);
  EXPECT_EQ(sum.splits[0].truncated, 1);
  EXPECT_EQ(sum.splits[2].unlabelled, 2);
  EXPECT_EQ(sum.label_names, (std::vector<std::string>{"neg", "neutral", "pos"}));
  const ClsShard tr = read_shard(dir.file("cls-out/train/shard-00000.h5"));
  EXPECT_EQ(tr.task, "jsonl");
  EXPECT_EQ(tr.num_classes, 3);
  EXPECT_EQ(tr.labels, (std::vector<int64_t>{2, 0, 1}));
  EXPECT_EQ(tr.index, (std::vector<int64_t>{0, 1, 2}));  // blank lines are not rows
  EXPECT_EQ(tr.sha, sha256_file(tok));
  EXPECT_EQ(sha256_file(dir.file("cls-out/tokenizer.model")), sha256_file(tok));
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(tok).ok());
  std::vector<int> a, b;
  ASSERT_TRUE(sp.Encode("the ship", &a).ok() && sp.Encode("a plane", &b).ok());
  std::vector<int32_t> want{sp.bos_id()};
  want.insert(want.end(), a.begin(), a.end());
  want.push_back(sp.eos_id());
  const size_t first_sep = want.size() - 1;
  want.insert(want.end(), b.begin(), b.end());
  want.push_back(sp.eos_id());
  const size_t len = want.size();
  ASSERT_LE(len, 32u);
  want.resize(32, sp.pad_id());
  EXPECT_EQ(tr.row(0), want);
  for (size_t c = 0; c < 32; ++c) {
    EXPECT_EQ(tr.seg[c], c > first_sep && c < len ? 1 : 0) << c;
    EXPECT_EQ(tr.mask[c], c < len ? 1 : 0) << c;
  }
  // The long row: full, ends with </s> (segment 1), its second text kept whole.
  EXPECT_EQ(tr.row(1)[31], sp.eos_id());
  EXPECT_EQ(tr.mask[32 + 31], 1);
  const ClsShard te = read_shard(dir.file("cls-out/test/shard-00000.h5"));
  EXPECT_EQ(te.split, "test");
  EXPECT_EQ(te.labels, (std::vector<int64_t>{-1, -1}));
  EXPECT_EQ(te.index, (std::vector<int64_t>{0, 1}));
}

TEST(ClsPrep, JsonlSingleFileIsSplitBySeed) {
  TempDir dir;
  const std::string tok = make_tokenizer(dir);
  std::string rows;
  for (int i = 0; i < 60; ++i)
    rows += "{\"text\": \"the sea " + std::to_string(i) + "\", \"label\": " + std::to_string(i % 3) + "}\n";
  write_input(dir.file("one.jsonl"), rows);
  auto split_of = [&](uint64_t seed) {
    ClsPrepOptions o = cls_opts(dir, "one.jsonl", ClsFormat::kJsonl, tok);
    o.valid_fraction = 0.3, o.seed = seed, o.overwrite = true;
    const ClsPrepSummary sum = run_cls_prep(o);
    EXPECT_EQ(sum.label_names, (std::vector<std::string>{"0", "1", "2"}));
    std::vector<int> split(60, -1);
    for (const char* s : {"train", "validation"}) {
      const ClsShard sh = read_shard(dir.file(std::string("cls-out/") + s + "/shard-00000.h5"));
      for (int64_t r = 0; r < sh.rows; ++r) {
        EXPECT_EQ(split[static_cast<size_t>(sh.index[static_cast<size_t>(r)])], -1);
        split[static_cast<size_t>(sh.index[static_cast<size_t>(r)])] = s[0] == 'v';
        EXPECT_EQ(sh.labels[static_cast<size_t>(r)], sh.index[static_cast<size_t>(r)] % 3);
      }
    }
    return split;
  };
  const auto a = split_of(5), b = split_of(5), c = split_of(6);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  const int valid = static_cast<int>(std::count(a.begin(), a.end(), 1));
  EXPECT_GT(valid, 8);
  EXPECT_LT(valid, 30);
  EXPECT_EQ(std::count(a.begin(), a.end(), -1), 0);
}

TEST(ClsPrep, ListOpsBuiltInVocabulary) {
  TempDir dir;
  write_input(dir.file("lo/basic_train.tsv"), "Source\tTarget\n( ( [MAX 2 ) 9 ) ] )\t9\n( ( [SM 5 ) 7 ) ] )\t2\n");
  write_input(dir.file("lo/basic_val.tsv"), "Source\tTarget\n[MIN 4 [MED 1 2 3 ] ]\t2\n");
  write_input(dir.file("lo/basic_test.tsv"), "Source\tTarget\n( ( [MIN 0 ) 3 ) ] )\t0\n");
  const ClsPrepSummary sum = run_cls_prep(cls_opts(dir, "lo", ClsFormat::kListOps, ""));
  EXPECT_EQ(sum.vocab_size, 19);
  EXPECT_EQ(sum.num_classes, 10);
  std::ifstream vf(dir.file("cls-out/listops-vocab.txt"));
  std::vector<std::string> vocab;
  for (std::string w; std::getline(vf, w);) vocab.push_back(w);
  EXPECT_EQ(vocab, listops_vocabulary());
  const ClsShard tr = read_shard(dir.file("cls-out/train/shard-00000.h5"));
  EXPECT_EQ(tr.task, "lra/listops");
  EXPECT_EQ(tr.sha, sha256_file(dir.file("cls-out/listops-vocab.txt")));
  EXPECT_EQ(tr.row(0), (std::vector<int32_t>{2, 4, 11, 18, 8, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(tr.labels, (std::vector<int64_t>{9, 2}));
  const ClsShard va = read_shard(dir.file("cls-out/validation/shard-00000.h5"));
  EXPECT_EQ(va.row(0), (std::vector<int32_t>{2, 5, 13, 6, 10, 11, 12, 8, 8, 3, 0, 0, 0, 0, 0, 0}));
  EXPECT_TRUE(fs::exists(dir.file("cls-out/test/shard-00000.h5")));
  // One file: split by --valid-fraction (0 here: all train), rows keep their row numbers.
  ClsPrepOptions one = cls_opts(dir, "lo/basic_train.tsv", ClsFormat::kListOps, "");
  one.valid_fraction = 0, one.output = dir.file("cls-one");
  run_cls_prep(one);
  const ClsShard on = read_shard(dir.file("cls-one/train/shard-00000.h5"));
  EXPECT_EQ(on.ids, tr.ids);
  EXPECT_EQ(on.index, (std::vector<int64_t>{0, 1}));
  EXPECT_FALSE(fs::exists(dir.file("cls-one/validation")));
}

}  // namespace
}  // namespace cst::dataio
