#include "checkpoint/resume.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>

#include "checkpoint/optim_shard.h"
#include "comm/communicator.h"
#include "common/checksum.h"
#include "common/files.h"
#include "common/h5.h"
#include "model/model.h"
#include "model/weights_io.h"

namespace cst::checkpoint {

namespace fs = std::filesystem;

Manifest verify_checkpoint(const std::string& step_dir, const OptionSchema& optim) {
  const std::string mpath = step_dir + "/manifest.json";
  if (!fs::exists(mpath))
    throw CorruptCheckpoint("checkpoint '" + step_dir + "': missing file 'manifest.json' (incomplete)");
  std::string text;
  try {
    text = read_file(mpath, kMaxManifestBytes);
  } catch (const InputError& e) {
    throw CorruptCheckpoint(e.what());
  }
  Manifest m = parse_manifest(text, mpath, optim);
  const auto folder_step = parse_step_dir_name(fs::path(step_dir).filename().string());
  if (folder_step && *folder_step != m.step)
    throw CorruptCheckpoint("checkpoint manifest '" + mpath + "': field step = " + std::to_string(m.step) +
                            " but the folder is named step_" + std::to_string(*folder_step));
  // Every shard listed: bounds world_size by the manifest's size before anything is sized by it.
  if (m.world_size + 1 > static_cast<int64_t>(m.files.size()))
    throw CorruptCheckpoint("checkpoint manifest '" + mpath + "': field world_size = " + std::to_string(m.world_size) +
                            " but field files lists " + std::to_string(m.files.size()) +
                            " files (model.h5 and one shard per rank expected)");
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
    const std::string kind = checksum_name(e.checksum);
    std::string sum;
    try {
      sum = file_checksum(path, e.checksum);
    } catch (const InputError& x) {  // unreadable
      throw CorruptCheckpoint(x.what());
    }
    if (sum != e.digest)
      throw CorruptCheckpoint("checkpoint file '" + path + "': " + kind + " " + sum +
                              " does not match manifest field files[" + e.name + "]." + kind + " = " + e.digest +
                              " (checksum mismatch)");
  }
  return m;
}

void check_fresh_start(const ResumeOptions& o) {
  const std::string &log_dir = o.log_dir, &ckpt_dir = o.dir;
  auto starts = [](const std::string& s, const char* p) { return s.rfind(p, 0) == 0; };
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(log_dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n == "config.cfg" || n == "metrics.jsonl" || n == "model.h5" || starts(n, "events.out.tfevents.") ||
        (starts(n, "model_step") && e.path().extension() == ".h5"))
      found.push_back(e.path().string());
  }
  for (const auto& e : fs::directory_iterator(ckpt_dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n == "latest" || starts(n, "step_")) found.push_back(e.path().string());
  }
  if (found.empty()) return;
  std::sort(found.begin(), found.end());
  std::string list;
  for (size_t i = 0; i < found.size() && i < 4; ++i) list += (i ? ", '" : "'") + found[i] + "'";
  if (found.size() > 4) list += " and " + std::to_string(found.size() - 4) + " more";
  CST_THROW_INPUT("a new run would overwrite an earlier run's files: "
                  << list << ". To continue that run, pass --resume auto; to start a new one, pass a fresh --log.dir"
                  << (o.dir_given ? " and --checkpoint.dir" : "") << " (or remove those files)");
}

std::optional<ResumePoint> find_resume_point(const ResumeOptions& o,
                                             const std::function<void(const std::string&)>& warn) {
  const std::string& want = o.resume;
  if (want.empty()) {
    check_fresh_start(o);
    return std::nullopt;
  }
  std::optional<ResumePoint> found;
  if (want == "auto") {
    const std::string& root = o.dir;
    const auto steps = list_step_dirs(root, warn);
    for (auto it = steps.rbegin(); it != steps.rend() && !found; ++it) {
      try {
        found = ResumePoint{it->second, verify_checkpoint(it->second, o.optim)};
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
    found = ResumePoint{want, verify_checkpoint(want, o.optim)};
  }
  check_compatible(found->manifest, o, found->dir + "/manifest.json");
  return found;
}

std::optional<ResumePoint> agree_on_resume_point(const ResumeOptions& o, comm::Communicator& comm,
                                                 const std::function<void(const std::string&)>& warn) {
  std::optional<ResumePoint> point;
  std::exception_ptr error;
  std::string message;  // rank 0 -> others: the folder, then the manifest JSON
  size_t dir_bytes = 0;
  if (comm.rank() == 0) {
    try {
      point = find_resume_point(o, warn);
      if (point) message = point->dir + point->manifest.to_json(), dir_bytes = point->dir.size();
    } catch (...) {
      error = std::current_exception();
    }
  }
  const auto dev = comm.collective_device();
  at::Tensor head = at::tensor({int64_t{error   ? -1
                                        : point ? 1
                                                : 0},
                                static_cast<int64_t>(dir_bytes), static_cast<int64_t>(message.size())},
                               at::kLong);
  head = head.to(dev);
  comm.broadcast(head, 0);
  head = head.cpu();
  if (error) std::rethrow_exception(error);
  const int64_t status = head[0].item<int64_t>(), bytes = head[2].item<int64_t>();
  CST_INPUT_CHECK(status >= 0, "resume: rank 0 refused to start (its error names the file and the field)");
  if (status == 0) return std::nullopt;
  at::Tensor body = at::empty({bytes}, at::kByte);
  if (comm.rank() == 0) std::memcpy(body.data_ptr(), message.data(), message.size());
  body = body.to(dev);
  comm.broadcast(body, 0);
  if (comm.rank() == 0) return point;
  body = body.cpu();
  const std::string text(static_cast<const char*>(body.data_ptr()), static_cast<size_t>(bytes));
  ResumePoint p;
  p.dir = text.substr(0, static_cast<size_t>(head[1].item<int64_t>()));
  p.manifest = parse_manifest(text.substr(p.dir.size()), p.dir + "/manifest.json", o.optim);
  return p;
}

void restore(const ResumePoint& p, model::CstModelImpl& model, OptimizerState& opt, int rank, int world, int64_t seed,
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

}  // namespace cst::checkpoint
