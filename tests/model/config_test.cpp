// ModelConfig::validate() rejects every inconsistent value, naming the field. No torch here.
#include "model/config.h"

#include <gtest/gtest.h>

#include <functional>

#include "common/error.h"

namespace cst::model {
namespace {

struct Bad {
  std::string what;                        // test label
  std::function<void(ModelConfig&)> edit;  // makes the config invalid
  std::string must_mention;                // text the error must contain
};

class ConfigRejects : public ::testing::TestWithParam<Bad> {};

TEST_P(ConfigRejects, WithAMessageNamingTheField) {
  ModelConfig c = ModelConfig::preset("tiny_lm");
  ASSERT_NO_THROW(c.validate());
  GetParam().edit(c);
  try {
    c.validate();
    FAIL() << "accepted: " << GetParam().what;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(GetParam().must_mention), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Fields, ConfigRejects,
    ::testing::Values(
        Bad{"heads", [](ModelConfig& c) { c.n_heads = 3; }, "not divisible by n_heads = 3"},
        Bad{"d_model", [](ModelConfig& c) { c.d_model = 0; }, "d_model = 0"},
        Bad{"alpha_low", [](ModelConfig& c) { c.alpha = 0.5; }, "alpha = 0.5"},
        Bad{"alpha_high", [](ModelConfig& c) { c.alpha = 3.5; }, "alpha = 3.5"},
        Bad{"e_fraction", [](ModelConfig& c) { c.slice_len = 16, c.alpha = 1.1; }, "not a whole number"},
        Bad{"e_half", [](ModelConfig& c) { c.slice_len = 6, c.alpha = 1.5, c.max_seq_len = 240; },
            "e = (alpha-1)*L/2 = 1.5"},
        Bad{"len_multiple", [](ModelConfig& c) { c.max_seq_len = 100; }, "not a multiple of slice_len"},
        Bad{"slice_too_long", [](ModelConfig& c) { c.slice_len = 512; }, "exceeds max_seq_len"},
        Bad{"vocab", [](ModelConfig& c) { c.vocab_size = 1; }, "vocab_size = 1"},
        Bad{"layers", [](ModelConfig& c) { c.n_layers = 0; }, "n_layers = 0"},
        Bad{"ffn", [](ModelConfig& c) { c.d_ff = -4; }, "d_ff = -4"},
        Bad{"dropout", [](ModelConfig& c) { c.dropout = 1.0; }, "dropout = 1"},
        Bad{"eps", [](ModelConfig& c) { c.layer_norm_eps = 0; }, "layer_norm_eps"},
        Bad{"classes", [](ModelConfig& c) { c.task = Task::kCls, c.num_classes = 0; }, "num_classes = 0"},
        Bad{"full_msvipe", [](ModelConfig& c) { c.arch = Arch::kFull, c.pos_emb = PosEmb::kMsVipe; },
            "pos_emb = msvipe"},
        // Upper bounds: sizes that would ask for terabytes (or overflow) are refused by value.
        Bad{"vocab_huge", [](ModelConfig& c) { c.vocab_size = 1000000000000; }, "vocab_size = 1000000000000"},
        Bad{"width_huge", [](ModelConfig& c) { c.d_model = c.n_heads = 1 << 20; }, "d_model = 1048576"},
        Bad{"heads_over_width", [](ModelConfig& c) { c.d_model = 4, c.n_heads = 8; }, "n_heads = 8"},
        Bad{"layers_huge", [](ModelConfig& c) { c.n_layers = 100000; }, "n_layers = 100000"},
        Bad{"ffn_huge", [](ModelConfig& c) { c.d_ff = int64_t{1} << 30; }, "d_ff = 1073741824"},
        Bad{"len_huge", [](ModelConfig& c) { c.max_seq_len = int64_t{1} << 40; }, "max_seq_len = 1099511627776"},
        Bad{"classes_huge", [](ModelConfig& c) { c.num_classes = int64_t{1} << 40; }, "num_classes = 1099511627776"}),
    [](const ::testing::TestParamInfo<Bad>& i) { return i.param.what; });

TEST(ConfigFields, ParseErrorsNameKeyAndValue) {
  ModelConfig c;
  EXPECT_THROW(c.set("d_model", "12x"), InputError);
  EXPECT_THROW(c.set("alpha", "nan"), InputError);
  EXPECT_THROW(c.set("arch", "rnn"), InputError);
  try {
    c.set("no_such_key", "1");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_key"), std::string::npos);
  }
}

TEST(ConfigFields, RoundTripThroughText) {
  ModelConfig a = ModelConfig::preset("pg19_longctx");
  a.composition = Composition::kParallel, a.aggregation = Aggregation::kLinear, a.dropout = 0.123;
  ModelConfig b;
  for (const auto& f : ModelConfig::fields()) b.set(f.name, a.get(f.name));
  EXPECT_EQ(a.to_string(), b.to_string());
  EXPECT_EQ(a.hash(), b.hash());
  b.alpha = 2.0;
  EXPECT_NE(a.hash(), b.hash());
}

TEST(ConfigFields, PresetsAreValidAndDerivedSizesRight) {
  for (auto name : {"tiny_lm", "tiny_mlm", "base_mlm", "pg19_longctx"}) EXPECT_NO_THROW(ModelConfig::preset(name));
  ModelConfig c = ModelConfig::preset("pg19_longctx");  // L = 64, alpha = 3, causal
  EXPECT_EQ(c.extension(), 64);
  EXPECT_EQ(c.window(), 128);
  c.task = Task::kMlm;
  EXPECT_EQ(c.window(), 192);
  EXPECT_THROW(ModelConfig::preset("huge"), InputError);
}

}  // namespace
}  // namespace cst::model
