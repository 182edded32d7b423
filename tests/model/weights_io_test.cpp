// HDF5 weights: bitwise round trip and one error per kind of bad file.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/h5.h"
#include "model/weights_io.h"
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
  EXPECT_FALSE(fs::exists(path("w.h5.tmp")));
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

TEST_F(WeightsIo, MissingTensor) {
  expect_load_error([](h5::File& f) { H5Ldelete(f.id(), "layers.0.attn.q_proj.weight", H5P_DEFAULT); },
                    {"missing tensor 'layers.0.attn.q_proj.weight'", "bad.h5", "[8, 8]"});
}

TEST_F(WeightsIo, ExtraTensor) {
  expect_load_error([](h5::File& f) { float v[3] = {1, 2, 3}; f.write<float>("bogus.weight", v, {3}); },
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

}  // namespace
}  // namespace cst::model
