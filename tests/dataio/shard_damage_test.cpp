// Damaged shards the validator must refuse before anything is sized by them: doc_offsets wrong
// anywhere (not only at the ends), datasets declaring more than the file stores, rows longer
// than any model, attributes holding arrays.
#include <hdf5.h>

#include <algorithm>
#include <vector>

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

SourceOptions lm(int64_t n) {
  SourceOptions o;
  o.kind = SampleKind::kLm;
  o.seq_len = n;
  return o;
}

// An LM shard of 300000 tokens in 150000 documents of 2 (doc_offsets spans 3 read chunks),
// with doc_offsets[index] set to value.
void write_lm_with_offset(const std::string& path, int64_t index, int64_t value) {
  const int64_t t = 300000;
  write_lm(path, random_tokens(t, 50, 1), 50, 2);
  h5::File f(path, h5::File::Mode::kReadWrite);
  std::vector<int64_t> off = f.open("doc_offsets").read<int64_t>();
  ASSERT_EQ(off.size(), 150001u);
  off[static_cast<size_t>(index)] = value;
  H5Ldelete(f.id(), "doc_offsets", H5P_DEFAULT);
  f.write("doc_offsets", off.data(), {static_cast<int64_t>(off.size())});
}

// Replaces dataset `name` by a chunked one of `shape` with nothing written: HDF5 would read it
// back as zeros.
void replace_by_unwritten(const std::string& path, const std::string& name, std::vector<hsize_t> shape, hid_t type) {
  h5::File f(path, h5::File::Mode::kReadWrite);
  H5Ldelete(f.id(), name.c_str(), H5P_DEFAULT);
  std::vector<hsize_t> chunk(shape.size(), 1);
  chunk[0] = std::min<hsize_t>(4096, shape[0]);
  h5::Handle space(H5Screate_simple(static_cast<int>(shape.size()), shape.data(), nullptr), H5Sclose);
  h5::Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_chunk(dcpl.id(), static_cast<int>(chunk.size()), chunk.data());
  h5::Handle ds(H5Dcreate2(f.id(), name.c_str(), type, space.id(), H5P_DEFAULT, dcpl.id(), H5P_DEFAULT), H5Dclose);
  ASSERT_TRUE(ds.valid());
}

TEST(ShardDamage, DocOffsetsCheckedEverywhere) {
  TempDir dir;
  write_lm_with_offset(dir.file("ok.h5"), 70000, 140000);  // the value it has: still valid
  Hdf5Source ok({dir.file("ok.h5")}, lm(9));
  EXPECT_EQ(ok.num_samples(), 30000);
  // Decreasing in the middle of the second chunk of 65536 entries.
  write_lm_with_offset(dir.file("dec.h5"), 70000, 139997);
  expect_input_error([&] { Hdf5Source({dir.file("dec.h5")}, lm(9)); },
                     {"dec.h5", "'doc_offsets' index 70000", "value 139997", "never decrease"});
  // Beyond the token count in the middle (and so larger than the entry after it).
  write_lm_with_offset(dir.file("big.h5"), 140000, 999999);
  expect_input_error([&] { Hdf5Source({dir.file("big.h5")}, lm(9)); },
                     {"big.h5", "'doc_offsets' index 140000", "value 999999", "beyond the number of tokens"});
  write_lm_with_offset(dir.file("neg.h5"), 3, -5);
  expect_input_error([&] { Hdf5Source({dir.file("neg.h5")}, lm(9)); }, {"neg.h5", "index 3", "value -5"});
  write_lm_with_offset(dir.file("first.h5"), 0, 1);
  expect_input_error([&] { Hdf5Source({dir.file("first.h5")}, lm(9)); }, {"first.h5", "index 0", "expected 0"});
  write_lm_with_offset(dir.file("last.h5"), 150000, 299999);
  expect_input_error([&] { Hdf5Source({dir.file("last.h5")}, lm(9)); },
                     {"last.h5", "index 150000", "value 299999", "expected the number of tokens"});
}

TEST(ShardDamage, DatasetsMustBeStoredInFull) {
  TempDir dir;
  // 2^40 tokens declared, none stored: the loader would read 2^40 zeros.
  write_lm(dir.file("lm.h5"), random_tokens(100, 50, 1), 50);
  replace_by_unwritten(dir.file("lm.h5"), "tokens", {hsize_t{1} << 40}, H5T_NATIVE_UINT16);
  {
    h5::File f(dir.file("lm.h5"), h5::File::Mode::kReadWrite);
    const int64_t off[2] = {0, int64_t{1} << 40};
    H5Ldelete(f.id(), "doc_offsets", H5P_DEFAULT);
    f.write("doc_offsets", off, {2});
  }
  expect_input_error([&] { Hdf5Source({dir.file("lm.h5")}, lm(9)); },
                     {"lm.h5", "'tokens'", "[1099511627776]", "declares", "stores 0"});
  write_mlm_fixture(dir.file("mlm.h5"), 4, 8, 100);
  replace_by_unwritten(dir.file("mlm.h5"), "segment_ids", {4, 8}, H5T_NATIVE_UINT8);
  SourceOptions o;
  o.kind = SampleKind::kMlm;
  expect_input_error([&] { Hdf5Source({dir.file("mlm.h5")}, o); }, {"mlm.h5", "'segment_ids'", "declares 32 bytes"});
}

TEST(ShardDamage, RowsLongerThanAnyModel) {
  TempDir dir;
  write_mlm_fixture(dir.file("m.h5"), 4, 8, 100);
  replace_by_unwritten(dir.file("m.h5"), "input_ids", {4, hsize_t{1} << 30}, H5T_NATIVE_INT32);
  SourceOptions o;
  o.kind = SampleKind::kMlm;
  expect_input_error([&] { Hdf5Source({dir.file("m.h5")}, o); }, {"m.h5", "1073741824 tokens per row"});
}

TEST(ShardDamage, AttributeArraysAreRefused) {
  TempDir dir;
  write_lm(dir.file("a.h5"), random_tokens(100, 50, 1), 50);
  {
    h5::File f(dir.file("a.h5"), h5::File::Mode::kReadWrite);
    H5Adelete(f.id(), "vocab_size");
    const hsize_t n = 3;
    const int64_t v[3] = {50, 50, 50};
    h5::Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
    h5::Handle a(H5Acreate2(f.id(), "vocab_size", H5T_NATIVE_INT64, space.id(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    H5Awrite(a.id(), H5T_NATIVE_INT64, v);
  }
  expect_input_error([&] { Hdf5Source({dir.file("a.h5")}, lm(9)); }, {"a.h5", "'vocab_size'", "holds 3 values"});
}

}  // namespace
}  // namespace cst::dataio
