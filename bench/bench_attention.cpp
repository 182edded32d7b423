// CST vs full attention: training-step throughput (forward + backward + loss) and peak CPU
// memory for N in {512 ... 16384} at equal model size and equal tokens per step, plus MFU
// against the GEMM peak measured in the same run. Prints a Markdown table.
//
// Time is the process's CPU time (all threads), not wall time: on a shared machine other
// processes steal wall time but not CPU time, so tokens per CPU-second and the GEMM FLOPs per
// CPU-second stay comparable (on an idle machine with T threads, wall = CPU / T).
//
//   bench_attention [--max-n 16384] [--max-full-n 8192] [--tokens 16384] [--iters 3]
//                   [--set KEY=VALUE ...]
#include <torch/torch.h>

#include <boost/program_options.hpp>
#include <ctime>
#include <cstdio>
#include <iostream>

#include "common/error.h"
#include "launcher/tool_main.h"
#include "model/loss.h"
#include "model/memory.h"
#include "model/model.h"
#include "trainer/perf.h"

namespace po = boost::program_options;
using namespace cst;

struct Result {
  double tok_s = 0, peak_mib = 0, mfu = 0;  // tok_s: tokens per CPU-second
  bool ran = false;
};

double cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

// FLOPs per CPU-second of a 2048^3 float32 matmul (best of 5).
double gemm_flops_per_cpu_s() {
  torch::Tensor a = torch::randn({2048, 2048}), b = torch::randn({2048, 2048});
  torch::matmul(a, b);
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    const double t0 = cpu_seconds();
    torch::matmul(a, b);
    best = std::min(best, cpu_seconds() - t0);
  }
  return 2.0 * 2048.0 * 2048.0 * 2048.0 / best;
}

Result run(const model::ModelConfig& cfg, int64_t n_tok, int64_t tokens, int iters, double peak_flops) {
  torch::manual_seed(0);
  model::CstModel m(cfg);
  const int64_t batch = std::max<int64_t>(1, tokens / n_tok);
  torch::Tensor ids = torch::randint(cfg.vocab_size, {batch, n_tok}, torch::kLong);
  auto step = [&] {
    m->zero_grad();
    model::lm_loss(m->forward(ids), ids).mean().backward();
  };
  Result r;
  {
    model::MemoryTracker mem;
    step();  // warm-up, and the memory measurement
    r.peak_mib = mem.peak_bytes() / 1048576.0;
  }
  const double t0 = cpu_seconds();
  for (int i = 0; i < iters; ++i) step();
  const double dt = (cpu_seconds() - t0) / iters;
  r.tok_s = static_cast<double>(batch * n_tok) / dt;
  r.mfu = r.tok_s * 3.0 * trainer::forward_flops_per_token(cfg, n_tok) / peak_flops;
  r.ran = true;
  return r;
}

int main(int argc, char** argv) try {
  int64_t max_n = 16384, max_full_n = 8192, tokens = 16384;
  int iters = 3;
  std::vector<std::string> sets;
  po::options_description desc("bench_attention");
  desc.add_options()("help", "help")("max-n", po::value(&max_n)->default_value(max_n), "largest N")(
      "max-full-n", po::value(&max_full_n)->default_value(max_full_n), "largest N for full attention (memory)")(
      "tokens", po::value(&tokens)->default_value(tokens), "tokens per step (batch = tokens / N)")(
      "iters", po::value(&iters)->default_value(iters), "timed steps per point")(
      "set", po::value(&sets)->composing(), "model field override KEY=VALUE");
  if (!cst::parse_command_line(argc, argv, desc)) return 0;

  model::ModelConfig base;
  base.task = model::Task::kLm, base.vocab_size = 1024, base.d_model = 128, base.n_heads = 4;
  base.n_layers = 2, base.d_ff = 512, base.slice_len = 64, base.alpha = 2.0, base.dropout = 0.0;
  base.max_seq_len = max_n;
  for (const auto& kv : sets) base.set(kv.substr(0, kv.find('=')), kv.substr(kv.find('=') + 1));
  trainer::GemmPeak peak = trainer::measure_gemm_peak();
  peak.flops_per_s = gemm_flops_per_cpu_s();
  std::printf("GEMM peak %.1f GFLOP per CPU-second (%s, %s); model D=%ld H=%ld layers=%ld F=%ld V=%ld, CST L=%ld alpha=%.1f; "
              "%ld tokens per step\n\n",
              peak.flops_per_s / 1e9, peak.device.c_str(), peak.dtype.c_str(), (long)base.d_model, (long)base.n_heads,
              (long)base.n_layers, (long)base.d_ff, (long)base.vocab_size, (long)base.slice_len, base.alpha, (long)tokens);
  std::printf("| N | CST tok/CPU-s | full tok/CPU-s | CST / full speed | CST peak MiB | full peak MiB | full / CST memory | CST MFU | full MFU |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (int64_t n = 512; n <= max_n; n *= 2) {
    model::ModelConfig cst = base, full = base;
    full.arch = model::Arch::kFull;
    Result a = run(cst, n, tokens, iters, peak.flops_per_s);
    Result b = n <= max_full_n ? run(full, n, tokens, iters, peak.flops_per_s) : Result{};
    if (b.ran) {
      std::printf("| %ld | %.0f | %.0f | %.2f | %.0f | %.0f | %.1f | %.1f%% | %.1f%% |\n", (long)n, a.tok_s, b.tok_s,
                  a.tok_s / b.tok_s, a.peak_mib, b.peak_mib, b.peak_mib / a.peak_mib, 100 * a.mfu, 100 * b.mfu);
    } else {
      std::printf("| %ld | %.0f | not run (> --max-full-n) | | %.0f | | | %.1f%% | |\n", (long)n, a.tok_s, a.peak_mib,
                  100 * a.mfu);
    }
    std::fflush(stdout);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
