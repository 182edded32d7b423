#include "model/flops.h"

#include <algorithm>
#include <cmath>

namespace cst::model {
namespace {
double slices(const ModelConfig& cfg, int64_t seq_len) {
  return std::ceil(static_cast<double>(seq_len) / static_cast<double>(cfg.slice_len));
}
}  // namespace

double local_attention_pairs(const ModelConfig& cfg, int64_t seq_len) {
  if (cfg.arch != Arch::kCst) return 0;
  const int64_t L = cfg.slice_len, e = cfg.extension();
  double pairs = 0;
  for (int64_t p = 0; p < seq_len; ++p) {  // each real query's keys inside the sequence
    const int64_t s0 = p / L * L, lo = std::max<int64_t>(0, s0 - e);
    const int64_t hi = cfg.causal() ? p + 1 : std::min<int64_t>(seq_len, s0 + L + e);
    pairs += static_cast<double>(hi - lo);
  }
  return pairs;
}

double global_attention_pairs(const ModelConfig& cfg, int64_t seq_len) {
  if (cfg.arch != Arch::kCst) return 0;
  const double n = slices(cfg, seq_len);
  return cfg.causal() ? n * (n - 1) / 2 : n * n;
}

double attention_pairs(const ModelConfig& cfg, int64_t seq_len) {
  const double N = static_cast<double>(seq_len);
  if (cfg.arch != Arch::kCst) return cfg.causal() ? N * (N + 1) / 2 : N * N;
  return local_attention_pairs(cfg, seq_len) + global_attention_pairs(cfg, seq_len);
}

double forward_flops_per_token(const ModelConfig& cfg, int64_t seq_len, double head_fraction) {
  const double D = static_cast<double>(cfg.d_model), F = static_cast<double>(cfg.d_ff);
  const double N = static_cast<double>(seq_len);
  double proj = 8.0 * D * D;                                                   // q, k, v, o on every token
  if (cfg.arch == Arch::kCst) proj += 6.0 * D * D * slices(cfg, seq_len) / N;  // q, k, v per slice
  const double attn = 4.0 * D * attention_pairs(cfg, seq_len) / N;
  const double per_layer = proj + 4.0 * D * F + attn;
  double head = 2.0 * D * static_cast<double>(cfg.vocab_size);
  if (cfg.task == Task::kMlm) head += 2.0 * D * D;
  return static_cast<double>(cfg.n_layers) * per_layer + head_fraction * head;
}

}  // namespace cst::model
