// checkpoint/manifest.h without torch: the manifest round trip, version 1 as the earlier writer
// wrote it, step folder names, and damaged or hostile manifests, which must be
// CorruptCheckpoint errors naming the file and the field, never crashes. The optimizer options
// are cst-train's (trainer/checkpoint_config.h), as a checkpoint of it records them.
#include "checkpoint/manifest.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "trainer/checkpoint_config.h"

namespace cst::checkpoint {
namespace {

const std::string kXxh(32, 'a'), kSha(64, 'b');

const OptionSchema kOptim = trainer::optim_schema();

Manifest parse_manifest(const std::string& text, const std::string& path) {
  return checkpoint::parse_manifest(text, path, kOptim);
}

Manifest sample() {
  trainer::TrainConfig tc;
  tc.optim.lr = 0.01, tc.optim.name = trainer::OptimizerKind::kLamb;
  Manifest m;
  m.run = trainer::describe_run(tc);
  m.step = 12, m.optimizer_steps = 12, m.loader = {1, 40}, m.world_size = 2, m.zero_stage = 1, m.flat_numel = 99;
  m.run.seed = 7, m.run.global_batch = 8, m.run.tokenizer_sha256 = "ab\"c", m.run.code_version = "v1-dirty";
  m.run.model.d_model = 16, m.run.model.arch = model::Arch::kFull;
  m.files = {{"model.h5", 1234, ChecksumKind::kXxh3_128, kXxh},
             {"optim_rank0_of2.h5", 10, ChecksumKind::kXxh3_128, kXxh},
             {"optim_rank1_of2.h5", 10, ChecksumKind::kSha256, kSha}};
  return m;
}

// The error parse_manifest throws for text ("" when none); `corrupt` says whether it is a
// CorruptCheckpoint (skipped by --resume auto) rather than a plain InputError.
std::string parse_error(const std::string& text, bool* corrupt = nullptr) {
  try {
    parse_manifest(text, "some/manifest.json");
  } catch (const CorruptCheckpoint& e) {
    if (corrupt) *corrupt = true;
    return e.what();
  } catch (const InputError& e) {
    if (corrupt) *corrupt = false;
    return e.what();
  }
  return "";
}

// sample() as JSON with one field replaced by raw JSON text.
std::string with(const std::string& key, const std::string& raw) {
  Json j = Json::parse(sample().to_json());
  j[key] = Json::parse(raw);
  return j.dump();
}

void expect_corrupt(const std::string& text, const std::string& word) {
  bool corrupt = false;
  const std::string err = parse_error(text, &corrupt);
  EXPECT_TRUE(corrupt) << "not a CorruptCheckpoint: '" << err << "' for " << text.substr(0, 200);
  EXPECT_NE(err.find("some/manifest.json"), std::string::npos) << err;
  EXPECT_NE(err.find(word), std::string::npos) << "'" << word << "' not in: " << err;
}

TEST(Manifest, RoundTripsThroughJson) {
  const Manifest m = sample();
  const Manifest back = parse_manifest(m.to_json(), "x/manifest.json");
  EXPECT_EQ(back.to_json(), m.to_json());
  EXPECT_EQ(back.format_version, 2);
  EXPECT_EQ(back.loader, m.loader);
  EXPECT_EQ(back.run.tokenizer_sha256, "ab\"c");
  EXPECT_EQ(back.run.model, m.run.model);
  EXPECT_EQ(option_text(back.run.optim, "optim.name"), "lamb");
  EXPECT_EQ(option_text(back.run.optim, "optim.lr"), "0.01");
  EXPECT_TRUE(back.run.missing.empty());
  ASSERT_EQ(back.files.size(), 3u);
  EXPECT_EQ(back.files[1].bytes, 10);
  EXPECT_EQ(back.files[0].checksum, ChecksumKind::kXxh3_128);
  EXPECT_EQ(back.files[2].checksum, ChecksumKind::kSha256);
  EXPECT_EQ(back.files[2].digest, kSha);
}

// Version 1, byte for byte as the version-1 writer laid it out (a shortened model table).
TEST(Manifest, ReadsVersionOneWithSha256) {
  const std::string v1 =
      "{\n  \"format\": \"cst-train.checkpoint\",\n  \"format_version\": 1,\n  \"step\": 4,\n"
      "  \"optimizer_steps\": 4,\n  \"loader\": {\"epoch\": 0, \"consumed_samples\": 32},\n"
      "  \"world_size\": 1,\n  \"zero_stage\": 0,\n  \"flat_numel\": 99,\n  \"seed\": 1234,\n"
      "  \"global_batch\": 8,\n  \"tokenizer_sha256\": \"\",\n  \"code_version\": \"8cdab41\",\n"
      "  \"model\": {\n    \"arch\": \"cst\",\n    \"d_model\": \"16\",\n    \"alpha\": \"2\"\n  },\n"
      "  \"optimizer\": {\n    \"optim.name\": \"adamw\",\n    \"optim.lr\": \"0.01\"\n  },\n"
      "  \"files\": [\n    {\"name\": \"model.h5\", \"bytes\": 1234, \"sha256\": \"" +
      kSha + "\"},\n    {\"name\": \"optim_rank0_of1.h5\", \"bytes\": 10, \"sha256\": \"" + kSha + "\"}\n  ]\n}\n";
  const Manifest m = parse_manifest(v1, "v1/manifest.json");
  EXPECT_EQ(m.format_version, 1);
  EXPECT_EQ(m.loader.consumed_samples, 32);
  EXPECT_EQ(m.run.model.d_model, 16);
  EXPECT_EQ(m.run.model.alpha, 2.0);
  EXPECT_EQ(option_text(m.run.optim, "optim.lr"), "0.01");
  ASSERT_EQ(m.files.size(), 2u);
  EXPECT_EQ(m.files[0].checksum, ChecksumKind::kSha256);
  EXPECT_EQ(m.files[0].digest, kSha);
  // Fields the table lacks are recorded, so that check_compatible can name them.
  EXPECT_NE(std::find(m.run.missing.begin(), m.run.missing.end(), "model.n_layers"), m.run.missing.end());
  // Version 1 knows no other checksum.
  std::string xxh = v1;
  xxh.replace(xxh.find("\"sha256\": \"" + kSha), 75, "\"xxh3_128\": \"" + kXxh);
  expect_corrupt(xxh, "'sha256'");
}

TEST(Manifest, ParseErrorsNameFileAndField) {
  expect_corrupt("{\"format\": ", "not valid JSON");
  expect_corrupt("{\"format\": \"cst-train.checkpoint\", \"format_version\": 2}", "missing field 'step'");
  bool corrupt = true;
  // Another program's file or a newer version: an error, but not a damaged checkpoint.
  EXPECT_NE(
      parse_error("{\"format\": \"cst-train.checkpoint\", \"format_version\": 3}", &corrupt).find("format_version = 3"),
      std::string::npos);
  EXPECT_FALSE(corrupt);
  EXPECT_NE(parse_error("{\"format\": \"other\"}", &corrupt).find("format = 'other'"), std::string::npos);
  EXPECT_FALSE(corrupt);
}

TEST(Manifest, HostileJsonIsDamagedNotACrash) {
  expect_corrupt(std::string(1000000, '['), "nested deeper than");
  expect_corrupt(with("loader", std::string(100, '[') + std::string(100, ']')), "nested deeper than");
  std::string text = sample().to_json();
  text.replace(text.find("v1-dirty"), 8, "\\uZZZZ");
  expect_corrupt(text, "not valid JSON");
  text = sample().to_json();
  text.replace(text.find("v1-dirty"), 8, "\\ud800");  // a lone surrogate
  expect_corrupt(text, "not valid JSON");
  expect_corrupt(std::string("\xff\xfe{}", 4), "not valid JSON");
  expect_corrupt("", "not valid JSON");
}

TEST(Manifest, NumbersAreRangeCheckedBeforeUse) {
  expect_corrupt(with("world_size", "100000000000"), "world_size");
  expect_corrupt(with("world_size", "100000000000"), "100000000000");
  expect_corrupt(with("world_size", "0"), "world_size");
  expect_corrupt(with("step", "-1"), "step");
  expect_corrupt(with("step", "123456789012345678901234567890"), "step");
  expect_corrupt(with("step", "1.5"), "not an integer");
  expect_corrupt(with("zero_stage", "7"), "zero_stage");
  expect_corrupt(with("flat_numel", "-5"), "flat_numel");
  expect_corrupt(with("global_batch", "0"), "global_batch");
  expect_corrupt(with("loader", R"({"epoch": -1, "consumed_samples": 0})"), "epoch");
  expect_corrupt(with("files", R"([{"name": "model.h5", "bytes": -3, "xxh3_128": ")" + kXxh + "\"}]"), "bytes");
  expect_corrupt(with("model", R"({"d_model": "sixteen"})"), "model.d_model");
  expect_corrupt(with("optimizer", R"({"optim.name": "sgd"})"), "optimizer.optim.name");
}

TEST(Manifest, FileEntriesArePlainNamesWithOneHexDigest) {
  auto files = [](const std::string& entry) { return with("files", "[" + entry + "]"); };
  expect_corrupt(files(R"({"name": "../../etc/passwd", "bytes": 1, "xxh3_128": ")" + kXxh + "\"}"), "plain file name");
  expect_corrupt(files(R"({"name": "", "bytes": 1, "xxh3_128": ")" + kXxh + "\"}"), "plain file name");
  expect_corrupt(files(R"({"name": "a", "bytes": 1, "xxh3_128": "XYZ"})"), "hex");
  expect_corrupt(files(R"({"name": "a", "bytes": 1})"), "exactly one checksum");
  expect_corrupt(files(R"({"name": "a", "bytes": 1, "xxh3_128": ")" + kXxh + R"(", "sha256": ")" + kSha + "\"}"),
                 "exactly one checksum");
  expect_corrupt(files("17"), "files[0]");
}

TEST(Layout, StepFolderNamesAreParsedOnlyWhenTheyFitInt64) {
  EXPECT_EQ(parse_step_dir_name("step_42"), 42);
  EXPECT_EQ(parse_step_dir_name("step_9223372036854775807"), INT64_MAX);
  for (const char* bad : {"step_9223372036854775808", "step_12345678901234567890", "step_", "step_4.tmp",
                          "step_4.pruning", "step_-4", "step_+4", "steps_4", "step_4a"})
    EXPECT_FALSE(parse_step_dir_name(bad).has_value()) << bad;

  const auto root = std::filesystem::temp_directory_path() / "cst_manifest_test_steps";
  std::filesystem::remove_all(root);
  for (const char* d : {"step_10", "step_2", "step_12345678901234567890", "step_3.tmp", "step_5.pruning"})
    std::filesystem::create_directories(root / d);
  std::ofstream(root / "step_7");  // a file, not a folder
  std::vector<std::string> warnings;
  const auto steps = list_step_dirs(root.string(), [&](const std::string& w) { warnings.push_back(w); });
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].first, 2);
  EXPECT_EQ(steps[1].first, 10);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("step_12345678901234567890"), std::string::npos) << warnings[0];
  std::filesystem::remove_all(root);
  EXPECT_TRUE(list_step_dirs(root.string(), nullptr).empty());
}

TEST(Manifest, CheckCompatibleNamesTheFieldThatDiffers) {
  trainer::TrainConfig cfg;
  const ResumeOptions now = trainer::resume_options(cfg);
  Manifest m;
  m.run = now.run;
  m.step = cfg.train.steps;
  check_compatible(m, now, "d/manifest.json");
  auto error = [&](const Manifest& bad) {
    try {
      check_compatible(bad, now, "d/manifest.json");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  Manifest other = m;
  other.run.model.d_ff = cfg.model.d_ff + 1;
  EXPECT_NE(error(other).find("model.d_ff = " + std::to_string(cfg.model.d_ff + 1)), std::string::npos);
  trainer::TrainConfig lamb = cfg;
  lamb.optim.name = trainer::OptimizerKind::kLamb;
  other = m, other.run.optim = trainer::describe_run(lamb).optim;
  EXPECT_NE(error(other).find("optimizer.optim.name = lamb but optim.name = adamw"), std::string::npos);
  other = m, other.run.missing = {"model.pos_emb"};
  EXPECT_NE(error(other).find("model.pos_emb is missing"), std::string::npos);
  other = m, other.run.missing = {"optimizer.optim.lr"};  // recorded only: not checked
  EXPECT_EQ(error(other), "");
  other = m, other.step = cfg.train.steps + 1;
  EXPECT_NE(error(other).find("beyond train.steps"), std::string::npos);
}

}  // namespace
}  // namespace cst::checkpoint
