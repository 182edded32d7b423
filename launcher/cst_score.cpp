// cst-score: runs a trained model over token ids from an HDF5 file and writes logits and
// per-token log-probabilities to another HDF5 file (docs/WEIGHTS.md, "Scoring").
//
//   cst-score --weights model.h5 --input ids.h5 --output scores.h5 [--batch-size 8] [--no-logits]
//   cst-score --weights classifier.h5 --input data/glue/mrpc/test --output preds.h5 [--glue-submission MRPC.tsv]
//
// An --input that is a classification shard or split folder (format cst-cls-examples) is scored
// by launcher/score_cls.h: class probabilities (or regression values) per example with its
// example_index, the task's metrics when labelled, and the GLUE submission TSV on request.
// Input: dataset input_ids [batch, seq] (any integer type), optional attention_mask [batch, seq]
// (0/1), read batch by batch. Output (task lm):  logits [batch, seq, V], token_logprobs
// [batch, seq-1] = log p(input_ids[b, i+1] | input_ids[b, :i+1]); (task mlm): logits [batch,
// seq, V], token_logprobs [batch, seq] = log p(input_ids[b, i] | input); (task cls): logits and
// log_probs [batch, num_classes]. Padding positions get 0. sequence_logprob [batch] and
// num_scored [batch] sum over the real positions.
// Safety: --output may not be --weights or --input; an existing --output is replaced only with
// --overwrite and only when cst-score wrote it (its created_by attribute). The output is
// written to a temporary file beside it and renamed into place at the end. The logits of one
// forward pass stay within --memory-budget-mb (the batch shrinks to fit). Exit 2 on bad input.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>

#include "common/error.h"
#include "common/h5.h"
#include "common/output_guard.h"
#include "launcher/score_cls.h"
#include "launcher/tool_main.h"
#include "model/weights_io.h"

namespace po = boost::program_options;
using namespace cst;

namespace {

constexpr char kTool[] = "cst-score";

// input_ids and attention_mask of the input file, checked on open and read a batch at a time.
class Inputs {
 public:
  Inputs(const std::string& path, int64_t vocab, int64_t max_len)
      : path_(path), vocab_(vocab), file_(path, h5::File::Mode::kRead), ids_(file_.open("input_ids")) {
    shape_ = ids_.shape();
    CST_INPUT_CHECK(shape_.size() == 2, where("input_ids")
                                            << ": expected rank 2 [batch, seq], got " << h5::shape_str(shape_));
    CST_INPUT_CHECK(ids_.is_integer(), where("input_ids") << ": element type " << h5::dtype_name(ids_.dtype())
                                                          << " is not an integer type");
    CST_INPUT_CHECK(rows() >= 1 && len() >= 1 && len() <= max_len,
                    where("input_ids") << ": shape " << h5::shape_str(shape_)
                                       << " needs batch >= 1 and 1 <= seq <= max_seq_len = " << max_len);
    ids_.check_stored();  // the batch dimension sizes the loop and the output
    if (file_.has("attention_mask")) {
      mask_.emplace(file_.open("attention_mask"));
      CST_INPUT_CHECK(mask_->shape() == shape_, where("attention_mask")
                                                    << ": shape " << h5::shape_str(mask_->shape())
                                                    << " != input_ids shape " << h5::shape_str(shape_));
      mask_->check_stored();
    }
  }
  int64_t rows() const { return shape_[0]; }
  int64_t len() const { return shape_[1]; }

  // Rows [b0, b0 + nb): ids [nb, N] int64 and mask [nb, N] bool, checked.
  std::pair<torch::Tensor, torch::Tensor> read(int64_t b0, int64_t nb) const {
    const int64_t n = len();
    torch::Tensor ids = torch::empty({nb, n}, torch::kLong), mask = torch::ones({nb, n}, torch::kBool);
    ids_.read_slab<int64_t>({b0, 0}, {nb, n}, ids.data_ptr<int64_t>());
    const int64_t* p = ids.data_ptr<int64_t>();
    for (int64_t i = 0; i < nb * n; ++i)
      CST_INPUT_CHECK(p[i] >= 0 && p[i] < vocab_, where("input_ids")
                                                      << " index [" << b0 + i / n << ", " << i % n << "]: token id "
                                                      << p[i] << " outside [0, vocab_size = " << vocab_ << ")");
    if (mask_) {
      std::vector<int64_t> m(static_cast<size_t>(nb * n));
      mask_->read_slab<int64_t>({b0, 0}, {nb, n}, m.data());
      auto* mp = mask.data_ptr<bool>();
      for (int64_t i = 0; i < nb * n; ++i) {
        CST_INPUT_CHECK(m[static_cast<size_t>(i)] == 0 || m[static_cast<size_t>(i)] == 1,
                        where("attention_mask") << " index [" << b0 + i / n << ", " << i % n << "]: value "
                                                << m[static_cast<size_t>(i)] << " is not 0 or 1");
        mp[i] = m[static_cast<size_t>(i)] == 1;
      }
    }
    return {ids, mask};
  }

 private:
  std::string where(const char* dataset) const { return "file '" + path_ + "' dataset '" + dataset + "'"; }
  std::string path_;
  int64_t vocab_;
  h5::File file_;
  h5::Dataset ids_;
  std::optional<h5::Dataset> mask_;
  std::vector<int64_t> shape_;
};

// true when `path` is an HDF5 file cst-score wrote (its created_by attribute).
// true when `path` is a GLUE submission TSV (what --glue-submission writes).
bool is_submission_tsv(const std::string& path) {
  std::ifstream in(path);
  std::string first;
  return std::getline(in, first) && first == "index\tprediction";
}

}  // namespace

int main(int argc, char** argv) try {
  std::string weights, input, output, submission;
  int64_t batch_size = 8, threads = 0, budget_mb = 4096;
  bool no_logits = false, overwrite = false;
  po::options_description desc("cst-score options");
  desc.add_options()("help,h", "show this help")("weights", po::value(&weights)->required(),
                                                 "model weights (HDF5, docs/WEIGHTS.md)")(
      "input", po::value(&input)->required(), "HDF5 file with input_ids [batch, seq] (+ attention_mask)")(
      "output", po::value(&output)->required(), "HDF5 file to write (not an existing one, unless --overwrite)")(
      "overwrite", po::bool_switch(&overwrite), "replace --output if an earlier cst-score run wrote it")(
      "batch-size", po::value(&batch_size)->default_value(batch_size), "sequences per forward pass (at most)")(
      "memory-budget-mb", po::value(&budget_mb)->default_value(budget_mb),
      "MiB the logits and log-probabilities of one forward pass may take (the batch shrinks to fit)")(
      "no-logits", po::bool_switch(&no_logits), "skip the (large) logits dataset")(
      "glue-submission", po::value(&submission),
      "classification examples: also write the GLUE submission TSV (index, prediction) to this file")(
      "threads", po::value(&threads)->default_value(threads), "intra-op threads (0 = torch default)");
  if (!cst::parse_command_line(argc, argv, desc)) return 0;
  CST_INPUT_CHECK(batch_size >= 1 && batch_size <= 65536, "--batch-size = " << batch_size << " must be in [1, 65536]");
  CST_INPUT_CHECK(budget_mb >= 1 && budget_mb <= (int64_t{1} << 30),
                  "--memory-budget-mb = " << budget_mb << " must be in [1, 2^30]");
  CST_INPUT_CHECK(threads >= 0 && threads <= 4096, "--threads = " << threads << " must be in [0, 4096]");
  const NamedPath out_path{"--output", output};
  check_no_overlap(out_path, {{"--weights", weights}, {"--input", input}});
  check_output_file(out_path, overwrite, kTool, [](const std::string& p) { return h5_created_by(p, kTool); });
  if (!submission.empty()) {
    const NamedPath tsv{"--glue-submission", submission};
    check_no_overlap(tsv, {{"--weights", weights}, {"--input", input}, {"--output", output}});
    check_output_file(tsv, overwrite, kTool, is_submission_tsv);
  }
  if (threads > 0) at::set_num_threads(static_cast<int>(threads));

  model::CstModel m = model::load_model(weights);
  m->eval();
  if (launcher::is_cls_examples(input)) {
    StagedFile staged(output);
    {
      h5::File out(staged.tmp_path(), h5::File::Mode::kCreate);
      out.set_attr("created_by", std::string(kTool));
      out.set_attr("weights", weights);
      out.set_attr("input", input);
      out.set_attr("task", std::string(model::to_string(m->config().task)));
      out.set_attr("config_hash", std::to_string(m->config().hash()));
    }
    const std::string metrics =
        launcher::score_cls_examples(*m, {input, output, submission, batch_size}, staged.tmp_path());
    staged.commit();
    std::printf("scored the classification examples of %s -> %s%s%s\n", input.c_str(), output.c_str(),
                submission.empty() ? "" : " and ", submission.c_str());
    if (!metrics.empty()) std::printf("%s\n", metrics.c_str());
    return 0;
  }
  CST_INPUT_CHECK(submission.empty(),
                  "--glue-submission needs classification examples (a cst-cls-examples shard or "
                  "split folder) as --input, got '"
                      << input << "'");
  const model::ModelConfig& cfg = m->config();
  const Inputs in(input, cfg.vocab_size, cfg.max_seq_len);
  const int64_t B = in.rows(), N = in.len();
  const bool cls = cfg.task == model::Task::kCls, lm = cfg.task == model::Task::kLm;
  CST_INPUT_CHECK(!lm || N >= 2, "file '" << input << "' dataset 'input_ids': seq = " << N
                                          << " but the LM scores next tokens: need seq >= 2");
  const int64_t width = cls ? cfg.num_classes : cfg.vocab_size;
  // logits and log-probabilities, float32, of one sequence: N x V each (cls: C).
  const double seq_mb = 2.0 * 4.0 * static_cast<double>(cls ? 1 : N) * static_cast<double>(width) / 1048576.0;
  CST_INPUT_CHECK(seq_mb <= static_cast<double>(budget_mb),
                  "file '" << input << "' dataset 'input_ids': one sequence of " << N << " tokens over vocab_size "
                           << width << " needs " << seq_mb << " MiB of logits, above --memory-budget-mb = " << budget_mb
                           << ": raise it or score shorter sequences");
  const int64_t step = std::max<int64_t>(
      1, std::min<int64_t>(batch_size, static_cast<int64_t>(static_cast<double>(budget_mb) / seq_mb)));
  if (step < batch_size)
    std::fprintf(stderr,
                 "cst-score: %ld sequences per forward pass (--batch-size %ld) to keep logits within "
                 "--memory-budget-mb %ld\n",
                 (long)step, (long)batch_size, (long)budget_mb);

  StagedFile staged(output);
  {
    h5::File out(staged.tmp_path(), h5::File::Mode::kCreate);
    out.set_attr("created_by", std::string(kTool));
    out.set_attr("weights", weights);
    out.set_attr("input", input);
    out.set_attr("task", std::string(model::to_string(cfg.task)));
    out.set_attr("config_hash", std::to_string(cfg.hash()));
    const int64_t out_len = cls ? cfg.num_classes : (lm ? N - 1 : N);
    const std::string lp_name = cls ? "log_probs" : "token_logprobs";
    if (!no_logits) {
      std::vector<int64_t> row = cls ? std::vector<int64_t>{width} : std::vector<int64_t>{N, width};
      std::vector<int64_t> chunk = cls ? std::vector<int64_t>{1, width} : std::vector<int64_t>{1, 1, width};
      out.create_extendible("logits", h5::DType::kFloat32, row, chunk);
    }
    out.create_extendible(lp_name, h5::DType::kFloat32, {out_len}, {1, out_len});
    std::vector<float> seq_lp;
    std::vector<int64_t> n_scored;

    torch::NoGradGuard no_grad;
    for (int64_t b0 = 0; b0 < B; b0 += step) {
      const int64_t nb = std::min(step, B - b0);
      auto [ids, mask] = in.read(b0, nb);
      torch::Tensor logits = m->forward(ids, mask).to(torch::kFloat).contiguous();
      torch::Tensor logp = torch::log_softmax(logits, -1);
      torch::Tensor tok_lp, valid;
      if (cls) {
        tok_lp = logp;
      } else if (lm) {
        tok_lp = logp.narrow(1, 0, N - 1).gather(-1, ids.narrow(1, 1, N - 1).unsqueeze(-1)).squeeze(-1);
        valid = mask.narrow(1, 0, N - 1).logical_and(mask.narrow(1, 1, N - 1));
      } else {
        tok_lp = logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1);
        valid = mask;
      }
      if (valid.defined()) {
        tok_lp = tok_lp.masked_fill(valid.logical_not(), 0.0);
        torch::Tensor s = tok_lp.sum(1), c = valid.sum(1);
        for (int64_t i = 0; i < nb; ++i) {
          seq_lp.push_back(s[i].item<float>());
          n_scored.push_back(c[i].item<int64_t>());
        }
      }
      tok_lp = tok_lp.contiguous();
      if (!no_logits) out.append<float>("logits", logits.data_ptr<float>(), nb);
      out.append<float>(lp_name, tok_lp.data_ptr<float>(), nb);
    }
    if (!cls) {
      out.write<float>("sequence_logprob", seq_lp.data(), {B});
      out.write<int64_t>("num_scored", n_scored.data(), {B});
    }
    out.flush();
  }
  staged.commit();
  std::printf("scored %ld sequences of %ld tokens (%s) -> %s\n", (long)B, (long)N, model::to_string(cfg.task),
              output.c_str());
  return 0;
} catch (...) {
  return cst::report_exception(std::current_exception());
}
