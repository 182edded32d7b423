#include "dataio/prep_tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/error.h"

namespace cst::dataio {
namespace fs = std::filesystem;

namespace {

// Feeds SentencePiece's trainer from memory.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::vector<std::string>& lines) : lines_(lines) {}
  bool done() const override { return i_ >= lines_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return lines_[i_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& lines_;
  size_t i_ = 0;
};

std::string input_names(const std::vector<PrepCorpus>& corpora) {
  std::string s;
  for (const PrepCorpus& c : corpora) s += (s.empty() ? "'" : ", '") + c.input.path + "'";
  return s;
}

}  // namespace

void make_tokenizer(const PrepOptions& opt, const std::vector<PrepCorpus>& corpora, const std::string& out) {
  if (!opt.tokenizer.empty()) {
    std::error_code ec;
    CST_INPUT_CHECK(fs::is_regular_file(opt.tokenizer, ec), "tokenizer model '" << opt.tokenizer << "' not found");
    sentencepiece::SentencePieceProcessor sp;
    load_tokenizer(sp, opt.tokenizer, opt.tokenizer);
    fs::copy_file(opt.tokenizer, out);  // out: in the staging folder, which starts empty
    return;
  }
  // Sentences are fed from memory and the model comes back serialised, so that the model
  // (and its sha256) does not record file paths: equal text and options, equal bytes.
  std::vector<std::string> lines;
  int64_t bytes = 0, total = 0;
  for (const PrepCorpus& c : corpora) total += c.bytes;
  for (const PrepCorpus& c : corpora) {
    const int64_t budget =
        corpora.size() == 1
            ? opt.spm_max_bytes
            : static_cast<int64_t>(static_cast<long double>(opt.spm_max_bytes) * c.bytes / std::max<int64_t>(1, total));
    int64_t taken = 0;
    for (size_t i = 0; i < c.files.size() && taken < budget; ++i) {
      int64_t doc = 0;
      read_documents(c.files[i], c.input.format, opt.jsonl_field, opt.encoding, [&](std::string&& d) {
        if (assign_split(c.files[i], doc++, opt.valid_fraction, opt.test_fraction) != Split::kTrain) return;
        for (std::string& line : split_sentences(d)) {
          if (taken >= budget) return;
          taken += static_cast<int64_t>(line.size()) + 1;
          lines.push_back(std::move(line));
        }
      });
    }
    bytes += taken;
  }
  CST_INPUT_CHECK(bytes > 0,
                  "input " << input_names(corpora) << " has no text in its train split to train a tokenizer on");
  if (opt.progress)
    std::fprintf(stderr, "[cst-prep] training a %s tokenizer (vocab %lld) on %.1f MB of text\n", opt.model_type.c_str(),
                 static_cast<long long>(opt.vocab_size), static_cast<double>(bytes) / 1e6);
  LineIterator it(lines);
  sentencepiece::SetRandomGeneratorSeed(static_cast<unsigned>(opt.seed));
  const std::unordered_map<std::string, std::string> args{
      {"vocab_size", std::to_string(opt.vocab_size)},
      {"model_type", opt.model_type},
      {"character_coverage", std::to_string(opt.character_coverage)},
      {"input_sentence_size", "2000000"},
      {"shuffle_input_sentence", "true"},
      {"hard_vocab_limit", "false"},
      {"num_threads", "1"},
      {"pad_id", "0"},
      {"unk_id", "1"},
      {"bos_id", "2"},
      {"eos_id", "3"},
      {"control_symbols", "[MASK]"},
      {"minloglevel", "2"}};
  std::string model;
  const auto st = sentencepiece::SentencePieceTrainer::Train(args, &it, &model);
  CST_INPUT_CHECK(st.ok(), "training the tokenizer on " << input_names(corpora) << " failed: " << st.ToString());
  std::ofstream f(out, std::ios::binary | std::ios::trunc);
  f.write(model.data(), static_cast<std::streamsize>(model.size()));
  CST_INPUT_CHECK(f.good(), "cannot write tokenizer '" << out << "'");
}

void load_tokenizer(sentencepiece::SentencePieceProcessor& sp, const std::string& path, const std::string& shown) {
  const auto st = sp.Load(path);
  CST_INPUT_CHECK(st.ok(), "cannot load tokenizer '" << shown << "': " << st.ToString());
}

SpecialTokens special_tokens(const sentencepiece::SentencePieceProcessor& sp) {
  SpecialTokens s;
  s.pad = sp.pad_id();
  s.unk = sp.unk_id();
  s.cls = sp.bos_id();
  s.sep = sp.eos_id();
  const int mask = sp.PieceToId("[MASK]");
  s.mask = mask != sp.unk_id() ? mask : -1;
  return s;
}

}  // namespace cst::dataio
