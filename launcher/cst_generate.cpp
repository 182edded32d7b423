// cst-generate: continues text prompts with a trained causal language model (task = lm), by
// incremental decoding (model/decode.h): each prompt is prefilled in one forward pass, then one
// token per step from the per-layer cache (README "Generation: cst-generate").
//
//   cst-generate --weights model.h5 --tokenizer tokenizer.model --prompt "In the beginning"
//                [--prompt-file prompts.txt] [--max-new-tokens 64] [--temperature 1] [--top-k 0]
//                [--top-p 1] [--seed 0] [--stop TEXT] [--ignore-eos] [--batch-size 8]
//                [--output ids.h5 [--overwrite]] [--threads 0]
//
// Prompts: each --prompt (repeatable), or each non-blank line of --prompt-file, in that order;
// prompt i draws from its own random stream seeded from (--seed, i), so its text depends neither
// on the other prompts nor on --batch-size. A row stops at the tokenizer's end-of-sequence id
// (kept in the ids; --ignore-eos: never), at --stop (the text ends before it; the ids keep the
// token that completed it), after --max-new-tokens, or at model.max_seq_len (with a message).
// Output: one prompt streams its text to stdout token by token; several are printed, each as
// "### prompt <i>" then its text, when their batch is done. --output writes input_ids [B, T]
// int32 (prompt then continuation, padded with 0), attention_mask [B, T] int32 and
// prompt_lengths [B] int32: an input of cst-score. Exit 2 on bad input (a weights file that is
// not an LM, a tokenizer that is not the model's, an unusable --output).
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <sentencepiece_processor.h>
#include <torch/torch.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "common/checksum.h"
#include "common/error.h"
#include "common/h5.h"
#include "common/output_guard.h"
#include "dataio/rng.h"
#include "launcher/tool_main.h"
#include "model/decode.h"
#include "model/decode_sampling.h"
#include "model/weights_io.h"

namespace po = boost::program_options;
using namespace cst;

namespace {

constexpr char kTool[] = "cst-generate";

struct Options {
  std::string weights, tokenizer, prompt_file, stop, output;
  std::vector<std::string> prompts;
  int64_t max_new = 64, batch_size = 8, threads = 0;
  uint64_t seed = 0;
  bool ignore_eos = false, overwrite = false;
  model::SamplingOptions sampling;
};

// The model, refused unless a causal LM, and its tokenizer, refused unless the model's: by the
// recorded tokenizer_sha256 when the weights file has one, else by piece count vs vocab_size.
model::CstModel load_checked(const Options& o, sentencepiece::SentencePieceProcessor& sp) {
  const model::ModelConfig cfg = model::read_weights_config(o.weights);
  CST_INPUT_CHECK(cfg.task == model::Task::kLm, "--weights '" << o.weights
                                                              << "' is a task = " << model::to_string(cfg.task)
                                                              << " model; cst-generate needs a causal language "
                                                                 "model (task = lm)");
  const auto st = sp.Load(o.tokenizer);
  CST_INPUT_CHECK(st.ok(), "--tokenizer '" << o.tokenizer << "': not a SentencePiece model (" << st.ToString() << ")");
  const std::string recorded = model::read_weights_tokenizer(o.weights);
  if (!recorded.empty()) {
    const std::string actual = sha256_file(o.tokenizer);
    CST_INPUT_CHECK(actual == recorded, "--tokenizer '" << o.tokenizer << "' (sha256 " << actual
                                                        << ") is not the tokenizer of --weights '" << o.weights
                                                        << "' (tokenizer_sha256 " << recorded << ")");
  }
  CST_INPUT_CHECK(sp.GetPieceSize() == cfg.vocab_size,
                  "--tokenizer '" << o.tokenizer << "' has " << sp.GetPieceSize() << " pieces but --weights '"
                                  << o.weights << "' has vocab_size = " << cfg.vocab_size
                                  << (recorded.empty() ? " (the file records no tokenizer_sha256)" : ""));
  model::CstModel m = model::load_model(o.weights);
  m->eval();
  return m;
}

std::vector<std::string> read_prompts(const Options& o) {
  std::vector<std::string> out = o.prompts;
  if (!o.prompt_file.empty()) {
    std::ifstream f(o.prompt_file);
    CST_INPUT_CHECK(f.good(), "--prompt-file '" << o.prompt_file << "' cannot be read");
    for (std::string line; std::getline(f, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") != std::string::npos) out.push_back(line);
    }
  }
  CST_INPUT_CHECK(!out.empty(), "no prompt: give --prompt TEXT or --prompt-file FILE (one prompt a line)");
  return out;
}

// One prompt's generation: its ids, the text after the prompt, and whether it has stopped.
struct Row {
  std::vector<int> prompt, gen;
  std::string prompt_text, text;  // text: the continuation (before --stop)
  size_t printed = 0;             // bytes of `text` streamed so far
  bool done = false;
};

class Generator {
 public:
  Generator(const Options& o, model::CstModelImpl& m, const sentencepiece::SentencePieceProcessor& sp, bool stream)
      : o_(o), m_(m), sp_(sp), stream_(stream) {}

  // Generates the continuations of rows [first, first + rows.size()) of the run.
  void run(std::vector<Row>& rows, int64_t first) {
    const int64_t B = static_cast<int64_t>(rows.size()), max_len = m_.config().max_seq_len;
    int64_t T = 0;
    for (const Row& r : rows) T = std::max<int64_t>(T, static_cast<int64_t>(r.prompt.size()));
    torch::Tensor ids = torch::zeros({B, T}, torch::kLong);
    std::vector<int64_t> lengths;
    std::vector<at::Generator> gens;
    for (int64_t b = 0; b < B; ++b) {
      const auto& p = rows[static_cast<size_t>(b)].prompt;
      for (size_t i = 0; i < p.size(); ++i) ids[b][static_cast<int64_t>(i)] = p[i];
      lengths.push_back(static_cast<int64_t>(p.size()));
      gens.push_back(at::make_generator<at::CPUGeneratorImpl>(dataio::mix(o_.seed, static_cast<uint64_t>(first + b))));
    }
    model::Decoder dec(m_, B, std::min(max_len, T + o_.max_new));
    if (stream_) std::fputs(rows[0].prompt_text.c_str(), stdout), std::fflush(stdout);
    torch::Tensor logits = dec.prefill(ids, lengths);
    const int eos = o_.ignore_eos ? -1 : sp_.eos_id();
    for (int64_t k = 0; k < o_.max_new; ++k) {
      torch::Tensor next = torch::zeros({B}, torch::kLong);
      std::vector<bool> active(static_cast<size_t>(B), false);
      for (int64_t b = 0; b < B; ++b) {
        Row& r = rows[static_cast<size_t>(b)];
        if (r.done) continue;
        const int64_t tok = model::choose_token(logits[b], o_.sampling, gens[static_cast<size_t>(b)]);
        r.gen.push_back(static_cast<int>(tok));
        update_text(r);
        r.done = r.done || tok == eos || static_cast<int64_t>(r.gen.size()) == o_.max_new;
        if (!r.done && static_cast<int64_t>(r.prompt.size() + r.gen.size()) >= max_len) {
          std::fprintf(stderr, "%s: prompt %ld reached model.max_seq_len = %ld tokens; stopped after %zu new tokens\n",
                       kTool, static_cast<long>(first + b), static_cast<long>(max_len), r.gen.size());
          r.done = true;
        }
        next[b] = tok;
        active[static_cast<size_t>(b)] = !r.done;
      }
      if (stream_) flush_stream(rows[0]);
      if (std::none_of(active.begin(), active.end(), [](bool a) { return a; })) break;
      logits = dec.step(next, active);
    }
    for (Row& r : rows) r.printed = r.text.size();
    if (stream_) std::fputs("\n", stdout), std::fflush(stdout);
  }

 private:
  // The continuation's text: decode(prompt + gen) after decode(prompt) (so that the space a
  // piece carries at a word start is kept), cut before --stop when it appears.
  void update_text(Row& r) const {
    std::vector<int> all(r.prompt);
    all.insert(all.end(), r.gen.begin(), r.gen.end());
    std::string full, head;
    sp_.Decode(all, &full);
    sp_.Decode(r.prompt, &head);
    r.text = full.compare(0, head.size(), head) == 0 ? full.substr(head.size()) : full;
    if (!o_.stop.empty()) {
      const size_t at = r.text.find(o_.stop);
      if (at != std::string::npos) r.text.resize(at), r.done = true;
    }
  }

  // Streams what of the text is final: not a possible beginning of --stop.
  void flush_stream(Row& r) const {
    size_t safe = r.text.size();
    if (!r.done)
      for (size_t k = std::min(o_.stop.size(), r.text.size()); k > 0; --k)
        if (r.text.compare(r.text.size() - k, k, o_.stop, 0, k) == 0) {
          safe = r.text.size() - k;
          break;
        }
    if (safe > r.printed) {
      std::fwrite(r.text.data() + r.printed, 1, safe - r.printed, stdout);
      std::fflush(stdout);
      r.printed = safe;
    }
  }

  const Options& o_;
  model::CstModelImpl& m_;
  const sentencepiece::SentencePieceProcessor& sp_;
  bool stream_;
};

// input_ids / attention_mask [B, T] and prompt_lengths [B], int32, through a staged file.
void write_output(const Options& o, const std::vector<Row>& rows) {
  const int64_t B = static_cast<int64_t>(rows.size());
  int64_t T = 0;
  for (const Row& r : rows) T = std::max<int64_t>(T, static_cast<int64_t>(r.prompt.size() + r.gen.size()));
  std::vector<int32_t> ids(static_cast<size_t>(B * T), 0), mask(static_cast<size_t>(B * T), 0), lens;
  for (int64_t b = 0; b < B; ++b) {
    const Row& r = rows[static_cast<size_t>(b)];
    std::vector<int> all(r.prompt);
    all.insert(all.end(), r.gen.begin(), r.gen.end());
    for (size_t i = 0; i < all.size(); ++i) {
      ids[static_cast<size_t>(b * T) + i] = all[i];
      mask[static_cast<size_t>(b * T) + i] = 1;
    }
    lens.push_back(static_cast<int32_t>(r.prompt.size()));
  }
  StagedFile staged(o.output);
  {
    h5::File f(staged.tmp_path(), h5::File::Mode::kCreate);
    f.set_attr("created_by", std::string(kTool));
    f.set_attr("weights", o.weights);
    f.set_attr("tokenizer", o.tokenizer);
    f.set_attr("seed", static_cast<int64_t>(o.seed));
    f.set_attr("temperature", o.sampling.temperature);
    f.set_attr("top_k", o.sampling.top_k);
    f.set_attr("top_p", o.sampling.top_p);
    f.write<int32_t>("input_ids", ids.data(), {B, T});
    f.write<int32_t>("attention_mask", mask.data(), {B, T});
    f.write<int32_t>("prompt_lengths", lens.data(), {B});
    f.flush();
  }
  staged.commit();
}

}  // namespace

int main(int argc, char** argv) try {
  Options o;
  po::options_description desc("cst-generate options");
  desc.add_options()("help,h", "show this help")("weights", po::value(&o.weights)->required(),
                                                 "causal LM weights (HDF5, docs/WEIGHTS.md)")(
      "tokenizer", po::value(&o.tokenizer)->required(), "the model's SentencePiece .model")(
      "prompt", po::value(&o.prompts), "prompt text (repeatable)")("prompt-file", po::value(&o.prompt_file),
                                                                   "one prompt a line (blank lines skipped)")(
      "max-new-tokens", po::value(&o.max_new)->default_value(o.max_new), "new tokens per prompt (at most)")(
      "temperature", po::value(&o.sampling.temperature)->default_value(o.sampling.temperature),
      "0 = greedy; > 0 = sample from softmax(logits / temperature)")(
      "top-k", po::value(&o.sampling.top_k)->default_value(o.sampling.top_k), "sample among the k likeliest (0 = all)")(
      "top-p", po::value(&o.sampling.top_p)->default_value(o.sampling.top_p),
      "sample among the likeliest tokens of mass top-p (1 = all)")("seed", po::value(&o.seed)->default_value(o.seed),
                                                                   "random seed; prompt i draws from stream (seed, i)")(
      "stop", po::value(&o.stop), "stop a prompt when its continuation contains this text (not printed)")(
      "ignore-eos", po::bool_switch(&o.ignore_eos), "do not stop at the tokenizer's end-of-sequence id")(
      "batch-size", po::value(&o.batch_size)->default_value(o.batch_size), "prompts decoded together")(
      "output", po::value(&o.output), "HDF5 file of the token ids (input_ids, attention_mask, prompt_lengths)")(
      "overwrite", po::bool_switch(&o.overwrite), "replace --output if an earlier cst-generate run wrote it")(
      "threads", po::value(&o.threads)->default_value(o.threads), "intra-op threads (0 = torch default)");
  if (!cst::parse_command_line(argc, argv, desc)) return 0;
  o.sampling.validate();
  CST_INPUT_CHECK(o.max_new >= 0 && o.max_new <= (int64_t{1} << 24),
                  "--max-new-tokens = " << o.max_new << " must be in [0, 2^24]");
  CST_INPUT_CHECK(o.batch_size >= 1 && o.batch_size <= 4096,
                  "--batch-size = " << o.batch_size << " must be in [1, 4096]");
  CST_INPUT_CHECK(o.threads >= 0 && o.threads <= 4096, "--threads = " << o.threads << " must be in [0, 4096]");
  if (!o.output.empty()) {
    const NamedPath out{"--output", o.output};
    std::vector<NamedPath> inputs{{"--weights", o.weights}, {"--tokenizer", o.tokenizer}};
    if (!o.prompt_file.empty()) inputs.push_back({"--prompt-file", o.prompt_file});
    check_no_overlap(out, inputs);
    check_output_file(out, o.overwrite, kTool, [](const std::string& p) { return h5_created_by(p, kTool); });
  }
  if (o.threads > 0) at::set_num_threads(static_cast<int>(o.threads));

  sentencepiece::SentencePieceProcessor sp;
  model::CstModel m = load_checked(o, sp);
  const int64_t max_len = m->config().max_seq_len;
  const std::vector<std::string> texts = read_prompts(o);
  std::vector<Row> rows(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    Row& r = rows[i];
    r.prompt_text = texts[i];
    const auto st = sp.Encode(texts[i], &r.prompt);
    CST_CHECK(st.ok(), "SentencePiece encode failed: " << st.ToString());
    CST_INPUT_CHECK(!r.prompt.empty(), "prompt " << i << " ('" << texts[i] << "') encodes to no token");
    CST_INPUT_CHECK(static_cast<int64_t>(r.prompt.size()) < max_len,
                    "prompt " << i << " has " << r.prompt.size() << " tokens; model.max_seq_len = " << max_len
                              << " leaves no room for a new one");
  }
  const bool stream = rows.size() == 1;
  Generator gen(o, *m, sp, stream);
  const auto t0 = std::chrono::steady_clock::now();
  size_t new_tokens = 0;
  for (size_t first = 0; first < rows.size(); first += static_cast<size_t>(o.batch_size)) {
    const size_t n = std::min(rows.size() - first, static_cast<size_t>(o.batch_size));
    std::vector<Row> batch(rows.begin() + static_cast<std::ptrdiff_t>(first),
                           rows.begin() + static_cast<std::ptrdiff_t>(first + n));
    if (o.max_new > 0)
      gen.run(batch, static_cast<int64_t>(first));
    else if (stream)
      std::printf("%s\n", batch[0].prompt_text.c_str());
    for (size_t i = 0; i < n; ++i) {
      rows[first + i] = batch[i];
      new_tokens += batch[i].gen.size();
      if (!stream)
        std::printf("### prompt %zu\n%s%s\n", first + i, batch[i].prompt_text.c_str(), batch[i].text.c_str());
    }
    std::fflush(stdout);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!o.output.empty()) write_output(o, rows);
  std::fprintf(stderr, "%s: %zu prompts, %zu new tokens in %.2f s (%.1f tokens/s)%s%s\n", kTool, rows.size(),
               new_tokens, s, static_cast<double>(new_tokens) / std::max(s, 1e-9), o.output.empty() ? "" : " -> ",
               o.output.c_str());
  return 0;
} catch (...) {
  return cst::report_exception(std::current_exception());
}
