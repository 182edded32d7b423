// cst-train's options (launcher/train_options.h) and TrainConfig::validate's range checks: every
// number that sizes a buffer, a thread count or step arithmetic is bounded, named in the error
// with its value. No torch here.
#include "trainer/train_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "launcher/train_options.h"

namespace cst::trainer {
namespace {

// Expects cfg with key=value to fail validate() with a message naming the key, its value and
// the allowed range.
void expect_rejected(const std::string& key, const std::string& value, int world = 1) {
  TrainConfig cfg;
  cfg.data.train = "x";
  cfg.set(key, value);
  try {
    cfg.validate(world);
    ADD_FAILURE() << key << " = " << value << " accepted";
  } catch (const InputError& e) {
    const std::string field = key.rfind("model.", 0) == 0 ? key.substr(6) : key;  // model.*: ModelConfig's message
    EXPECT_NE(std::string(e.what()).find(field + " = "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("must be in"), std::string::npos) << e.what();
  }
}

TEST(TrainConfigBounds, SizesAreRangeChecked) {
  expect_rejected("data.prefetch", "1000000");
  expect_rejected("train.micro_batch", "4611686018427387904");  // x world size would overflow
  expect_rejected("train.global_batch", "1099511627776");
  expect_rejected("train.steps", "100000000000");
  expect_rejected("optim.warmup_steps", "100000000000");
  expect_rejected("dist.threads", "100000");
  expect_rejected("dist.bucket_mb", "1e300");
  expect_rejected("dist.bucket_first_mb", "1e12");
  expect_rejected("dist.comm_timeout_s", "1e300");
  expect_rejected("debug.save_delay_ms", "99999999999");
  expect_rejected("log.peak_tflops", "1e100");
  expect_rejected("log.profile_step", "-1");
  expect_rejected("log.profile_step", "100000000000");
  expect_rejected("model.vocab_size", "1000000000000");
  TrainConfig ok;
  ok.data.train = "x";
  ok.validate(4);
}

TEST(TrainConfigBounds, NumbersThatDoNotParseNameTheKey) {
  TrainConfig cfg;
  for (const auto& [key, text] :
       std::vector<std::pair<std::string, std::string>>{{"train.steps", "99999999999999999999"},
                                                        {"optim.lr", "nan"},
                                                        {"optim.lr", "inf"},
                                                        {"dist.bucket_mb", "1e999"},
                                                        {"train.seed", "12x"}}) {
    try {
      cfg.set(key, text);
      ADD_FAILURE() << key << " = " << text << " accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  }
}

// boost::program_options loops forever formatting an error about an option that holds one of
// its placeholders; such text is refused first, on the command line and in config files.
TEST(TrainOptions, PlaceholdersAndBadFilesAreInputErrors) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("cst_train_options_" + std::to_string(::getpid()) + ".cfg")).string();
  auto parse = [&](std::vector<std::string> args) {
    TrainConfig cfg;
    args.insert(args.begin(), "cst-train");
    return launcher::parse_train_options(args, cfg, nullptr);
  };
  EXPECT_THROW(parse({"--x%canonical_option%y", "1"}), InputError);
  EXPECT_THROW(parse({"--train.steps", "%value%"}), InputError);
  std::ofstream(path) << "[train]\nx%canonical_option% = 3\n";
  try {
    parse({"--config", path});
    ADD_FAILURE() << "accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(path + "' line 2"), std::string::npos) << e.what();
  }
  std::ofstream(path) << "[train]\nsteps = 7\nbogus = 1\n";
  EXPECT_THROW(parse({"--config", path}), InputError);
  std::ofstream(path) << "[train]\nsteps = 7\n";
  TrainConfig cfg;
  ASSERT_TRUE(launcher::parse_train_options({"cst-train", "--config", path, "--train.steps", "9"}, cfg, nullptr));
  EXPECT_EQ(cfg.train.steps, 9);  // the command line wins
  EXPECT_THROW(parse({"--config", path + ".missing"}), InputError);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace cst::trainer
