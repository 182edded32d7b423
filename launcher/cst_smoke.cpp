// cst-smoke: builds a CST model from a preset (or config file), runs forward and backward on
// random tokens on CPU, and prints the loss, step time, tokens/s and MFU against the GEMM peak
// measured at start. The quickstart's first check that the build works. Writes no file; bad
// options exit 2 naming the option and value.
#include <ATen/Parallel.h>
#include <torch/optim/adamw.h>
#include <torch/torch.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "common/error.h"
#include "launcher/tool_main.h"
#include "model/config.h"
#include "model/loss.h"
#include "model/model.h"
#include "trainer/perf.h"

namespace po = boost::program_options;
using namespace cst;

int main(int argc, char** argv) try {
  std::string preset = "tiny_lm";
  int64_t batch = 8, seq = 256, steps = 10, seed = 1234;
  std::vector<std::string> overrides;
  po::options_description desc("cst-smoke options");
  desc.add_options()("help,h", "show this help")("preset", po::value(&preset)->default_value(preset),
                                                 "model preset: tiny_lm, tiny_mlm, base_mlm, pg19_longctx")(
      "set", po::value(&overrides)->composing(), "model field override KEY=VALUE (repeatable)")(
      "batch", po::value(&batch)->default_value(batch), "sequences per step")(
      "seq", po::value(&seq)->default_value(seq), "tokens per sequence")(
      "steps", po::value(&steps)->default_value(steps), "optimizer steps")(
      "seed", po::value(&seed)->default_value(seed), "random seed");
  if (!cst::parse_command_line(argc, argv, desc)) return 0;

  model::ModelConfig cfg = model::ModelConfig::preset(preset);
  for (const auto& kv : overrides) {
    auto eq = kv.find('=');
    CST_INPUT_CHECK(eq != std::string::npos, "--set '" << kv << "': expected KEY=VALUE");
    cfg.set(kv.substr(0, eq), kv.substr(eq + 1));
  }
  cfg.validate();
  CST_INPUT_CHECK(seq >= 2 && seq <= cfg.max_seq_len,
                  "--seq = " << seq << " must be in [2, max_seq_len = " << cfg.max_seq_len << "]");
  CST_INPUT_CHECK(batch >= 1 && batch <= 4096, "--batch = " << batch << " must be in [1, 4096]");
  CST_INPUT_CHECK(steps >= 1 && steps <= 1000000, "--steps = " << steps << " must be in [1, 1000000]");
  torch::manual_seed(static_cast<uint64_t>(seed));

  trainer::GemmPeak peak = trainer::measure_gemm_peak();
  std::printf("GEMM peak: %.1f GFLOP/s (%ldx%ldx%ld %s on %s)\n", peak.flops_per_s / 1e9, (long)peak.n, (long)peak.n,
              (long)peak.n, peak.dtype.c_str(), peak.device.c_str());

  model::CstModel m(cfg);
  std::printf("model: %s, %.2fM parameters\n%s", preset.c_str(), m->num_parameters() / 1e6, cfg.to_string().c_str());
  torch::optim::AdamW opt(m->parameters(), torch::optim::AdamWOptions(1e-3));
  const double flops_tok = 3.0 * trainer::forward_flops_per_token(cfg, seq);
  torch::Tensor ids = torch::randint(cfg.vocab_size, {batch, seq}, torch::kLong);
  for (int64_t step = 1; step <= steps; ++step) {
    auto t0 = std::chrono::steady_clock::now();
    // The model's own loss: the LM / MLM head's cross entropy in chunks, no [B, N, V] logits.
    torch::Tensor labels;
    if (cfg.task == model::Task::kLm) {
      labels = torch::cat({ids.narrow(1, 1, seq - 1), torch::full({batch, 1}, -100, ids.options())}, 1);
    } else if (cfg.task == model::Task::kMlm) {
      labels = ids.masked_fill(torch::rand({batch, seq}) > 0.15, -100);
    } else {
      labels = torch::randint(cfg.num_classes, {batch}, torch::kLong);
    }
    model::LossSum loss = m->loss(ids, {}, labels);
    opt.zero_grad();
    loss.mean().backward();
    opt.step();
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double tok_s = static_cast<double>(batch * seq) / dt;
    std::printf("step %3ld  loss %.4f  step %.3f s  %.0f tok/s  MFU %.1f%%\n", (long)step, loss.mean().item<double>(),
                dt, tok_s, 100.0 * tok_s * flops_tok / peak.flops_per_s);
  }
  return 0;
} catch (...) {
  return cst::report_exception(std::current_exception());
}
