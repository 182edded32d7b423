// Shard formats and Hdf5Source: round trips, the NVIDIA BERT fixture and every bad-input case.
#include <hdf5.h>

#include <filesystem>
#include <fstream>

#include "common/h5.h"
#include "dataio/source.h"
#include "test_util.h"

namespace cst::dataio {
namespace {
using testing::expect_input_error;
using testing::random_tokens;
using testing::TempDir;
using testing::write_lm;
using testing::write_mlm_fixture;

SourceOptions lm_opts(int64_t n, int64_t vocab = 0) {
  SourceOptions o;
  o.kind = SampleKind::kLm;
  o.seq_len = n;
  o.vocab_size = vocab;
  return o;
}

std::vector<int32_t> read_ids(SampleSource& s, int64_t index) {
  std::vector<int32_t> ids(static_cast<size_t>(s.sample_len()));
  std::vector<uint8_t> mask(ids.size()), seg(ids.size());
  std::vector<int32_t> labels(ids.size());
  int8_t nsp = 0;
  s.read(index, {ids.data(), mask.data(), seg.data(), labels.data(), &nsp});
  return ids;
}

void check_lm_round_trip(int64_t vocab, h5::DType stored, int max_open_files) {
  TempDir dir;
  const auto a = random_tokens(1000, vocab, 1), b = random_tokens(517, vocab, 2);
  write_lm(dir.file("a.h5"), a, vocab, 300);
  write_lm(dir.file("b.h5"), b, vocab, 300);
  EXPECT_EQ(h5::File(dir.file("a.h5"), h5::File::Mode::kRead).open("tokens").dtype(), stored);
  const int64_t n = 15;  // windows of 16: 62 from a (8 tokens left over), 32 from b
  SourceOptions o = lm_opts(n, vocab);
  o.max_open_files = max_open_files;
  Hdf5Source src(list_shards(dir.path().string()), o);
  ASSERT_EQ(src.num_samples(), 1000 / 16 + 517 / 16);
  ASSERT_EQ(src.sample_len(), 16);
  for (int64_t k = 0; k < src.num_samples(); ++k) {
    const int64_t i = (k * 37) % src.num_samples();  // alternate between the shards
    const bool in_a = i < 1000 / 16;
    const auto& t = in_a ? a : b;
    const int64_t first = (in_a ? i : i - 1000 / 16) * 16;
    EXPECT_EQ(read_ids(src, i), std::vector<int32_t>(t.begin() + first, t.begin() + first + 16)) << i;
  }
}

TEST(Shards, LmRoundTripUint16) { check_lm_round_trip(8000, h5::DType::kUInt16, 64); }
TEST(Shards, LmRoundTripOneOpenFile) { check_lm_round_trip(8000, h5::DType::kUInt16, 1); }
TEST(Shards, LmRoundTripInt32ForLargeVocab) { check_lm_round_trip(70000, h5::DType::kInt32, 64); }

TEST(Shards, LmAttributesAreWritten) {
  TempDir dir;
  write_lm(dir.file("a.h5"), random_tokens(100, 500, 3), 500);
  h5::File f(dir.file("a.h5"), h5::File::Mode::kRead);
  EXPECT_EQ(f.attr_string("format"), kLmFormat);
  EXPECT_EQ(f.attr_int("format_version"), kFormatVersion);
  EXPECT_EQ(f.attr_int("vocab_size"), 500);
  EXPECT_EQ(f.attr_string("tokenizer_sha256"), "abc123");
  EXPECT_EQ(f.attr_string("created_by"), "dataio_test");
  EXPECT_EQ(f.open("doc_offsets").read<int64_t>(), (std::vector<int64_t>{0, 100}));
}

TEST(Shards, MlmRoundTrip) {
  TempDir dir;
  write_mlm_fixture(dir.file("m.h5"), 10, 16, 300, 7);
  SourceOptions o;
  o.kind = SampleKind::kMlm;
  Hdf5Source src({dir.file("m.h5")}, o);
  ASSERT_EQ(src.num_samples(), 10);
  ASSERT_EQ(src.sample_len(), 16);
  EXPECT_FALSE(src.static_masks());
  EXPECT_EQ(src.special().mask, 4);
  h5::File f(dir.file("m.h5"), h5::File::Mode::kRead);
  const auto ids = f.open("input_ids").read<int32_t>();
  const auto mask = f.open("input_mask").read<int8_t>();
  for (int64_t r = 0; r < 10; ++r) {
    std::vector<int32_t> got(16), labels(16);
    std::vector<uint8_t> m(16), seg(16);
    int8_t nsp = 5;
    src.read(r, {got.data(), m.data(), seg.data(), labels.data(), &nsp});
    EXPECT_EQ(got, std::vector<int32_t>(ids.begin() + r * 16, ids.begin() + r * 16 + 16));
    for (int c = 0; c < 16; ++c) EXPECT_EQ(m[static_cast<size_t>(c)], mask[static_cast<size_t>(r * 16 + c)]);
    EXPECT_EQ(seg[1], 1);
    EXPECT_EQ(labels, std::vector<int32_t>(16, -100));
    EXPECT_EQ(nsp, -1);
  }
}

// ---- NVIDIA DeepLearningExamples BERT shard, written with the raw HDF5 C API ----------------
void write_c_api(hid_t file, const char* name, hid_t file_type, hid_t mem_type, std::vector<hsize_t> dims,
                 const void* data) {
  hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  hid_t ds = H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(ds, 0);
  ASSERT_GE(H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0);
  H5Dclose(ds);
  H5Sclose(space);
}

struct NvidiaFixture {
  static constexpr hsize_t kN = 3, kS = 8, kP = 3;
  std::vector<int32_t> ids, positions, mlm_ids;
  std::vector<int8_t> mask, seg, nsp{1, 0, 1};
  // Writes the fixture; `bad_position` puts position kS into row 2.
  void write(const std::string& path, bool bad_position = false) {
    for (hsize_t i = 0; i < kN * kS; ++i) {
      ids.push_back(static_cast<int32_t>(100 + i));
      mask.push_back(i % kS < 6 ? 1 : 0);
      seg.push_back(i % kS >= 4 ? 1 : 0);
    }
    positions = {1, 3, 0, /**/ 2, 0, 0, /**/ 5, 6, bad_position ? static_cast<int32_t>(kS) : 7};
    mlm_ids = {11, 13, 0, /**/ 22, 0, 0, /**/ 35, 36, 37};
    hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_c_api(f, "input_ids", H5T_STD_I32LE, H5T_NATIVE_INT32, {kN, kS}, ids.data());
    write_c_api(f, "input_mask", H5T_STD_I8LE, H5T_NATIVE_INT8, {kN, kS}, mask.data());
    write_c_api(f, "segment_ids", H5T_STD_I8LE, H5T_NATIVE_INT8, {kN, kS}, seg.data());
    write_c_api(f, "masked_lm_positions", H5T_STD_I32LE, H5T_NATIVE_INT32, {kN, kP}, positions.data());
    write_c_api(f, "masked_lm_ids", H5T_STD_I32LE, H5T_NATIVE_INT32, {kN, kP}, mlm_ids.data());
    write_c_api(f, "next_sentence_labels", H5T_STD_I8LE, H5T_NATIVE_INT8, {kN}, nsp.data());
    H5Fclose(f);
  }
};

SourceOptions mlm_opts(int64_t vocab) {
  SourceOptions o;
  o.kind = SampleKind::kMlm;
  o.vocab_size = vocab;
  return o;
}

TEST(Shards, NvidiaBertShardReadAsIs) {
  TempDir dir;
  NvidiaFixture fx;
  fx.write(dir.file("nv.h5"));
  Hdf5Source src({dir.file("nv.h5")}, mlm_opts(30522));
  ASSERT_TRUE(src.static_masks());
  ASSERT_EQ(src.num_samples(), 3);
  ASSERT_EQ(src.sample_len(), 8);
  for (int64_t r = 0; r < 3; ++r) {
    std::vector<int32_t> got(8), labels(8);
    std::vector<uint8_t> m(8), seg(8);
    int8_t nsp = -7;
    src.read(r, {got.data(), m.data(), seg.data(), labels.data(), &nsp});
    std::vector<int32_t> want_labels(8, -100);
    for (size_t j = 0; j < 3 && fx.positions[static_cast<size_t>(r) * 3 + j] != 0; ++j)
      want_labels[static_cast<size_t>(fx.positions[static_cast<size_t>(r) * 3 + j])] =
          fx.mlm_ids[static_cast<size_t>(r) * 3 + j];
    EXPECT_EQ(labels, want_labels) << r;
    EXPECT_EQ(nsp, fx.nsp[static_cast<size_t>(r)]);
    for (size_t c = 0; c < 8; ++c) {
      EXPECT_EQ(got[c], fx.ids[static_cast<size_t>(r) * 8 + c]);
      EXPECT_EQ(m[c], fx.mask[static_cast<size_t>(r) * 8 + c]);
      EXPECT_EQ(seg[c], fx.seg[static_cast<size_t>(r) * 8 + c]);
    }
  }
}

TEST(ShardErrors, NvidiaNeedsVocabAndValidPositions) {
  TempDir dir;
  NvidiaFixture fx;
  fx.write(dir.file("nv.h5"), /*bad_position=*/true);
  expect_input_error([&] { Hdf5Source({dir.file("nv.h5")}, mlm_opts(0)); }, {"nv.h5", "vocab"});
  Hdf5Source src({dir.file("nv.h5")}, mlm_opts(30522));
  expect_input_error([&] { read_ids(src, 2); }, {"nv.h5", "masked_lm_positions", "index 8", "position 8"});
  Hdf5Source small({dir.file("nv.h5")}, mlm_opts(105));
  expect_input_error([&] { read_ids(small, 0); }, {"nv.h5", "input_ids", "index 5", "token id 105"});
}

// ---- bad input ------------------------------------------------------------------------------
TEST(ShardErrors, MissingFileOrFolder) {
  TempDir dir;
  expect_input_error([&] { Hdf5Source({dir.file("nope.h5")}, lm_opts(4)); }, {"nope.h5"});
  expect_input_error([&] { list_shards(dir.file("nodir")); }, {"nodir"});
  expect_input_error([&] { list_shards(dir.path().string()); }, {"no *.h5"});
}

TEST(ShardErrors, MissingDataset) {
  TempDir dir;
  {
    h5::File f(dir.file("a.h5"), h5::File::Mode::kCreate);
    f.set_attr("format", std::string(kLmFormat));
    f.set_attr("format_version", int64_t{1});
    f.set_attr("vocab_size", int64_t{100});
    for (const char* k : {"tokenizer_sha256"}) f.set_attr(k, std::string("x"));
    for (const char* k : {"pad_id", "unk_id", "cls_id", "sep_id", "mask_id"}) f.set_attr(k, int64_t{-1});
    std::vector<uint16_t> t(10, 1);
    f.write("tokens", t.data(), {10});
  }
  expect_input_error([&] { Hdf5Source({dir.file("a.h5")}, lm_opts(4)); }, {"a.h5", "doc_offsets"});
}

// Writes an LM shard whose `tokens` dataset is replaced by `tokens` of the given type/shape.
template <class T>
void write_lm_with_tokens(const std::string& path, const std::vector<T>& tokens, std::vector<int64_t> dims) {
  write_lm(path, random_tokens(10, 100, 1), 100);
  h5::File f(path, h5::File::Mode::kReadWrite);
  H5Ldelete(f.id(), "tokens", H5P_DEFAULT);
  f.write("tokens", tokens.data(), dims);
}

TEST(ShardErrors, WrongDtypeRankOrShape) {
  TempDir dir;
  write_lm_with_tokens(dir.file("f.h5"), std::vector<float>(10, 1.f), {10});
  expect_input_error([&] { Hdf5Source({dir.file("f.h5")}, lm_opts(4)); }, {"f.h5", "'tokens'", "float32"});
  write_lm_with_tokens(dir.file("i64.h5"), std::vector<int64_t>(10, 1), {10});
  expect_input_error([&] { Hdf5Source({dir.file("i64.h5")}, lm_opts(4)); }, {"i64.h5", "'tokens'", "int64"});
  write_lm_with_tokens(dir.file("r2.h5"), std::vector<int32_t>(10, 1), {2, 5});
  expect_input_error([&] { Hdf5Source({dir.file("r2.h5")}, lm_opts(4)); }, {"r2.h5", "'tokens'", "[2, 5]", "rank 1"});
  // MLM: input_mask with another shape than input_ids.
  write_mlm_fixture(dir.file("m.h5"), 4, 8, 100, 1);
  {
    h5::File f(dir.file("m.h5"), h5::File::Mode::kReadWrite);
    H5Ldelete(f.id(), "input_mask", H5P_DEFAULT);
    std::vector<int8_t> m(4 * 7, 1);
    f.write("input_mask", m.data(), {4, 7});
  }
  SourceOptions o;
  o.kind = SampleKind::kMlm;
  expect_input_error([&] { Hdf5Source({dir.file("m.h5")}, o); }, {"m.h5", "input_mask", "[4, 7]", "[4, 8]"});
}

TEST(ShardErrors, TokenIdOutsideVocab) {
  TempDir dir;
  auto t = random_tokens(100, 50, 1);
  t[37] = 50;
  write_lm(dir.file("a.h5"), t, 50);
  Hdf5Source src({dir.file("a.h5")}, lm_opts(9));
  read_ids(src, 0);  // tokens 0..9 are fine
  expect_input_error([&] { read_ids(src, 3); }, {"a.h5", "'tokens'", "index 37", "token id 50"});
}

TEST(ShardErrors, VocabOrTokenizerMismatch) {
  TempDir dir;
  write_lm(dir.file("a.h5"), random_tokens(100, 50, 1), 50);
  expect_input_error([&] { Hdf5Source({dir.file("a.h5")}, lm_opts(4, 64)); }, {"a.h5", "vocab_size 50", "64"});
  SourceOptions o = lm_opts(4, 50);
  o.tokenizer_sha256 = "def456";
  expect_input_error([&] { Hdf5Source({dir.file("a.h5")}, o); }, {"a.h5", "abc123", "def456"});
  // Between shards.
  write_lm(dir.file("b.h5"), random_tokens(100, 60, 1), 60);
  expect_input_error(
      [&] {
        Hdf5Source({dir.file("a.h5"), dir.file("b.h5")}, lm_opts(4));
      },
      {"b.h5", "vocab_size 60", "a.h5"});
}

TEST(ShardErrors, EmptyShardAndTooShort) {
  TempDir dir;
  write_lm_shard(dir.file("e.h5"), testing::test_meta(50), {}, {0});
  expect_input_error([&] { Hdf5Source({dir.file("e.h5")}, lm_opts(4)); }, {"e.h5", "empty shard"});
  write_lm(dir.file("s.h5"), random_tokens(10, 50, 1), 50);
  expect_input_error([&] { Hdf5Source({dir.file("s.h5")}, lm_opts(10)); }, {"s.h5", "no sample"});
}

TEST(ShardErrors, WrongFormatVersionOrKind) {
  TempDir dir;
  write_lm(dir.file("a.h5"), random_tokens(100, 50, 1), 50);
  {
    h5::File f(dir.file("a.h5"), h5::File::Mode::kReadWrite);
    f.set_attr("format_version", int64_t{kFormatVersion + 1});
  }
  expect_input_error([&] { Hdf5Source({dir.file("a.h5")}, lm_opts(4)); }, {"a.h5", "format_version 2"});
  write_lm(dir.file("b.h5"), random_tokens(100, 50, 1), 50);
  expect_input_error([&] { Hdf5Source({dir.file("b.h5")}, mlm_opts(50)); }, {"b.h5", "cst-lm-tokens", "MLM"});
  {
    h5::File f(dir.file("b.h5"), h5::File::Mode::kReadWrite);
    f.set_attr("format", std::string("something-else"));
  }
  expect_input_error([&] { Hdf5Source({dir.file("b.h5")}, lm_opts(4)); }, {"b.h5", "something-else"});
}

TEST(ShardErrors, TruncatedOrCorruptedFile) {
  TempDir dir;
  write_lm(dir.file("a.h5"), random_tokens(200000, 50, 1), 50);
  const auto size = std::filesystem::file_size(dir.file("a.h5"));
  std::filesystem::copy_file(dir.file("a.h5"), dir.file("t.h5"));
  std::filesystem::resize_file(dir.file("t.h5"), size / 2);
  // Either opening or reading the cut-off chunks fails, naming the file.
  expect_input_error(
      [&] {
        Hdf5Source src({dir.file("t.h5")}, lm_opts(99));
        for (int64_t i = 0; i < src.num_samples(); ++i) read_ids(src, i);
      },
      {"t.h5"});
  std::filesystem::copy_file(dir.file("a.h5"), dir.file("c.h5"));
  {
    std::fstream f(dir.file("c.h5"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(0);
    f.write("garbage!garbage!", 16);  // destroys the superblock signature
  }
  expect_input_error([&] { Hdf5Source({dir.file("c.h5")}, lm_opts(4)); }, {"c.h5"});
}

}  // namespace
}  // namespace cst::dataio
