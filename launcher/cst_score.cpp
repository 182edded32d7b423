// cst-score: runs a trained model over token ids from an HDF5 file and writes logits and
// per-token log-probabilities to another HDF5 file (docs/WEIGHTS.md, "Scoring").
//
//   cst-score --weights model.h5 --input ids.h5 --output scores.h5 [--batch-size 8] [--no-logits]
//
// Input: dataset input_ids [batch, seq] (any integer type), optional attention_mask [batch, seq]
// (0/1). Output (task lm):  logits [batch, seq, V], token_logprobs [batch, seq-1] =
// log p(input_ids[b, i+1] | input_ids[b, :i+1]); (task mlm): logits [batch, seq, V],
// token_logprobs [batch, seq] = log p(input_ids[b, i] | input); (task cls): logits and
// log_probs [batch, num_classes]. Padding positions get 0. sequence_logprob [batch] and
// num_scored [batch] sum over the real positions. Exit 2 on bad input.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>

#include "common/error.h"
#include "launcher/tool_main.h"
#include "common/h5.h"
#include "model/weights_io.h"

namespace po = boost::program_options;
using namespace cst;

namespace {

struct Inputs {
  torch::Tensor ids;   // [B, N] int64
  torch::Tensor mask;  // [B, N] bool
};

Inputs read_inputs(const std::string& path, int64_t vocab, int64_t max_len) {
  h5::File f(path, h5::File::Mode::kRead);
  h5::Dataset ds = f.open("input_ids");
  auto shape = ds.shape();
  CST_INPUT_CHECK(shape.size() == 2, "file '" << path << "' dataset 'input_ids': expected rank 2 [batch, seq], got "
                                              << h5::shape_str(shape));
  CST_INPUT_CHECK(ds.is_integer(), "file '" << path << "' dataset 'input_ids': element type "
                                            << h5::dtype_name(ds.dtype()) << " is not an integer type");
  const int64_t B = shape[0], N = shape[1];
  CST_INPUT_CHECK(B >= 1 && N >= 1 && N <= max_len, "file '" << path << "' dataset 'input_ids': shape "
                                                             << h5::shape_str(shape) << " needs batch >= 1 and 1 <= seq <= max_seq_len = "
                                                             << max_len);
  Inputs in;
  in.ids = torch::empty({B, N}, torch::kLong);
  ds.read<int64_t>(in.ids.data_ptr<int64_t>());
  const int64_t* p = in.ids.data_ptr<int64_t>();
  for (int64_t i = 0; i < B * N; ++i)
    CST_INPUT_CHECK(p[i] >= 0 && p[i] < vocab, "file '" << path << "' dataset 'input_ids' index [" << i / N << ", "
                                                        << i % N << "]: token id " << p[i]
                                                        << " outside [0, vocab_size = " << vocab << ")");
  in.mask = torch::ones({B, N}, torch::kBool);
  if (f.has("attention_mask")) {
    h5::Dataset md = f.open("attention_mask");
    CST_INPUT_CHECK(md.shape() == shape, "file '" << path << "' dataset 'attention_mask': shape "
                                                  << h5::shape_str(md.shape()) << " != input_ids shape "
                                                  << h5::shape_str(shape));
    std::vector<int64_t> m = md.read<int64_t>();
    auto* mp = in.mask.data_ptr<bool>();
    for (int64_t i = 0; i < B * N; ++i) {
      CST_INPUT_CHECK(m[i] == 0 || m[i] == 1, "file '" << path << "' dataset 'attention_mask' index [" << i / N
                                                       << ", " << i % N << "]: value " << m[i] << " is not 0 or 1");
      mp[i] = m[i] == 1;
    }
  }
  return in;
}

}  // namespace

int main(int argc, char** argv) try {
  std::string weights, input, output;
  int64_t batch_size = 8, threads = 0;
  bool no_logits = false;
  po::options_description desc("cst-score options");
  desc.add_options()("help,h", "show this help")("weights", po::value(&weights)->required(),
                                                 "model weights (HDF5, docs/WEIGHTS.md)")(
      "input", po::value(&input)->required(), "HDF5 file with input_ids [batch, seq] (+ attention_mask)")(
      "output", po::value(&output)->required(), "HDF5 file to write")(
      "batch-size", po::value(&batch_size)->default_value(batch_size), "sequences per forward pass")(
      "no-logits", po::bool_switch(&no_logits), "skip the (large) logits dataset")(
      "threads", po::value(&threads)->default_value(threads), "intra-op threads (0 = torch default)");
  if (!cst::parse_command_line(argc, argv, desc)) return 0;
  CST_INPUT_CHECK(batch_size >= 1, "--batch-size = " << batch_size << " must be >= 1");
  if (threads > 0) at::set_num_threads(static_cast<int>(threads));

  model::CstModel m = model::load_model(weights);
  m->eval();
  const model::ModelConfig& cfg = m->config();
  Inputs in = read_inputs(input, cfg.vocab_size, cfg.max_seq_len);
  const int64_t B = in.ids.size(0), N = in.ids.size(1);
  const bool cls = cfg.task == model::Task::kCls, lm = cfg.task == model::Task::kLm;
  CST_INPUT_CHECK(!lm || N >= 2, "file '" << input << "' dataset 'input_ids': seq = " << N
                                          << " but the LM scores next tokens: need seq >= 2");

  h5::File out(output, h5::File::Mode::kCreate);
  out.set_attr("weights", weights);
  out.set_attr("input", input);
  out.set_attr("task", std::string(model::to_string(cfg.task)));
  out.set_attr("config_hash", std::to_string(cfg.hash()));
  const int64_t out_len = cls ? cfg.num_classes : (lm ? N - 1 : N);
  const std::string lp_name = cls ? "log_probs" : "token_logprobs";
  const int64_t width = cls ? cfg.num_classes : cfg.vocab_size;
  if (!no_logits) {
    std::vector<int64_t> row = cls ? std::vector<int64_t>{width} : std::vector<int64_t>{N, width};
    std::vector<int64_t> chunk = cls ? std::vector<int64_t>{1, width} : std::vector<int64_t>{1, 1, width};
    out.create_extendible("logits", h5::DType::kFloat32, row, chunk);
  }
  out.create_extendible(lp_name, h5::DType::kFloat32, {out_len}, {1, out_len});
  std::vector<float> seq_lp;
  std::vector<int64_t> n_scored;

  torch::NoGradGuard no_grad;
  for (int64_t b0 = 0; b0 < B; b0 += batch_size) {
    const int64_t nb = std::min(batch_size, B - b0);
    torch::Tensor ids = in.ids.narrow(0, b0, nb), mask = in.mask.narrow(0, b0, nb);
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
  std::printf("scored %ld sequences of %ld tokens (%s) -> %s\n", (long)B, (long)N, model::to_string(cfg.task),
              output.c_str());
  return 0;
} catch (...) {
  return cst::report_exception(std::current_exception());
}
