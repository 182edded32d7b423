// bench_loader: throughput of the data loader alone (LM and MLM, samples/s and MB/s) next to
// the rate at which a training step of the tiny and base configs consumes samples, measured in
// the same run. ratio = loader / training: above 1 the loader keeps up with one rank.
// Second table: the same shards read as one corpus and as a blend of two corpora (0.7 / 0.3,
// dataio/blend.h), alternated round by round; blend / single = the blend's cost.
//
//   bench_loader [--batch 32] [--steps 300] [--rounds 5] [--train-batch 8] [--train-steps 3] [--device cpu]
//
// The loader reads synthetic shards written to a temporary folder first (so the page cache is
// warm: this measures the loader, not the disk). MB/s counts the batch arrays delivered (int32
// ids; MLM also labels, mask and segments). Training: forward, loss, backward, AdamW step.
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <tuple>

#include "common/error.h"
#include "dataio/blend.h"
#include "dataio/format.h"
#include "dataio/loader.h"
#include "dataio/rng.h"
#include "launcher/tool_main.h"
#include "model/config.h"
#include "model/loss.h"
#include "model/model.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using namespace cst;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::vector<int32_t> tokens(int64_t n, int64_t vocab, uint64_t seed, int32_t lo) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    t[static_cast<size_t>(i)] = lo + static_cast<int32_t>(dataio::counter_hash(seed, static_cast<uint64_t>(i)) %
                                                          static_cast<uint64_t>(vocab - lo));
  return t;
}

dataio::ShardMeta meta(int64_t vocab) {
  dataio::ShardMeta m;
  m.vocab_size = vocab;
  m.created_by = "bench_loader";
  m.special = {0, 1, 2, 3, 4};
  return m;
}

// Synthetic shards: LM 4 x 2M tokens, 2 in lm/a and 2 in lm/b; MLM 2 x 8192 rows of s tokens,
// one in mlm/a and one in mlm/b. a and b are the corpora of the blend.
void write_shards(const fs::path& dir, int64_t lm_vocab, int64_t mlm_vocab, int64_t s) {
  for (const char* sub : {"lm/a", "lm/b", "mlm/a", "mlm/b"}) fs::create_directories(dir / sub);
  for (int i = 0; i < 4; ++i) {
    const int64_t n = 2 << 20;
    std::vector<int64_t> offsets;
    for (int64_t at = 0; at < n; at += 100000) offsets.push_back(at);
    offsets.push_back(n);
    dataio::write_lm_shard((dir / "lm" / (i < 2 ? "a" : "b") / ("shard-" + std::to_string(i) + ".h5")).string(),
                           meta(lm_vocab), tokens(n, lm_vocab, static_cast<uint64_t>(i), 5), offsets);
  }
  for (int i = 0; i < 2; ++i) {
    const int64_t rows = 8192;
    auto ids = tokens(rows * s, mlm_vocab, 10 + static_cast<uint64_t>(i), 5);
    for (int64_t r = 0; r < rows; ++r) ids[static_cast<size_t>(r * s)] = 2, ids[static_cast<size_t>(r * s + s - 1)] = 3;
    std::vector<int8_t> mask(ids.size(), 1), seg(ids.size(), 0);
    dataio::write_mlm_shard((dir / "mlm" / (i < 1 ? "a" : "b") / ("shard-" + std::to_string(i) + ".h5")).string(),
                            meta(mlm_vocab), rows, s, ids, mask, seg);
  }
}

struct LoaderRate {
  double samples_per_s, mb_per_s;
};

LoaderRate time_loader(dataio::Loader& loader, int steps) {
  for (int i = 0; i < 3; ++i) loader.next();  // fill the pipeline
  const auto t0 = Clock::now();
  double bytes = 0, samples = 0;
  for (int i = 0; i < steps; ++i) {
    auto b = loader.next();
    samples += static_cast<double>(b->rows);
    bytes += static_cast<double>(b->input_ids.size() * 4 + b->labels.size() * 4 + b->attention_mask.size() +
                                 b->segment_ids.size());
  }
  const double s = seconds_since(t0);
  return {samples / s, bytes / s / 1e6};
}

dataio::SourceOptions source_opts(dataio::SampleKind kind, int64_t seq_len) {
  dataio::SourceOptions o;
  o.kind = kind;
  o.seq_len = seq_len;
  return o;
}

// The shards of dir/a and dir/b as one corpus.
std::shared_ptr<dataio::SampleSource> source(const fs::path& dir, dataio::SampleKind kind, int64_t seq_len) {
  std::vector<std::string> files = dataio::list_shards((dir / "a").string());
  for (const std::string& f : dataio::list_shards((dir / "b").string())) files.push_back(f);
  return std::make_shared<dataio::Hdf5Source>(files, source_opts(kind, seq_len));
}

// The same shards as a blend: 0.7 of corpus dir/a, 0.3 of corpus dir/b.
std::shared_ptr<dataio::SampleSource> blend(const fs::path& dir, dataio::SampleKind kind, int64_t seq_len) {
  const auto spec = dataio::parse_blend("0.7 " + (dir / "a").string() + " 0.3 " + (dir / "b").string(), "blend");
  return dataio::open_blend(spec, source_opts(kind, seq_len));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Samples/s of training steps of `cfg` fed from `loader` (batch = loader's rows).
double time_training(const model::ModelConfig& cfg, dataio::Loader& loader, int steps, torch::Device dev) {
  torch::manual_seed(0);
  model::CstModel net(cfg);
  net->to(dev);
  net->train();
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(1e-4));
  double samples = 0;
  Clock::time_point t0;
  for (int i = 0; i <= steps; ++i) {  // step 0 warms up
    if (i == 1) {
      if (dev.is_cuda()) torch::cuda::synchronize();
      t0 = Clock::now();
    }
    auto b = loader.next();
    auto ids = torch::from_blob(b->input_ids.data(), {b->rows, b->cols}, torch::kInt32).to(dev, torch::kInt64);
    torch::Tensor loss;
    if (cfg.task == model::Task::kLm) {
      auto input = ids.narrow(1, 0, b->cols - 1);  // windows of N+1: inputs [:, :N]
      loss = model::lm_loss(net->forward(input), input).mean();
    } else {
      auto mask = torch::from_blob(b->attention_mask.data(), {b->rows, b->cols}, torch::kUInt8).to(dev, torch::kBool);
      auto labels = torch::from_blob(b->labels.data(), {b->rows, b->cols}, torch::kInt32).to(dev, torch::kInt64);
      loss = model::token_loss(net->forward(ids, mask), labels).mean();
    }
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (i >= 1) samples += static_cast<double>(b->rows);
  }
  if (dev.is_cuda()) torch::cuda::synchronize();
  return samples / seconds_since(t0);
}

dataio::LoaderOptions loader_opts(int64_t batch) {
  dataio::LoaderOptions o;
  o.global_batch = batch;
  o.seed = 1;
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 32, train_batch = 8;
  int steps = 300, train_steps = 3, threads = 0, rounds = 5;
  std::string device = "cpu";
  po::options_description desc("bench_loader options");
  desc.add_options()("help,h", "print this help")("batch", po::value(&batch)->default_value(batch),
                                                  "loader batch (samples per next())")(
      "steps", po::value(&steps)->default_value(steps), "loader batches timed")(
      "rounds", po::value(&rounds)->default_value(rounds),
      "single vs blend: alternating rounds of --steps batches (median)")(
      "train-batch", po::value(&train_batch)->default_value(train_batch), "training step batch")(
      "train-steps", po::value(&train_steps)->default_value(train_steps), "training steps timed (after 1 warm-up)")(
      "threads", po::value(&threads)->default_value(threads), "torch intra-op threads (0 = default)")(
      "device", po::value(&device)->default_value(device), "cpu or cuda");
  try {
    po::variables_map vm;
    cst::reject_option_placeholders(argc, argv);
    po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
    po::notify(vm);
    if (vm.count("help")) {
      std::cout << desc << "\n";
      return 0;
    }
    if (threads > 0) torch::set_num_threads(threads);
    const torch::Device dev(device);
    const auto tiny_lm = model::ModelConfig::preset("tiny_lm");
    const auto tiny_mlm = model::ModelConfig::preset("tiny_mlm");
    const auto base_mlm = model::ModelConfig::preset("base_mlm");
    const int64_t n_lm = tiny_lm.max_seq_len, s = base_mlm.max_seq_len;
    CST_CHECK(tiny_mlm.max_seq_len == s, "tiny_mlm and base_mlm differ in sequence length");
    const fs::path dir = fs::temp_directory_path() / ("cst-bench-loader-" + std::to_string(getpid()));
    // MLM ids < both MLM configs' vocabularies, so that one set of shards feeds both.
    write_shards(dir, tiny_lm.vocab_size, std::min(tiny_mlm.vocab_size, base_mlm.vocab_size), s);

    struct Row {
      const char* workload;
      LoaderRate loader;
      const char* model;
      double train;
    };
    std::vector<Row> rows;
    LoaderRate lm, mlm;
    {
      dataio::Loader l(source(dir / "lm", dataio::SampleKind::kLm, n_lm), loader_opts(batch));
      lm = time_loader(l, steps);
    }
    {
      dataio::Loader l(source(dir / "mlm", dataio::SampleKind::kMlm, s), loader_opts(batch));
      mlm = time_loader(l, steps);
    }
    auto train = [&](const model::ModelConfig& cfg, dataio::SampleKind kind, const char* sub, int64_t len) {
      dataio::Loader l(source(dir / sub, kind, len), loader_opts(train_batch));
      return time_training(cfg, l, train_steps, dev);
    };
    rows.push_back({"LM  N=256 (+1)", lm, "tiny_lm", train(tiny_lm, dataio::SampleKind::kLm, "lm", n_lm)});
    rows.push_back({"MLM S=128", mlm, "tiny_mlm", train(tiny_mlm, dataio::SampleKind::kMlm, "mlm", s)});
    rows.push_back({"MLM S=128", mlm, "base_mlm", train(base_mlm, dataio::SampleKind::kMlm, "mlm", s)});

    // One corpus vs a blend of two over the same shards, alternating so that load hits both alike.
    struct BlendRow {
      const char* workload;
      double single, blended;
    };
    std::vector<BlendRow> blend_rows;
    for (auto [name, kind, sub, len] : {std::tuple{"LM  N=256 (+1)", dataio::SampleKind::kLm, "lm", n_lm},
                                        std::tuple{"MLM S=128", dataio::SampleKind::kMlm, "mlm", s}}) {
      std::vector<double> one, two;
      for (int r = 0; r < rounds; ++r) {
        {
          dataio::Loader l(source(dir / sub, kind, len), loader_opts(batch));
          one.push_back(time_loader(l, steps).samples_per_s);
        }
        dataio::Loader l(blend(dir / sub, kind, len), loader_opts(batch));
        two.push_back(time_loader(l, steps).samples_per_s);
      }
      blend_rows.push_back({name, median(one), median(two)});
    }
    fs::remove_all(dir);

    std::printf(
        "loader: batch %lld, %d batches, 1 rank, prefetch 4; training: batch %lld, %d steps, %s, %d threads\n\n",
        static_cast<long long>(batch), steps, static_cast<long long>(train_batch), train_steps, device.c_str(),
        torch::get_num_threads());
    std::printf("| workload | loader samples/s | loader MB/s | config | train step samples/s | ratio |\n");
    std::printf("| --- | ---: | ---: | --- | ---: | ---: |\n");
    for (const Row& r : rows)
      std::printf("| %s | %.0f | %.1f | %s | %.2f | %.0fx |\n", r.workload, r.loader.samples_per_s, r.loader.mb_per_s,
                  r.model, r.train, r.loader.samples_per_s / r.train);
    std::printf(
        "\nsingle corpus vs blend 0.7/0.3 of two corpora (same shards): median of %d alternating rounds of %d "
        "batches\n\n",
        rounds, steps);
    std::printf("| workload | one corpus samples/s | blend samples/s | blend / one |\n| --- | ---: | ---: | ---: |\n");
    for (const BlendRow& r : blend_rows)
      std::printf("| %s | %.0f | %.0f | %.3f |\n", r.workload, r.single, r.blended, r.blended / r.single);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return dynamic_cast<const cst::InputError*>(&e) ? 2 : 1;
  }
}
