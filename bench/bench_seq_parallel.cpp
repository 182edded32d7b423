// bench_seq_parallel: CST sequence parallelism (docs/SEQUENCE_PARALLEL.md), run under mpirun.
//
//   mpirun -np 8 bench_seq_parallel --mode comm --preset pg19_longctx --n 16384,131072
//   mpirun -np 4 bench_seq_parallel --mode memory --preset tiny_lm --n 16384
//   mpirun -np 2 bench_seq_parallel --mode speed --preset tiny_lm --n 2048 --batch 4
//   mpirun -np 4 --bind-to none bench_seq_parallel --mode balance --preset tiny_lm --n 65536 --slice-len 8 --layers 8
//   mpirun -np 8 --oversubscribe --bind-to none bench_seq_parallel --mode scale --n 262144 --slice-len 64 --steps 1
//
// comm:   one CSA layer of the preset, forward + backward on this rank's chunk of one sequence
//         of N tokens (S = W ranks). The bytes each rank receives are counted at the
//         communicator (CountingCommunicator), the largest over ranks (an interior rank) is
//         printed beside the formula, halo + slice embeddings:
//           per pass: sides * e * D (the local input, projected into K and V on arrival)
//           + (S - 1) * (N / S / L) * D values (x 4 bytes), sides = 1 causal, 2 bidirectional;
//           causal with the rows split by work, + (S - 1) * (N / S / L) * D again (the global
//           attention rows returned to their owners); backward moves the same again;
//         and beside ring attention (context parallelism) for the same N: each rank receives the
//         K and V of every other chunk, (S - 1) * (N / S) * 2D values in forward, twice that in
//         backward (K, V again and their gradients).
// memory: the peak CPU memory of one training step (forward, LM/MLM loss, backward; parameters
//         included), per rank, at S = 1, 2, 4 (those dividing W) for the same N, without and with
//         activation checkpointing. Only the ranks of one group run a configuration (the others
//         wait), so the machine holds one group at a time.
// speed:  tokens/s of a training step (forward, loss, backward, gradient all-reduce over all W
//         ranks) on the same global batch: data parallel (S = 1, G / W sequences per rank) vs
//         sequence parallel (S = W, each rank a 1/S chunk of G sequences). The two run
//         interleaved; each is the median over rounds of the slowest rank.
// overlap: exposed communication per layer (seconds blocked in the exchanges), blocking vs
//         overlapped schedule of the same layer, alternating (bench/seq_parallel_overlap.h).
// balance: causal global attention, each rank's own query slices vs the rows split by work, in
//         one run: per-rank CPU time of the attention and of a training step, per-rank pairs
//         (bench/seq_parallel_balance.h).
// scale:  training steps with block checkpointing at one N over S = 1, 2, 4, 8 ranks (--sp) beside
//         one rank at N / S: per-rank CPU time, balance, efficiency, peak memory and MFU ratios
//         (bench/seq_parallel_scale.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <vector>

#include "bench/rank_stats.h"
#include "bench/seq_parallel_balance.h"
#include "bench/seq_parallel_overlap.h"
#include "bench/seq_parallel_scale.h"
#include "comm/counting_communicator.h"
#include "comm/factory.h"
#include "comm/mpi.h"
#include "comm/reducer.h"
#include "model/attention.h"
#include "model/loss.h"
#include "model/memory.h"
#include "model/model.h"
#include "model/seq_parallel.h"

namespace po = boost::program_options;
using namespace cst;
using bench::chunk;
using bench::make_sample;
using bench::mib;
using bench::Sample;
using Clock = std::chrono::steady_clock;
using torch::Tensor;

namespace {

struct Options {
  std::string mode = "comm", preset = "tiny_lm", ns = "16384", sps = "1,2,4,8";
  int64_t batch = 1, layers = 0, vocab = 0, steps = 5, slice_len = 0;
  int threads = 1;
  double dropout = 0.0;
};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) v.push_back(std::stoll(item));
  return v;
}

model::ModelConfig config_for(const Options& o, int64_t N) {
  model::ModelConfig c = model::ModelConfig::preset(o.preset);
  if (o.layers > 0) c.n_layers = o.layers;
  if (o.vocab > 0) c.vocab_size = o.vocab;
  if (o.slice_len > 0) c.slice_len = o.slice_len;
  c.max_seq_len = std::max(c.max_seq_len, N);
  c.dropout = o.dropout;
  return c;
}

// ---- comm -----------------------------------------------------------------------------------

void comm_table(comm::Communicator& world, const Options& o) {
  const int S = world.size(), r = world.rank();
  auto group = world.split(0, r);
  comm::CountingCommunicator counting(*group);
  if (r == 0) {
    const model::ModelConfig c = config_for(o, 0);
    std::printf("# one CSA layer, %s shape: D=%ld H=%ld L=%ld alpha=%.1f e=%ld %s; B=%ld; S=%d ranks; float32\n",
                o.preset.c_str(), (long)c.d_model, (long)c.n_heads, (long)c.slice_len, c.alpha, (long)c.extension(),
                c.causal() ? "causal" : "bidirectional", (long)o.batch, S);
    std::printf("# bytes received per rank per layer (the largest over ranks)\n");
    std::printf(
        "| N | N/S | CSA fwd measured | CSA fwd formula | CSA fwd+bwd measured | CSA fwd+bwd formula | "
        "ring fwd | ring fwd+bwd | ring / CSA fwd | ring / CSA fwd+bwd |\n|---|---|---|---|---|---|---|---|---|---|\n");
  }
  for (int64_t N : parse_list(o.ns)) {
    const model::ModelConfig cfg = config_for(o, N);
    const int64_t T = N / S, B = o.batch, D = cfg.d_model, e = cfg.extension(), L = cfg.slice_len;
    CST_INPUT_CHECK(N % S == 0 && T % L == 0, "--n " << N << ": N / S must be a multiple of L = " << L);
    torch::manual_seed(1);
    model::CompositeSliceAttention layer(cfg);
    Tensor x = torch::randn({B, T, D}).requires_grad_(true);
    Tensor mask = torch::ones({B, T}, torch::kBool);
    model::LayerContext ctx;
    ctx.local = torch::randn({cfg.window(), D}) * 0.02;
    ctx.global = torch::randn({cfg.max_slices(), D}) * 0.02;
    ctx.sp = std::make_shared<model::SeqChunk>(
        model::SeqChunk::make(counting, mask, false, counting.rank() * T, L, e, cfg.causal()));
    counting.reset();  // the per-forward mask exchange is not a layer's
    Tensor y = layer.forward(x, mask, ctx);
    const double fwd = static_cast<double>(counting.total().received_bytes);
    (y * torch::randn_like(y)).sum().backward();
    const double both = static_cast<double>(counting.total().received_bytes);
    const std::vector<double> m = world.all_reduce_doubles({fwd, both}, comm::ReduceOp::kMax);
    const double sides = cfg.causal() ? 1 : 2, f = 4;
    const double rows = ctx.sp->balance_global ? 2 : 1;  // causal rows split by work return to their owners
    const double formula = (sides * e * D + rows * (S - 1) * (T / L) * D) * B * f;
    const double ring = static_cast<double>(S - 1) * T * 2 * D * B * f;
    if (r == 0)
      std::printf("| %ld | %ld | %.3f MiB | %.3f MiB | %.3f MiB | %.3f MiB | %.1f MiB | %.1f MiB | %.0fx | %.0fx |\n",
                  (long)N, (long)T, mib(m[0]), mib(formula), mib(m[1]), mib(2 * formula), mib(ring), mib(3 * ring),
                  ring / m[0], 3 * ring / m[1]);
  }
}

// ---- memory ---------------------------------------------------------------------------------

// Forward, loss (normalised by the global count; the trainer's chunked head loss), backward on
// this rank's chunk.
void train_pass(model::CstModel& m, const Sample& s, int r, int S, double count) {
  (m->loss(chunk(s.ids, r, S), Tensor(), chunk(s.labels, r, S)).sum / count).backward();
}

void memory_table(comm::Communicator& world, const Options& o) {
  const int W = world.size(), r = world.rank();
  const int64_t N = parse_list(o.ns).front();
  const model::ModelConfig base = config_for(o, N);
  if (r == 0) {
    std::printf(
        "# peak memory of one training step per rank (parameters included), %s shape: D=%ld layers=%ld "
        "V=%ld L=%ld alpha=%.1f; N=%ld, batch %ld\n",
        o.preset.c_str(), (long)base.d_model, (long)base.n_layers, (long)base.vocab_size, (long)base.slice_len,
        base.alpha, (long)N, (long)o.batch);
    std::printf(
        "| S | tokens per rank | checkpointing | peak MiB per rank | S=1 / this | none / block |\n"
        "|---|---|---|---|---|---|\n");
  }
  std::vector<std::pair<int, double>> none_peaks;
  for (bool ckpt : {false, true}) {
    double s1 = 0;
    for (int S : {1, 2, 4}) {
      if (W % S != 0) continue;
      auto group = world.split(r / S, r);
      double peak = 0;
      if (r < S) {  // group 0 only
        model::ModelConfig cfg = base;
        cfg.activation_checkpointing = ckpt;
        torch::manual_seed(1);
        model::CstModel m(cfg);
        m->set_sequence_parallel(group.get());
        const Sample s = make_sample(cfg, o.batch, N);
        const double count = static_cast<double>(s.labels.ne(-100).sum().item<int64_t>());
        double params = 0;
        for (const auto& p : m->parameters()) params += static_cast<double>(p.numel() * p.element_size());
        model::MemoryTracker t;
        train_pass(m, s, group->rank(), S, count);
        peak = params + static_cast<double>(t.peak_bytes());
      }
      peak = world.all_reduce_scalar(peak, comm::ReduceOp::kMax);
      if (S == 1) s1 = peak;
      double vs_none = 0;
      if (!ckpt)
        none_peaks.emplace_back(S, peak);
      else
        for (auto& [s, p] : none_peaks)
          if (s == S) vs_none = p / peak;
      if (r == 0)
        std::printf("| %d | %ld | %s | %.0f | %.2f | %s |\n", S, (long)(N / S), ckpt ? "block" : "none", mib(peak),
                    s1 / peak, ckpt ? std::to_string(vs_none).substr(0, 4).c_str() : "");
    }
  }
}

// ---- speed ----------------------------------------------------------------------------------

void speed_table(comm::Communicator& world, const Options& o) {
  const int W = world.size(), r = world.rank();
  const int64_t N = parse_list(o.ns).front(), G = o.batch;
  CST_INPUT_CHECK(G % W == 0, "--batch " << G << " must be a multiple of the " << W << " ranks");
  const model::ModelConfig cfg = config_for(o, N);
  auto group = world.split(0, r);  // S = W
  const Sample all = make_sample(cfg, G, N);
  const double count = static_cast<double>(all.labels.ne(-100).sum().item<int64_t>());
  // dp: rows [r*G/W, (r+1)*G/W) whole; sp: all G rows, chunk r of W.
  const Sample dp{all.ids.narrow(0, r * (G / W), G / W), all.labels.narrow(0, r * (G / W), G / W)};
  struct Mode {
    const char* name;
    model::CstModel m{nullptr};
    std::unique_ptr<comm::GradReducer> reducer;
    std::vector<double> times;
  };
  Mode modes[2] = {{"data parallel (S = 1)", nullptr, nullptr, {}},
                   {"sequence parallel (S = W)", nullptr, nullptr, {}}};
  for (int i = 0; i < 2; ++i) {
    torch::manual_seed(1);
    modes[i].m = model::CstModel(cfg);
    if (i == 1) modes[i].m->set_sequence_parallel(group.get());
    modes[i].reducer = std::make_unique<comm::GradReducer>(world, *modes[i].m);
  }
  for (int64_t round = 0; round <= o.steps; ++round) {  // round 0 warms up
    for (int i = 0; i < 2; ++i) {
      Mode& md = modes[i];
      world.barrier();
      const auto t0 = Clock::now();
      md.reducer->prepare_for_backward(true);
      if (i == 0)
        train_pass(md.m, dp, 0, 1, count / W);  // the reducer averages over W ranks
      else
        train_pass(md.m, all, group->rank(), W, count / W);
      md.reducer->finalize(round);
      md.m->zero_grad();
      const double dt = world.all_reduce_scalar(seconds_since(t0), comm::ReduceOp::kMax);
      if (round > 0) md.times.push_back(dt);
    }
  }
  if (r != 0) return;
  std::printf(
      "# training step (forward, loss, backward, gradient all-reduce over %d ranks), %s shape, N=%ld, "
      "global batch %ld, %d thread(s) per rank; median of %ld rounds\n",
      W, o.preset.c_str(), (long)N, (long)G, at::get_num_threads(), (long)o.steps);
  std::printf("| mode | step s | tokens/s |\n|---|---|---|\n");
  double tps[2];
  for (int i = 0; i < 2; ++i) {
    std::vector<double> t = modes[i].times;
    std::sort(t.begin(), t.end());
    const double med = t[t.size() / 2];
    tps[i] = static_cast<double>(G * N) / med;
    std::printf("| %s | %.3f | %.0f |\n", modes[i].name, med, tps[i]);
  }
  std::printf("sequence parallel / data parallel tokens/s: %.2f\n", tps[1] / tps[0]);
}

}  // namespace

int main(int argc, char** argv) {
  comm::MpiEnvironment mpi(argc, argv);
  Options o;
  po::options_description desc("bench_seq_parallel options");
  desc.add_options()("help,h", "show this help")("mode", po::value(&o.mode)->default_value(o.mode),
                                                 "comm | memory | speed | overlap | balance | scale")(
      "preset", po::value(&o.preset)->default_value(o.preset), "model shape: tiny_lm, tiny_mlm, pg19_longctx, ...")(
      "n", po::value(&o.ns)->default_value(o.ns), "sequence length(s) N, comma-separated (comm: a table row each)")(
      "batch", po::value(&o.batch)->default_value(o.batch), "sequences (speed: the global batch)")(
      "layers", po::value(&o.layers)->default_value(o.layers), "override the preset's layers (0: keep)")(
      "vocab", po::value(&o.vocab)->default_value(o.vocab), "override the preset's vocabulary (0: keep)")(
      "steps", po::value(&o.steps)->default_value(o.steps), "speed, overlap, balance, scale: timed rounds")(
      "sp", po::value(&o.sps)->default_value(o.sps), "scale: sequence-parallel group sizes, comma-separated")(
      "slice-len", po::value(&o.slice_len)->default_value(o.slice_len), "override the preset's slice_len (0: keep)")(
      "threads", po::value(&o.threads)->default_value(o.threads), "intra-op threads per rank")(
      "dropout", po::value(&o.dropout)->default_value(o.dropout),
      "the model's dropout while training (attention included)");
  int code = 0;
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
    if (vm.count("help")) {
      if (mpi.rank() == 0) std::cout << desc << "\n";
      return 0;
    }
    at::set_num_threads(o.threads);
    auto world = comm::make_communicator(&mpi, "auto");
    if (o.mode == "comm")
      comm_table(*world, o);
    else if (o.mode == "memory")
      memory_table(*world, o);
    else if (o.mode == "speed")
      speed_table(*world, o);
    else if (o.mode == "overlap")
      bench::overlap_table(
          *world, {o.preset, parse_list(o.ns), o.batch, o.steps, [&o](int64_t N) { return config_for(o, N); }});
    else if (o.mode == "balance")
      bench::balance_tables(*world, config_for(o, parse_list(o.ns).front()), o.preset, parse_list(o.ns).front(),
                            o.batch, o.steps);
    else if (o.mode == "scale") {
      const int64_t N = parse_list(o.ns).front();
      std::vector<int> sps;
      for (int64_t S : parse_list(o.sps)) sps.push_back(static_cast<int>(S));
      bench::scale_table(*world, {o.preset, config_for(o, N), N, sps, o.batch, o.steps});
    } else
      CST_THROW_INPUT("--mode '" << o.mode << "' is not one of comm, memory, speed, overlap, balance, scale");
    world->barrier();
  } catch (const InputError& e) {
    std::fprintf(stderr, "[rank %d] error: %s\n", mpi.rank(), e.what());
    code = 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rank %d] error: %s\n", mpi.rank(), e.what());
    code = 1;
  }
  if (code != 0 && mpi.size() > 1) mpi.abort(code);
  return code;
}
