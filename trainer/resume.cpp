#include "trainer/resume.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>

#include "comm/communicator.h"
#include "common/checksum.h"
#include "common/files.h"
#include "common/h5.h"
#include "model/model.h"
#include "model/weights_io.h"
#include "trainer/optim_shard.h"
#include "trainer/optimizer.h"

namespace cst::trainer {

namespace fs = std::filesystem;

Manifest verify_checkpoint(const std::string& step_dir) {
  const std::string mpath = step_dir + "/manifest.json";
  if (!fs::exists(mpath))
    throw CorruptCheckpoint("checkpoint '" + step_dir + "': missing file 'manifest.json' (incomplete)");
  std::string text;
  try {
    text = read_file(mpath, kMaxManifestBytes);
  } catch (const InputError& e) {
    throw CorruptCheckpoint(e.what());
  }
  Manifest m = parse_manifest(text, mpath);
  std::map<std::string, const FileEntry*> listed;
  for (const auto& e : m.files) listed[e.name] = &e;
  std::vector<std::string> expected{"model.h5"};
  for (int r = 0; r < m.world_size; ++r) expected.push_back(shard_name(r, static_cast<int>(m.world_size)));
  for (const auto& name : expected)
    if (!listed.count(name))
      throw CorruptCheckpoint("checkpoint manifest '" + mpath + "': field files lacks '" + name + "' (world_size " +
                              std::to_string(m.world_size) + ")");
  for (const auto& e : m.files) {
    const std::string path = step_dir + "/" + e.name;
    std::error_code ec;
    const auto bytes = fs::file_size(path, ec);
    if (ec) throw CorruptCheckpoint("checkpoint '" + step_dir + "': missing file '" + e.name + "'");
    if (static_cast<int64_t>(bytes) != e.bytes)
      throw CorruptCheckpoint("checkpoint file '" + path + "': size " + std::to_string(bytes) +
                              " bytes, manifest field files[" + e.name + "].bytes = " + std::to_string(e.bytes) +
                              " (truncated or changed)");
    const std::string sum = sha256_file(path);
    if (sum != e.sha256)
      throw CorruptCheckpoint("checkpoint file '" + path + "': sha256 " + sum +
                              " does not match manifest field files[" + e.name + "].sha256 = " + e.sha256 +
                              " (checksum mismatch)");
  }
  return m;
}

std::optional<ResumePoint> find_resume_point(const TrainConfig& cfg,
                                             const std::function<void(const std::string&)>& warn) {
  const std::string& want = cfg.checkpoint.resume;
  if (want.empty()) return std::nullopt;
  std::optional<ResumePoint> found;
  if (want == "auto") {
    const std::string root = cfg.checkpoint.resolved_dir(cfg.log.dir);
    const auto steps = list_step_dirs(root, warn);
    for (auto it = steps.rbegin(); it != steps.rend() && !found; ++it) {
      try {
        found = ResumePoint{it->second, verify_checkpoint(it->second)};
      } catch (const CorruptCheckpoint& e) {
        warn("skipping checkpoint '" + it->second + "': " + e.what());
      }
    }
    if (!found) {
      warn("--resume auto: no complete checkpoint in '" + root + "'; starting from scratch");
      return std::nullopt;
    }
  } else {
    CST_INPUT_CHECK(fs::is_directory(want), "--resume '" << want << "': no such checkpoint folder");
    found = ResumePoint{want, verify_checkpoint(want)};
  }
  check_compatible(found->manifest, cfg, found->dir + "/manifest.json");
  return found;
}

std::optional<ResumePoint> agree_on_resume_point(const TrainConfig& cfg, comm::Communicator& comm,
                                                 const std::function<void(const std::string&)>& warn) {
  std::optional<ResumePoint> point;
  std::exception_ptr error;
  std::string message;  // rank 0 -> others: "<folder>\n<manifest JSON>"
  if (comm.rank() == 0) {
    try {
      point = find_resume_point(cfg, warn);
      if (point) message = point->dir + "\n" + point->manifest.to_json();
    } catch (...) {
      error = std::current_exception();
    }
  }
  const auto dev = comm.collective_device();
  at::Tensor head = at::tensor({int64_t{error ? -1 : point ? 1 : 0}, static_cast<int64_t>(message.size())}, at::kLong);
  head = head.to(dev);
  comm.broadcast(head, 0);
  head = head.cpu();
  if (error) std::rethrow_exception(error);
  const int64_t status = head[0].item<int64_t>(), bytes = head[1].item<int64_t>();
  CST_INPUT_CHECK(status >= 0, "resume: rank 0 rejected the checkpoint (its error names file and field)");
  if (status == 0) return std::nullopt;
  at::Tensor body = at::empty({bytes}, at::kByte);
  if (comm.rank() == 0) std::memcpy(body.data_ptr(), message.data(), message.size());
  body = body.to(dev);
  comm.broadcast(body, 0);
  if (comm.rank() == 0) return point;
  body = body.cpu();
  const std::string text(static_cast<const char*>(body.data_ptr()), static_cast<size_t>(bytes));
  const size_t nl = text.find('\n');
  ResumePoint p;
  p.dir = text.substr(0, nl);
  p.manifest = parse_manifest(text.substr(nl + 1), p.dir + "/manifest.json");
  return p;
}

void restore(const ResumePoint& p, model::CstModelImpl& model, Optimizer& opt, int rank, int world, int64_t seed,
             at::Generator cuda) {
  const Manifest& m = p.manifest;
  {
    auto lock = h5::lock_library();
    model::load_weights(model, p.dir + "/model.h5");
  }
  read_optimizer_state(p.dir, m, opt);
  if (m.world_size == world) {  // same ranks: each continues its own random stream
    auto [cpu_state, cuda_state] = read_rng_state(p.dir, m, rank);
    at::Generator cpu = at::globalContext().defaultGenerator(at::kCPU);
    if (cpu_state.defined()) cpu.set_state(cpu_state);
    if (cuda_state.defined() && cuda.defined()) cuda.set_state(cuda_state);
  } else {  // another world size: reseeded from (seed, step, rank), documented in docs/CHECKPOINT.md
    torch::manual_seed(static_cast<uint64_t>(seed) * 1000003ull + static_cast<uint64_t>(rank) +
                       static_cast<uint64_t>(m.step) * 0x9E3779B97F4A7C15ull);
  }
}

}  // namespace cst::trainer
