#include "trainer/checkpoint.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "common/h5.h"
#include "dataio/format.h"
#include "model/model.h"
#include "model/weights_io.h"

#ifndef CST_CODE_VERSION
#define CST_CODE_VERSION "unknown"
#endif

namespace cst::trainer {

namespace fs = std::filesystem;

const char* code_version() { return CST_CODE_VERSION; }

std::string shard_name(int rank, int world) {
  return "optim_rank" + std::to_string(rank) + "_of" + std::to_string(world) + ".h5";
}
std::string step_dir_name(int64_t step) { return "step_" + std::to_string(step); }

namespace {

// ---- files ------------------------------------------------------------------------------------

void fsync_path(const std::string& path, bool dir) {
  const int fd = ::open(path.c_str(), O_RDONLY | (dir ? O_DIRECTORY : 0));
  CST_CHECK(fd >= 0, "cannot open '" << path << "' to fsync it");
  const int rc = ::fsync(fd);
  ::close(fd);
  CST_CHECK(rc == 0, "fsync of '" << path << "' failed");
}

// Writes text to path.tmp, fsyncs it and renames it over path (the caller fsyncs the folder).
void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << text;
    f.flush();
    CST_CHECK(f.good(), "cannot write '" << tmp << "'");
  }
  fsync_path(tmp, false);
  CST_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename '" << tmp << "' to '" << path << "'");
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

FileEntry describe_file(const std::string& dir, const std::string& name) {
  const std::string path = dir + "/" + name;
  return {name, static_cast<int64_t>(fs::file_size(path)), dataio::sha256_file(path)};
}

// step_<N> folders (complete or not, never *.tmp) in root, sorted by N.
std::vector<std::pair<int64_t, std::string>> list_steps(const std::string& root) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string n = e.path().filename().string();
    if (!e.is_directory() || n.rfind("step_", 0) != 0 || n.size() == 5) continue;
    if (n.find_first_not_of("0123456789", 5) != std::string::npos) continue;
    out.emplace_back(std::stoll(n.substr(5)), e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ---- JSON: the writer and a small reader for our own manifests --------------------------------

std::string quote(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\')
      o += '\\', o += c;
    else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else
      o += c;
  }
  return o + "\"";
}

struct Json {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  std::string text;  // number literal or string value
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;
  const Json* find(const std::string& k) const {
    for (const auto& [key, v] : members)
      if (key == k) return &v;
    return nullptr;
  }
};

class JsonReader {
 public:
  JsonReader(const std::string& s, const std::string& path) : s_(s), path_(path) {}
  Json document() {
    Json v = value();
    ws();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& why) {
    throw CorruptCheckpoint("checkpoint manifest '" + path_ + "': not valid JSON (" + why + " at byte " +
                            std::to_string(i_) + ")");
  }
  void ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool eat(char c) {
    ws();
    if (i_ < s_.size() && s_[i_] == c) return ++i_, true;
    return false;
  }
  std::string string() {
    if (!eat('"')) fail("expected a string");
    std::string o;
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (c == '\\') {
        if (i_ >= s_.size()) fail("bad escape");
        c = s_[i_++];
        if (c == 'u') {
          if (i_ + 4 > s_.size()) fail("bad escape");
          o += static_cast<char>(std::stoi(s_.substr(i_, 4), nullptr, 16));
          i_ += 4;
          continue;
        }
        if (c == 'n')
          c = '\n';
        else if (c == 't')
          c = '\t';
      }
      o += c;
    }
    if (i_ >= s_.size()) fail("unterminated string");
    ++i_;
    return o;
  }
  Json value() {
    ws();
    if (i_ >= s_.size()) fail("unexpected end");
    Json v;
    const char c = s_[i_];
    if (c == '{') {
      ++i_;
      v.kind = Json::kObject;
      if (eat('}')) return v;
      do {
        std::string k = string();
        if (!eat(':')) fail("expected ':'");
        v.members.emplace_back(std::move(k), value());
      } while (eat(','));
      if (!eat('}')) fail("expected '}'");
    } else if (c == '[') {
      ++i_;
      v.kind = Json::kArray;
      if (eat(']')) return v;
      do v.items.push_back(value());
      while (eat(','));
      if (!eat(']')) fail("expected ']'");
    } else if (c == '"') {
      v.kind = Json::kString, v.text = string();
    } else if (s_.compare(i_, 4, "true") == 0 || s_.compare(i_, 5, "false") == 0) {
      v.kind = Json::kBool, v.text = s_[i_] == 't' ? "true" : "false", i_ += v.text.size();
    } else if (s_.compare(i_, 4, "null") == 0) {
      i_ += 4;
    } else {
      const size_t b = i_;
      while (i_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[i_])) || std::strchr("+-.eE", s_[i_]))) ++i_;
      if (b == i_) fail("unexpected character");
      v.kind = Json::kNumber, v.text = s_.substr(b, i_ - b);
    }
    return v;
  }
  const std::string& s_;
  std::string path_;
  size_t i_ = 0;
};

// Typed access naming the manifest and the field on error.
struct ManifestFields {
  const Json& root;
  const std::string& path;
  const Json& get(const Json& obj, const std::string& key, Json::Kind kind, const std::string& where) const {
    const Json* v = obj.find(key);
    if (!v) throw CorruptCheckpoint("checkpoint manifest '" + path + "': missing field '" + where + key + "'");
    if (v->kind != kind)
      throw CorruptCheckpoint("checkpoint manifest '" + path + "': field '" + where + key + "' has the wrong type");
    return *v;
  }
  int64_t integer(const Json& obj, const std::string& key, const std::string& where = "") const {
    const Json& v = get(obj, key, Json::kNumber, where);
    try {
      return parse_int(where + key, v.text);
    } catch (const InputError&) {
      throw CorruptCheckpoint("checkpoint manifest '" + path + "': field '" + where + key + "' = " + v.text +
                              " is not an integer");
    }
  }
  std::string str(const Json& obj, const std::string& key, const std::string& where = "") const {
    return get(obj, key, Json::kString, where).text;
  }
  std::vector<std::pair<std::string, std::string>> table(const std::string& key) const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& [k, v] : get(root, key, Json::kObject, "").members)
      out.emplace_back(k, str(root.find(key)[0], k, key + "."));
    return out;
  }
};

// ---- HDF5 shard I/O (callers hold h5::lock_library()) -----------------------------------------

void write_shard(const std::string& path, int rank, int world, const FlatRange& range, int64_t n, int64_t t,
                 const at::Tensor& exp_avg, const at::Tensor& exp_avg_sq, const at::Tensor& rng_cpu,
                 const at::Tensor& rng_cuda) {
  h5::File f(path, h5::File::Mode::kCreate);
  f.set_attr("format", std::string(kShardFormat));
  f.set_attr("format_version", kCheckpointVersion);
  f.set_attr("rank", static_cast<int64_t>(rank));
  f.set_attr("world_size", static_cast<int64_t>(world));
  f.set_attr("range_begin", range.begin);
  f.set_attr("range_end", range.end);
  f.set_attr("flat_numel", n);
  f.set_attr("optimizer_steps", t);
  for (auto [name, ten] : {std::pair{"exp_avg", &exp_avg}, std::pair{"exp_avg_sq", &exp_avg_sq}})
    if (range.size() > 0) f.write<float>(name, ten->data_ptr<float>(), {range.size()});
  for (auto [name, ten] : {std::pair{"rng_cpu", &rng_cpu}, std::pair{"rng_cuda", &rng_cuda}})
    if (ten->defined()) f.write<uint8_t>(name, ten->data_ptr<uint8_t>(), {ten->numel()});
  f.flush();
}

at::Tensor host_u8(const at::Tensor& t) {
  return t.defined() ? t.to(at::kCPU).to(at::kByte).contiguous().clone() : at::Tensor();
}

}  // namespace

// ---- Manifest ---------------------------------------------------------------------------------

std::string Manifest::to_json() const {
  std::ostringstream o;
  auto table = [&](const std::vector<std::pair<std::string, std::string>>& t) {
    o << "{";
    for (size_t i = 0; i < t.size(); ++i)
      o << (i ? ",\n    " : "\n    ") << quote(t[i].first) << ": " << quote(t[i].second);
    o << "\n  }";
  };
  o << "{\n  \"format\": " << quote(format) << ",\n  \"format_version\": " << format_version
    << ",\n  \"step\": " << step << ",\n  \"optimizer_steps\": " << optimizer_steps
    << ",\n  \"loader\": {\"epoch\": " << loader.epoch << ", \"consumed_samples\": " << loader.consumed_samples
    << "},\n  \"world_size\": " << world_size << ",\n  \"zero_stage\": " << zero_stage
    << ",\n  \"flat_numel\": " << flat_numel << ",\n  \"seed\": " << seed << ",\n  \"global_batch\": " << global_batch
    << ",\n  \"tokenizer_sha256\": " << quote(tokenizer_sha256) << ",\n  \"code_version\": " << quote(code_version)
    << ",\n  \"model\": ";
  table(model);
  o << ",\n  \"optimizer\": ";
  table(optimizer);
  o << ",\n  \"files\": [";
  for (size_t i = 0; i < files.size(); ++i)
    o << (i ? ",\n    " : "\n    ") << "{\"name\": " << quote(files[i].name) << ", \"bytes\": " << files[i].bytes
      << ", \"sha256\": " << quote(files[i].sha256) << "}";
  o << "\n  ]\n}\n";
  return o.str();
}

Manifest Manifest::parse(const std::string& text, const std::string& path) {
  const Json root = JsonReader(text, path).document();
  if (root.kind != Json::kObject) throw CorruptCheckpoint("checkpoint manifest '" + path + "': not a JSON object");
  ManifestFields f{root, path};
  Manifest m;
  m.format = f.str(root, "format");
  CST_INPUT_CHECK(m.format == kCheckpointFormat, "checkpoint manifest '" << path << "': field format = '" << m.format
                                                                         << "', expected '" << kCheckpointFormat
                                                                         << "'");
  m.format_version = f.integer(root, "format_version");
  CST_INPUT_CHECK(m.format_version == kCheckpointVersion,
                  "checkpoint manifest '" << path << "': field format_version = " << m.format_version
                                          << ", this build reads version " << kCheckpointVersion);
  m.step = f.integer(root, "step");
  m.optimizer_steps = f.integer(root, "optimizer_steps");
  const Json& loader = f.get(root, "loader", Json::kObject, "");
  m.loader.epoch = f.integer(loader, "epoch", "loader.");
  m.loader.consumed_samples = f.integer(loader, "consumed_samples", "loader.");
  m.world_size = f.integer(root, "world_size");
  m.zero_stage = f.integer(root, "zero_stage");
  m.flat_numel = f.integer(root, "flat_numel");
  m.seed = f.integer(root, "seed");
  m.global_batch = f.integer(root, "global_batch");
  m.tokenizer_sha256 = f.str(root, "tokenizer_sha256");
  m.code_version = f.str(root, "code_version");
  m.model = f.table("model");
  m.optimizer = f.table("optimizer");
  for (const Json& e : f.get(root, "files", Json::kArray, "").items) {
    if (e.kind != Json::kObject)
      throw CorruptCheckpoint("checkpoint manifest '" + path + "': files[] entry is not an object");
    m.files.push_back(
        {f.str(e, "name", "files[]."), f.integer(e, "bytes", "files[]."), f.str(e, "sha256", "files[].")});
  }
  if (m.world_size < 1 || m.step < 0 || m.flat_numel < 0)
    throw CorruptCheckpoint("checkpoint manifest '" + path + "': field world_size, step or flat_numel out of range");
  return m;
}

// ---- Checkpointer -----------------------------------------------------------------------------

struct Checkpointer::Snapshot {
  Manifest meta;
  model::CstModelImpl* shadow = nullptr;  // rank 0: host copy of the parameters
  FlatRange range;
  at::Tensor exp_avg, exp_avg_sq, rng_cpu, rng_cuda;  // host copies
};

Checkpointer::Checkpointer(Options o) : o_(std::move(o)) {}

Checkpointer::~Checkpointer() {
  try {
    wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rank %d] checkpoint: an unfinished save failed: %s\n", o_.rank, e.what());
  }
}

void Checkpointer::wait() {
  if (thread_.joinable()) thread_.join();
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void Checkpointer::remove_stale_tmp() const {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(o_.dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("step_", 0) == 0 && n.size() > 4 && n.compare(n.size() - 4, 4, ".tmp") == 0) {
      std::printf("[checkpoint] removing unfinished '%s'\n", e.path().c_str());
      fs::remove_all(e.path());
    }
  }
}

void Checkpointer::save(model::CstModelImpl& model, const Optimizer& opt, const at::Tensor& rng_cpu,
                        const at::Tensor& rng_cuda, Manifest meta) {
  wait();  // at most one save in flight
  auto snap = std::make_shared<Snapshot>();
  at::NoGradGuard no_grad;
  if (o_.rank == 0) {
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
  snap->range = partition(opt.flat_numel(), o_.rank, o_.world);
  const FlatRange held = opt.held();
  CST_CHECK(snap->range.begin >= held.begin && snap->range.end <= held.end,
            "checkpoint: rank " << o_.rank << " must write [" << snap->range.begin << ", " << snap->range.end
                                << ") of the optimizer state but holds [" << held.begin << ", " << held.end << ")");
  const int64_t off = snap->range.begin - held.begin;
  snap->exp_avg = opt.exp_avg().narrow(0, off, snap->range.size()).to(at::kCPU).to(at::kFloat).clone();
  snap->exp_avg_sq = opt.exp_avg_sq().narrow(0, off, snap->range.size()).to(at::kCPU).to(at::kFloat).clone();
  snap->rng_cpu = host_u8(rng_cpu);
  snap->rng_cuda = host_u8(rng_cuda);
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

void Checkpointer::write(const Snapshot& s) const {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string tmp = o_.dir + "/" + step_dir_name(s.meta.step) + ".tmp";
  fs::create_directories(tmp);
  std::vector<std::string> mine;
  if (o_.rank == 0) {
    {
      auto lock = h5::lock_library();
      model::save_weights(*s.shadow, tmp + "/model.h5");
    }
    fsync_path(tmp + "/model.h5", false);
    mine.push_back("model.h5");
  }
  const std::string shard = shard_name(o_.rank, o_.world);
  {
    auto lock = h5::lock_library();
    write_shard(tmp + "/" + shard, o_.rank, o_.world, s.range, s.meta.flat_numel, s.meta.optimizer_steps, s.exp_avg,
                s.exp_avg_sq, s.rng_cpu, s.rng_cuda);
  }
  fsync_path(tmp + "/" + shard, false);
  mine.push_back(shard);
  if (o_.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(o_.delay_ms));
  std::ostringstream marker;
  for (const auto& name : mine) {
    FileEntry e = describe_file(tmp, name);
    marker << e.name << " " << e.bytes << " " << e.sha256 << "\n";
  }
  write_file_atomic(tmp + "/done_rank" + std::to_string(o_.rank), marker.str());
  fsync_path(tmp, true);
  if (o_.rank != 0) return;
  commit(s.meta);
  std::printf("[checkpoint] step %ld committed to %s/%s (%.2f s)\n", static_cast<long>(s.meta.step), o_.dir.c_str(),
              step_dir_name(s.meta.step).c_str(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  std::fflush(stdout);
}

void Checkpointer::commit(Manifest meta) const {
  const std::string name = step_dir_name(meta.step), tmp = o_.dir + "/" + name + ".tmp",
                    final_dir = o_.dir + "/" + name;
  // Every rank's marker, then the manifest (last), then the rename.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(o_.timeout_s);
  for (int r = 0; r < o_.world; ++r) {
    const std::string marker = tmp + "/done_rank" + std::to_string(r);
    while (!fs::exists(marker)) {
      CST_CHECK(std::chrono::steady_clock::now() < deadline,
                "checkpoint step " << meta.step << ": rank " << r << " did not finish writing within " << o_.timeout_s
                                   << " s (no '" << marker << "')");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::istringstream in(read_text(marker));
    FileEntry e;
    while (in >> e.name >> e.bytes >> e.sha256) meta.files.push_back(e);
  }
  std::sort(meta.files.begin(), meta.files.end(),
            [](const FileEntry& a, const FileEntry& b) { return a.name < b.name; });
  write_file_atomic(tmp + "/manifest.json", meta.to_json());
  for (int r = 0; r < o_.world; ++r) fs::remove(tmp + "/done_rank" + std::to_string(r));
  fsync_path(tmp, true);
  if (fs::exists(final_dir)) fs::remove_all(final_dir);  // re-saving a step (resumed from an older one)
  CST_CHECK(std::rename(tmp.c_str(), final_dir.c_str()) == 0, "cannot rename '" << tmp << "' to '" << final_dir << "'");
  fsync_path(o_.dir, true);
  write_file_atomic(o_.dir + "/latest", name + "\n");
  fsync_path(o_.dir, true);
  if (o_.keep > 0) {  // only now that a newer checkpoint is committed
    auto steps = list_steps(o_.dir);
    for (size_t i = 0; i + static_cast<size_t>(o_.keep) < steps.size(); ++i)
      if (steps[i].first != meta.step) fs::remove_all(steps[i].second);  // never the one just committed
  }
}

// ---- resuming ---------------------------------------------------------------------------------

Manifest verify_checkpoint(const std::string& step_dir) {
  const std::string mpath = step_dir + "/manifest.json";
  if (!fs::exists(mpath))
    throw CorruptCheckpoint("checkpoint '" + step_dir + "': missing file 'manifest.json' (incomplete)");
  Manifest m = Manifest::parse(read_text(mpath), mpath);
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
    if (!fs::exists(path)) throw CorruptCheckpoint("checkpoint '" + step_dir + "': missing file '" + e.name + "'");
    const auto bytes = static_cast<int64_t>(fs::file_size(path));
    if (bytes != e.bytes)
      throw CorruptCheckpoint("checkpoint file '" + path + "': size " + std::to_string(bytes) +
                              " bytes, manifest field files[" + e.name + "].bytes = " + std::to_string(e.bytes) +
                              " (truncated or changed)");
    const std::string sha = dataio::sha256_file(path);
    if (sha != e.sha256)
      throw CorruptCheckpoint("checkpoint file '" + path + "': sha256 " + sha +
                              " does not match manifest field files[" + e.name + "].sha256 = " + e.sha256 +
                              " (checksum mismatch)");
  }
  return m;
}

void check_compatible(const Manifest& m, const TrainConfig& cfg, const std::string& step_dir) {
  const std::string mpath = step_dir + "/manifest.json";
  std::map<std::string, std::string> saved(m.model.begin(), m.model.end());
  for (const auto& f : model::ModelConfig::fields()) {
    auto it = saved.find(f.name);
    CST_INPUT_CHECK(it != saved.end(),
                    "checkpoint manifest '" << mpath << "': field model." << f.name << " is missing");
    CST_INPUT_CHECK(it->second == f.get(cfg.model), "checkpoint manifest '"
                                                        << mpath << "': model." << f.name << " = " << it->second
                                                        << " but the configuration has model." << f.name << " = "
                                                        << f.get(cfg.model)
                                                        << (f.name == "vocab_size" ? " (vocabulary mismatch)" : ""));
  }
  CST_INPUT_CHECK(m.tokenizer_sha256.empty() || cfg.data.tokenizer_sha256.empty() ||
                      m.tokenizer_sha256 == cfg.data.tokenizer_sha256,
                  "checkpoint manifest '" << mpath << "': tokenizer_sha256 = " << m.tokenizer_sha256
                                          << " but data.tokenizer_sha256 = " << cfg.data.tokenizer_sha256);
  std::map<std::string, std::string> opt(m.optimizer.begin(), m.optimizer.end());
  CST_INPUT_CHECK(opt["optim.name"] == cfg.get("optim.name"),
                  "checkpoint manifest '" << mpath << "': optimizer.optim.name = " << opt["optim.name"]
                                          << " but optim.name = " << cfg.get("optim.name"));
  CST_INPUT_CHECK(m.seed == cfg.train.seed, "checkpoint manifest '" << mpath << "': seed = " << m.seed
                                                                    << " but train.seed = " << cfg.train.seed
                                                                    << " (the data order would change)");
  CST_INPUT_CHECK(m.global_batch == cfg.train.global_batch,
                  "checkpoint manifest '" << mpath << "': global_batch = " << m.global_batch
                                          << " but train.global_batch = " << cfg.train.global_batch);
}

std::string resolve_resume(const TrainConfig& cfg, const std::function<void(const std::string&)>& warn) {
  const std::string& want = cfg.checkpoint.resume;
  if (want.empty()) return "";
  std::string chosen;
  if (want == "auto") {
    const std::string root = cfg.checkpoint.resolved_dir(cfg.log.dir);
    auto steps = list_steps(root);
    for (auto it = steps.rbegin(); it != steps.rend() && chosen.empty(); ++it) {
      try {
        verify_checkpoint(it->second);
        chosen = it->second;
      } catch (const CorruptCheckpoint& e) {
        warn("skipping checkpoint '" + it->second + "': " + e.what());
      }
    }
    if (chosen.empty()) {
      warn("--resume auto: no complete checkpoint in '" + root + "'; starting from scratch");
      return "";
    }
  } else {
    CST_INPUT_CHECK(fs::is_directory(want), "--resume '" << want << "': no such checkpoint folder");
    chosen = want;
    verify_checkpoint(chosen);
  }
  check_compatible(Manifest::parse(read_text(chosen + "/manifest.json"), chosen + "/manifest.json"), cfg, chosen);
  return chosen;
}

void load_optimizer_state(const std::string& step_dir, const Manifest& m, Optimizer& opt) {
  CST_INPUT_CHECK(m.flat_numel == opt.flat_numel(),
                  "checkpoint manifest '" << step_dir << "/manifest.json': flat_numel = " << m.flat_numel
                                          << " but the model has " << opt.flat_numel() << " trainable elements");
  const FlatRange want = opt.held();
  at::Tensor avg = at::zeros({want.size()}, at::kFloat), avg_sq = at::zeros({want.size()}, at::kFloat);
  auto lock = h5::lock_library();
  for (int r = 0; r < m.world_size; ++r) {
    const FlatRange have = partition(m.flat_numel, r, static_cast<int>(m.world_size));
    const int64_t b = std::max(have.begin, want.begin), e = std::min(have.end, want.end);
    if (b >= e) continue;
    const std::string path = step_dir + "/" + shard_name(r, static_cast<int>(m.world_size));
    h5::File f(path, h5::File::Mode::kRead);
    CST_INPUT_CHECK(f.attr_int("range_begin") == have.begin && f.attr_int("range_end") == have.end,
                    "checkpoint shard '" << path
                                         << "': attributes range_begin/range_end = " << f.attr_int("range_begin") << "/"
                                         << f.attr_int("range_end") << ", expected " << have.begin << "/" << have.end);
    f.open("exp_avg").read_slab<float>({b - have.begin}, {e - b}, avg.data_ptr<float>() + (b - want.begin));
    f.open("exp_avg_sq").read_slab<float>({b - have.begin}, {e - b}, avg_sq.data_ptr<float>() + (b - want.begin));
  }
  opt.load_state(avg, avg_sq);
  opt.set_steps_taken(m.optimizer_steps);
}

std::pair<at::Tensor, at::Tensor> load_rng_state(const std::string& step_dir, const Manifest& m, int rank) {
  auto lock = h5::lock_library();
  h5::File f(step_dir + "/" + shard_name(rank, static_cast<int>(m.world_size)), h5::File::Mode::kRead);
  std::pair<at::Tensor, at::Tensor> out;
  for (auto [name, dst] : {std::pair{"rng_cpu", &out.first}, std::pair{"rng_cuda", &out.second}}) {
    if (!f.has(name)) continue;
    h5::Dataset ds = f.open(name);
    *dst = at::empty({ds.numel()}, at::kByte);
    ds.read<uint8_t>(dst->data_ptr<uint8_t>());
  }
  return out;
}

}  // namespace cst::trainer
