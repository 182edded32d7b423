#include "bench/seq_parallel_overlap.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

#include "common/error.h"
#include "model/attention.h"
#include "model/seq_parallel.h"

namespace cst::bench {
namespace {

using Clock = std::chrono::steady_clock;
using torch::Tensor;

// What one round measures on one rank, in seconds (gathers_overlapped: a count). backward: in
// the backward exchanges' nodes, of which scatter: waiting for the gather's reduce-scatter.
struct Round {
  double halo = 0, gather = 0, backward = 0, scatter = 0, layer = 0, overlapped = 0;
  std::vector<double> list() const { return {halo, gather, backward, scatter, layer, overlapped}; }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// One forward + backward of `layer` on this rank's chunk x, scheduled as `overlap` says.
Round run_round(model::CompositeSliceAttention& layer, const model::ModelConfig& cfg, comm::Communicator& group,
                const Tensor& x, const model::LayerContext& base, bool overlap) {
  const int64_t T = x.size(1);
  Tensor mask = torch::ones({x.size(0), T}, torch::kBool);
  model::LayerContext ctx = base;
  ctx.sp = std::make_shared<model::SeqChunk>(
      model::SeqChunk::make(group, mask, false, group.rank() * T, cfg.slice_len, cfg.extension(), cfg.causal()));
  model::SeqGroup& g = *ctx.sp->group;
  g.overlap = overlap;
  group.barrier();
  const auto t0 = Clock::now();
  Tensor y = layer.forward(x, mask, ctx);
  (y * y).sum().backward();
  Round r;
  r.layer = std::chrono::duration<double>(Clock::now() - t0).count();
  const model::ExchangeTimes& t = *g.times;
  r.halo = t.halo_wait_s, r.gather = t.gather_wait_s, r.backward = t.backward_s, r.scatter = t.gather_grad_wait_s;
  r.overlapped = static_cast<double>(t.gathers_overlapped);
  return r;
}

const char* what_overlaps(model::Composition c) {
  switch (c) {
    case model::Composition::kLocalGlobal: return "halo: q/k/v projections; gather (and its backward): o_proj(Y_l)";
    case model::Composition::kParallel:
      return "halo: q/k/v projections; gather (and its backward): the whole local branch";
    case model::Composition::kGlobalLocal:
      return "halo: q/k/v projections; gather: nothing (local attention reads the global output)";
  }
  return "?";
}

}  // namespace

void overlap_table(comm::Communicator& world, const OverlapOptions& o) {
  const int S = world.size(), rank = world.rank();
  auto group = world.split(0, rank);
  const model::Composition comps[] = {model::Composition::kLocalGlobal, model::Composition::kParallel,
                                      model::Composition::kGlobalLocal};
  if (rank == 0) {
    const model::ModelConfig c = o.config(o.ns.at(0));
    std::printf(
        "# exposed communication of one CSA layer (forward + backward), %s shape: D=%ld H=%ld L=%ld e=%ld %s; "
        "B=%ld; S=%d ranks; %s; ms, median of %ld rounds of the slowest rank\n",
        o.preset.c_str(), (long)c.d_model, (long)c.n_heads, (long)c.slice_len, (long)c.extension(),
        c.causal() ? "causal" : "bidirectional", (long)o.batch, S, model::to_string(c.csa_kernel), (long)o.rounds);
    std::printf(
        "| N | composition | schedule | halo wait | gather wait | forward exposed | backward exchanges | "
        "of which reduce-scatter wait | layer | overlapped with |\n|---|---|---|---|---|---|---|---|---|---|\n");
  }
  for (int64_t N : o.ns) {
    for (model::Composition comp : comps) {
      model::ModelConfig cfg = o.config(N);
      cfg.composition = comp;
      const int64_t T = N / S;
      CST_INPUT_CHECK(N % S == 0 && T % cfg.slice_len == 0,
                      "--n " << N << ": N / S must be a multiple of L = " << cfg.slice_len);
      torch::manual_seed(1);
      model::CompositeSliceAttention layer(cfg);
      Tensor x = torch::randn({o.batch, T, cfg.d_model}).requires_grad_(true);
      model::LayerContext base;
      base.local = torch::randn({cfg.window(), cfg.d_model}) * 0.02;
      base.global = torch::randn({cfg.max_slices(), cfg.d_model}) * 0.02;
      std::vector<std::vector<Round>> rounds(2);  // [blocking, overlapped]
      for (int64_t i = 0; i <= o.rounds; ++i)
        for (int s = 0; s < 2; ++s) {
          Round r = run_round(layer, cfg, *group, x, base, s == 1);
          const std::vector<double> m = world.all_reduce_doubles(r.list(), comm::ReduceOp::kMax);
          if (i > 0) rounds[s].push_back({m[0], m[1], m[2], m[3], m[4], m[5]});
        }
      if (rank != 0) continue;
      for (int s = 0; s < 2; ++s) {
        auto med = [&](double Round::*f) {
          std::vector<double> v;
          for (const Round& r : rounds[s]) v.push_back(r.*f * 1e3);
          return median(v);
        };
        // A composition whose gather should have had work beside it, but none ran: say so.
        const bool none_ran = s == 1 && med(&Round::overlapped) == 0 && comp != model::Composition::kGlobalLocal;
        std::printf("| %ld | %s | %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f | %s |\n", (long)N,
                    model::to_string(comp), s == 0 ? "blocking" : "overlapped", med(&Round::halo), med(&Round::gather),
                    med(&Round::halo) + med(&Round::gather), med(&Round::backward), med(&Round::scatter),
                    med(&Round::layer),
                    s == 0 ? "-" : (none_ran ? "nothing ran beside the gather" : what_overlaps(comp)));
      }
    }
  }
}

}  // namespace cst::bench
