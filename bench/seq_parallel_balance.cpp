#include "seq_parallel_balance.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "bench/rank_stats.h"
#include "common/error.h"
#include "common/parallel_layout.h"
#include "model/csa.h"
#include "model/global_range.h"
#include "model/loss.h"
#include "model/model.h"
#include "model/seq_parallel.h"

namespace cst::bench {
namespace {

using torch::Tensor;

// Rank r's causal query slices: 0, its own chunk; 1, its share of the work (SeqChunk's split);
// 2, zigzag (Megatron-LM / Llama 3 context parallelism): chunks r and 2S - 1 - r of 2S; 3, its
// share of the pairs alone (no cost per row).
std::vector<TokenRange> query_rows(int64_t n, int S, int r, int layout, double dropout) {
  if (layout == 1 || layout == 3)
    return {balanced_causal_rows(n, S, r, layout == 1 ? model::csa::range_row_cost(at::kCPU, dropout) : 0)};
  if (layout == 0) return {{r * (n / S), (r + 1) * (n / S)}};
  const int64_t c = n / (2 * S);
  return {{r * c, (r + 1) * c}, {(2 * S - 1 - r) * c, (2 * S - r) * c}};
}

// One training step on this rank's chunk (group null: the whole sequence on one rank), the
// model's blocks run here on a SeqChunk whose balancing the bench sets; returns this thread's CPU s.
double balance_step(model::CstModel& m, const Sample& s, comm::Communicator* group, bool balanced, double count) {
  const int S = group ? group->size() : 1, r = group ? group->rank() : 0;
  const model::ModelConfig& cfg = m->config();
  const double t0 = thread_cpu_seconds();
  const Tensor ids = chunk(s.ids, r, S), mask = torch::ones(ids.sizes(), torch::kBool);
  const int64_t T = ids.size(1);
  Tensor h = m->tok_emb(ids);
  if (m->abs_pos.defined()) h = h + m->abs_pos.narrow(0, r * T, T);
  model::LayerContext pos = m->layer_context(true);
  if (group) {
    model::SeqChunk c = model::SeqChunk::make(*group, mask, false, r * T, cfg.slice_len, cfg.extension(), true,
                                              model::csa::range_row_cost(ids.device(), cfg.dropout));
    c.balance_global = c.balance_global && balanced;
    pos.sp = std::make_shared<model::SeqChunk>(c);
  }
  for (const auto& layer : *m->layers) h = layer->as<model::BlockImpl>()->forward(h, mask, pos);
  h = m->ln_f(h);
  const Tensor labels = chunk(s.labels, r, S).reshape({-1});
  (model::chunked_cross_entropy(h.reshape({-1, h.size(-1)}), m->tok_emb->weight, {}, labels).sum / count).backward();
  m->zero_grad();
  return thread_cpu_seconds() - t0;
}

}  // namespace

void balance_tables(comm::Communicator& world, const model::ModelConfig& cfg, const std::string& preset, int64_t N,
                    int64_t batch, int64_t rounds) {
  const int S = world.size(), r = world.rank();
  CST_INPUT_CHECK(cfg.causal(), "--mode balance: the preset must be causal (task lm)");
  CST_INPUT_CHECK(N % (S * cfg.slice_len) == 0, "--n " << N << ": N / S must be a multiple of L = " << cfg.slice_len);
  auto group = world.split(0, r);
  const int64_t n = N / cfg.slice_len, B = batch, H = cfg.n_heads, d = cfg.d_model / cfg.n_heads;
  const char* names[4] = {"own rows", "row split", "zigzag", "row split by pairs alone"};
  const int64_t attn_rounds = std::max<int64_t>(rounds, 5);
  if (r == 0)
    std::printf(
        "# causal global attention, S = %d ranks x 1 thread, %s shape: D=%ld H=%ld L=%ld layers=%ld V=%ld; "
        "N=%ld (n=%ld slices), batch %ld, dropout %.2f; thread CPU time, median of %ld rounds after a warm-up "
        "(attention), of %ld (steps)\n",
        S, preset.c_str(), (long)cfg.d_model, (long)H, (long)cfg.slice_len, (long)cfg.n_layers, (long)cfg.vocab_size,
        (long)N, (long)n, (long)B, cfg.dropout, (long)attn_rounds, (long)rounds);
  // (1) The global attention of one layer alone: forward + backward of this rank's range.
  torch::manual_seed(3);
  const Tensor q0 = torch::randn({B, H, n, d}), k0 = torch::randn({B, H, n, d}), v0 = torch::randn({B, H, n, d});
  std::vector<double> attn[4], pairs[4];
  for (int i = 0; i < 4; ++i) {
    std::vector<double> t;
    int64_t p = 0;
    for (int64_t round = 0; round <= attn_rounds; ++round) {
      Tensor q = q0.clone().requires_grad_(), k = k0.clone().requires_grad_(), v = v0.clone().requires_grad_();
      p = 0;
      world.barrier();
      const double t0 = thread_cpu_seconds();
      for (const TokenRange& rows : query_rows(n, S, r, i, cfg.dropout))
        model::csa::global_attention_sdpa(q, k, v, {}, true, cfg.dropout, true, rows.begin, rows.size(), &p)
            .sum()
            .backward();
      if (round > 0) t.push_back(thread_cpu_seconds() - t0);
    }
    std::sort(t.begin(), t.end());
    attn[i] = gather_to_root(world, t[t.size() / 2]);
    pairs[i] = gather_to_root(world, static_cast<double>(p));
  }
  if (r == 0) {
    std::printf(
        "| global attention (fwd + bwd, one layer) | query rows per rank | pairs per rank (x1e6) | "
        "pairs max/mean | CPU ms per rank | CPU max/mean |\n|---|---|---|---|---|---|\n");
    for (int i = 0; i < 4; ++i) {
      std::vector<double> nrows;
      for (int j = 0; j < S; ++j) {
        nrows.push_back(0);
        for (const TokenRange& rows : query_rows(n, S, j, i, cfg.dropout))
          nrows.back() += static_cast<double>(rows.size());
      }
      std::printf("| %s | %s | %s | %.3f | %s | %.3f |\n", names[i], joined(nrows, 1, "%.0f").c_str(),
                  joined(pairs[i], 1e-6, "%.2f").c_str(), max_over_mean(pairs[i]), joined(attn[i], 1e3, "%.0f").c_str(),
                  max_over_mean(attn[i]));
    }
  }
  if (rounds == 0) return;
  // (2) Training steps: one rank on the whole sequence (rank 0; the others wait), then S ranks.
  const Sample s = make_sample(cfg, B, N);  // causal: inputs and next-token targets
  const double count = static_cast<double>(B * N);
  torch::manual_seed(1);
  model::CstModel m(cfg);
  std::vector<double> one, step[2];
  for (int64_t round = 0; round < rounds; ++round) {  // a step is seconds long: no warm-up
    world.barrier();
    one.push_back(r == 0 ? balance_step(m, s, nullptr, false, count) : 0.0);
    for (int i = 0; i < 2; ++i) {
      world.barrier();
      step[i].push_back(balance_step(m, s, group.get(), i == 1, count));
    }
  }
  if (r == 0)
    std::printf(
        "\n| training step | CPU s per rank | max/mean | one rank / (S x max) | one rank / sum |\n"
        "|---|---|---|---|---|\n");
  std::sort(one.begin(), one.end());
  const double t1 = one[one.size() / 2];
  for (int i = 0; i < 2; ++i) {
    std::sort(step[i].begin(), step[i].end());
    const std::vector<double> per_rank = gather_to_root(world, step[i][step[i].size() / 2]);
    if (r == 0)
      std::printf("| %s | %s | %.3f | %.3f | %.3f |\n", names[i], joined(per_rank, 1, "%.2f").c_str(),
                  max_over_mean(per_rank), t1 / (S * *std::max_element(per_rank.begin(), per_rank.end())),
                  t1 / sum_of(per_rank));
  }
  if (r == 0) std::printf("one rank, whole sequence: %.2f CPU s\n", t1);
}

}  // namespace cst::bench
