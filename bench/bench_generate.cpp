// bench_generate: incremental decoding (model/decode.h) of a CST language model against
// recomputing the forward for every new token, on CPU.
//
//   bench_generate [--contexts 512 2048 4096 8192 32768] [--decode-steps 64] [--recompute-context 4096]
//                  [--recompute-steps 2] [--layers 2] [--d-model 512] [--heads 8] [--d-ff 2048]
//                  [--vocab 32000] [--slice-len 64] [--alpha 3] [--threads 0] [--arch cst]
//
// The model is the pg19_longctx shape (configs/pg19_longctx.cfg: D 512, H 8, F 2048, L 64,
// alpha 3, V 32000) with --layers blocks, random weights, batch 1, float32. Per context N:
// prefill = Decoder::prefill of N tokens (time to first token); decode = the mean time of
// --decode-steps Decoder::step calls after it (at least one slice boundary when >= L); attention
// share = the time inside the layers' attention (Decoder::attention_seconds) over the total;
// cache = Decoder::cache_bytes (the cache tensors, allocated for N + decode steps). Recompute =
// CstModel::forward_hidden of the whole sequence plus the head on its last row, per new token,
// at --recompute-context (its attention share: that of the prefill of the same length, the same
// computation). Ratios are of times measured in this run.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <map>

#include "launcher/tool_main.h"
#include "model/decode.h"

namespace po = boost::program_options;
using namespace cst;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Row {
  int64_t n = 0;
  double prefill_s = 0, prefill_attn = 0;  // time, attention share
  double step_s = 0, step_attn = 0;        // per token
  int64_t cache_bytes = 0;
};

Row measure(model::CstModelImpl& m, int64_t n, int64_t steps) {
  const int64_t V = m.config().vocab_size;
  torch::Tensor ids = torch::randint(V, {1, n}, torch::kLong);
  model::Decoder dec(m, 1, n + steps);
  Row r;
  r.n = n;
  auto t0 = Clock::now();
  torch::Tensor logits = dec.prefill(ids, {n});
  r.prefill_s = seconds_since(t0);
  r.prefill_attn = dec.attention_seconds() / r.prefill_s;
  dec.reset_attention_seconds();
  torch::Tensor next = logits.argmax(-1);
  t0 = Clock::now();
  for (int64_t k = 0; k < steps; ++k) next = dec.step(next).argmax(-1);
  const double total = seconds_since(t0);
  r.step_s = total / static_cast<double>(steps);
  r.step_attn = dec.attention_seconds() / total;
  r.cache_bytes = dec.cache_bytes();
  return r;
}

}  // namespace

int main(int argc, char** argv) try {
  std::vector<int64_t> contexts{512, 2048, 4096, 8192, 32768};
  int64_t steps = 64, recompute_n = 4096, recompute_steps = 2, threads = 0;
  model::ModelConfig cfg = model::ModelConfig::preset("pg19_longctx");
  cfg.n_layers = 2;
  cfg.dropout = 0;
  std::string arch = "cst";
  po::options_description desc("bench_generate options");
  desc.add_options()("help,h", "show this help")("contexts", po::value(&contexts)->multitoken(),
                                                 "prompt lengths N (default 512 2048 4096 8192 32768)")(
      "decode-steps", po::value(&steps)->default_value(steps), "decoded tokens per context")(
      "recompute-context", po::value(&recompute_n)->default_value(recompute_n), "N of the recompute baseline")(
      "recompute-steps", po::value(&recompute_steps)->default_value(recompute_steps), "recomputed tokens")(
      "layers", po::value(&cfg.n_layers)->default_value(cfg.n_layers), "blocks")(
      "d-model", po::value(&cfg.d_model)->default_value(cfg.d_model), "width D")(
      "heads", po::value(&cfg.n_heads)->default_value(cfg.n_heads), "heads H")(
      "d-ff", po::value(&cfg.d_ff)->default_value(cfg.d_ff), "FFN width")(
      "vocab", po::value(&cfg.vocab_size)->default_value(cfg.vocab_size), "vocabulary V")(
      "slice-len", po::value(&cfg.slice_len)->default_value(cfg.slice_len), "slice length L")(
      "alpha", po::value(&cfg.alpha)->default_value(cfg.alpha), "extension ratio")(
      "arch", po::value(&arch)->default_value(arch), "cst | full")(
      "threads", po::value(&threads)->default_value(threads), "intra-op threads (0 = torch default)");
  if (!cst::parse_command_line(argc, argv, desc)) return 0;
  CST_INPUT_CHECK(steps >= 1 && recompute_steps >= 1, "--decode-steps and --recompute-steps must be >= 1");
  CST_INPUT_CHECK(!contexts.empty(), "--contexts: empty list");
  cfg.set("arch", arch);
  int64_t longest = recompute_n + recompute_steps;
  for (int64_t n : contexts) {
    CST_INPUT_CHECK(n >= 1, "--contexts: " << n << " is not a positive length");
    longest = std::max(longest, n + steps);
  }
  cfg.max_seq_len = (longest + cfg.slice_len - 1) / cfg.slice_len * cfg.slice_len;
  if (threads > 0) at::set_num_threads(static_cast<int>(threads));
  torch::manual_seed(0);
  model::CstModel m(cfg);
  m->eval();
  torch::NoGradGuard no_grad;
  std::printf(
      "# bench_generate: arch %s, D %ld, H %ld, F %ld, L %ld, alpha %g, V %ld, %ld layers, batch 1, "
      "float32, %d threads, %ld decode steps\n",
      arch.c_str(), (long)cfg.d_model, (long)cfg.n_heads, (long)cfg.d_ff, (long)cfg.slice_len, cfg.alpha,
      (long)cfg.vocab_size, (long)cfg.n_layers, at::get_num_threads(), (long)steps);
  measure(*m, std::min<int64_t>(contexts[0], 256), 4);  // warm-up

  std::map<int64_t, Row> rows;
  std::printf(
      "\n| N | prefill (TTFT) s | prefill attn share | decode ms/token | tokens/s | decode attn share | cache MiB |\n"
      "|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int64_t n : contexts) {
    const Row r = measure(*m, n, steps);
    rows[n] = r;
    std::printf("| %ld | %.3f | %.0f%% | %.2f | %.1f | %.0f%% | %.2f |\n", (long)n, r.prefill_s, 100 * r.prefill_attn,
                1e3 * r.step_s, 1.0 / r.step_s, 100 * r.step_attn, static_cast<double>(r.cache_bytes) / 1048576.0);
    std::fflush(stdout);
  }

  // The baseline: the whole forward again for each new token (hidden states, head on the last row).
  torch::Tensor ids = torch::randint(cfg.vocab_size, {1, recompute_n + recompute_steps}, torch::kLong);
  auto t0 = Clock::now();
  for (int64_t k = 0; k < recompute_steps; ++k) {
    torch::Tensor h = m->forward_hidden(ids.narrow(1, 0, recompute_n + k));
    at::linear(h.select(1, h.size(1) - 1), m->tok_emb->weight).argmax(-1);
  }
  const double recompute_s = seconds_since(t0) / static_cast<double>(recompute_steps);
  const Row base = rows.count(recompute_n) ? rows[recompute_n] : measure(*m, recompute_n, steps);
  std::printf("\nrecompute at N = %ld: %.1f ms/token (attention share of the same forward: %.0f%%)\n",
              (long)recompute_n, 1e3 * recompute_s, 100 * base.prefill_attn);

  double lo = 1e30, hi = 0;
  for (const auto& [n, r] : rows) lo = std::min(lo, r.step_s), hi = std::max(hi, r.step_s);
  const Row& first = rows.begin()->second;
  const Row& last = rows.rbegin()->second;
  std::printf("\n| ratio (this run) | value |\n|---|---:|\n");
  std::printf("| decode per token, slowest / fastest context (N %ld..%ld) | %.2f |\n", (long)first.n, (long)last.n,
              hi / lo);
  std::printf("| decode per token, N = %ld / N = %ld | %.2f |\n", (long)last.n, (long)first.n,
              last.step_s / first.step_s);
  std::printf("| recompute / cached decode per token at N = %ld | %.1f |\n", (long)recompute_n,
              recompute_s / base.step_s);
  std::printf("| prefill per token, N = %ld / N = %ld | %.2f |\n", (long)last.n, (long)first.n,
              (last.prefill_s / static_cast<double>(last.n)) / (first.prefill_s / static_cast<double>(first.n)));
  std::printf("| cache bytes, N = %ld / N = %ld | %.2f |\n", (long)last.n, (long)first.n,
              static_cast<double>(last.cache_bytes) / static_cast<double>(first.cache_bytes));
  return 0;
} catch (...) {
  return cst::report_exception(std::current_exception());
}
