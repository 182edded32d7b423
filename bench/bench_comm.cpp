// bench_comm: communication benchmarks, run under mpirun with W ranks.
//
//   mpirun -np 2 bench_comm [--backend mpi] [--min-bytes 1024] [--max-bytes 67108864]
//                           [--preset tiny_lm] [--layers 0] [--batch 4] [--seq 0] [--steps 6]
//                           [--first-bucket-mb 1] [--bucket-mb 25] [--progress-sleep-us 0] [--verbose]
//
// 1. All-reduce bandwidth over message sizes (float32 sum), nccl-tests style: time is the
//    slowest rank's mean per call; algbw = bytes / time; busbw = algbw * 2(W-1)/W, the traffic
//    each link carries in a ring all-reduce (comparable across W; see nccl-tests PERFORMANCE.md).
// 2. Overlap of gradient all-reduce with backward for one CST training step (forward, loss,
//    backward, GradReducer::finalize; same data-independent work on every rank), three ways:
//      none:    no communication (the compute-only step time),
//      serial:  GradReducer with overlap = false (every bucket launched in finalize),
//      overlap: GradReducer with overlap = true (buckets launched from autograd hooks).
//    comm = the all-reduces' own run time, exposed = the time finalize waited for them,
//    hidden = 1 - exposed / comm (the share of all-reduce time hidden behind backward).
//    The modes run interleaved, one step each per round; each column is the median over rounds
//    of the slowest rank's time.
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <vector>

#include "comm/communicator.h"
#include "comm/factory.h"
#include "comm/mpi.h"
#include "comm/mpi_communicator.h"
#include "comm/reducer.h"
#include "launcher/tool_main.h"
#include "model/config.h"
#include "model/loss.h"
#include "model/model.h"

namespace po = boost::program_options;
using namespace cst;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void bandwidth_table(comm::Communicator& c, int64_t min_bytes, int64_t max_bytes) {
  const int W = c.size();
  if (c.rank() == 0) {
    std::printf("# all_reduce(sum) float32, %d ranks, backend %s\n", W, c.backend());
    std::printf("# %12s %12s %10s %11s %11s %8s\n", "size(B)", "count", "time(us)", "algbw(GB/s)", "busbw(GB/s)",
                "iters");
  }
  for (int64_t bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
    const int64_t count = bytes / 4;
    at::Tensor t = at::ones({count}, at::kFloat);
    for (int i = 0; i < 3; ++i) c.all_reduce(t, comm::ReduceOp::kSum);  // warm-up
    // Iterations: enough for ~0.2 s at the warm-up rate, agreed on by all ranks.
    c.barrier();
    auto t0 = Clock::now();
    c.all_reduce(t, comm::ReduceOp::kSum);
    const double one = c.all_reduce_scalar(seconds_since(t0), comm::ReduceOp::kMax);
    const int64_t iters = std::clamp<int64_t>(static_cast<int64_t>(0.2 / std::max(one, 1e-6)), 5, 2000);
    c.barrier();
    t0 = Clock::now();
    for (int64_t i = 0; i < iters; ++i) c.all_reduce(t, comm::ReduceOp::kSum);
    const double dt = c.all_reduce_scalar(seconds_since(t0) / iters, comm::ReduceOp::kMax);
    const double algbw = bytes / dt / 1e9, busbw = algbw * 2.0 * (W - 1) / W;
    if (c.rank() == 0)
      std::printf("  %12lld %12lld %10.1f %11.3f %11.3f %8lld\n", static_cast<long long>(bytes),
                  static_cast<long long>(count), dt * 1e6, algbw, busbw, static_cast<long long>(iters));
  }
}

struct StepTimes {
  double step = 0, backward = 0, comm = 0, exposed = 0;
  int launched_in_backward = 0, buckets = 0;
};

// One training step (forward, loss, backward, finalize) with `reducer` (null: no communication);
// the slowest rank's times.
StepTimes one_step(comm::Communicator& c, model::CstModel& net, const at::Tensor& ids, comm::GradReducer* reducer,
                   int64_t step) {
  net->zero_grad();
  c.barrier();
  auto t0 = Clock::now();
  at::Tensor loss = model::lm_loss(net->forward(ids), ids).mean();
  if (reducer) reducer->prepare_for_backward(true);
  auto tb = Clock::now();
  loss.backward();
  const double bwd = seconds_since(tb);
  if (reducer) reducer->finalize(step);
  const double total = seconds_since(t0);
  StepTimes t;
  at::Tensor v = at::tensor({total, bwd, reducer ? reducer->last_stats().comm_seconds : 0.0,
                             reducer ? reducer->last_stats().wait_seconds : 0.0},
                            at::kDouble);
  c.all_reduce(v, comm::ReduceOp::kMax);
  t.step = v[0].item<double>(), t.backward = v[1].item<double>();
  t.comm = v[2].item<double>(), t.exposed = v[3].item<double>();
  if (reducer) {
    t.launched_in_backward = reducer->last_stats().buckets_launched_in_backward;
    t.buckets = reducer->last_stats().buckets;
  }
  return t;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// The three modes interleaved step by step (so that background load hits them alike); the
// median over `steps` rounds after one warm-up round.
void overlap_table(comm::Communicator& c, model::ModelConfig cfg, int64_t batch, int64_t seq, int steps,
                   comm::ReducerOptions ro, bool verbose) {
  at::manual_seed(1);
  model::CstModel net(cfg);
  int64_t bytes = 0;
  for (auto& p : net->parameters()) bytes += p.numel() * 4;
  ro.overlap = false;
  comm::GradReducer serial(c, *net, ro);
  ro.overlap = true;
  comm::GradReducer overlap(c, *net, ro);
  overlap.broadcast_parameters(cfg.hash());
  at::manual_seed(7 + c.rank());
  at::Tensor ids = at::randint(cfg.vocab_size, {batch, seq}, at::kLong);
  const std::vector<std::pair<const char*, comm::GradReducer*>> modes = {
      {"none", nullptr}, {"serial", &serial}, {"overlap", &overlap}};
  std::vector<std::vector<StepTimes>> times(modes.size());
  for (int round = -1; round < steps; ++round)
    for (size_t m = 0; m < modes.size(); ++m) {
      StepTimes t = one_step(c, net, ids, modes[m].second, round);
      if (round >= 0) times[m].push_back(t);
    }
  if (c.rank() != 0) return;
  if (verbose)
    for (int r = 0; r < steps; ++r)
      for (size_t m = 0; m < modes.size(); ++m)
        std::printf("round %d %-8s step %.1f bwd %.1f comm %.1f exposed %.1f\n", r, modes[m].first,
                    times[m][r].step * 1e3, times[m][r].backward * 1e3, times[m][r].comm * 1e3,
                    times[m][r].exposed * 1e3);
  std::printf("\n# overlap of gradient all-reduce with backward: %d ranks, backend %s\n", c.size(), c.backend());
  std::printf(
      "# model: d_model %lld, layers %lld, vocab %lld, N %lld, L %lld; batch %lld; %.2f MB of "
      "gradients in %zu buckets (first %.2f MiB, then %.2f MiB); median of %d interleaved steps\n",
      static_cast<long long>(cfg.d_model), static_cast<long long>(cfg.n_layers), static_cast<long long>(cfg.vocab_size),
      static_cast<long long>(seq), static_cast<long long>(cfg.slice_len), static_cast<long long>(batch), bytes / 1e6,
      overlap.bucket_layout().size(), ro.first_bucket_bytes / 1048576.0, ro.bucket_bytes / 1048576.0, steps);
  std::printf("# %-8s %9s %12s %9s %12s %8s %18s\n", "mode", "step(ms)", "backward(ms)", "comm(ms)", "exposed(ms)",
              "hidden", "launched-in-bwd");
  for (size_t m = 0; m < modes.size(); ++m) {
    auto col = [&](double StepTimes::*f) {
      std::vector<double> v;
      for (const auto& t : times[m]) v.push_back(t.*f * 1e3);
      return median(v);
    };
    const double comm_ms = col(&StepTimes::comm), exposed_ms = col(&StepTimes::exposed);
    if (modes[m].second == nullptr)
      std::printf("  %-8s %9.1f %12.1f %9s %12s %8s %18s\n", modes[m].first, col(&StepTimes::step),
                  col(&StepTimes::backward), "-", "-", "-", "-");
    else
      std::printf("  %-8s %9.1f %12.1f %9.1f %12.1f %7.0f%% %15d/%d\n", modes[m].first, col(&StepTimes::step),
                  col(&StepTimes::backward), comm_ms, exposed_ms,
                  comm_ms > 0 ? 100.0 * std::clamp(1.0 - exposed_ms / comm_ms, 0.0, 1.0) : 0.0,
                  times[m].back().launched_in_backward, times[m].back().buckets);
  }
}

}  // namespace

int main(int argc, char** argv) {
  comm::MpiEnvironment mpi(argc, argv);
  try {
    std::string backend = "mpi", preset = "tiny_lm";
    int64_t min_bytes = 1024, max_bytes = int64_t{64} << 20, layers = 0, batch = 4, seq = 0;
    int steps = 6;
    double first_mb = 1.0, bucket_mb = 25.0;
    int sleep_us = 0;
    po::options_description desc("bench_comm options");
    desc.add_options()("help", "this help")("verbose", "also print every round's times")(
        "backend", po::value(&backend)->default_value(backend), "auto | local | mpi | nccl")(
        "min-bytes", po::value(&min_bytes)->default_value(min_bytes), "smallest all-reduce message")(
        "max-bytes", po::value(&max_bytes)->default_value(max_bytes), "largest all-reduce message (x4 steps)")(
        "preset", po::value(&preset)->default_value(preset), "model preset for the overlap table")(
        "layers", po::value(&layers)->default_value(layers), "override n_layers (0: the preset's)")(
        "batch", po::value(&batch)->default_value(batch), "sequences per rank per step")(
        "seq", po::value(&seq)->default_value(seq), "sequence length (0: the preset's max_seq_len)")(
        "steps", po::value(&steps)->default_value(steps), "timed rounds of the three modes (after 1 warm-up)")(
        "first-bucket-mb", po::value(&first_mb)->default_value(first_mb), "GradReducer first bucket, MiB")(
        "bucket-mb", po::value(&bucket_mb)->default_value(bucket_mb), "GradReducer later buckets, MiB")(
        "progress-sleep-us", po::value(&sleep_us)->default_value(sleep_us),
        "mpi: poll MPI_Iallreduce with this sleep instead of blocking (MpiCommunicator::Options)");
    po::variables_map vm;
    cst::reject_option_placeholders(argc, argv);
    po::store(po::parse_command_line(argc, argv, desc), vm);
    if (vm.count("help")) {
      if (mpi.rank() == 0) std::cout << desc << "\n";
      return 0;
    }
    po::notify(vm);
    CST_INPUT_CHECK(min_bytes >= 4 && max_bytes >= min_bytes && steps > 0 && batch > 0,
                    "bad sizes: min-bytes " << min_bytes << ", max-bytes " << max_bytes << ", steps " << steps
                                            << ", batch " << batch);
    std::unique_ptr<comm::Communicator> c;
    if (backend == "mpi") {
      comm::MpiCommunicator::Options mo;
      mo.progress_sleep_us = sleep_us;
      c = std::make_unique<comm::MpiCommunicator>(mpi, mo);
    } else {
      c = comm::make_communicator(&mpi, backend);
    }
    model::ModelConfig cfg = model::ModelConfig::preset(preset);
    cfg.dropout = 0.0;
    if (layers > 0) cfg.n_layers = layers;
    if (seq <= 0) seq = cfg.max_seq_len;
    cfg.validate();
    comm::ReducerOptions ro;
    ro.first_bucket_bytes = static_cast<int64_t>(first_mb * 1048576);
    ro.bucket_bytes = static_cast<int64_t>(bucket_mb * 1048576);
    bandwidth_table(*c, min_bytes, max_bytes);
    overlap_table(*c, cfg, batch, seq, steps, ro, vm.count("verbose") > 0);
    return 0;
  } catch (const InputError& e) {
    std::cerr << "bench_comm: rank " << mpi.rank() << " (host " << mpi.host() << "): " << e.what() << "\n";
    mpi.abort(2);
  } catch (const std::exception& e) {
    std::cerr << "bench_comm: rank " << mpi.rank() << " (host " << mpi.host() << "): " << e.what() << "\n";
    mpi.abort(1);
  }
}
