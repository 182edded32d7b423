// bench_checkpoint: checkpoint save / resume throughput with each checksum, and the step-time
// cost of saving.
//
//   bench_checkpoint [--dir <new or empty folder>] [--d-model 1024] [--layers 6] [--vocab 8000]
//                    [--steps 8] [--save-every 4] [--seq 32] [--repeats 2] [--threads 0]
//
// One process (W = 1, LocalCommunicator). The model is a CST LM of the given size; its
// checkpoint holds model.h5 (4 B per parameter) and one optimizer shard (8 B per parameter).
// 1. save and resume, once with SHA-256 per file (the version-1 checksum) and once with XXH3-128
//    (version 2, the default), best of --repeats each, and their ratios:
//    save = CheckpointWriter::save, synchronous: HDF5 writes, fsync, checksum of every file,
//    manifest, rename, pruning of the previous one; resume = find_resume_point (manifest, sizes,
//    checksums, each file read once) + restore (load_weights, the optimizer shard, RNG).
//    GB/s = checkpoint bytes / s.
// 2. hash only: each checksum over the files just written (page cache), GB/s.
// 3. step time: a training step (forward, backward, clip, AdamW on one [1, seq] sample) timed
//    over --steps steps with a checkpoint every --save-every steps: none, sync, async. The
//    mean step time includes each save's stall (sync: the whole save; async: the host copy and
//    any slowdown from the writer thread sharing the cores). --threads: intra-op threads of the
//    training step (0 = LibTorch's default); fewer than the cores leaves room for the writer.
#include <ATen/ATen.h>
#include <torch/torch.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "checkpoint/checkpoint.h"
#include "common/checksum.h"
#include "launcher/tool_main.h"
#include "model/loss.h"
#include "model/model.h"
#include "model/weights_io.h"
#include "trainer/checkpoint_config.h"
#include "trainer/optimizer.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using namespace cst;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

int64_t folder_bytes(const std::string& dir) {
  int64_t b = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) b += static_cast<int64_t>(e.file_size());
  return b;
}

checkpoint::Manifest manifest_for(const trainer::TrainConfig& tc, const trainer::Optimizer& opt, int64_t step) {
  checkpoint::Manifest m;
  m.step = step, m.optimizer_steps = opt.steps_taken(), m.flat_numel = opt.flat_numel();
  m.run = trainer::describe_run(tc);
  return m;
}

}  // namespace

int main(int argc, char** argv) try {
  std::string dir;
  int64_t d_model, layers, vocab, steps, save_every, seq, repeats, threads;
  po::options_description desc("bench_checkpoint options");
  desc.add_options()("help,h", "show this help")("dir", po::value(&dir)->default_value(""),
                                                 "scratch folder, new or empty (removed at the end); default: "
                                                 "<tmp>/cst-bench-ckpt-<pid>")(
      "d-model", po::value(&d_model)->default_value(1024), "model width")(
      "layers", po::value(&layers)->default_value(6), "blocks")(
      "vocab", po::value(&vocab)->default_value(8000), "vocabulary")("steps", po::value(&steps)->default_value(8),
                                                                     "timed training steps per mode")(
      "save-every", po::value(&save_every)->default_value(4), "steps between checkpoints")(
      "seq", po::value(&seq)->default_value(32), "tokens per training sample")(
      "repeats", po::value(&repeats)->default_value(2), "save / load repetitions (best is reported)")(
      "threads", po::value(&threads)->default_value(0), "intra-op threads (0 = default)");
  if (!cst::parse_command_line(argc, argv, desc)) return 0;
  // The scratch folder is removed at the end: it must hold nothing of anyone else's.
  if (dir.empty()) dir = (fs::temp_directory_path() / ("cst-bench-ckpt-" + std::to_string(::getpid()))).string();
  std::error_code ec;
  CST_INPUT_CHECK(!fs::exists(dir, ec) || (fs::is_directory(dir, ec) && fs::is_empty(dir, ec)),
                  "--dir '" << dir << "' exists and is not an empty folder: bench_checkpoint removes its scratch "
                            << "folder at the end; give a new or empty one");
  if (threads > 0) at::set_num_threads(static_cast<int>(threads));

  model::ModelConfig cfg = model::ModelConfig::preset("tiny_lm");
  cfg.d_model = d_model, cfg.n_layers = layers, cfg.vocab_size = vocab, cfg.d_ff = 4 * d_model;
  cfg.n_heads = std::max<int64_t>(1, d_model / 64), cfg.dropout = 0,
  cfg.max_seq_len = std::max<int64_t>(seq, cfg.slice_len);
  cfg.validate();
  torch::manual_seed(1);
  model::CstModel m(cfg);
  trainer::NamedTensors params;
  for (auto& p : m->named_parameters()) params.emplace_back(p.key(), p.value());
  trainer::OptimOptions oo;
  trainer::Optimizer opt(params, oo);
  const double param_gb = static_cast<double>(m->num_parameters()) * 4 / 1e9;
  std::printf("# model: %ld parameters (%.3f GB float32); checkpoint = weights + 2 optimizer moments\n",
              static_cast<long>(m->num_parameters()), param_gb);

  auto train_step = [&] {
    at::Tensor ids = torch::randint(0, vocab, {1, seq + 1}, torch::kLong);
    model::LossSum ls = model::token_loss(m->forward(ids.narrow(1, 0, seq), at::Tensor()), ids.narrow(1, 1, seq));
    ls.mean().backward();
    trainer::clip_grad_norm(params, 1.0);
    opt.step(1e-4);
    opt.zero_grad();
  };
  train_step();  // the optimizer state is non-zero from here on

  fs::create_directories(dir);
  trainer::TrainConfig tc;  // what the manifests describe and resuming checks
  tc.model = cfg, tc.train.steps = 1 << 30, tc.checkpoint.dir = dir;
  const at::Tensor rng = at::globalContext().defaultGenerator(at::kCPU).get_state();
  // ---- 1 + 2: save and resume per checksum, hash only ----
  struct Row {
    ChecksumKind kind;
    double save = 1e30, resume = 1e30, hash = 1e30;
  };
  std::vector<Row> rows{{ChecksumKind::kSha256}, {ChecksumKind::kXxh3_128}};
  int64_t bytes = 0, step = 100;
  for (int64_t r = 0; r < repeats; ++r) {
    for (Row& row : rows) {  // interleaved, so that both see the same machine load
      checkpoint::CheckpointWriter::Options co;
      co.dir = dir, co.keep = 1, co.checksum = row.kind;
      checkpoint::CheckpointWriter ck(co);
      auto t0 = Clock::now();
      ck.save(*m, opt, rng, at::Tensor(), manifest_for(tc, opt, ++step));
      row.save = std::min(row.save, seconds_since(t0));
      const std::string step_dir = dir + "/" + checkpoint::step_dir_name(step);
      bytes = folder_bytes(step_dir);
      tc.checkpoint.resume = step_dir;
      t0 = Clock::now();
      auto point = checkpoint::find_resume_point(trainer::resume_options(tc),
                                                 [](const std::string& w) { std::fprintf(stderr, "%s\n", w.c_str()); });
      checkpoint::restore(*point, *m, opt, 0, 1, tc.train.seed, at::Generator());
      row.resume = std::min(row.resume, seconds_since(t0));
      t0 = Clock::now();
      for (const auto& e : fs::directory_iterator(step_dir)) file_checksum(e.path(), row.kind);
      row.hash = std::min(row.hash, seconds_since(t0));
    }
  }
  const double gb = static_cast<double>(bytes) / 1e9;
  std::printf(
      "| checksum | checkpoint (GB) | save (s) | save (GB/s) | resume (s) | resume (GB/s) | hash only (GB/s) |\n"
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (const Row& r : rows)
    std::printf("| %s | %.3f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", checksum_name(r.kind), gb, r.save, gb / r.save,
                r.resume, gb / r.resume, gb / r.hash);
  std::printf("\nxxh3_128 vs sha256: save %.2fx faster, resume %.2fx faster\n\n", rows[0].save / rows[1].save,
              rows[0].resume / rows[1].resume);

  // ---- 3: step time ----
  std::printf("| mode | mean step (s) | vs none | saves |\n| --- | ---: | ---: | ---: |\n");
  double none_s = 0;
  for (const char* mode : {"none", "sync", "async"}) {
    checkpoint::CheckpointWriter::Options co;  // xxh3_128
    co.dir = dir, co.keep = 1, co.async = std::string(mode) == "async";
    checkpoint::CheckpointWriter ck(co);
    int saves = 0;
    auto t0 = Clock::now();
    for (int64_t s = 1; s <= steps; ++s) {
      train_step();
      if (std::string(mode) != "none" && s % save_every == 0)
        ck.save(*m, opt, rng, at::Tensor(), manifest_for(tc, opt, 1000 * (saves + 1) + s)), ++saves;
    }
    const double per_step = seconds_since(t0) / static_cast<double>(steps);
    ck.wait();  // the last async save finishes outside the timed steps, as it overlaps later ones in training
    if (std::string(mode) == "none") none_s = per_step;
    std::printf("| %s | %.3f | %+.1f%% | %d |\n", mode, per_step, 100 * (per_step / none_s - 1), saves);
  }
  fs::remove_all(dir);
  return 0;
} catch (...) {
  return cst::report_exception(std::current_exception());
}
