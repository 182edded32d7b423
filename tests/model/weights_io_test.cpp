// HDF5 weights: bitwise round trip and one error per kind of bad file.
#include "model/weights_io.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "common/error.h"
#include "common/h5.h"
#include "tests/model/test_util.h"

namespace cst::model {
namespace {

namespace fs = std::filesystem;

class WeightsIo : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("cst_weights_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    cfg_ = testing::small_config(Task::kMlm, 2.0, 4, 16);
    cfg_.aggregation = Aggregation::kLinear;  // include every kind of parameter
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) { return (dir_ / name).string(); }

  // Saves a model, applies `edit` to the open file, and expects load to fail mentioning `needles`.
  void expect_load_error(const std::function<void(h5::File&)>& edit, std::vector<std::string> needles) {
    torch::manual_seed(1);
    CstModel a(cfg_);
    const std::string p = path("bad.h5");
    save_weights(*a, p);
    {
      h5::File f(p, h5::File::Mode::kReadWrite);
      edit(f);
    }
    CstModel b(cfg_);
    Tensor before = b->tok_emb->weight.clone();
    try {
      load_weights(*b, p);
      FAIL() << "load accepted a bad file";
    } catch (const InputError& e) {
      for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
    }
    EXPECT_TRUE(torch::equal(before, b->tok_emb->weight)) << "model changed by a failed load";
  }

  using Tensor = torch::Tensor;
  fs::path dir_;
  ModelConfig cfg_;
};

TEST_F(WeightsIo, RoundTripIsBitwise) {
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    torch::manual_seed(1);
    CstModel a(cfg_);
    a->to(dtype);
    save_weights(*a, path("w.h5"));
    torch::manual_seed(2);
    CstModel b(read_weights_config(path("w.h5")));
    b->to(dtype);
    load_weights(*b, path("w.h5"));
    auto pa = a->named_parameters(), pb = b->named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (const auto& item : pa) EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
  }
  EXPECT_EQ(read_weights_config(path("w.h5")), cfg_);
  for (const auto& e : fs::directory_iterator(dir_)) EXPECT_EQ(e.path().filename(), "w.h5");  // no temporary left
}

TEST_F(WeightsIo, LoadModelRebuildsFromTheFileConfig) {
  CstModel a(cfg_);
  save_weights(*a, path("w.h5"));
  CstModel b = load_model(path("w.h5"));
  EXPECT_EQ(b->config(), cfg_);
  torch::Tensor ids = torch::randint(cfg_.vocab_size, {2, 9}, torch::kLong);
  a->eval(), b->eval();
  EXPECT_TRUE(torch::equal(a->forward(ids), b->forward(ids)));
}

TEST_F(WeightsIo, TokenizerHashIsRecordedWhenKnown) {
  CstModel a(cfg_);
  const std::string sha(64, 'e');
  save_weights(*a, path("known.h5"), sha);
  save_weights(*a, path("unknown.h5"));
  EXPECT_EQ(read_weights_tokenizer(path("known.h5")), sha);
  EXPECT_EQ(read_weights_tokenizer(path("unknown.h5")), "");  // absent: unknown, and still loads
  CstModel b = load_model(path("known.h5"));
  EXPECT_EQ(b->config(), cfg_);
  EXPECT_EQ(read_weights_config(path("unknown.h5")), cfg_);
}

TEST_F(WeightsIo, MissingTensor) {
  expect_load_error([](h5::File& f) { H5Ldelete(f.id(), "layers.0.attn.q_proj.weight", H5P_DEFAULT); },
                    {"missing tensor 'layers.0.attn.q_proj.weight'", "bad.h5", "[8, 8]"});
}

TEST_F(WeightsIo, ExtraTensor) {
  expect_load_error(
      [](h5::File& f) {
        float v[3] = {1, 2, 3};
        f.write<float>("bogus.weight", v, {3});
      },
      {"extra tensor 'bogus.weight'", "bad.h5", "[3]"});
}

TEST_F(WeightsIo, MisShapedTensor) {
  expect_load_error(
      [](h5::File& f) {
        H5Ldelete(f.id(), "ln_f.weight", H5P_DEFAULT);
        std::vector<float> v(9, 1.f);
        f.write<float>("ln_f.weight", v.data(), {9});
      },
      {"tensor 'ln_f.weight'", "[9]", "[8]", "bad.h5"});
}

TEST_F(WeightsIo, WrongFormatVersionAndConfig) {
  expect_load_error([](h5::File& f) { f.set_attr("format", std::string("something.else")); },
                    {"format = 'something.else'"});
  expect_load_error([](h5::File& f) { f.set_attr("format_version", int64_t{99}); }, {"format_version = 99"});
  expect_load_error([](h5::File& f) { H5Adelete(f.id(), "config.d_model"); }, {"config.d_model"});
  expect_load_error([](h5::File& f) { f.set_attr("config.n_heads", int64_t{3}); }, {"n_heads = 3"});
  expect_load_error([](h5::File& f) { f.set_attr("config.arch", std::string("rnn")); }, {"arch = 'rnn'"});
}

TEST_F(WeightsIo, NotAFileOrNotHdf5) {
  CstModel m(cfg_);
  EXPECT_THROW(load_weights(*m, path("nope.h5")), InputError);
  std::ofstream(path("text.h5")) << "not hdf5\n";
  try {
    load_weights(*m, path("text.h5"));
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("text.h5"), std::string::npos);
  }
}

TEST_F(WeightsIo, OtherConfigShapesDoNotLoad) {
  CstModel a(cfg_);
  save_weights(*a, path("w.h5"));
  ModelConfig other = cfg_;
  other.alpha = 3.0;  // P_l grows from 8 to 12 rows
  CstModel b(other);
  try {
    load_weights(*b, path("w.h5"));
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("pos_local"), std::string::npos) << e.what();
  }
}

// weight_shapes (the torch-free table the file is checked against before a model exists) is
// what the model really holds, for every kind of model.
TEST(WeightShapes, EqualTheModelsParameters) {
  for (Arch arch : {Arch::kCst, Arch::kFull})
    for (Task task : {Task::kLm, Task::kMlm, Task::kCls})
      for (Aggregation agg : {Aggregation::kMean, Aggregation::kLinear})
        for (PosEmb pos : {PosEmb::kAuto, PosEmb::kAbsolute}) {
          ModelConfig c = testing::small_config(task, 3.0, 4, 16);
          c.arch = arch, c.aggregation = agg, c.pos_emb = pos, c.n_layers = 2, c.num_classes = 3;
          CstModel m(c);
          std::map<std::string, std::vector<int64_t>> have;
          for (const auto& p : m->named_parameters()) have[p.key()] = p.value().sizes().vec();
          EXPECT_EQ(weight_shapes(c), have) << c.to_string();
        }
}

// Sizes in the file are checked before anything is allocated from them.
TEST_F(WeightsIo, HugeOrInconsistentSizesAreRefusedBeforeAllocating) {
  expect_load_error([](h5::File& f) { f.set_attr("config.vocab_size", int64_t{1000000000000}); },
                    {"bad.h5", "vocab_size = 1000000000000", "2147483647"});
  expect_load_error([](h5::File& f) { f.set_attr("config.d_model", int64_t{1} << 40); }, {"d_model = 1099511627776"});
  expect_load_error([](h5::File& f) { f.set_attr("config.n_layers", int64_t{100000}); }, {"n_layers = 100000"});
  expect_load_error([](h5::File& f) { f.set_attr("config.max_seq_len", int64_t{1} << 40); }, {"max_seq_len"});
  try {  // load_model builds nothing from a file whose sizes are out of range
    load_model(path("bad.h5"));
    FAIL() << "loaded";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("max_seq_len"), std::string::npos) << e.what();
  }
  // In range, but not what the tensors hold: 2^30 x 8 floats would be 32 GiB.
  CstModel a(cfg_);
  save_weights(*a, path("v.h5"));
  {
    h5::File f(path("v.h5"), h5::File::Mode::kReadWrite);
    f.set_attr("config.vocab_size", int64_t{1} << 30);
  }
  try {
    read_weights_config(path("v.h5"));
    FAIL() << "accepted";
  } catch (const InputError& e) {
    for (const char* w : {"v.h5", "has shape [11", "[1073741824"})
      EXPECT_NE(std::string(e.what()).find(w), std::string::npos) << e.what();
  }
}

TEST_F(WeightsIo, TensorsMustBeStoredFloats) {
  // Declared at its shape but never written: HDF5 would read zeros.
  expect_load_error(
      [](h5::File& f) {
        H5Ldelete(f.id(), "ln_f.weight", H5P_DEFAULT);
        const hsize_t dims[1] = {8}, chunk[1] = {4};
        h5::Handle space(H5Screate_simple(1, dims, nullptr), H5Sclose);
        h5::Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
        H5Pset_chunk(dcpl.id(), 1, chunk);
        h5::Handle d(
            H5Dcreate2(f.id(), "ln_f.weight", H5T_NATIVE_FLOAT, space.id(), H5P_DEFAULT, dcpl.id(), H5P_DEFAULT),
            H5Dclose);
      },
      {"bad.h5", "'ln_f.weight'", "declares 32 bytes", "stores 0"});
  expect_load_error(
      [](h5::File& f) {
        H5Ldelete(f.id(), "ln_f.weight", H5P_DEFAULT);
        std::vector<int32_t> v(8, 1);
        f.write<int32_t>("ln_f.weight", v.data(), {8});
      },
      {"'ln_f.weight' is int32", "float32 or float64"});
}

}  // namespace
}  // namespace cst::model
