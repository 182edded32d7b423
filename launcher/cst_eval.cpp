// cst-eval: token-level perplexity of a causal LM over long documents, as PG-19 results are
// reported (docs/EVAL.md).
//
//   cst-eval --weights model.h5 --data data/pg19/test [--seq-len N] [--stride S] [--json out.json]
//   cst-eval --weights model.h5 --text book.txt --tokenizer tokenizer.model
//   mpirun -np 4 cst-eval ...                       (documents split over ranks, same result)
//
// Documents: those of a folder/file of cst-lm-tokens shards (docs/DATA.md, doc_offsets), or one
// per --text file, tokenized line by line as cst-prep does (then </s>). Each document is scored
// on its own, windows never cross documents, and every token after a document's first is
// predicted exactly once: by non-overlapping windows of N tokens (N = --seq-len, default the
// model's max_seq_len), or with --stride S < N by windows of N tokens of which each scores only
// its last S predictions after N - S tokens of context (a document's first window scores all).
// Prints documents, tokens (predictions), loss (mean NLL per token, nats), perplexity = e^loss
// and, for --text, bits per byte = total NLL in bits / UTF-8 bytes of the text. Rank r scores
// documents r, r + W, ...; the per-document sums are all-reduced (comm::Communicator) and added
// in document order, so 1 and W ranks print the same numbers. Exit 2 on bad input.
#include <ATen/Parallel.h>
#include <sentencepiece_processor.h>
#include <torch/torch.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "comm/factory.h"
#include "comm/mpi.h"
#include "common/checksum.h"
#include "common/error.h"
#include "common/files.h"
#include "common/h5.h"
#include "common/json.h"
#include "common/output_guard.h"
#include "dataio/source.h"
#include "launcher/mpi_main.h"
#include "model/weights_file.h"
#include "model/weights_io.h"

namespace fs = std::filesystem;
namespace po = boost::program_options;
using namespace cst;

namespace {

constexpr char kTool[] = "cst-eval";
constexpr int64_t kMaxTextBytes = int64_t{1} << 32;  // one --text file: 4 GiB

struct EvalOptions {
  std::string weights;             // weights file of a task = lm model
  std::string data;                // cst-lm-tokens shards (folder or file), or
  std::vector<std::string> texts;  // text files, one document each, with
  std::string tokenizer;           // their SentencePiece model
  int64_t seq_len = 0;             // N; 0 = the model's max_seq_len
  int64_t stride = 0;              // S; 0 = N (non-overlapping windows)
  int64_t batch_size = 4;          // windows per forward pass
  int64_t threads = 0;             // intra-op threads, 0 = torch default
  std::string json;                // also write the result here ("" = no)
  bool overwrite = false;          // replace a --json file an earlier cst-eval wrote
};

// Inputs x[begin, end) predict x[begin + 1, end + 1); the predictions of input positions
// >= first_scored are counted.
struct Window {
  int64_t begin, end, first_scored;
};

// The windows of a document of t tokens: every token after the first predicted once, each window
// at most n inputs; the first scores all its predictions, every later one its last `stride`.
std::vector<Window> plan_windows(int64_t t, int64_t n, int64_t stride) {
  std::vector<Window> out;
  for (int64_t scored = 0; scored < t - 1;) {
    const int64_t end = std::min(scored + (scored == 0 ? n : stride), t - 1);
    out.push_back({std::max<int64_t>(0, end - n), end, scored});
    scored = end;
  }
  return out;
}

// The documents to score: every rank lists all of them, each reads only its own.
class Corpus {
 public:
  virtual ~Corpus() = default;
  virtual int64_t size() const = 0;
  virtual std::vector<int64_t> read(int64_t doc) = 0;  // token ids, each < the model's vocab_size
  virtual int64_t text_bytes() const { return 0; }     // UTF-8 bytes of the text (0: not text)
};

// cst-lm-tokens shards, checked in full by dataio::Hdf5Source (formats, vocab_size against the
// model and between shards, tokenizer, doc_offsets) before any document is listed.
class ShardCorpus : public Corpus {
 public:
  ShardCorpus(const std::string& path, int64_t vocab, const std::string& tokenizer_sha256) : vocab_(vocab) {
    files_ = dataio::list_shards(path);
    dataio::SourceOptions opt;
    opt.kind = dataio::SampleKind::kLm;
    opt.seq_len = 1;  // any window: the check is of the shards, not of a sample size
    opt.vocab_size = vocab;
    opt.tokenizer_sha256 = tokenizer_sha256;
    dataio::Hdf5Source check(files_, opt);
    for (size_t f = 0; f < files_.size(); ++f) {
      h5::File file(files_[f], h5::File::Mode::kRead);
      const std::vector<int64_t> off = file.open("doc_offsets").read<int64_t>();
      for (size_t d = 0; d + 1 < off.size(); ++d)
        if (off[d + 1] > off[d]) docs_.push_back({f, off[d], off[d + 1]});
    }
  }
  int64_t size() const override { return static_cast<int64_t>(docs_.size()); }
  std::vector<int64_t> read(int64_t doc) override {
    const Doc& d = docs_[static_cast<size_t>(doc)];
    if (!open_ || open_index_ != d.file) open_ = std::make_unique<h5::File>(files_[d.file], h5::File::Mode::kRead);
    open_index_ = d.file;
    std::vector<int64_t> ids(static_cast<size_t>(d.end - d.begin));
    open_->open("tokens").read_slab<int64_t>({d.begin}, {d.end - d.begin}, ids.data());
    for (size_t i = 0; i < ids.size(); ++i)
      CST_INPUT_CHECK(ids[i] >= 0 && ids[i] < vocab_, "HDF5 file '" << files_[d.file] << "' dataset 'tokens' index "
                                                                    << d.begin + static_cast<int64_t>(i)
                                                                    << ": token id " << ids[i]
                                                                    << " outside [0, vocab_size = " << vocab_ << ")");
    return ids;
  }

 private:
  struct Doc {
    size_t file;
    int64_t begin, end;
  };
  int64_t vocab_;
  std::vector<std::string> files_;
  std::vector<Doc> docs_;
  std::unique_ptr<h5::File> open_;
  size_t open_index_ = 0;
};

// Text files, one document each: every line with text encoded, then </s> (cst-prep's LM items).
class TextCorpus : public Corpus {
 public:
  TextCorpus(std::vector<std::string> files, const std::string& tokenizer, int64_t vocab,
             const std::string& tokenizer_sha256)
      : files_(std::move(files)) {
    CST_INPUT_CHECK(!tokenizer.empty(), "--text needs --tokenizer (the SentencePiece .model of the model's data)");
    CST_INPUT_CHECK(fs::is_regular_file(tokenizer), "--tokenizer '" << tokenizer << "': no such file");
    const auto st = sp_.Load(tokenizer);
    CST_INPUT_CHECK(st.ok(), "--tokenizer '" << tokenizer << "': not a SentencePiece model (" << st.ToString() << ")");
    CST_INPUT_CHECK(sp_.GetPieceSize() <= vocab, "--tokenizer '" << tokenizer << "': " << sp_.GetPieceSize()
                                                                 << " pieces, above the model's vocab_size " << vocab);
    CST_INPUT_CHECK(tokenizer_sha256.empty() || sha256_file(tokenizer) == tokenizer_sha256,
                    "--tokenizer '" << tokenizer << "': sha256 " << sha256_file(tokenizer)
                                    << " but the weights were trained with tokenizer_sha256 " << tokenizer_sha256);
    for (const std::string& f : files_) {
      CST_INPUT_CHECK(fs::is_regular_file(f), "--text '" << f << "': no such file");
      bytes_ += static_cast<int64_t>(fs::file_size(f));
    }
  }
  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  int64_t text_bytes() const override { return bytes_; }
  std::vector<int64_t> read(int64_t doc) override {
    const std::string text = read_file(files_[static_cast<size_t>(doc)], kMaxTextBytes);
    std::vector<int64_t> ids;
    std::vector<int> piece;
    for (size_t pos = 0; pos < text.size();) {
      const size_t end = std::min(text.find('\n', pos), text.size());
      if (text.find_first_not_of(" \t\r", pos) < end) {
        const auto st = sp_.Encode(text.substr(pos, end - pos), &piece);
        CST_CHECK(st.ok(), "SentencePiece encode failed: " << st.ToString());
        ids.insert(ids.end(), piece.begin(), piece.end());
      }
      pos = end + 1;
    }
    if (!ids.empty() && sp_.eos_id() >= 0) ids.push_back(sp_.eos_id());
    return ids;
  }

 private:
  std::vector<std::string> files_;
  sentencepiece::SentencePieceProcessor sp_;
  int64_t bytes_ = 0;
};

// Summed NLL (nats) and predictions of one document. Full windows go in batches of batch_size,
// a shorter one alone: the batches depend on the document only, not on the rank scoring it.
std::pair<double, int64_t> score_document(model::CstModelImpl& m, const std::vector<int64_t>& ids,
                                          const EvalOptions& o) {
  const int64_t t = static_cast<int64_t>(ids.size());
  const std::vector<Window> windows = plan_windows(t, o.seq_len, o.stride);
  double nll = 0;
  int64_t count = 0;
  for (size_t w0 = 0; w0 < windows.size();) {
    const int64_t len = windows[w0].end - windows[w0].begin;
    size_t w1 = w0 + 1;
    while (len == o.seq_len && w1 < windows.size() && static_cast<int64_t>(w1 - w0) < o.batch_size &&
           windows[w1].end - windows[w1].begin == len)
      ++w1;
    const int64_t nb = static_cast<int64_t>(w1 - w0);
    torch::Tensor in = torch::empty({nb, len}, torch::kLong), labels = torch::empty({nb, len}, torch::kLong);
    for (int64_t b = 0; b < nb; ++b) {
      const Window& w = windows[w0 + static_cast<size_t>(b)];
      auto* ip = in[b].data_ptr<int64_t>();
      auto* lp = labels[b].data_ptr<int64_t>();
      for (int64_t i = 0; i < len; ++i) {
        ip[i] = ids[static_cast<size_t>(w.begin + i)];
        lp[i] = w.begin + i >= w.first_scored ? ids[static_cast<size_t>(w.begin + i + 1)] : -100;
      }
    }
    const model::LossSum loss = m.loss(in, {}, labels);
    nll += loss.sum.item<double>();
    count += loss.count;
    w0 = w1;
  }
  return {nll, count};
}

// true when `path` is a JSON file cst-eval wrote (its created_by field).
bool written_by_eval(const std::string& path) {
  try {
    const Json j = parse_json(read_file(path, 1 << 20), path);
    return j.is_object() && j.value("created_by", "").rfind(kTool, 0) == 0;
  } catch (const std::exception&) {
    return false;
  }
}

// Parses and checks the options; false after --help.
bool parse(int argc, char** argv, EvalOptions& o) {
  po::options_description desc("cst-eval options");
  desc.add_options()("help,h", "show this help")("weights", po::value(&o.weights)->required(),
                                                 "weights file of a causal LM (task = lm, docs/WEIGHTS.md)")(
      "data", po::value(&o.data), "cst-lm-tokens shards: a folder of *.h5 or one file (docs/DATA.md)")(
      "text", po::value(&o.texts)->composing(), "a UTF-8 text file, one document (repeatable); needs --tokenizer")(
      "tokenizer", po::value(&o.tokenizer), "SentencePiece .model that tokenizes --text")(
      "seq-len", po::value(&o.seq_len)->default_value(o.seq_len), "window N in tokens (0 = the model's max_seq_len)")(
      "stride", po::value(&o.stride)->default_value(o.stride),
      "S < N: each window scores its last S tokens after N - S of context (0 = N, non-overlapping)")(
      "batch-size", po::value(&o.batch_size)->default_value(o.batch_size), "windows per forward pass")(
      "threads", po::value(&o.threads)->default_value(o.threads), "intra-op threads (0 = torch default)")(
      "json", po::value(&o.json), "also write the result as JSON to this file")(
      "overwrite", po::bool_switch(&o.overwrite), "replace a --json file an earlier cst-eval run wrote");
  if (!cst::parse_command_line(argc, argv, desc)) return false;
  CST_INPUT_CHECK(o.data.empty() != o.texts.empty(), "give exactly one of --data and --text");
  CST_INPUT_CHECK(o.texts.empty() || !o.tokenizer.empty(),
                  "--text needs --tokenizer (the SentencePiece .model of the model's data)");
  CST_INPUT_CHECK(o.batch_size >= 1 && o.batch_size <= 4096,
                  "--batch-size = " << o.batch_size << " must be in [1, 4096]");
  CST_INPUT_CHECK(o.threads >= 0 && o.threads <= 4096, "--threads = " << o.threads << " must be in [0, 4096]");
  if (!o.json.empty()) {
    std::vector<NamedPath> in{{"--weights", o.weights}, {"--data", o.data}, {"--tokenizer", o.tokenizer}};
    for (const std::string& t : o.texts) in.push_back({"--text", t});
    in.erase(std::remove_if(in.begin(), in.end(), [](const NamedPath& p) { return p.path.empty(); }), in.end());
    check_no_overlap({"--json", o.json}, in);
    check_output_file({"--json", o.json}, o.overwrite, kTool, written_by_eval);
  }
  return true;
}

// The run on one rank; prints and writes on rank 0.
void run(const EvalOptions& opt, comm::Communicator& comm) {
  EvalOptions o = opt;
  if (o.threads > 0) at::set_num_threads(static_cast<int>(o.threads));
  const model::ModelConfig cfg = model::read_weights_config(o.weights);
  CST_INPUT_CHECK(cfg.task == model::Task::kLm, "weights file '" << o.weights
                                                                 << "': config.task = " << model::to_string(cfg.task)
                                                                 << ", but cst-eval scores causal LMs (task = lm)");
  if (o.seq_len == 0) o.seq_len = cfg.max_seq_len;
  CST_INPUT_CHECK(o.seq_len >= 1 && o.seq_len <= cfg.max_seq_len,
                  "--seq-len = " << o.seq_len << " must be in [1, max_seq_len = " << cfg.max_seq_len << "]");
  if (o.stride == 0) o.stride = o.seq_len;
  CST_INPUT_CHECK(o.stride >= 1 && o.stride <= o.seq_len,
                  "--stride = " << o.stride << " must be in [1, --seq-len = " << o.seq_len << "]");
  const std::string tokenizer_sha256 = model::read_weights_tokenizer(o.weights);  // "" = not recorded
  std::unique_ptr<Corpus> corpus;
  if (o.texts.empty())
    corpus = std::make_unique<ShardCorpus>(o.data, cfg.vocab_size, tokenizer_sha256);
  else
    corpus = std::make_unique<TextCorpus>(o.texts, o.tokenizer, cfg.vocab_size, tokenizer_sha256);
  model::CstModel m = model::load_model(o.weights);
  m->eval();

  // Per document: [nll, predictions]; rank r fills documents r, r + W, ... and the rest is 0.
  const int64_t docs = corpus->size();
  std::vector<double> sums(static_cast<size_t>(2 * docs), 0.0);
  const auto start = std::chrono::steady_clock::now();
  {
    torch::NoGradGuard no_grad;
    for (int64_t d = comm.rank(); d < docs; d += comm.size()) {
      const auto [nll, count] = score_document(*m, corpus->read(d), o);
      sums[static_cast<size_t>(2 * d)] = nll;
      sums[static_cast<size_t>(2 * d + 1)] = static_cast<double>(count);
    }
  }
  sums = comm.all_reduce_doubles(sums);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double nll = 0;
  int64_t tokens = 0, scored_docs = 0;
  for (int64_t d = 0; d < docs; ++d) {
    nll += sums[static_cast<size_t>(2 * d)];
    const auto c = static_cast<int64_t>(sums[static_cast<size_t>(2 * d + 1)]);
    tokens += c;
    scored_docs += c > 0;
  }
  const std::string source = o.texts.empty() ? o.data : o.texts.front() + (o.texts.size() > 1 ? ", ..." : "");
  CST_INPUT_CHECK(tokens > 0, "'" << source << "': no document has 2 tokens or more; nothing to score");
  if (comm.rank() != 0) return;

  const double loss = nll / static_cast<double>(tokens), ppl = std::exp(loss);
  const std::string context =
      o.stride == o.seq_len
          ? "non-overlapping windows of " + std::to_string(o.seq_len) + " tokens (no context across windows)"
          : "windows of " + std::to_string(o.seq_len) + " tokens, stride " + std::to_string(o.stride) +
                ": each scores its last " + std::to_string(o.stride) + " tokens after " +
                std::to_string(o.seq_len - o.stride) + " tokens of context (a document's first window scores all)";
  Json j = {{"created_by", kTool},
            {"weights", o.weights},
            {"data", source},
            {"seq_len", o.seq_len},
            {"stride", o.stride},
            {"context_tokens", o.seq_len - o.stride},
            {"documents", scored_docs},
            {"documents_skipped", docs - scored_docs},
            {"tokens", tokens},
            {"nll_nats", nll},
            {"loss", loss},
            {"perplexity", ppl},
            {"seconds", seconds}};
  std::printf("cst-eval: %s on %s (%d rank%s)\n%s\n", o.weights.c_str(), source.c_str(), comm.size(),
              comm.size() > 1 ? "s" : "", context.c_str());
  std::printf("documents %ld  tokens %ld  loss %.6f  perplexity %.4f", (long)scored_docs, (long)tokens, loss, ppl);
  if (corpus->text_bytes() > 0) {
    const double bpb = nll / std::log(2.0) / static_cast<double>(corpus->text_bytes());
    j["bytes"] = corpus->text_bytes();
    j["bits_per_byte"] = bpb;
    std::printf("  bytes %ld  bits_per_byte %.6f", (long)corpus->text_bytes(), bpb);
  }
  if (docs > scored_docs) std::printf("  (%ld documents of one token skipped)", (long)(docs - scored_docs));
  std::printf("\nscored in %.2f s (%.0f tokens/s)\n", seconds, static_cast<double>(tokens) / seconds);
  if (!o.json.empty()) write_file_atomic(o.json, j.dump(2) + "\n");
}

}  // namespace

int main(int argc, char** argv) {
  return mpi_tool_main(argc, argv, [&](comm::MpiEnvironment& mpi) {
    EvalOptions opt;
    if (!parse(argc, argv, opt)) return 0;
    auto comm = comm::make_communicator(&mpi, mpi.size() > 1 ? "mpi" : "local");
    run(opt, *comm);
    return 0;
  });
}
