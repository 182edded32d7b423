#include "bench/seq_parallel_scale.h"

#include <torch/torch.h>

#include <cstdio>

#include "bench/rank_stats.h"
#include "common/error.h"
#include "model/flops.h"
#include "model/memory.h"
#include "model/model.h"

namespace cst::bench {
namespace {

using torch::Tensor;

struct Measured {
  std::vector<double> cpu;  // per rank of the group, on world rank 0
  double peak = 0;          // bytes, the largest rank
};

// The first S ranks train `rounds` steps on their chunks of one sequence of `tokens` tokens
// (S = 1: rank 0 alone, no sequence parallelism), or, with seq_parallel false, each a whole
// sequence of `tokens` tokens of its own at the same time (no collective inside the step: the
// contention of S busy ranks on shared cores without sequence parallelism); collective over world.
Measured measure(comm::Communicator& world, const ScaleOptions& o, int S, int64_t tokens, bool seq_parallel = true) {
  const int r = world.rank();
  auto group = world.split(r < S ? 0 : 1, r);
  double cpu = 0, peak = 0;
  if (r < S) {
    model::ModelConfig cfg = o.cfg;
    cfg.activation_checkpointing = true;
    torch::manual_seed(1);
    model::CstModel m(cfg);
    const int chunks = seq_parallel ? S : 1;
    if (chunks > 1) m->set_sequence_parallel(group.get());
    const Sample s = make_sample(cfg, o.batch, tokens);
    const double count = static_cast<double>(s.labels.ne(-100).sum().item<int64_t>());
    const Tensor ids = chunk(s.ids, r % chunks, chunks), labels = chunk(s.labels, r % chunks, chunks);
    for (const auto& p : m->parameters()) peak += static_cast<double>(p.numel() * p.element_size());
    std::vector<double> t;
    double step_peak = 0;
    for (int64_t round = 0; round < o.rounds; ++round) {
      group->barrier();
      model::MemoryTracker tracker;
      const double t0 = thread_cpu_seconds();
      (m->loss(ids, Tensor(), labels).sum / count).backward();
      t.push_back(thread_cpu_seconds() - t0);
      step_peak = std::max(step_peak, static_cast<double>(tracker.peak_bytes()));
      m->zero_grad();
    }
    cpu = median_of(t);
    peak += step_peak;
  }
  Measured out;
  out.cpu = gather_to_root(world, cpu);
  if (r == 0) out.cpu.resize(S);
  out.peak = world.all_reduce_scalar(peak, comm::ReduceOp::kMax);
  return out;
}

}  // namespace

void scale_table(comm::Communicator& world, const ScaleOptions& o) {
  const int W = world.size();
  const model::ModelConfig& c = o.cfg;
  for (int S : o.sps) {
    CST_INPUT_CHECK(S >= 1 && W % S == 0, "--sp " << S << ": every group size must divide the " << W << " ranks");
    CST_INPUT_CHECK(o.N % S == 0 && (o.N / S) % c.slice_len == 0,
                    "--n " << o.N << ", --sp " << S << ": N / S must be a multiple of L = " << c.slice_len);
  }
  const double train_flops = 3 * model::forward_flops_per_token(c, o.N);  // per token at N
  if (world.rank() == 0)
    std::printf(
        "# training step with block activation checkpointing, %s shape: D=%ld H=%ld layers=%ld F=%ld V=%ld L=%ld "
        "alpha=%.1f %s; N=%ld, batch %ld; thread CPU time (1 intra-op thread), median of %ld round(s); model "
        "%.2f MFLOP per trained token at N\n"
        "| S | tokens per rank | CPU s per rank | max/mean | one rank at N / sum | one rank at N / (S x max) | "
        "peak MiB (largest rank) | one rank at N/S: CPU s, peak MiB | peak / one rank at N/S | MFU / one rank at "
        "N/S | S ranks at N/S each, together: CPU s | MFU / those "
        "|\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        o.preset.c_str(), (long)c.d_model, (long)c.n_heads, (long)c.n_layers, (long)c.d_ff, (long)c.vocab_size,
        (long)c.slice_len, c.alpha, c.causal() ? "causal" : "bidirectional", (long)o.N, (long)o.batch, (long)o.rounds,
        train_flops * 1e-6);
  double one_at_n = 0;  // CPU s of one rank at N, when S = 1 is asked for
  for (int S : o.sps) {
    const Measured at_n = measure(world, o, S, o.N);
    if (S == 1) one_at_n = world.rank() == 0 ? at_n.cpu[0] : 0;
    const Measured alone = S == 1 ? at_n : measure(world, o, 1, o.N / S);
    const Measured together = S == 1 ? at_n : measure(world, o, S, o.N / S, /*seq_parallel=*/false);
    if (world.rank() != 0) continue;
    const double worst = max_of(at_n.cpu), a = alone.cpu[0], t = sum_of(together.cpu) / S;
    const double per_rank_flops = 3 * model::forward_flops_per_token(c, o.N / S) * static_cast<double>(o.N / S);
    const double mfu = (train_flops * o.N / (S * worst)) / (per_rank_flops / a);
    const double mfu_together = (train_flops * o.N / (S * worst)) / (per_rank_flops / t);
    auto ratio = [&](double num, double den) {
      char b[16];
      return one_at_n > 0 ? std::string(b, std::snprintf(b, sizeof b, "%.3f", num / den)) : std::string("-");
    };
    std::printf("| %d | %ld | %s | %.3f | %s | %s | %.0f | %.2f, %.0f | %.2f | %.2f | %s | %.2f |\n", S,
                (long)(o.N / S), joined(at_n.cpu, 1, "%.2f").c_str(), max_over_mean(at_n.cpu),
                ratio(one_at_n, sum_of(at_n.cpu)).c_str(), ratio(one_at_n, S * worst).c_str(), mib(at_n.peak), a,
                mib(alone.peak), at_n.peak / alone.peak, mfu, joined(together.cpu, 1, "%.2f").c_str(), mfu_together);
    std::fflush(stdout);
  }
}

}  // namespace cst::bench
