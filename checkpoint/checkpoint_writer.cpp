#include "checkpoint/checkpoint_writer.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <vector>

#include "checkpoint/optim_shard.h"
#include "common/checksum.h"
#include "common/files.h"
#include "common/h5.h"
#include "model/model.h"
#include "model/weights_io.h"

namespace cst::checkpoint {

namespace fs = std::filesystem;

namespace {

at::Tensor host_u8(const at::Tensor& t) {
  return t.defined() ? t.to(at::kCPU).to(at::kByte).contiguous().clone() : at::Tensor();
}

std::string marker_name(int rank) { return "done_rank" + std::to_string(rank); }

}  // namespace

struct CheckpointWriter::Snapshot {
  Manifest meta;
  model::CstModelImpl* shadow = nullptr;  // rank 0: the parameters (the live model if sync, a host copy if async)
  OptimShard shard;
};

CheckpointWriter::CheckpointWriter(Options o) : o_(std::move(o)) {}

CheckpointWriter::~CheckpointWriter() {
  try {
    wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rank %d] checkpoint: an unfinished save failed: %s\n", o_.rank, e.what());
  }
}

void CheckpointWriter::wait() {
  if (thread_.joinable()) thread_.join();
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void CheckpointWriter::remove_leftovers() const {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(o_.dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("step_", 0) != 0) continue;
    for (const auto& [suffix, what] :
         {std::pair<std::string, const char*>{".tmp", "unfinished"}, {".pruning", "half-pruned"}}) {
      if (n.size() <= suffix.size() || n.compare(n.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
      std::printf("[checkpoint] removing %s '%s'\n", what, e.path().c_str());
      fs::remove_all(e.path());
    }
  }
}

void CheckpointWriter::save(model::CstModelImpl& model, const OptimizerState& opt, const at::Tensor& rng_cpu,
                            const at::Tensor& rng_cuda, Manifest meta) {
  wait();  // at most one save in flight
  auto snap = std::make_shared<Snapshot>();
  at::NoGradGuard no_grad;
  // A synchronous save writes from the live model and state (nothing changes them until it
  // returns); an async one from host copies taken now.
  if (o_.rank == 0 && !o_.async) snap->shadow = &model;
  if (o_.rank == 0 && o_.async) {
    if (!shadow_) {  // a CPU model of the same config; its random init must not move the global RNG
      at::Generator gen = at::globalContext().defaultGenerator(at::kCPU);
      at::Tensor state = gen.get_state();
      model::CstModel m(model.config());
      gen.set_state(state);
      shadow_ = m.ptr();
    }
    auto dst = shadow_->named_parameters();
    for (auto& item : model.named_parameters()) dst[item.key()].copy_(item.value());
    snap->shadow = shadow_.get();
  }
  OptimShard& sh = snap->shard;
  sh.rank = o_.rank, sh.world = o_.world;
  sh.range = partition(opt.flat_numel(), o_.rank, o_.world);
  sh.flat_numel = meta.flat_numel, sh.optimizer_steps = meta.optimizer_steps;
  const FlatRange held = opt.held();
  CST_CHECK(sh.range.begin >= held.begin && sh.range.end <= held.end,
            "checkpoint: rank " << o_.rank << " must write [" << sh.range.begin << ", " << sh.range.end
                                << ") of the optimizer state but holds [" << held.begin << ", " << held.end << ")");
  const int64_t off = sh.range.begin - held.begin;
  auto host = [&](const at::Tensor& t) {  // float32 on the CPU; a copy when async
    return t.narrow(0, off, sh.range.size())
        .to(at::kCPU, at::kFloat, /*non_blocking=*/false, /*copy=*/o_.async)
        .contiguous();
  };
  sh.exp_avg = host(opt.exp_avg());
  sh.exp_avg_sq = host(opt.exp_avg_sq());
  sh.rng_cpu = host_u8(rng_cpu);
  sh.rng_cuda = host_u8(rng_cuda);
  snap->meta = std::move(meta);
  if (!o_.async) return write(*snap);
  thread_ = std::thread([this, snap] {
    try {
      write(*snap);
    } catch (...) {
      error_ = std::current_exception();
    }
  });
}

void CheckpointWriter::write(const Snapshot& s) const {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string tmp = o_.dir + "/" + step_dir_name(s.meta.step) + ".tmp";
  fs::create_directories(tmp);
  std::vector<std::string> mine;
  if (o_.rank == 0) {
    {
      auto lock = h5::lock_library();
      model::save_weights(*s.shadow, tmp + "/model.h5", s.meta.run.tokenizer_sha256);
    }
    fsync_file(tmp + "/model.h5");
    mine.push_back("model.h5");
  }
  const std::string shard = shard_name(o_.rank, o_.world);
  write_optim_shard(tmp + "/" + shard, s.shard);
  fsync_file(tmp + "/" + shard);
  mine.push_back(shard);
  if (o_.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(o_.delay_ms));
  std::ostringstream marker;
  for (const auto& name : mine) {
    const std::string path = tmp + "/" + name;
    marker << name << " " << fs::file_size(path) << " " << checksum_name(o_.checksum) << " "
           << file_checksum(path, o_.checksum) << "\n";
  }
  write_file_atomic(tmp + "/" + marker_name(o_.rank), marker.str());
  fsync_dir(tmp);
  if (o_.rank != 0) return;
  commit(s.meta);
  std::printf("[checkpoint] step %ld committed to %s/%s (%.2f s)\n", static_cast<long>(s.meta.step), o_.dir.c_str(),
              step_dir_name(s.meta.step).c_str(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  std::fflush(stdout);
}

void CheckpointWriter::commit(Manifest meta) const {
  const std::string name = step_dir_name(meta.step), tmp = o_.dir + "/" + name + ".tmp",
                    final_dir = o_.dir + "/" + name;
  // Every rank's marker, then the manifest (last), then the rename.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(o_.timeout_s);
  meta.files.clear();
  for (int r = 0; r < o_.world; ++r) {
    const std::string marker = tmp + "/" + marker_name(r);
    while (!fs::exists(marker)) {
      CST_CHECK(std::chrono::steady_clock::now() < deadline,
                "checkpoint step " << meta.step << ": rank " << r << " did not finish writing within " << o_.timeout_s
                                   << " s (no '" << marker << "')");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::istringstream in(read_file(marker, 1 << 16));
    FileEntry e;
    std::string kind;
    while (in >> e.name >> e.bytes >> kind >> e.digest) {
      e.checksum = checksum_from_name(kind).value_or(ChecksumKind::kXxh3_128);
      meta.files.push_back(e);
    }
  }
  std::sort(meta.files.begin(), meta.files.end(),
            [](const FileEntry& a, const FileEntry& b) { return a.name < b.name; });
  write_file_atomic(tmp + "/manifest.json", meta.to_json());
  for (int r = 0; r < o_.world; ++r) fs::remove(tmp + "/" + marker_name(r));
  fsync_dir(tmp);
  if (fs::exists(final_dir)) discard(final_dir);  // re-saving a step (resumed from an older one)
  CST_CHECK(std::rename(tmp.c_str(), final_dir.c_str()) == 0, "cannot rename '" << tmp << "' to '" << final_dir << "'");
  fsync_dir(o_.dir);
  write_file_atomic(o_.dir + "/latest", name + "\n");
  fsync_dir(o_.dir);
  prune(meta.step);
}

void CheckpointWriter::prune(int64_t committed) const {
  if (o_.keep <= 0) return;  // only now that a newer checkpoint is committed
  auto steps = list_step_dirs(o_.dir, nullptr);
  const int64_t kept = protected_step_;
  steps.erase(std::remove_if(steps.begin(), steps.end(), [&](const auto& s) { return s.first == kept; }), steps.end());
  for (size_t i = 0; i + static_cast<size_t>(o_.keep) < steps.size(); ++i)
    if (steps[i].first != committed) discard(steps[i].second);  // never the one just committed
}

void CheckpointWriter::discard(const std::string& step_dir) const {
  std::printf("[checkpoint] pruning %s\n", step_dir.c_str());
  std::fflush(stdout);
  const std::string doomed = step_dir + ".pruning";
  fs::remove_all(doomed);
  CST_CHECK(std::rename(step_dir.c_str(), doomed.c_str()) == 0,
            "cannot rename '" << step_dir << "' to '" << doomed << "' to remove it");
  fsync_dir(o_.dir);  // from here on step_<N> is gone, whatever happens next
  fs::remove(doomed + "/manifest.json");
  std::vector<fs::path> rest;
  for (const auto& e : fs::directory_iterator(doomed)) rest.push_back(e.path());
  std::sort(rest.begin(), rest.end());
  for (size_t i = 0; i < rest.size(); ++i) {
    fs::remove_all(rest[i]);
    if (i == 0 && o_.prune_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(o_.prune_delay_ms));
  }
  fs::remove(doomed);
}

}  // namespace cst::checkpoint
