// cst-eval end to end: its loss equals the mean of cst-score's -token_logprobs over the same
// windows (non-overlapping and strided), stride = N equals non-overlapping, every token after a
// document's first is predicted once, a text file gives the loss of its tokens and bits per
// byte, 2 ranks under mpirun print what 1 rank prints, and bad input exits 2 naming file and value.
#include <gtest/gtest.h>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/checksum.h"
#include "common/h5.h"
#include "common/json.h"
#include "dataio/format.h"
#include "model/weights_io.h"
#include "tests/launcher/tool_util.h"
#include "tests/model/test_util.h"

namespace cst {
namespace {

namespace fs = std::filesystem;
using model::ModelConfig;
using model::Task;
using testing::expect_words;
using testing::read_text;

constexpr int64_t kVocab = 40;

class EvalTool : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);  // mpirun and singleton MPI as root (CI containers)
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    dir_ = fs::temp_directory_path() / ("cst_eval_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    save_model(Task::kLm, p("lm.h5"));
    // Documents of 30, 5, 1 and 17 tokens: 29 + 4 + 0 + 16 = 49 predictions.
    docs_ = {random_doc(30), random_doc(5), random_doc(1), random_doc(17)};
    write_shard(p("data/test.h5"), docs_, kVocab);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string p(const std::string& n) { return (dir_ / n).string(); }

  std::pair<int, std::string> run(const std::string& bin, const std::string& args) {
    return testing::run_tool(bin, args, dir_);
  }
  // cst-eval's result (its --json file) for these arguments; fails the test on a non-zero exit.
  Json eval(const std::string& args) {
    auto [rc, err] = run(CST_EVAL_BIN, args + " --json " + p("eval.json") + " --overwrite");
    EXPECT_EQ(rc, 0) << err;
    return parse_json(read_text(p("eval.json")), "eval.json");
  }

  void save_model(Task task, const std::string& path) {
    ModelConfig cfg = model::testing::small_config(task, 2.0, 4, 32);
    cfg.vocab_size = kVocab;
    cfg.init_std = 0.3;
    torch::manual_seed(7);
    model::CstModel m(cfg);
    model::save_weights(*m, path);
  }
  std::vector<int32_t> random_doc(int64_t n) {
    torch::Tensor t = torch::randint(kVocab, {n}, torch::kInt);
    return {t.data_ptr<int32_t>(), t.data_ptr<int32_t>() + n};
  }
  void write_shard(const std::string& path, const std::vector<std::vector<int32_t>>& docs, int64_t vocab) {
    fs::create_directories(fs::path(path).parent_path());
    std::vector<int32_t> tokens;
    std::vector<int64_t> offsets{0};
    for (const auto& d : docs) {
      tokens.insert(tokens.end(), d.begin(), d.end());
      offsets.push_back(static_cast<int64_t>(tokens.size()));
    }
    dataio::ShardMeta meta;
    meta.format = dataio::kLmFormat;
    meta.vocab_size = vocab;
    meta.split = "test";
    dataio::write_lm_shard(path, meta, tokens, offsets);
  }

  // Mean of cst-score's -token_logprobs over windows of n inputs: window k of a document ends
  // its inputs at e_k = min(n + k * stride, T - 1), starts them at max(0, e_k - n), and counts
  // the predictions of inputs e_{k-1} .. e_k - 1 (e_{-1} = 0). {loss, predictions}.
  std::pair<double, int64_t> score_reference(int64_t n, int64_t stride) {
    std::vector<std::vector<int32_t>> rows;
    std::vector<int64_t> first;  // first counted entry of token_logprobs in each row
    for (const auto& d : docs_) {
      const int64_t t = static_cast<int64_t>(d.size());
      for (int64_t prev = 0, k = 0; prev < t - 1; ++k) {
        const int64_t end = std::min(n + k * stride, t - 1), begin = std::max<int64_t>(0, end - n);
        rows.emplace_back(d.begin() + begin, d.begin() + end + 1);
        first.push_back(prev - begin);
        prev = end;
      }
    }
    const int64_t width = n + 1, b = static_cast<int64_t>(rows.size());
    std::vector<int32_t> ids(static_cast<size_t>(b * width), 0);
    std::vector<uint8_t> mask(ids.size(), 0);
    for (int64_t r = 0; r < b; ++r)
      for (size_t i = 0; i < rows[static_cast<size_t>(r)].size(); ++i) {
        ids[static_cast<size_t>(r * width) + i] = rows[static_cast<size_t>(r)][i];
        mask[static_cast<size_t>(r * width) + i] = 1;
      }
    {
      h5::File f(p("ids.h5"), h5::File::Mode::kCreate);
      f.write<int32_t>("input_ids", ids.data(), {b, width});
      f.write<uint8_t>("attention_mask", mask.data(), {b, width});
    }
    auto [rc, err] = run(CST_SCORE_BIN, "--weights " + p("lm.h5") + " --input " + p("ids.h5") + " --output " +
                                            p("scores.h5") + " --overwrite --no-logits");
    EXPECT_EQ(rc, 0) << err;
    h5::File f(p("scores.h5"), h5::File::Mode::kRead);
    const std::vector<float> lp = f.open("token_logprobs").read<float>();
    double nll = 0;
    int64_t count = 0;
    for (int64_t r = 0; r < b; ++r)
      for (int64_t i = first[static_cast<size_t>(r)]; i + 1 < static_cast<int64_t>(rows[static_cast<size_t>(r)].size());
           ++i, ++count)
        nll -= lp[static_cast<size_t>(r * n + i)];
    return {nll / static_cast<double>(count), count};
  }

  fs::path dir_;
  std::vector<std::vector<int32_t>> docs_;
};

TEST_F(EvalTool, LossEqualsScoreToolOverTheSameWindows) {
  for (int64_t stride : {8, 3, 1}) {
    const Json got = eval("--weights " + p("lm.h5") + " --data " + p("data") + " --seq-len 8 --stride " +
                          std::to_string(stride) + " --batch-size 3");
    const auto [loss, count] = score_reference(8, stride);
    EXPECT_EQ(got.at("tokens").get<int64_t>(), 49) << "stride " << stride;
    EXPECT_EQ(count, 49);
    EXPECT_EQ(got.at("documents").get<int64_t>(), 3);
    EXPECT_EQ(got.at("context_tokens").get<int64_t>(), 8 - stride);
    EXPECT_NEAR(got.at("loss").get<double>(), loss, 1e-5) << "stride " << stride;
    EXPECT_NEAR(got.at("perplexity").get<double>(), std::exp(got.at("loss").get<double>()), 1e-9);
  }
}

TEST_F(EvalTool, StrideNEqualsNonOverlappingAndDefaultsToMaxSeqLen) {
  const Json plain = eval("--weights " + p("lm.h5") + " --data " + p("data/test.h5"));
  const Json strided = eval("--weights " + p("lm.h5") + " --data " + p("data") + " --stride 32 --seq-len 32");
  EXPECT_EQ(plain.at("seq_len").get<int64_t>(), 32);  // max_seq_len
  EXPECT_EQ(plain.at("tokens").get<int64_t>(), 49);
  EXPECT_EQ(plain.at("loss").get<double>(), strided.at("loss").get<double>());
  const Json n16 = eval("--weights " + p("lm.h5") + " --data " + p("data") + " --seq-len 16");
  const Json s16 = eval("--weights " + p("lm.h5") + " --data " + p("data") + " --seq-len 16 --stride 16");
  EXPECT_EQ(n16.at("loss").get<double>(), s16.at("loss").get<double>());
  const auto [loss, count] = score_reference(16, 16);
  EXPECT_NEAR(n16.at("loss").get<double>(), loss, 1e-5);
  // A shorter window changes the result: the windows are not the same.
  EXPECT_NE(n16.at("loss").get<double>(), plain.at("loss").get<double>());
}

TEST_F(EvalTool, TextFileGivesItsTokensLossAndBitsPerByte) {
  std::string text;
  for (int i = 0; i < 40; ++i) text += "the cat sat on mat " + std::to_string(i % 7) + ".\n" + (i % 9 ? "" : "\n");
  std::ofstream(p("book.txt")) << text;
  ASSERT_TRUE(sentencepiece::SentencePieceTrainer::Train(
                  "--input=" + p("book.txt") + " --model_prefix=" + p("tok") +
                  " --vocab_size=30 --model_type=char --hard_vocab_limit=false --minloglevel=2")
                  .ok());
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(p("tok.model")).ok());
  std::vector<int32_t> doc;  // line by line, then </s>
  for (size_t pos = 0; pos < text.size();) {
    const size_t end = text.find('\n', pos);
    if (end > pos) {
      std::vector<int> ids;
      ASSERT_TRUE(sp.Encode(text.substr(pos, end - pos), &ids).ok());
      doc.insert(doc.end(), ids.begin(), ids.end());
    }
    pos = end + 1;
  }
  doc.push_back(sp.eos_id());
  write_shard(p("text-shard/t.h5"), {doc}, kVocab);

  const Json from_text =
      eval("--weights " + p("lm.h5") + " --text " + p("book.txt") + " --tokenizer " + p("tok.model"));
  const Json from_shard = eval("--weights " + p("lm.h5") + " --data " + p("text-shard"));
  EXPECT_EQ(from_text.at("tokens").get<int64_t>(), static_cast<int64_t>(doc.size()) - 1);
  EXPECT_NEAR(from_text.at("loss").get<double>(), from_shard.at("loss").get<double>(), 1e-12);
  EXPECT_EQ(from_text.at("bytes").get<int64_t>(), static_cast<int64_t>(text.size()));
  EXPECT_NEAR(from_text.at("bits_per_byte").get<double>(),
              from_text.at("nll_nats").get<double>() / std::log(2.0) / static_cast<double>(text.size()), 1e-12);
  EXPECT_FALSE(from_shard.contains("bits_per_byte"));

  auto [rc, err] =
      run(CST_EVAL_BIN, "--weights " + p("lm.h5") + " --text " + p("book.txt") + " --tokenizer " + p("missing.model"));
  EXPECT_EQ(rc, 2);
  expect_words(err, {"--tokenizer", p("missing.model")});
  std::tie(rc, err) = run(CST_EVAL_BIN, "--weights " + p("lm.h5") + " --text " + p("book.txt"));
  EXPECT_EQ(rc, 2);
  expect_words(err, {"--text needs --tokenizer"});

  // Weights that record their tokenizer: the tokenizer and the shards must be that one.
  const std::string other(64, 'a');
  h5::File(p("lm.h5"), h5::File::Mode::kReadWrite).set_attr("tokenizer_sha256", other);
  std::tie(rc, err) =
      run(CST_EVAL_BIN, "--weights " + p("lm.h5") + " --text " + p("book.txt") + " --tokenizer " + p("tok.model"));
  EXPECT_EQ(rc, 2);
  expect_words(err, {"--tokenizer", p("tok.model"), other});
  std::tie(rc, err) = run(CST_EVAL_BIN, "--weights " + p("lm.h5") + " --data " + p("text-shard"));
  EXPECT_EQ(rc, 2);
  expect_words(err, {p("text-shard/t.h5"), "tokenizer_sha256", other});
  h5::File(p("lm.h5"), h5::File::Mode::kReadWrite).set_attr("tokenizer_sha256", sha256_file(p("tok.model")));
  const Json same_tokenizer =
      eval("--weights " + p("lm.h5") + " --text " + p("book.txt") + " --tokenizer " + p("tok.model"));
  EXPECT_EQ(same_tokenizer.at("loss"), from_text.at("loss"));
}

TEST_F(EvalTool, TwoRanksUnderMpirunPrintWhatOneRankPrints) {
  const Json one = eval("--weights " + p("lm.h5") + " --data " + p("data") + " --seq-len 8 --stride 5");
  auto [rc, err] =
      run(CST_MPIEXEC, "-np 2 --oversubscribe --bind-to none " + std::string(CST_EVAL_BIN) + " --weights " +
                           p("lm.h5") + " --data " + p("data") + " --seq-len 8 --stride 5 --json " + p("eval2.json"));
  ASSERT_EQ(rc, 0) << err;
  const Json two = parse_json(read_text(p("eval2.json")), "eval2.json");
  for (const char* key : {"documents", "tokens", "nll_nats", "loss", "perplexity"})
    EXPECT_EQ(one.at(key), two.at(key)) << key;
  expect_words(read_text(p("tool-stdout.txt")), {"(2 ranks)", "documents 3  tokens 49  loss "});
}

TEST_F(EvalTool, BadInputExitsTwoNamingFileAndValue) {
  save_model(Task::kMlm, p("mlm.h5"));
  auto [rc, err] = run(CST_EVAL_BIN, "--weights " + p("mlm.h5") + " --data " + p("data"));
  EXPECT_EQ(rc, 2);
  expect_words(err, {p("mlm.h5"), "config.task = mlm", "task = lm"});

  write_shard(p("data/test2.h5"), {random_doc(9)}, kVocab + 1);
  std::tie(rc, err) = run(CST_EVAL_BIN, "--weights " + p("lm.h5") + " --data " + p("data"));
  EXPECT_EQ(rc, 2);
  expect_words(err, {p("data/test2.h5"), "vocab_size", std::to_string(kVocab + 1)});

  std::tie(rc, err) = run(CST_EVAL_BIN, "--weights " + p("lm.h5") + " --data " + p("data/test.h5") + " --seq-len 33");
  EXPECT_EQ(rc, 2);
  expect_words(err, {"--seq-len = 33", "max_seq_len = 32"});
  std::tie(rc, err) = run(CST_EVAL_BIN, "--weights " + p("lm.h5") + " --data " + p("data/test.h5") + " --stride 40");
  EXPECT_EQ(rc, 2);
  expect_words(err, {"--stride = 40"});

  // The --json file is never an input, and never a file cst-eval did not write.
  std::ofstream(p("notes.json")) << "{\"mine\": 1}";
  std::tie(rc, err) = run(CST_EVAL_BIN, "--weights " + p("lm.h5") + " --data " + p("data/test.h5") + " --json " +
                                            p("notes.json") + " --overwrite");
  EXPECT_EQ(rc, 2);
  EXPECT_EQ(read_text(p("notes.json")), "{\"mine\": 1}");
  std::tie(rc, err) = run(CST_EVAL_BIN, "--weights " + p("lm.h5") + " --data " + p("data/test.h5") + " --json " +
                                            p("lm.h5") + " --overwrite");
  EXPECT_EQ(rc, 2);
  expect_words(err, {"--json", "--weights"});
}

}  // namespace
}  // namespace cst
