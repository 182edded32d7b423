// The model shapes live in configs/ only: every configs/*.cfg [model] section loads through
// cst-train's option parser and validates, and each ModelConfig::preset is its file's [model]
// section. No torch here.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "common/error.h"
#include "launcher/train_options.h"
#include "model/config.h"

namespace cst::model {
namespace {

namespace fs = std::filesystem;

// The [model] section of a config file as cst-train reads it.
ModelConfig cst_train_model(const std::string& path) {
  trainer::TrainConfig cfg;
  EXPECT_TRUE(launcher::parse_train_options({"cst-train", "--config", path}, cfg, nullptr));
  return cfg.model;
}

TEST(ConfigFiles, EveryModelSectionLoadsAndValidates) {
  int files = 0;
  for (const auto& entry : fs::directory_iterator(CST_CONFIGS_DIR)) {
    if (entry.path().extension() != ".cfg") continue;
    SCOPED_TRACE(entry.path().string());
    ++files;
    ModelConfig c;
    ASSERT_NO_THROW(c = cst_train_model(entry.path().string()));
    EXPECT_NO_THROW(c.validate());
    EXPECT_FALSE(c == ModelConfig()) << "no [model] section";
  }
  EXPECT_GE(files, 4);
}

TEST(ConfigFiles, EachPresetIsItsFilesModelSection) {
  EXPECT_EQ(fs::path(ModelConfig::configs_dir()), fs::path(CST_CONFIGS_DIR));
  const std::map<std::string, std::string> files = {{"tiny_lm", "tiny_lm.cfg"},
                                                    {"tiny_mlm", "tiny_mlm.cfg"},
                                                    {"base_mlm", "bert_base_mlm.cfg"},
                                                    {"pg19_longctx", "pg19_longctx.cfg"}};
  for (const auto& [name, file] : files) {
    SCOPED_TRACE(name);
    const ModelConfig preset = ModelConfig::preset(name);
    EXPECT_EQ(preset.to_string(), cst_train_model(std::string(CST_CONFIGS_DIR) + "/" + file).to_string());
    EXPECT_EQ(preset.csa_kernel, CsaKernel::kAuto);
  }
  EXPECT_FALSE(ModelConfig::preset("tiny_lm") == ModelConfig::preset("tiny_mlm"));
  EXPECT_EQ(ModelConfig::preset("base_mlm").d_model, 768);  // the BERT-base shape
  EXPECT_THROW(ModelConfig::preset("huge"), InputError);
}

}  // namespace
}  // namespace cst::model
