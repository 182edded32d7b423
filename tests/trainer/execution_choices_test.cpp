// Execution choices as enums of the field table: every enum option refuses an unknown name
// (InputError naming the key and the value, from the API, the command line and a config file),
// every name reads back from the configuration dump (config.cfg), configs/ reads back
// identically, resolve_execution resolves `auto` (CPU and CUDA hosts simulated by the device
// count), and a --config that names a folder is refused. No torch.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>

#include "common/error.h"
#include "launcher/train_options.h"
#include "tests/dataio/test_util.h"
#include "tests/trainer/enum_options.h"
#include "trainer/execution.h"

namespace cst::trainer {
namespace {

using testing::EnumOption;
using TempDir = dataio::testing::TempDir;

bool parse(std::vector<std::string> args, TrainConfig& cfg) {
  args.insert(args.begin(), "cst-train");
  return launcher::parse_train_options(args, cfg, nullptr);
}

// f() throws InputError whose message holds every one of `words`.
void expect_input_error(const std::function<void()>& f, const std::vector<std::string>& words,
                        const std::string& where) {
  try {
    f();
    ADD_FAILURE() << where << ": accepted";
  } catch (const InputError& e) {
    for (const auto& w : words)
      EXPECT_NE(std::string(e.what()).find(w), std::string::npos) << where << ": " << e.what();
  }
}

// "[dist]\nsdpa = v\n" for key "dist.sdpa".
std::string config_text(const std::string& key, const std::string& value) {
  const size_t dot = key.find('.');
  return "[" + key.substr(0, dot) + "]\n" + key.substr(dot + 1) + " = " + value + "\n";
}

class EnumOptionTest : public ::testing::TestWithParam<EnumOption> {};

TEST_P(EnumOptionTest, UnknownNameIsAnInputErrorNamingKeyAndValue) {
  const EnumOption& o = GetParam();
  TempDir dir;
  for (const std::string bad : {"bogus", "On", ""}) {
    std::vector<std::string> words = {o.key + " = '" + bad + "'"};
    if (o.names_in_error)
      for (const auto& n : o.names) words.push_back(n);
    TrainConfig cfg;
    expect_input_error([&] { cfg.set(o.key, bad); }, words, "set");
    expect_input_error([&] { parse({"--" + o.key, bad}, cfg); }, words, "command line");
    std::ofstream(dir.file("bad.cfg")) << config_text(o.key, bad);
    expect_input_error([&] { parse({"--config", dir.file("bad.cfg")}, cfg); }, words, "config file");
  }
}

TEST_P(EnumOptionTest, EveryNameReadsBackFromTheConfigDump) {
  const EnumOption& o = GetParam();
  TempDir dir;
  const std::string default_name = TrainConfig().get(o.key);
  EXPECT_NE(std::find(o.names.begin(), o.names.end(), default_name), o.names.end()) << default_name;
  for (const auto& name : o.names) {
    TrainConfig cfg;
    cfg.set(o.key, name);
    EXPECT_EQ(cfg.get(o.key), name);
    std::ofstream(dir.file("config.cfg")) << cfg.to_string();
    TrainConfig back;
    ASSERT_TRUE(parse({"--config", dir.file("config.cfg")}, back));
    EXPECT_EQ(back.get(o.key), name);
    EXPECT_EQ(back.to_string(), cfg.to_string());
    TrainConfig cli;
    ASSERT_TRUE(parse({"--" + o.key, name}, cli));
    EXPECT_EQ(cli.to_string(), cfg.to_string());
  }
}

INSTANTIATE_TEST_SUITE_P(TrainConfig, EnumOptionTest, ::testing::ValuesIn(testing::enum_options()),
                         [](const ::testing::TestParamInfo<EnumOption>& i) {
                           std::string n = i.param.key;
                           std::replace(n.begin(), n.end(), '.', '_');
                           return n;
                         });

// The list above is complete: every other text option takes any text at set() (its checks, if
// any, are validate()'s), so an option refusing "bogus" there is an enum that must be listed.
TEST(EnumOptions, EveryEnumFieldIsListed) {
  for (const auto& f : TrainConfig::fields()) {
    if (f.kind != "string") continue;
    TrainConfig cfg;
    bool refused = false;
    try {
      cfg.set(f.name, "bogus");
    } catch (const InputError&) {
      refused = true;
    }
    const auto& all = testing::enum_options();
    const bool listed = std::any_of(all.begin(), all.end(), [&](const EnumOption& o) { return o.key == f.name; });
    EXPECT_EQ(refused, listed) << f.name;
  }
}

// cst-train writes config.cfg with to_string(); every config of the repository reads back
// from it to the same configuration.
TEST(EnumOptions, RepositoryConfigsReadBackIdentically) {
  TempDir dir;
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(model::ModelConfig::configs_dir())) {
    if (entry.path().extension() != ".cfg") continue;
    TrainConfig cfg, back;
    ASSERT_TRUE(parse({"--config", entry.path().string()}, cfg)) << entry.path();
    std::ofstream(dir.file("config.cfg")) << cfg.to_string();
    ASSERT_TRUE(parse({"--config", dir.file("config.cfg")}, back));
    EXPECT_EQ(back.to_string(), cfg.to_string()) << entry.path();
    ++n;
  }
  EXPECT_GE(n, 4);
}

// A folder opens and reads as nothing: refused rather than taken for an empty configuration.
// An empty file (here /dev/null) is still the default configuration.
TEST(TrainOptions, ConfigThatIsAFolderIsRefused) {
  TempDir dir;
  TrainConfig cfg;
  expect_input_error(
      [&] {
        parse({"--config", dir.path().string()}, cfg);
      },
      {"--config '" + dir.path().string() + "'", "folder"}, "folder");
  ASSERT_TRUE(parse({"--config", "/dev/null"}, cfg));
  EXPECT_EQ(cfg.to_string(), TrainConfig().to_string());
}

ProcessInfo rank(int local_rank) {
  ProcessInfo p;
  p.rank = 3, p.local_rank = local_rank, p.host = "node7";
  return p;
}

TEST(ResolveExecution, AutoOnACpuHost) {
  TrainConfig cfg;  // every choice auto (checkpointing none)
  for (auto arch : {"cst", "full"}) {
    cfg.set("model.arch", arch);
    const Execution ex = resolve_execution(cfg, rank(1), /*cuda_devices=*/0);
    EXPECT_EQ(ex.device, Device::cpu());
    EXPECT_EQ(ex.device.str(), "cpu");
    EXPECT_FALSE(ex.bf16);
    EXPECT_FALSE(ex.sdpa) << "sdpa auto is off on CPU";
    EXPECT_FALSE(ex.activation_checkpointing);
    EXPECT_EQ(ex.str(), "device cpu");
  }
  cfg.set("dist.sdpa", "on");
  cfg.set("train.activation_checkpointing", "block");
  const Execution ex = resolve_execution(cfg, rank(0), 0);
  EXPECT_TRUE(ex.sdpa);
  EXPECT_TRUE(ex.activation_checkpointing);
  EXPECT_EQ(ex.str(), "device cpu; full attention through SDPA; activation checkpointing");
  const model::ModelConfig mc = ex.apply(cfg.model);
  EXPECT_TRUE(mc.full_sdpa);
  EXPECT_TRUE(mc.activation_checkpointing);
  EXPECT_EQ(mc, cfg.model) << "how to compute is not part of the model";
}

TEST(ResolveExecution, AutoOnACudaHost) {
  TrainConfig cfg;
  cfg.set("model.arch", "full");
  Execution ex = resolve_execution(cfg, rank(5), /*cuda_devices=*/4);
  EXPECT_EQ(ex.device, Device::cuda(1)) << "local rank 5 on 4 devices";
  EXPECT_EQ(ex.device.str(), "cuda:1");
  EXPECT_TRUE(ex.bf16);
  EXPECT_TRUE(ex.sdpa);
  EXPECT_EQ(ex.str(), "device cuda:1 (bf16 autocast); full attention through SDPA");
  cfg.set("dist.bf16", "off");
  cfg.set("dist.sdpa", "off");
  ex = resolve_execution(cfg, rank(0), 4);
  EXPECT_EQ(ex.device, Device::cuda(0));
  EXPECT_FALSE(ex.bf16);
  EXPECT_FALSE(ex.sdpa);
  cfg.set("model.arch", "cst");
  cfg.set("dist.sdpa", "auto");
  EXPECT_FALSE(resolve_execution(cfg, rank(0), 4).sdpa) << "SDPA is for model.arch = full";
  cfg.set("dist.device", "cpu");
  cfg.set("dist.bf16", "auto");
  ex = resolve_execution(cfg, rank(2), 4);
  EXPECT_EQ(ex.device, Device::cpu());
  EXPECT_FALSE(ex.bf16);
  cfg.set("dist.device", "cuda");
  EXPECT_EQ(resolve_execution(cfg, rank(2), 4).device, Device::cuda(2));
}

TEST(ResolveExecution, ChoicesACpuHostCannotHonourAreInputErrors) {
  TrainConfig cfg;
  cfg.set("dist.device", "cuda");
  expect_input_error([&] { resolve_execution(cfg, rank(0), 0); }, {"dist.device = cuda", "node7", "rank 3"},
                     "dist.device");
  cfg.set("dist.device", "auto");
  cfg.set("dist.bf16", "on");
  expect_input_error([&] { resolve_execution(cfg, rank(0), 0); }, {"dist.bf16 = on"}, "dist.bf16");
  cfg.set("dist.device", "cpu");
  expect_input_error([&] { resolve_execution(cfg, rank(0), 2); }, {"dist.bf16 = on"}, "dist.bf16 on cpu");
}

}  // namespace
}  // namespace cst::trainer
