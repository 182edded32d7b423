// The HDF5 RAII layer: typed writes and reads, hyperslabs, appends, attributes, and errors
// that name the file and object.
#include "common/h5.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <numeric>

#include "common/error.h"

namespace cst::h5 {
namespace {

namespace fs = std::filesystem;

class H5Test : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (fs::temp_directory_path() / ("cst_h5_test_" + std::to_string(::getpid()) + ".h5")).string();
  }
  void TearDown() override { fs::remove(path_); }
  std::string path_;
};

TEST_F(H5Test, WriteReadSlabAppendAttributes) {
  std::vector<int32_t> v(24);
  std::iota(v.begin(), v.end(), 0);
  {
    File f(path_, File::Mode::kCreate);
    f.write<int32_t>("a", v.data(), {4, 6}, {{2, 3}, 1});
    f.create_extendible("rows", DType::kUInt16, {3}, {4, 3});
    uint16_t r[6] = {1, 2, 3, 4, 5, 6};
    f.append<uint16_t>("rows", r, 1);
    f.append<uint16_t>("rows", r + 3, 1);
    f.set_attr("name", std::string("x"));
    f.set_attr("n", int64_t{42});
    f.set_attr("pi", 3.25);
  }
  File f(path_, File::Mode::kRead);
  Dataset a = f.open("a");
  EXPECT_EQ(a.shape(), (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(a.dtype(), DType::kInt32);
  EXPECT_EQ(a.read<int64_t>()[23], 23);
  std::vector<float> slab(4);
  a.read_slab<float>({1, 2}, {2, 2}, slab.data());
  EXPECT_EQ(slab, (std::vector<float>{8, 9, 14, 15}));
  Dataset rows = f.open("rows");
  EXPECT_EQ(rows.shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(rows.read<int32_t>(), (std::vector<int32_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(f.attr_string("name"), "x");
  EXPECT_EQ(f.attr_int("n"), 42);
  EXPECT_EQ(f.attr_double("pi"), 3.25);
  EXPECT_EQ(f.attr_as_text("n"), "42");
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a", "rows"}));
}

TEST_F(H5Test, ErrorsNameFileObjectAndRange) {
  {
    File f(path_, File::Mode::kCreate);
    float x[2] = {1, 2};
    f.write<float>("x", x, {2});
  }
  File f(path_, File::Mode::kRead);
  auto expect_msg = [](const std::function<void()>& fn, std::vector<std::string> needles) {
    try {
      fn();
      FAIL() << "no error";
    } catch (const InputError& e) {
      for (auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
    }
  };
  expect_msg([&] { f.open("nope"); }, {path_, "missing dataset 'nope'"});
  expect_msg([&] { f.attr_int("nope"); }, {path_, "missing attribute 'nope'"});
  float out[4];
  expect_msg([&] { f.open("x").read_slab<float>({1}, {2}, out); }, {"'x'", "outside shape [2]"});
  expect_msg([&] { File g(path_ + ".missing", File::Mode::kRead); }, {path_ + ".missing", "no such file"});
  std::ofstream(path_ + ".txt") << "plain text";
  expect_msg([&] { File g(path_ + ".txt", File::Mode::kRead); }, {path_ + ".txt"});
  fs::remove(path_ + ".txt");
}

}  // namespace
}  // namespace cst::h5
