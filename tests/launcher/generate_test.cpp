// cst-generate end to end on a tiny LM and a SentencePiece model trained here: greedy output is
// the argmax of the full forward at every step and cst-score reads what was written; the same
// seed gives the same text, whatever the batch; --stop and max_seq_len end a row; a weights file
// of another task, a tokenizer that is not the model's and unusable outputs exit 2 naming both
// sides.
#include <gtest/gtest.h>
#include <sentencepiece_trainer.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "common/checksum.h"
#include "common/h5.h"
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

class GenerateTool : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("cst_generate_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream text(p("corpus.txt"));
    const char* words[] = {"the", "lord",    "said",      "unto",   "moses",  "and", "light",
                           "was", "good",    "earth",     "heaven", "waters", "day", "night",
                           "god", "created", "beginning", "form",   "void"};
    for (int i = 0; i < 3000; ++i) text << words[(i * 7 + i / 5) % 19] << ((i % 11 == 10) ? ".\n" : " ");
    text.close();
    const auto st = sentencepiece::SentencePieceTrainer::Train(
        "--input=" + p("corpus.txt") + " --model_prefix=" + p("tok") +
        " --vocab_size=48 --model_type=bpe --pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3 --minloglevel=2");
    ASSERT_TRUE(st.ok()) << st.ToString();
    cfg_ = model::testing::small_config(Task::kLm, 2.0, 4, 48);
    cfg_.vocab_size = 48;
    cfg_.n_layers = 2;
    torch::manual_seed(4);
    model::CstModel m(cfg_);
    model::save_weights(*m, p("w.h5"), sha256_file(p("tok.model")));
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string p(const std::string& n) { return (dir_ / n).string(); }

  // Runs cst-generate with the model and tokenizer; returns {exit code, stderr}; stdout in out().
  std::pair<int, std::string> run(const std::string& args, const std::string& weights = "w.h5",
                                  const std::string& tok = "tok.model") {
    return testing::run_tool(CST_GENERATE_BIN, "--weights " + p(weights) + " --tokenizer " + p(tok) + " " + args, dir_);
  }
  std::string out() const { return read_text((dir_ / "tool-stdout.txt").string()); }
  static torch::Tensor read_ids(const std::string& file, const std::string& name) {
    h5::File f(file, h5::File::Mode::kRead);
    h5::Dataset d = f.open(name);
    std::vector<int32_t> v = d.read<int32_t>();
    return torch::tensor(std::vector<int64_t>(v.begin(), v.end())).view(d.shape());
  }

  static fs::path dir_;
  static ModelConfig cfg_;
};

fs::path GenerateTool::dir_;
ModelConfig GenerateTool::cfg_;

TEST_F(GenerateTool, GreedyIsTheArgmaxOfTheFullForwardAndCstScoreReadsIt) {
  std::ofstream(p("prompts.txt")) << "the lord said\n\nand god created the heaven and the earth\nday\n";
  auto [rc, err] = run("--prompt-file " + p("prompts.txt") + " --temperature 0 --max-new-tokens 15 --ignore-eos" +
                       " --output " + p("g.h5"));
  ASSERT_EQ(rc, 0) << err;
  expect_words(out(), {"### prompt 0\nthe lord said", "### prompt 2\nday"});
  torch::Tensor ids = read_ids(p("g.h5"), "input_ids"), mask = read_ids(p("g.h5"), "attention_mask");
  torch::Tensor plen = read_ids(p("g.h5"), "prompt_lengths");
  ASSERT_EQ(ids.size(0), 3);
  model::CstModel m = model::load_model(p("w.h5"));
  m->eval();
  torch::NoGradGuard ng;
  for (int64_t b = 0; b < 3; ++b) {
    const int64_t n = mask[b].sum().item<int64_t>(), np = plen[b].item<int64_t>();
    EXPECT_EQ(n - np, 15) << b;  // --ignore-eos: every new token
    torch::Tensor row = ids[b].narrow(0, 0, n).unsqueeze(0);
    torch::Tensor want = m->forward(row)[0].narrow(0, np - 1, n - np).argmax(-1);
    EXPECT_TRUE(torch::equal(want, row[0].narrow(0, np, n - np))) << b;
  }
  auto [src, serr] = testing::run_tool(
      CST_SCORE_BIN, "--input " + p("g.h5") + " --weights " + p("w.h5") + " --output " + p("s.h5") + " --no-logits",
      dir_);
  ASSERT_EQ(src, 0) << serr;
  h5::File s(p("s.h5"), h5::File::Mode::kRead);
  std::vector<int64_t> scored = s.open("num_scored").read<int64_t>();
  for (int64_t b = 0; b < 3; ++b) EXPECT_EQ(scored[static_cast<size_t>(b)], mask[b].sum().item<int64_t>() - 1);
}

TEST_F(GenerateTool, SameSeedSameTextWhateverTheBatch) {
  std::ofstream(p("three.txt")) << "the lord\ngod created\nthe waters and the\n";
  const std::string sample = " --temperature 1.3 --top-k 20 --top-p 0.95 --max-new-tokens 12 --prompt-file ";
  ASSERT_EQ(run("--seed 5" + sample + p("three.txt") + " --batch-size 3").first, 0);
  const std::string batched = out();
  ASSERT_EQ(run("--seed 5" + sample + p("three.txt") + " --batch-size 1").first, 0);
  EXPECT_EQ(out(), batched);
  ASSERT_EQ(run("--seed 5" + sample + p("three.txt") + " --batch-size 2").first, 0);
  EXPECT_EQ(out(), batched);
  ASSERT_EQ(run("--seed 6" + sample + p("three.txt") + " --batch-size 3").first, 0);
  EXPECT_NE(out(), batched);
  // One prompt streams: the same text as prompt 0 of the batch.
  ASSERT_EQ(run("--seed 5 --prompt 'the lord'" + sample.substr(0, sample.size() - 15)).first, 0);
  const std::string one = out();
  EXPECT_NE(batched.find("### prompt 0\n" + one), std::string::npos) << one << "\n---\n" << batched;
}

TEST_F(GenerateTool, StopTextAndMaxSeqLenEndARow) {
  ASSERT_EQ(run("--prompt 'the lord' --temperature 0 --max-new-tokens 10 --ignore-eos").first, 0);
  const std::string full = out();  // "the lord<continuation>\n"
  ASSERT_GT(full.size(), 14u);
  const std::string stop = full.substr(12, 2);  // two characters inside the continuation
  ASSERT_EQ(run("--prompt 'the lord' --temperature 0 --max-new-tokens 10 --ignore-eos --stop '" + stop + "'").first, 0);
  EXPECT_EQ(out(), full.substr(0, full.find(stop, 8)) + "\n");
  auto [rc, err] = run("--prompt 'the lord' --max-new-tokens 100 --ignore-eos --output " + p("long.h5"));
  ASSERT_EQ(rc, 0) << err;
  expect_words(err, {"reached model.max_seq_len = 48"});
  EXPECT_EQ(read_ids(p("long.h5"), "input_ids").size(1), 48);
}

TEST_F(GenerateTool, RefusesOtherModelsTokenizersAndOutputs) {
  ModelConfig mlm = cfg_;
  mlm.task = Task::kMlm;
  model::CstModel a(mlm);
  model::save_weights(*a, p("mlm.h5"));
  auto [rc, err] = run("--prompt x", "mlm.h5");
  EXPECT_EQ(rc, 2);
  expect_words(err, {"mlm.h5", "task = mlm", "task = lm"});

  model::CstModel b(cfg_);  // a recorded tokenizer hash that is not this tokenizer's
  model::save_weights(*b, p("other.h5"), std::string(64, 'a'));
  std::tie(rc, err) = run("--prompt x", "other.h5");
  EXPECT_EQ(rc, 2);
  expect_words(err, {"tok.model", "other.h5", std::string(64, 'a'), sha256_file(p("tok.model"))});

  ModelConfig wide = cfg_;  // no hash recorded: the piece count must equal vocab_size
  wide.vocab_size = 50;
  model::CstModel c(wide);
  model::save_weights(*c, p("nohash.h5"));
  std::tie(rc, err) = run("--prompt x", "nohash.h5");
  EXPECT_EQ(rc, 2);
  expect_words(err, {"tok.model", "48 pieces", "nohash.h5", "vocab_size = 50", "records no tokenizer_sha256"});

  std::tie(rc, err) = run("--prompt x", "w.h5", "corpus.txt");
  EXPECT_EQ(rc, 2);
  expect_words(err, {"corpus.txt", "not a SentencePiece model"});

  std::ofstream(p("mine.h5")) << "not written by cst-generate";
  std::tie(rc, err) = run("--prompt x --output " + p("mine.h5") + " --overwrite");
  EXPECT_EQ(rc, 2);
  EXPECT_EQ(read_text(p("mine.h5")), "not written by cst-generate");
  std::tie(rc, err) = run("--prompt x --output " + p("w.h5"));
  EXPECT_EQ(rc, 2);
  expect_words(err, {"--output", "--weights"});
  std::tie(rc, err) = run("--prompt x --top-p 0");
  EXPECT_EQ(rc, 2);
  expect_words(err, {"--top-p = 0"});
}

}  // namespace
}  // namespace cst
